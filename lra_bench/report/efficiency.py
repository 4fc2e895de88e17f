"""Table 2 of the report (training speed and peak memory per length, LRA style) and the
parameter-budget check.

Both read records that carry a `row` name (see `records.label_configs`). Speed and memory
are compared with softmax's main row at the same task, length, batch size and hardware;
parameter counts with softmax's at the same task and length.
"""
from __future__ import annotations

import logging
import math

import pandas as pd

from lra_bench.report import published
from lra_bench.report.records import BASELINE, TASKS, provenance
from lra_bench.report.render import Table
from lra_bench.report.tables import OURS, cite, row_order

log = logging.getLogger(__name__)

GB = 1e9
PARAM_BUDGET = 1.1  # LRA: every model within 1.1x the Transformer's parameter count
_KEY = ["task", "batch", "hardware", "length"]  # what a speed comparison holds fixed


def num(value: float, decimals: int, printed: bool = False) -> str:
    """`decimals` places, or two significant digits (trailing zeros kept: 0.50, 0.10; dropped
    for a `printed` number from a paper, shown as printed: 0.5) where those would show fewer;
    a value that rounds up to the threshold, like 0.996 at one place, keeps the places (1.0);
    whole numbers at 0 places as integers (batch 4, length 1000); blank for NaN."""
    if value is None or math.isnan(value):
        return ""
    if decimals == 0 and float(value).is_integer():
        return str(int(value))
    small = f"{value:.2g}" if printed else f"{value:#.2g}"
    return f"{value:.{decimals}f}" if abs(float(small)) >= 10 ** (1 - decimals) or value == 0 else small


def _with_factor(value: float, factor: float, decimals: int, printed: bool = False) -> str:
    text = num(value, decimals, printed)
    return f"{text} ({num(factor, 1, printed)}x)" if text and not math.isnan(factor) else text


