"""Figures for the report: LRA-style bubble chart, per-task accuracy bars, length scaling.

Every function takes a pandas DataFrame and a destination path, draws with matplotlib's
object-oriented API (``matplotlib.figure.Figure`` on an Agg canvas, so ``matplotlib.pyplot``
is never imported and no global backend or rcParams state is touched), writes the PNG
atomically (temporary file beside the destination, then ``os.replace``) and returns the path.
Output is byte-for-byte deterministic for the same data: no timestamp or software version
is written into the PNG.

An empty frame, a frame missing a needed column, or one with no usable row raises
``ValueError`` with a one-line message; the destination is then left untouched.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from lra_bench.io import atomic_write

__all__ = ["bubble_chart", "accuracy_per_task", "scaling", "LRA_TASKS", "BASELINE"]

LRA_TASKS: tuple[str, ...] = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
BASELINE = "softmax"
DPI = 150
MIB = 1024.0 ** 2

_BASELINE_COLOR = "black"
_BASELINE_MARKER = "*"
# tab10 without its grey (index 7), which reads too close to the black baseline.
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#bcbd22", "#17becf")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
# PNG text chunks matplotlib would otherwise add ("Software" carries the version).
_PNG_METADATA = {"Software": None}


# --------------------------------------------------------------------------- helpers


def _check_frame(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise ValueError(f"{what}: nothing to plot (empty frame)")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(missing)}; have {', '.join(map(str, df.columns))}")


def _numeric(df: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Copy with `columns` coerced to float (unparseable -> NaN) and `attn` as str."""
    df = df.copy()
    for c in columns:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    if "attn" in df.columns:
        df = df[df["attn"].notna()]
        df["attn"] = df["attn"].astype(str)
    return df


def _order(attns: Iterable[str]) -> list[str]:
    """Baseline first, then the others alphabetically."""
    names = sorted(set(attns))
    return ([BASELINE] if BASELINE in names else []) + [n for n in names if n != BASELINE]


def _styles(attns: Iterable[str]) -> dict[str, dict]:
    """Colour and marker for each attention in one figure: distinct within the figure.

    The baseline is always black with a star. Each other name, in `_order`, takes the
    palette slot given by a stable hash of the name (never Python's salted ``hash``), or
    the next free one, so a given set of attentions is coloured identically in every
    figure and an attention mostly keeps its colour when the set changes. Past the
    palette's length, colours repeat with a different marker (9 colours x 10 markers: 90 distinct pairs).
    """
    out: dict[str, dict] = {}
    used: set[int] = set()
    n = len(_PALETTE)
    for attn in _order(attns):
        if attn == BASELINE:
            out[attn] = {"color": _BASELINE_COLOR, "marker": _BASELINE_MARKER}
            continue
        slot = zlib.crc32(attn.encode("utf-8")) % n
        if len(used) < n:
            while slot in used:
                slot = (slot + 1) % n
        else:  # palette exhausted: pair the next colour with the next marker
            slot = len(used)
        used.add(slot)
        out[attn] = {"color": _PALETTE[slot % n], "marker": _MARKERS[slot % len(_MARKERS)]}
    return out


def _label(attn: str) -> str:
    return f"{attn} (baseline)" if attn == BASELINE else attn


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas; no pyplot, no global backend
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    try:
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=DPI, metadata=_PNG_METADATA)
    finally:
        fig.clear()  # drop artists; the figure is unreferenced by any global registry
    return path


