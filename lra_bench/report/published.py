"""Published LRA reference numbers (`published.json`, package data) as tidy frames.

Each row names its source (a key of `sources()`, which gives a short label and the full
citation). Values are as printed; nothing is recomputed here.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import pandas as pd

FAIL = "FAIL"


@lru_cache(maxsize=1)
def _data() -> dict:
    return json.loads(resources.files("lra_bench.report").joinpath("published.json").read_text(encoding="utf-8"))


def sources() -> dict[str, dict[str, str]]:
    """Source key -> {"short": label for a table cell, "citation": full reference}."""
    return _data()["sources"]


def accuracy() -> pd.DataFrame:
    """One row per (model, task): model, task, score (float, NaN for FAIL), fail (bool), source, note.

    The printed averages are the rows with task "avg5" (LRA's five tasks) and "avg6" (six
    tasks, FAIL = 50; only where the source prints it).
    """
    block = _data()["accuracy"]
    rows = []
    for r in block["rows"]:
        values = dict(zip(block["tasks"], r["scores"]), avg5=r.get("avg5"), avg6=r.get("avg6"))
        for task, v in values.items():
            if v is not None:
                rows.append({"model": r["model"], "task": task, "score": float("nan") if v == FAIL else float(v),
                             "fail": v == FAIL, "source": r["source"], "note": r.get("note")})
    return pd.DataFrame(rows)


def efficiency() -> pd.DataFrame:
    """One row per (model, length): model, task, batch, hardware, length, steps_per_s, relative
    (printed factor vs Transformer, NaN where none), memory_gb, source, note."""
    block = _data()["efficiency"]
    rows = []
    for r in block["rows"]:
        for i, length in enumerate(block["lengths"]):
            rel = r["relative"][i]
            rows.append({"model": r["model"], "task": block["task"], "batch": block["batch"],
                         "hardware": block["hardware"], "length": length, "steps_per_s": r["steps_per_s"][i],
                         "relative": float("nan") if rel is None else rel, "memory_gb": r["memory_gb"][i],
                         "source": block["source"], "note": r.get("note")})
    return pd.DataFrame(rows)


def efficiency_note() -> str:
    """How the published efficiency rows map onto our columns."""
    return _data()["efficiency"]["note"]
