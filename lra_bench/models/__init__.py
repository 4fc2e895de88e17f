from lra_bench.models.classifier import Classifier, DualClassifier, PooledEncoder, build_model
from lra_bench.models.encoder import Encoder, EncoderBlock

__all__ = ["Classifier", "DualClassifier", "PooledEncoder", "Encoder", "EncoderBlock", "build_model"]
