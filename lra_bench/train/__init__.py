from lra_bench.train.run import run

__all__ = ["run"]
