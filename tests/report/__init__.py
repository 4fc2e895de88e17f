"""Tests of the report; `make_record` / `write_records` build synthetic run records."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Optional

LENGTHS = {"listops": 2000, "text": 1000, "retrieval": 4000, "image": 1024, "pathfinder": 1024, "pathx": 16384}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_record(task: str = "listops", attn: str = "softmax", seed: int = 0, status: str = "ok",
                acc: Optional[float] = 0.5, kind: Optional[str] = "train", config: Optional[dict] = None,
                finished_at: str = "2026-01-01T00:00:00+00:00", **fields: Any) -> dict:
    """A run record as `lra_bench.train.run` (kind train) or the speed mode (kind speed) writes it.

    `config` is merged into a small resolved config; it, with task, attn and seed, decides the run_id.
    """
    cfg = _merge({"task": {"name": task, "max_length": LENGTHS[task], "data_dir": f"/data/{seed}"},
                  "attn": {"_target_": f"lra_bench.attention.{attn}"},
                  "model": {"hidden_dim": 128, "num_layers": 2},
                  "trainer": {"batch_size": 32, "lr": 0.001, "device": "auto", "progress": False},
                  "logger": {"mode": "offline"}, "paths": {"root": f"/runs/{seed}"}, "seed": seed}, config or {})
    ident = hashlib.sha256(json.dumps([kind, cfg], sort_keys=True).encode()).hexdigest()[:10]
    rec = {"run_id": f"{task}-{attn}-s{seed}-{ident}", "task": task, "attn": attn, "seed": seed, "status": status,
           "error": None if status == "ok" else f"{status} for a test",
           "test_accuracy": acc if status == "ok" else None,
           "steps_per_s": 10.0, "peak_memory_bytes": 2e9, "peak_memory_kind": "cuda_max_allocated",
           "num_params": 1000, "hardware": "NVIDIA H200", "device": "cuda", "torch_version": "2.13.0",
           "git_commit": "275c1fc92c3bbf1382056c6467f55e3f9fe7ab93", "finished_at": finished_at, "config": cfg,
           "seq_len": cfg["task"]["max_length"], "batch_size": cfg["trainer"]["batch_size"]}
    if kind is not None:
        rec["kind"] = kind
    rec.update(fields)
    return rec


def write_records(folder: Path, records: Iterable[dict]) -> list[Path]:
    """Each record to `folder/<run_id>[-<n>].json`; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rec in enumerate(records):
        path = folder / f"{rec['run_id']}-{i}.json"
        path.write_text(json.dumps(rec))
        paths.append(path)
    return paths


def sweep() -> list[dict]:
    """A small sweep with every case the tables handle (see each line)."""
    r = make_record
    small = {"model": {"hidden_dim": 64}}
    return [
        # softmax: 3 seeds, 1 seed, 2 seeds ..., Path-X failed and oom -> FAIL
        *[r("listops", "softmax", s, acc=a) for s, a in enumerate((0.36, 0.37, 0.38))],
        r("text", "softmax", 0, acc=0.64),
        r("retrieval", "softmax", 0, acc=0.56), r("retrieval", "softmax", 1, acc=0.58),
        r("image", "softmax", 0, acc=0.42), r("image", "softmax", 1, acc=0.44),
        r("pathfinder", "softmax", 0, acc=0.70), r("pathfinder", "softmax", 1, acc=0.72),
        r("pathx", "softmax", 0, status="failed"), r("pathx", "softmax", 1, status="oom"),
        # dct: a diverged seed beside two ok ones; image only diverged -> FAIL; no pathfinder / pathx
        r("listops", "dct", 0, acc=0.40), r("listops", "dct", 1, acc=0.42), r("listops", "dct", 2, status="diverged"),
        r("text", "dct", 0, acc=0.65), r("retrieval", "dct", 0, acc=0.55), r("image", "dct", 0, status="diverged"),
        # dct with a smaller model on listops: a second config in one cell, a row of its own
        r("listops", "dct", 0, acc=0.30, config=small),
        # fnet: every task, one seed each; more parameters than softmax (over the 1.1x budget)
        *[r(t, "fnet", 0, acc=a, num_params=1200) for t, a in
          (("listops", 0.35), ("text", 0.66), ("retrieval", 0.60), ("image", 0.38), ("pathfinder", 0.78),
           ("pathx", 0.61))],
    ]


def speed_sweep() -> list[dict]:
    """Speed records: softmax and dct on text at 1000, 2000 and 4000 (softmax oom at 4000)."""
    r = make_record
    out = []
    for attn, lengths in (("softmax", {1000: (8.0, 1e9), 2000: (4.0, 4e9), 4000: None}),
                          ("dct", {1000: (16.0, 0.5e9), 2000: (12.0, 1e9), 4000: (6.0, 2e9)})):
        for length, m in lengths.items():
            fields = {"status": "oom", "steps_per_s": None, "peak_memory_bytes": None} if m is None else \
                {"steps_per_s": m[0], "peak_memory_bytes": m[1]}
            out.append(r("text", attn, 0, acc=None, kind="speed", config={"task": {"max_length": length}},
                         seq_len=length, **fields))
    return out
