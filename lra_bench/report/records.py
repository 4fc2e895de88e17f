"""Find, read and tidy run records: the report's only input.

A run record is a JSON object with a `run_id` and a `status` (see
`lra_bench.train.record`); any other JSON under the given folders (W&B's summaries and
metadata, Hydra's files) is passed over in silence. A record that cannot be parsed is
skipped with a one-line warning naming the file. When several records share a run_id
(a run that failed and was resumed), the one that finished last is kept.

`frame()` flattens the records into one row each with the columns the tables need;
`label_configs()` then tells apart runs of one table cell made with different configs.
"""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from lra_bench.data.cache import digest
from lra_bench.errors import LRABenchError
from lra_bench.train.record import NOT_IDENTITY, STATUSES, config_without

log = logging.getLogger(__name__)

TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")  # LRA's order
KINDS = ("train", "speed")
BASELINE = "softmax"

# Runs differing only in what does not change a run's result (the run id's NOT_IDENTITY),
# in the seed, in how often they checkpoint or in where their data sit are one experiment.
_NOT_IDENTITY = {**NOT_IDENTITY, "seed": None,
                 "trainer": NOT_IDENTITY["trainer"] + ("checkpoint_every",),
                 "task": NOT_IDENTITY["task"] + ("data_dir",)}
# What decides speed, memory and parameter count: the architecture.
_ARCHITECTURE = ("model", "attn")
_MAX_LABEL_KEYS = 2

COLUMNS = ("run_id", "kind", "task", "attn", "seed", "status", "test_accuracy", "length", "batch", "steps_per_s",
           "peak_memory_bytes", "peak_memory_kind", "num_params", "hardware", "device", "torch_version",
           "git_commit", "trained_at_commits", "finished_at", "fp_identity", "fp_arch", "path")


class ReportError(LRABenchError):
    """The report cannot be made from what it was given (no records, a path that is not there)."""


# --------------------------------------------------------------------------- reading


def find_files(paths: Sequence[os.PathLike | str]) -> list[Path]:
    """Every `*.json` under each folder in `paths` (recursively) and each file named there."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.rglob("*.json")))
        elif p.is_file():
            files.append(p)
        else:
            raise ReportError(f"{p}: no such file or folder; pass run-record folders or files")
    return files


def read_record(path: Path) -> dict | None:
    """The run record in `path`, or None (with a warning if it is broken, silently if it is other JSON)."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("skipping %s: not readable JSON (%s)", path, str(exc).splitlines()[0])
        return None
    if not isinstance(obj, dict) or "run_id" not in obj or "status" not in obj:
        return None  # W&B, Hydra or other JSON: not ours
    kind = obj.get("kind") or "train"
    if obj["status"] not in STATUSES or kind not in KINDS:
        log.warning("skipping %s: status %r / kind %r is not one of %s / %s", path, obj["status"], kind,
                    STATUSES, KINDS)
        return None
    if not obj.get("task") or not obj.get("attn"):
        log.warning("skipping %s: record without task or attn", path)
        return None
    return dict(obj, kind=kind, path=str(path))


def finished_at(record: dict) -> datetime:
    """When the run finished, in UTC without tzinfo; `datetime.min` when unknown."""
    try:
        t = datetime.fromisoformat(str(record.get("finished_at")))
    except ValueError:
        return datetime.min
    return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def latest_per_run(records: Iterable[dict]) -> list[dict]:
    """One record per run_id: the one with the latest `finished_at`."""
    best: dict[str, dict] = {}
    for rec in records:
        old = best.get(rec["run_id"])
        if old is None or finished_at(rec) >= finished_at(old):
            if old is not None:
                log.info("run %s: %s supersedes %s (finished later)", rec["run_id"], rec["path"], old["path"])
            best[rec["run_id"]] = rec
    return list(best.values())


def load(paths: Sequence[os.PathLike | str]) -> list[dict]:
    """All run records under `paths`, one per run_id."""
    found = [r for r in map(read_record, find_files(paths)) if r is not None]
    return latest_per_run(found)


# --------------------------------------------------------------------------- config views


def identity_view(config: dict) -> dict:
    """The part of a resolved config that decides a training run's result, seed aside."""
    return config_without(config or {}, _NOT_IDENTITY)


def architecture_view(config: dict) -> dict:
    """The part of a resolved config that decides speed, memory and parameter count."""
    return {k: (config or {}).get(k) for k in _ARCHITECTURE}


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


# --------------------------------------------------------------------------- the frame


def _length(rec: dict) -> float | None:
    """Sequence length: the record's, else the config's max_length, else resolution**2 (Pathfinder)."""
    task_cfg = (rec.get("config") or {}).get("task") or {}
    if rec.get("seq_len") is not None:
        return rec["seq_len"]
    if task_cfg.get("max_length") is not None:
        return task_cfg["max_length"]
    return task_cfg["resolution"] ** 2 if task_cfg.get("resolution") else None


