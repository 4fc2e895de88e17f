"""The attention benchmark's outputs: a header line, a plain-text table, a CSV file."""
from __future__ import annotations

import math
import os

import pandas as pd

from lra_bench.io import atomic_write

TABLE_COLUMNS = ["attn", "n", "fwd_ms", "fwdbwd_ms", "peak_mib", "vs_softmax", "vs_proj", "vs_proj_paired",
                 "growth_paired"]
META_COLUMNS = ["device", "hardware", "torch_version", "threads", "batch", "hidden", "heads", "dtype", "malloc",
                "kernels", "status", "memory_method", "warmup", "repeats", "min_time_s", "fwd_runs", "fwdbwd_runs",
                "seed"]
CSV_COLUMNS = TABLE_COLUMNS + META_COLUMNS
MEMORY_NOTES = {
    "cuda_allocator": "CUDA max_memory_allocated above the step's start",
    "tensor_storage": "peak live tensor storage created by the step",
    "rss_delta": "peak RSS above the step's start, includes allocator caching",
}


def header(df: pd.DataFrame) -> str:
    """One line with what the numbers depend on: machine, torch, sizes, dtype, malloc tuning,
    memory method."""
    if df.empty:
        return "attention benchmark: no rows"
    m = df.iloc[0].to_dict()  # a dict: Series attributes such as .dtype would shadow the columns
    return (f"attention benchmark | {m['device']} ({m['hardware']}) | torch {m['torch_version']} | "
            f"threads {m['threads']} | batch {m['batch']} hidden {m['hidden']} heads {m['heads']} {m['dtype']} | "
            f"median of {m['repeats']} after {m['warmup']} warmup | malloc {m['malloc']} | "
            f"kernels {m['kernels']} | "
            f"memory: {m['memory_method']} ({MEMORY_NOTES.get(m['memory_method'], '')})")


def _fmt(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}"


def table(df: pd.DataFrame) -> str:
    """The rows as aligned text; a status column is added when some row failed."""
    digits = {"fwd_ms": 2, "fwdbwd_ms": 2, "peak_mib": 2, "vs_softmax": 2, "vs_proj": 2, "vs_proj_paired": 2,
              "growth_paired": 2}
    columns = TABLE_COLUMNS + (["status"] if (df["status"] != "ok").any() else [])
    cells = [[_fmt(r[c], digits[c]) if c in digits else str(r[c]) for c in columns] for _, r in df.iterrows()]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(values):
        return "  ".join(v.ljust(w) if i in (0, len(columns) - 1) and columns[i] in ("attn", "status")
                         else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    return "\n".join([line(columns)] + [line(row) for row in cells])


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """All rows and columns to `path` (parent folders created; written atomically)."""
    with atomic_write(path, "w", newline="") as f:
        df.to_csv(f, index=False, columns=CSV_COLUMNS)


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """The printed header line and table to `path` (written atomically)."""
    with atomic_write(path, "w") as f:
        f.write(f"{header(df)}\n{table(df)}\n")
