"""lra_bench: Long Range Arena benchmarks for efficient attention."""

__version__ = "0.1.0"