def frame(records: Sequence[dict]) -> pd.DataFrame:
    """One row per record with `COLUMNS`; fingerprints of the identity and architecture views."""
    rows = []
    for rec in records:
        cfg = rec.get("config") or {}
        batch = rec.get("batch_size", (cfg.get("trainer") or {}).get("batch_size"))
        rows.append({**{c: rec.get(c) for c in COLUMNS}, "length": _length(rec), "batch": batch,
                     "finished_at": finished_at(rec),
                     "fp_identity": digest(identity_view(cfg))[:8], "fp_arch": digest(architecture_view(cfg))[:8]})
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for c in ("test_accuracy", "length", "batch", "steps_per_s", "peak_memory_bytes", "num_params"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def label_configs(df: pd.DataFrame, cell: Sequence[str], fp: str, configs: dict[str, dict],
                  view: Callable[[dict], dict]) -> tuple[pd.Series, list[str]]:
    """A row name for each run: its `attn`, plus a short config label where a cell mixes configs.

    Runs of one `cell` (e.g. task and attn) whose fingerprints `fp` differ are never pooled.
    The cell's primary config (most ok runs, then most runs, then the latest finished) keeps
    the plain attn name, so each variant's main row and averages stay intact; each other
    config gets the row `attn (key=value, ...)`, naming the keys where it differs from the
    primary. Returns the names (indexed like `df`) and one warning per mixed cell.
    """
    names = df["attn"].astype(str).copy()
    warnings: list[str] = []
    for key, group in df.groupby(list(cell), sort=True, dropna=False):
        fps = group.groupby(fp).agg(ok=("status", lambda s: int((s == "ok").sum())), runs=("status", "size"),
                                    last=("finished_at", "max"))
        if len(fps) < 2:
            continue
        primary = fps.sort_values(["ok", "runs", "last"], ascending=False).index[0]
        base = flatten(view(configs[group.loc[group[fp] == primary, "run_id"].iloc[0]]))
        others = []
        for other in fps.index.drop(primary):
            rows = group[fp] == other
            label = _diff_label(base, flatten(view(configs[group.loc[rows, "run_id"].iloc[0]]))) or f"config {other}"
            names[group.index[rows]] = f"{group['attn'].iloc[0]} ({label})"
            n = int(fps.loc[other, 'runs'])
            others.append(f"'{label}' ({n} run{'s' if n != 1 else ''})")
        where = "/".join(_key_text(k) for k in (key if isinstance(key, tuple) else (key,)))
        warnings.append(f"{where}: {len(fps)} configs; the main row uses the one with {int(fps.loc[primary, 'runs'])} "
                        f"runs ({primary}), the others get rows of their own: {', '.join(others)}")
    return names, warnings


def _key_text(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _diff_label(base: dict, other: dict) -> str:
    keys = sorted(k for k in base.keys() | other.keys() if base.get(k) != other.get(k))
    shown = [f"{k}={other.get(k)}" for k in keys[:_MAX_LABEL_KEYS]]
    extra = len(keys) - len(shown)
    return ", ".join(shown) + (f", +{extra} more" if extra else "")


# --------------------------------------------------------------------------- provenance


def _counts(values: pd.Series) -> str:
    counts = values.fillna("unknown").astype(str).value_counts()
    return "; ".join(v if len(counts) == 1 else f"{v} ({n})" for v, n in counts.items())


def provenance(df: pd.DataFrame, what: str, memory: bool = False) -> list[str]:
    """Lines saying what a table rests on: the runs by status, where and with what they ran,
    and (with `memory`) how their peak memory was measured."""
    statuses = ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items())
    # the code that trained each run (every commit of one resumed across commits), else the record's
    trained = [t if isinstance(t, list) and t else [c] for t, c in zip(df["trained_at_commits"], df["git_commit"])]
    commits = pd.Series([c if c is None else str(c)[:10] + ("-dirty" if "dirty" in str(c) else "")
                         for run in trained for c in run], dtype=object)
    lines = [f"Provenance: {what}: {len(df)} ({statuses or 'none'})"]
    if df.empty:
        return lines
    lines += [f"hardware: {_counts(df['hardware'])}", f"devices: {_counts(df['device'])}",
              f"torch: {_counts(df['torch_version'])}", f"git commits: {_counts(commits)}"]
    kinds = df.loc[df["peak_memory_bytes"].notna(), "peak_memory_kind"]
    if memory and not kinds.empty:
        lines.append(f"peak memory measured as: {_counts(kinds)}")
    return lines
