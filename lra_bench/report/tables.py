"""Table 1 of the report: test accuracy per task and variant, LRA style, with published rows.

Rows are row names from `records.label_configs` (the attn, plus a config label where one
cell mixes configs); columns are the tasks in LRA's order and two averages:
"Avg (5, no Path-X)" as LRA reports it and "Avg (6, FAIL=50)" as S4 and later papers do.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import pandas as pd

from lra_bench.report import published
from lra_bench.report.records import BASELINE, TASKS, provenance
from lra_bench.report.render import Table

TASK_NAMES = {"listops": "ListOps", "text": "Text", "retrieval": "Retrieval", "image": "Image",
              "pathfinder": "Pathfinder", "pathx": "Path-X"}
AVERAGES = {"avg5": ("Avg (5, no Path-X)", TASKS[:5]), "avg6": ("Avg (6, FAIL=50)", TASKS)}
FAIL = published.FAIL
FAIL_SCORE = 50.0
OURS = "ours"
COMPUTED = "†"


def row_order(names: pd.DataFrame) -> list[str]:
    """Row names (column `row`, with its `attn`) in table order: softmax first, each attn's
    main row before its config variants."""
    pairs = names[["row", "attn"]].drop_duplicates()
    keys = sorted(zip(pairs["attn"] != BASELINE, pairs["attn"], pairs["row"] != pairs["attn"], pairs["row"]))
    return [k[3] for k in keys]


def cite(keys: Sequence[str]) -> list[str]:
    """One note per source key: `short: full citation`."""
    src = published.sources()
    return [f"{src[k]['short']}: {src[k]['citation']}" for k in dict.fromkeys(keys)]


def averages(scores: Mapping[str, float | str]) -> dict[str, float | None]:
    """Both averages of one row's task scores (a float, FAIL, or absent per task)."""
    out: dict[str, float | None] = {}
    for key, (_, tasks) in AVERAGES.items():
        vals = [scores.get(t) for t in tasks]
        if key == "avg5":
            ok = all(isinstance(v, float) and not math.isnan(v) for v in vals)
            out[key] = sum(vals) / len(vals) if ok else None
        else:
            ok = all(v is not None for v in vals)
            out[key] = sum(FAIL_SCORE if v == FAIL else v for v in vals) / len(vals) if ok else None
    return out


def cell_stats(train: pd.DataFrame) -> pd.DataFrame:
    """Per (row, attn, task): mean, std (sample; NaN for one seed), n ok seeds, runs, failures
    (the other statuses seen), over test_accuracy in percent."""
    ok = (train["status"] == "ok") & train["test_accuracy"].notna()
    scored = train.assign(score=(train["test_accuracy"] * 100).where(ok))
    return scored.groupby(["row", "attn", "task"], sort=False).agg(
        mean=("score", "mean"), std=("score", "std"), n=("score", "count"), runs=("status", "size"),
        failures=("status", lambda s: ",".join(sorted(set(s) - {"ok"})))).reset_index()


def _cell(mean: float, std: float, n: int) -> str:
    return f"{mean:.2f} ({n})" if n < 2 else f"{mean:.2f} ± {std:.2f} ({n})"


def _ours(train: pd.DataFrame, columns: list[str]) -> tuple[list[list[str]], list[dict]]:
    """Display rows and tidy records of our runs."""
    stats = cell_stats(train)
    rows, data = [], []
    for name in row_order(train):
        cells = stats[stats["row"] == name].set_index("task")
        attn = train.loc[train["row"] == name, "attn"].iloc[0]
        scores: dict[str, float | str] = {}
        shown = {}
        for task, c in cells.iterrows():
            scores[task] = float(c["mean"]) if c["n"] else FAIL
            shown[task] = _cell(c["mean"], c["std"], int(c["n"])) if c["n"] else FAIL
            data.append({"model": name, "attn": attn, "task": task, "mean": c["mean"], "std": c["std"], "n": c["n"],
                         "runs": c["runs"], "status": "ok" if c["n"] else FAIL, "failures": c["failures"],
                         "published": False, "source": OURS})
        for key, value in averages(scores).items():
            if value is not None and key in columns:
                shown[key] = f"{value:.2f}"
                data.append({"model": name, "attn": attn, "task": key, "mean": value, "published": False,
                             "status": "ok", "source": OURS})
        rows.append([name] + [shown.get(c, "") for c in columns] + [OURS])
    return rows, data


