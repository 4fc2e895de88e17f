"""The report's figures: the frames `lra_bench.report.plots` draws, and the calls to it.

The plotting module is imported lazily, so tables are made even where it (or matplotlib)
is missing; a figure that cannot be drawn is a warning, never a failed report.
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path

import pandas as pd

from lra_bench.report.render import Table
from lra_bench.report.tables import AVERAGES, OURS

log = logging.getLogger(__name__)


def _by_row(d: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`columns` of `d` with the row name (`model`) as `attn`, the name the plots label."""
    return d.drop(columns="attn").rename(columns={"model": "attn"})[columns]


def accuracy_frame(table1: Table) -> pd.DataFrame:
    """attn (row name), task, mean, std, n for our ok cells."""
    d = table1.data
    d = d[(d["source"] == OURS) & (d["status"] == "ok") & ~d["task"].isin(list(AVERAGES))]
    return _by_row(d, ["attn", "task", "mean", "std", "n"])


def _ours_ok(table2: Table) -> pd.DataFrame:
    d = table2.data
    return d[(d["source"] == OURS) & (d["status"] == "ok") & (d["model"] == d["attn"])]


def _largest(d: pd.DataFrame, where: list[str], count: str) -> tuple[pd.DataFrame, pd.Series]:
    """The rows of `d` in the `where` group with the most distinct `count` (the last such group
    in sort order on ties, so the longest length), and that group's key."""
    sizes = d.groupby(where)[count].nunique().rename("_size").reset_index()
    key = sizes.sort_values(["_size"] + where).iloc[-1]
    return d[(d[where] == key[where]).all(axis=1)], key


def _caption(key: pd.Series) -> str:
    at = f" at length {int(key['length'])}" if "length" in key else ""
    return f"{key['task']}{at}, batch {int(key['batch'])}, {key['hardware']}"


def scaling_frame(table2: Table) -> tuple[pd.DataFrame, str]:
    """attn, length, steps_per_s, peak_memory_bytes for the (task, batch, hardware) measured at
    the most lengths (at least two), and a caption; empty when there is no such group."""
    d = _ours_ok(table2)
    if d.empty:
        return d, ""
    sel, key = _largest(d, ["task", "batch", "hardware"], "length")
    if key["_size"] < 2:
        return d.iloc[:0], ""
    return _by_row(sel, ["attn", "length", "steps_per_s", "peak_memory_bytes"]), _caption(key)


def bubble_frame(table1: Table, table2: Table) -> tuple[pd.DataFrame, str]:
    """attn, avg_accuracy, steps_per_s, peak_memory_bytes per variant's main row, and a caption.

    Accuracy: mean over the tasks where every plotted variant has ok runs (so all bubbles
    average the same tasks). Speed and memory: the (task, batch, hardware, length) measured
    for the most variants, the longest such length on ties.
    """
    acc = accuracy_frame(table1)
    acc = acc[acc["attn"].isin(table1.data["attn"].dropna().unique())]  # main rows only
    speed = _ours_ok(table2)
    if acc.empty or speed.empty:
        return pd.DataFrame(), ""
    at, key = _largest(speed, ["task", "batch", "hardware", "length"], "model")
    at = at.set_index("model")
    acc = acc[acc["attn"].isin(at.index)]
    common = set.intersection(*(set(g["task"]) for _, g in acc.groupby("attn"))) if not acc.empty else set()
    if not common:
        return pd.DataFrame(), ""
    avg = acc[acc["task"].isin(common)].groupby("attn")["mean"].mean()
    frame = pd.DataFrame({"attn": avg.index, "avg_accuracy": avg.to_numpy()})
    frame = frame.join(at[["steps_per_s", "peak_memory_bytes"]], on="attn")
    return frame, f"accuracy averaged over {', '.join(sorted(common))}; speed and memory on {_caption(key)}"


def make_plots(table1: Table, table2: Table, out_dir: Path) -> list[tuple[Path, str]]:
    """Draw every figure there is data for into `out_dir`; returns (path, caption) pairs."""
    try:
        plots = importlib.import_module("lra_bench.report.plots")
    except ImportError as exc:
        log.warning("plots skipped: lra_bench.report.plots is not available (%s)", exc)
        return []
    bubble, bubble_caption = bubble_frame(table1, table2)
    speed, speed_caption = scaling_frame(table2)
    jobs = [(plots.accuracy_per_task, accuracy_frame(table1), "accuracy_per_task.png",
             "test accuracy per task (mean ± std over seeds)"),
            (plots.bubble_chart, bubble, "bubble.png", bubble_caption),
            (plots.scaling, speed, "scaling.png", speed_caption)]
    made = []
    for draw, frame, name, caption in jobs:
        if frame.empty:
            log.info("plot %s skipped: no data for it", name)
            continue
        try:
            made.append((draw(frame, out_dir / name), caption))
        except Exception as exc:  # a figure is never worth a failed report
            log.warning("plot %s failed (%s: %s)", name, type(exc).__name__, exc)
    return made
