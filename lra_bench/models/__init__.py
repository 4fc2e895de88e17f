from lra_bench.models.classifier import Classifier, build_model
from lra_bench.models.encoder import Encoder, EncoderBlock

__all__ = ["Classifier", "Encoder", "EncoderBlock", "build_model"]
