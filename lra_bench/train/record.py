"""Run records: one JSON file per run, written atomically, read by the report.

Schema (keys always present): kind ("train"; the speed/memory mode writes "speed"), task,
attn, seed, run_id, status (ok / failed / diverged / oom), error, seq_len, batch_size,
best_val_accuracy, best_step, test_accuracy (at the best-val checkpoint), test_loss, steps, examples_per_s, tokens_per_s, steps_per_s, peak_memory_bytes,
peak_memory_kind, num_params, wall_time_s, hardware, device, malloc (the C allocator's tuning
from the environment, `lra_bench.train.metrics.malloc_setting`), kernels (whether the
compiled CPU kernels ran, `lra_bench.kernels.status`), torch_version,
git_commit (the code that wrote the record), trained_at_commits (the commits whose code
ran its training steps, in order: several for a run resumed across commits, the original
ones for a finished run entered again; null when training stopped with an error; an
entry is null for steps resumed from a checkpoint older than this list),
started_at, finished_at, config (resolved), history (per-eval metrics),
skipped_steps, precision, train_wall_s, oom ({phase, step, input_shape} for `oom`).
Throughput, peak memory and train_wall_s cover all of a run's training, across the
processes of a resumed run (time lost after the last checkpoint of a killed one excepted).
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Optional

from lra_bench.io import atomic_write

RECORD_VERSION = 1
STATUSES = ("ok", "failed", "diverged", "oom")

# Config keys that do not change what a run computes (where it ran, wrote and logged): left
# out of the run id, so changing them resumes a run. None = the whole section.
NOT_IDENTITY = {"logger": None, "paths": None,
                "trainer": ("progress", "log_every", "threads", "resume", "resume_from", "force_resume", "device",
                            "eval_batch_size", "checkpoint_every"),
                "task": ("workers",)}


def config_without(config: dict, drop: dict) -> dict:
    """`config` (a resolved config as a dict) less the sections / section keys in `drop`."""
    view = {k: v for k, v in config.items() if not (k in drop and drop[k] is None)}
    for section, keys in drop.items():
        if keys and isinstance(view.get(section), dict):
            view[section] = {k: v for k, v in view[section].items() if k not in keys}
    return view


def git_commit() -> Optional[str]:
    """The commit of the lra_bench checkout, with `-dirty` when it has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_json_atomic(obj: Any, path: Path) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")


def write_record(records_dir: Path, record: dict) -> Path:
    if record.get("status") not in STATUSES:
        raise ValueError(f"record status {record.get('status')!r} is not one of {STATUSES}")
    path = Path(records_dir) / f"{record['run_id']}.json"
    write_json_atomic(dict(record, record_version=RECORD_VERSION), path)
    return path