def _published(columns: list[str]) -> tuple[list[list[str]], list[dict], list[str]]:
    """Display rows, tidy records and notes of the published reference rows."""
    pub = published.accuracy()
    rows, data, notes = [], [], []
    src = published.sources()
    for model, g in pub.groupby("model", sort=False):
        scores = {t: FAIL if f else s for t, s, f in zip(g["task"], g["score"], g["fail"])}
        computed = {}
        if "avg6" not in scores:
            computed["avg6"] = averages(scores)["avg6"]
        shown = {t: FAIL if v == FAIL else f"{v:.2f}" for t, v in scores.items()}
        shown.update({t: f"{v:.2f}{COMPUTED}" for t, v in computed.items() if v is not None})
        source = g["source"].iloc[0]
        rows.append([model] + [shown.get(c, "") for c in columns] + [src[source]["short"]])
        for t, v in {**scores, **computed}.items():
            data.append({"model": model, "attn": None, "task": t, "mean": None if v == FAIL else v,
                         "status": FAIL if v == FAIL else "ok", "published": True, "source": source,
                         "computed": t in computed})
        notes += [n for n in g["note"].dropna().unique()]
    return rows, data, notes


def _best(rows: list[list[str]], columns: list[str]) -> set[tuple[int, int]]:
    """(row, column) of the best value per column among `rows`, where at least two have one."""
    bold = set()
    for j in range(1, len(columns) + 1):
        vals = {i: float(r[j].split()[0]) for i, r in enumerate(rows) if r[j] and r[j] != FAIL}
        if len(vals) >= 2:
            top = max(vals.values())
            bold |= {(i, j) for i, v in vals.items() if v == top}
    return bold


def accuracy_table(train: pd.DataFrame, tasks: Sequence[str] = TASKS, config_notes: Sequence[str] = ()) -> Table:
    """LRA Table 1 from training records that carry a `row` name (see `records.label_configs`)."""
    tasks = [t for t in TASKS if t in tasks]
    averages_shown = [k for k, (_, need) in AVERAGES.items() if set(need) <= set(tasks)]
    columns = tasks + averages_shown
    ours, ours_data = _ours(train, columns) if not train.empty else ([], [])
    pub, pub_data, pub_notes = _published(columns)
    notes = ["Test accuracy (%) at the best-validation checkpoint: mean ± sample std over seeds (ok seeds). "
             "FAIL: runs exist but none ended ok (failed, diverged or oom); blank: no runs. "
             "Bold: the best of our rows per column."]
    if averages_shown:
        notes.append("Avg (5, no Path-X): mean of the first five tasks, as LRA reports it; blank unless all five "
                     "have ok runs. Avg (6, FAIL=50): mean of all six with FAIL counted as 50, as S4 and later "
                     "papers report it; blank when a task has no runs.")
    if any(COMPUTED in c for r in pub for c in r):
        notes.append(f"{COMPUTED} computed here from the published task scores (FAIL = 50).")
    notes += pub_notes + [f"Configs: {w}" for w in config_notes] + cite(published.accuracy()["source"])
    notes += provenance(train, "training runs")
    data = pd.DataFrame(ours_data + pub_data, columns=["model", "attn", "task", "mean", "std", "n", "runs", "status",
                                                       "failures", "published", "source", "computed"])
    data["computed"] = data["computed"].fillna(False).astype(bool)
    header = ["Model"] + [TASK_NAMES.get(c) or AVERAGES[c][0] for c in columns] + ["Source"]
    return Table(name="accuracy", title="Test accuracy (%) on Long Range Arena", header=header, rows=ours + pub,
                 data=data, align="l" + "r" * len(columns) + "l", bold=_best(ours, columns),
                 first_published=len(ours) if pub else None, notes=notes)