def speed_stats(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (row, attn) and `_KEY`: mean steps/s and peak memory over ok runs, run counts, the
    outcome ("ok", "OOM" or "FAIL"), and both factors relative to softmax's main row."""
    runs = runs.assign(hardware=runs["hardware"].fillna("unknown"))
    ok = (runs["status"] == "ok") & runs["steps_per_s"].notna()
    g = runs.assign(steps=runs["steps_per_s"].where(ok), mem=runs["peak_memory_bytes"].where(ok)).groupby(
        ["row", "attn"] + _KEY, sort=False, dropna=False)
    stats = g.agg(steps_per_s=("steps", "mean"), peak_memory_bytes=("mem", "mean"), n=("steps", "count"),
                  runs=("status", "size"), oom=("status", lambda s: bool((s == "oom").any()))).reset_index()
    stats["status"] = ["ok" if n else ("OOM" if oom else "FAIL") for n, oom in zip(stats["n"], stats["oom"])]
    base = stats.loc[stats["row"] == BASELINE, _KEY + ["steps_per_s", "peak_memory_bytes"]]
    joined = stats.merge(base, on=_KEY, how="left", suffixes=("", "_base"))
    stats["steps_rel"] = joined["steps_per_s"] / joined["steps_per_s_base"]
    stats["memory_rel"] = joined["peak_memory_bytes"] / joined["peak_memory_bytes_base"]
    stats["memory_gb"] = stats["peak_memory_bytes"] / GB
    return stats.drop(columns="oom")


def _published_speed(tasks) -> pd.DataFrame:
    """LRA Table 2 in `speed_stats`' columns (its tasks among `tasks` only)."""
    pub = published.efficiency()
    pub = pub[pub["task"].isin(tasks)].rename(columns={"model": "row", "relative": "steps_rel"})
    return pub.assign(attn=None, status="ok", published=True, peak_memory_bytes=pub["memory_gb"] * GB,
                      memory_rel=math.nan)


def _display_rows(part: pd.DataFrame, lengths: list[int], hardware_column: bool) -> list[list[str]]:
    """One display row per (task, batch, hardware, row name), tasks in LRA order."""
    is_pub = bool(part["published"].iloc[0])
    order = {r: i for i, r in enumerate(part["row"].unique() if is_pub else row_order(part))}
    part = part.assign(_t=part["task"].map(TASKS.index), _r=part["row"].map(order))
    rows = []
    for (_, batch, hw, _, name, task), g in part.groupby(["_t", "batch", "hardware", "_r", "row", "task"],
                                                        sort=True, dropna=False):
        cells = g.set_index(g["length"].astype(int))
        steps = [_speed_cell(cells, n, "steps_per_s", "steps_rel", 1, is_pub) for n in lengths]
        mem = [_speed_cell(cells, n, "memory_gb", "memory_rel", 2, is_pub) for n in lengths]
        source = f"{published.sources()[g['source'].iloc[0]]['short']}, {hw}" if is_pub else OURS
        rows.append([name, task, num(batch, 0)] + ([hw] if hardware_column else []) + steps + mem + [source])
    return rows


def efficiency_table(runs: pd.DataFrame, basis: str, tasks=TASKS, config_notes=()) -> Table:
    """LRA Table 2: steps/s and peak memory (GB) per length, with factors vs softmax."""
    ours = speed_stats(runs).assign(published=False, source=OURS) if not runs.empty else pd.DataFrame()
    pub = _published_speed(tasks)
    parts = [d for d in (ours, pub) if not d.empty]
    columns = ["row", "attn", *_KEY, "steps_per_s", "steps_rel", "peak_memory_bytes", "memory_gb", "memory_rel",
               "n", "runs", "status", "published", "source"]
    data = pd.concat(parts, ignore_index=True).reindex(columns=columns) if parts else pd.DataFrame(columns=columns)
    lengths = sorted(int(x) for x in data["length"].dropna().unique())
    multi_hw = not ours.empty and ours["hardware"].nunique() > 1
    header = ["Model", "Task", "Batch"] + (["Hardware"] if multi_hw else []) + \
        [f"Steps/s {n}" for n in lengths] + [f"Mem GB {n}" for n in lengths] + ["Source"]
    rows = _display_rows(ours, lengths, multi_hw) if not ours.empty else []
    first_published = len(rows) if not pub.empty else None
    rows += _display_rows(pub, lengths, multi_hw) if not pub.empty else []
    notes = [basis, "Cells: mean over ok runs; (x): relative to softmax's main row at the same task, length, batch "
             "and hardware; memory in GB (1e9 bytes). OOM / FAIL: runs exist but none ended ok."]
    if not pub.empty:
        notes += [published.efficiency_note()] + list(pub["note"].dropna().unique()) + cite(pub["source"])
    notes += [f"Configs: {w}" for w in config_notes] + provenance(runs, "runs", memory=True)
    return Table(name="efficiency", title="Training speed (steps/s) and peak memory (GB) per sequence length",
                 header=header, rows=rows, data=data.rename(columns={"row": "model"}),
                 align="llr" + ("l" if multi_hw else "") + "r" * (2 * len(lengths)) + "l",
                 first_published=first_published, notes=notes)


def _speed_cell(cells: pd.DataFrame, length: int, value: str, factor: str, decimals: int, printed: bool) -> str:
    if length not in cells.index:
        return ""
    c = cells.loc[length]
    return c["status"] if c["status"] != "ok" else _with_factor(c[value], c[factor], decimals, printed)


def params_table(runs: pd.DataFrame, what: str) -> tuple[Table, list[str]]:
    """Each variant's parameter count against softmax's main row at the same task and length,
    from the same kind of run (training or speed, which may use other model sizes), flagged
    above `PARAM_BUDGET`. Returns the table and one warning per flagged variant."""
    counted = runs[runs["num_params"].notna()]
    where = ["kind", "task", "length"]
    g = counted.groupby(["row", "attn"] + where, sort=False)["num_params"].agg(lambda s: s.mode().max())
    g = g.reset_index()
    base = g[g["row"] == BASELINE].set_index(where)["num_params"]
    data = g[g["row"] != BASELINE].join(base.rename("softmax_params"), on=where)
    data["ratio"] = data["num_params"] / data["softmax_params"]
    data["within_budget"] = data["ratio"].map(lambda r: None if math.isnan(r) else bool(r <= PARAM_BUDGET))
    order = {r: i for i, r in enumerate(row_order(data))} if not data.empty else {}
    data = data.assign(_t=data["task"].map(TASKS.index), _r=data["row"].map(order))
    data = data.sort_values(["_r", "_t", "length", "kind"]).drop(columns=["_t", "_r"])
    data = data.rename(columns={"row": "model"}).reset_index(drop=True)
    rows, bold, warnings = [], set(), []
    for i, r in data.iterrows():
        over = r["within_budget"] is False
        rows.append([r["model"], r["task"], num(r["length"], 0), r["kind"], f"{int(r['num_params']):,}",
                     "" if math.isnan(r["softmax_params"]) else f"{int(r['softmax_params']):,}",
                     "" if math.isnan(r["ratio"]) else f"{r['ratio']:.2f}x",
                     {None: "", True: "yes", False: "NO"}[r["within_budget"]]])
        if over:
            bold.add((i, 7))
            warnings.append(f"parameter budget: {r['model']} on {r['task']} has {int(r['num_params']):,} parameters, "
                            f"{r['ratio']:.2f}x softmax's {int(r['softmax_params']):,} (LRA allows {PARAM_BUDGET}x)")
    notes = [f"Parameters of each variant against softmax's at the same task and length, in runs of the same kind "
             f"(train or speed); LRA keeps every model "
             f"within {PARAM_BUDGET}x the Transformer's count. Blank: no softmax run to compare with."]
    notes += provenance(runs, what)
    table = Table(name="params", title=f"Parameter budget (at most {PARAM_BUDGET}x softmax)",
                  header=["Model", "Task", "Length", "Runs", "Params", "Softmax params", "Ratio",
                          f"Within {PARAM_BUDGET}x"],
                  rows=rows, data=data, align="llrlrrrl", bold=bold, notes=notes + warnings)
    return table, warnings
