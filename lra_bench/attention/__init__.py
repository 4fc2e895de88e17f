"""Token mixers. Each module holds one mechanism; configs pick them with Hydra `_target_`.

Contract: `__init__(hidden_dim, num_heads=8, dropout=0.0, **own_options)` and
`forward(x (B, L, D), mask bool (B, L) | None, return_attention=False)` -> (B, L, D),
or `(out, None)` with `return_attention`. `mask` is True at real tokens.
"""
from lra_bench.attention.fnet import FNetMixer
from lra_bench.attention.lst import DCTAttention, HadamardAttention, LSTAttention
from lra_bench.attention.mixed_spectral import MixedSpectralAttention
from lra_bench.attention.softmax import SoftmaxAttention

__all__ = ["DCTAttention", "FNetMixer", "HadamardAttention", "LSTAttention", "MixedSpectralAttention",
           "SoftmaxAttention"]