def _fmt_bytes(n: float) -> str:
    for unit, scale in (("GiB", 1024.0 ** 3), ("MiB", MIB), ("KiB", 1024.0)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v >= 10 else f"{v:.3g} {unit}"
    return f"{n:.0f} B"


def _round_bytes(v: float) -> float:
    """`v` (> 0) rounded to the nearest power of two: 512 MiB, 1 GiB, 8 GiB, ..."""
    return 2.0 ** round(math.log2(v))


def _legend_sizes(lo: float, hi: float) -> list[float]:
    """Up to three round byte counts spanning the memory range [lo, hi] (hi > 0)."""
    vals = [hi] if lo <= 0 or hi <= lo * 1.5 else list(np.geomspace(lo, hi, 3))
    out: list[float] = []
    for v in vals:
        r = _round_bytes(float(v))
        if r > 0 and (not out or not math.isclose(r, out[-1])):
            out.append(r)
    return out


# --------------------------------------------------------------------------- figures


def _label_offsets(points: Sequence[tuple[float, float]], radii: Sequence[float], widths: Sequence[float],
                   height: float = 11.0) -> list[float]:
    """Each label's height above its point (all in points on the page), so that no two label
    boxes overlap: a label (width `widths[i]`, `height` tall, centred over its point) starts
    2 points above its bubble and moves up by whole label heights until its box is clear of
    every label placed before it (points are placed from the bottom up)."""
    boxes: list[tuple[float, float, float, float]] = []
    offsets = [0.0] * len(points)

    def clear(x0: float, x1: float, y0: float, y1: float) -> bool:
        return all(x1 <= a0 or x0 >= a1 or y1 <= b0 or y0 >= b1 for a0, a1, b0, b1 in boxes)

    for i in sorted(range(len(points)), key=lambda j: (points[j][1], points[j][0], j)):
        (x, y), half = points[i], widths[i] / 2
        offset = radii[i] + 2.0
        while not clear(x - half, x + half, y + offset, y + offset + height):
            offset += height
        offsets[i] = offset
        boxes.append((x - half, x + half, y + offset, y + offset + height))
    return offsets


def bubble_chart(summary: pd.DataFrame, path: Path) -> Path:
    """LRA Figure 3: speed (x) vs average accuracy (y), bubble area proportional to memory.

    `summary` needs columns ``attn``, ``steps_per_s``, ``avg_accuracy`` (percent) and
    ``peak_memory_bytes``, one row per attention. Rows with NaN in any of them (or a
    negative memory) are skipped; a repeated ``attn`` raises ValueError.
    """
    what = "bubble_chart"
    cols = ("steps_per_s", "avg_accuracy", "peak_memory_bytes")
    _check_frame(summary, ("attn",) + cols, what)
    df = _numeric(summary, cols).dropna(subset=list(cols))
    df = df[df["peak_memory_bytes"] >= 0]
    if df.empty:
        raise ValueError(f"{what}: no row has all of attn, {', '.join(cols)}")
    dup = sorted(df.loc[df["attn"].duplicated(), "attn"].unique())
    if dup:
        raise ValueError(f"{what}: expected one row per attn, got several for {', '.join(dup)}")

    max_mem = float(df["peak_memory_bytes"].max())
    max_area = 2500.0  # points^2 of the largest bubble
    min_area = 20.0

    def area(mem: float) -> float:
        return max(min_area, max_area * mem / max_mem) if max_mem > 0 else min_area * 4

    fig = _new_figure(8.0, 6.0)
    ax = fig.add_subplot()
    rows = df.set_index("attn")
    styles = _styles(rows.index)
    for attn, st in styles.items():
        r = rows.loc[attn]
        x, y = float(r["steps_per_s"]), float(r["avg_accuracy"])
        ax.scatter([x], [y], s=area(float(r["peak_memory_bytes"])), color=st["color"],
                   alpha=0.35 if attn != BASELINE else 0.5, edgecolors=st["color"], linewidths=1.5,
                   zorder=2)
        ax.scatter([x], [y], s=12, color=st["color"], marker=st["marker"] if attn == BASELINE else "o",
                   zorder=3)

    # Leave room so the largest bubbles and their labels are not clipped.
    ax.margins(x=0.15, y=0.18)
    ax.set_xlabel("Speed (training steps / s)")
    ax.set_ylabel("Average accuracy (%)")
    ax.set_title("Long Range Arena: accuracy vs speed (bubble area = peak memory)")
    ax.grid(True, alpha=0.3, zorder=0)

    min_mem = float(df.loc[df["peak_memory_bytes"] > 0, "peak_memory_bytes"].min()) if max_mem > 0 else 0.0
    sizes = _legend_sizes(min_mem, max_mem) if max_mem > 0 else []
    # scatter's `s` is the square of a Line2D marker's size, both in points.
    handles = [Line2D([], [], linestyle="none", marker="o", markersize=math.sqrt(area(m)), color="grey",
                      alpha=0.35, markeredgecolor="grey") for m in sizes]
    labels = [_fmt_bytes(m) for m in sizes]
    if handles:
        fontsize = 10.0
        big = max(h.get_markersize() for h in handles) / fontsize  # largest diameter, in font sizes
        ax.legend(handles, labels, title="Peak memory", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize=fontsize, labelspacing=max(1.0, big * 0.6), borderpad=1.0,
                  handlelength=max(2.0, big), handleheight=max(0.7, big * 0.5), handletextpad=1.0,
                  frameon=False)
    _annotate_bubbles(fig, ax, rows, styles, area)
    return _save(fig, path)


def _annotate_bubbles(fig: Figure, ax, rows: pd.DataFrame, styles: dict, area) -> None:
    """Name each bubble above it, with labels of nearby bubbles stacked (`_label_offsets`);
    the layout is fixed first (one draw), so positions on the page are known."""
    fig.canvas.draw()
    fontsize, to_points = 9.0, 72.0 / fig.dpi
    points, radii, widths = [], [], []
    for attn in styles:
        px, py = ax.transData.transform((float(rows.loc[attn, "steps_per_s"]), float(rows.loc[attn, "avg_accuracy"])))
        points.append((px * to_points, py * to_points))
        radii.append(math.sqrt(area(float(rows.loc[attn, "peak_memory_bytes"]))) / 2)
        widths.append(len(_label(attn)) * fontsize * (0.68 if attn == BASELINE else 0.62))  # DejaVu Sans, roughly
    for (attn, st), offset in zip(styles.items(), _label_offsets(points, radii, widths, height=fontsize * 1.25)):
        r = rows.loc[attn]
        text = ax.annotate(_label(attn), (float(r["steps_per_s"]), float(r["avg_accuracy"])), xytext=(0, offset),
                           textcoords="offset points", ha="center", va="bottom", fontsize=fontsize,
                           fontweight="bold" if attn == BASELINE else "normal", color=st["color"], zorder=4)
        text.set_in_layout(False)  # placed for the layout just drawn; must not change it


def _task_order(tasks: Iterable[str]) -> list[str]:
    present = set(tasks)
    known = [t for t in LRA_TASKS if t in present]
    return known + sorted(present - set(LRA_TASKS))


def accuracy_per_task(acc: pd.DataFrame, path: Path) -> Path:
    """Grouped bars: one group per task (LRA order), one bar per attention, error bar = std.

    `acc` needs columns ``attn``, ``task``, ``mean`` (percent), ``std`` and ``n``. Rows with
    NaN ``mean`` are skipped; a NaN ``std`` (e.g. a single seed) draws no error bar. Tasks
    outside LRA's six follow them alphabetically. A repeated (attn, task) raises ValueError.
    """
    what = "accuracy_per_task"
    _check_frame(acc, ("attn", "task", "mean", "std", "n"), what)
    df = _numeric(acc, ("mean", "std", "n"))
    df = df[df["task"].notna()].dropna(subset=["mean"])
    if df.empty:
        raise ValueError(f"{what}: no row has attn, task and a numeric mean")
    df["task"] = df["task"].astype(str)
    dup = df[df.duplicated(["attn", "task"])]
    if not dup.empty:
        pairs = ", ".join(f"{a}/{t}" for a, t in sorted(set(zip(dup["attn"], dup["task"]))))
        raise ValueError(f"{what}: expected one row per (attn, task), got several for {pairs}")

    tasks = _task_order(df["task"])
    attns = _order(df["attn"])
    cells = df.set_index(["attn", "task"])
    k = len(attns)
    width = 0.8 / k
    x = np.arange(len(tasks), dtype=float)

    fig = _new_figure(max(8.0, 1.2 + 0.35 * k * len(tasks) + 0.4 * len(tasks)), 5.0)
    ax = fig.add_subplot()
    styles = _styles(attns)
    for i, attn in enumerate(attns):
        st = styles[attn]
        pos, means, errs = [], [], []
        for j, task in enumerate(tasks):
            if (attn, task) not in cells.index:
                continue
            r = cells.loc[(attn, task)]
            pos.append(x[j] + (i - (k - 1) / 2) * width)
            means.append(float(r["mean"]))
            s = float(r["std"])
            errs.append(0.0 if math.isnan(s) else s)
        if not pos:
            continue
        bar_kw = {"hatch": "//", "edgecolor": "white"} if attn == BASELINE else {"edgecolor": st["color"]}
        ax.bar(pos, means, width * 0.95, yerr=errs, color=st["color"], label=_label(attn),
               error_kw={"ecolor": "0.25", "capsize": 3, "elinewidth": 1}, zorder=2, **bar_kw)
    ax.set_xticks(x)
    ax.set_xticklabels(tasks)
    ax.set_xlim(-0.5, len(tasks) - 0.5)
    ax.set_ylabel("Test accuracy (%)")
    ax.set_title("Accuracy per task (mean ± std over seeds)")
    ax.grid(True, axis="y", alpha=0.3, zorder=0)
    top = float((df["mean"] + df["std"].fillna(0)).max())
    ax.set_ylim(0, max(100.0, top * 1.05) if top > 0 else 100.0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    return _save(fig, path)


def scaling(speed: pd.DataFrame, path: Path) -> Path:
    """Two log-log panels vs sequence length: steps/s and peak memory (MiB), one line per attn.

    `speed` needs columns ``attn``, ``length``, ``steps_per_s`` and ``peak_memory_bytes``.
    Each panel skips rows whose own value (or length) is NaN or not positive, so a row that
    failed (OOM) or has no memory figure only drops out where it is missing. Several rows
    for one (attn, length) are averaged (geometric mean). A panel with no data says so.
    """
    what = "scaling"
    cols = ("length", "steps_per_s", "peak_memory_bytes")
    _check_frame(speed, ("attn",) + cols, what)
    df = _numeric(speed, cols)
    df = df[df["length"] > 0]
    panels = (("steps_per_s", 1.0, "Training steps / s"), ("peak_memory_bytes", MIB, "Peak memory (MiB)"))
    usable = {c: df[df[c] > 0] for c, _, _ in panels}  # NaN compares False: dropped too
    if all(u.empty for u in usable.values()):
        raise ValueError(f"{what}: no row has attn, a positive length and a positive steps_per_s or peak_memory_bytes")

    fig = _new_figure(12.0, 5.0)
    axes = fig.subplots(1, 2)
    attns = _order(pd.concat([u["attn"] for u in usable.values()]))
    styles = _styles(attns)
    for ax, (col, scale, ylabel) in zip(axes, panels):
        d = usable[col]
        if d.empty:
            ax.text(0.5, 0.5, f"no {col} data", transform=ax.transAxes, ha="center", va="center", color="0.4")
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            g = (np.log(d[col]).groupby([d["attn"], d["length"]]).mean()).apply(np.exp)
            for attn in attns:
                if attn not in g.index.get_level_values(0):
                    continue
                s = g.loc[attn].sort_index()
                st = styles[attn]
                ax.plot(s.index.to_numpy(), s.to_numpy() / scale, color=st["color"], marker=st["marker"],
                        markersize=9 if attn == BASELINE else 6,
                        linewidth=2.2 if attn == BASELINE else 1.4,
                        linestyle="--" if attn == BASELINE else "-", label=_label(attn),
                        zorder=3 if attn == BASELINE else 2)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            lengths = sorted(d["length"].unique())
            if len(lengths) <= 12:  # label the measured lengths themselves: 256, 1024, ...
                ax.set_xticks(lengths)
                ax.set_xticklabels([f"{v:g}" for v in lengths])
                ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("Sequence length")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = [], []
    for attn in attns:
        st = styles[attn]
        handles.append(Line2D([], [], color=st["color"], marker=st["marker"],
                              linestyle="--" if attn == BASELINE else "-"))
        labels.append(_label(attn))
    axes[0].set_title("Speed vs length")
    axes[1].set_title("Memory vs length")
    fig.legend(handles, labels, loc="outside right upper", frameon=False, fontsize=9)
    return _save(fig, path)
