"""Tasks: one module per LRA task, each exposing a builder that returns TaskData."""
from lra_bench.data.spec import Split, TaskData, TaskSpec

__all__ = ["Split", "TaskData", "TaskSpec"]
