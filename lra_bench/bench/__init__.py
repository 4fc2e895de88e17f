"""Micro-benchmarks of single layers, outside any task or training loop.

`python -m lra_bench.bench attention ...` times every token mixer in `conf/attn/` alone
(forward, forward+backward, peak memory) over a range of sequence lengths; see
`lra_bench.bench.attention.bench_attention` for the Python API.
"""
from lra_bench.bench.attention import bench_attention

__all__ = ["bench_attention"]
