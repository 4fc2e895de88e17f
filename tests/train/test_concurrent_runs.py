"""Concurrent sweep jobs share one data cache and one records folder: nothing lost or corrupted."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path

import numpy as np

GENERATE = {"num_train": 300, "num_val": 50, "num_test": 50, "min_length": 10, "max_length": 60}
JOBS, RECORDS_PER_JOB = 4, 5


def job(args: tuple) -> str:
    """Build (or read) the shared ListOps data and token cache, write records, return a data digest."""
    index, cache, records, barrier = args
    from lra_bench.data.listops import build_listops
    from lra_bench.train.record import write_record

    barrier.wait()  # every job starts building at the same moment
    data = build_listops(max_length=64, generate=GENERATE, workers=1, cache_dir=cache)
    h = hashlib.sha256()
    for split in (data.train, data.val, data.test):
        h.update(np.ascontiguousarray(split.inputs).tobytes())
        h.update(np.ascontiguousarray(split.labels).tobytes())
    for r in range(RECORDS_PER_JOB):
        write_record(Path(records), {"run_id": f"job{index}-run{r}", "status": "ok", "payload": "x" * 100_000})
    return h.hexdigest()


def test_concurrent_jobs_share_one_cache_build_and_lose_no_record(tmp_path):
    cache, records = tmp_path / "cache", tmp_path / "records"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(JOBS)
        with ctx.Pool(JOBS) as pool:
            digests = pool.map(job, [(i, str(cache), str(records), barrier) for i in range(JOBS)])
    assert len(set(digests)) == 1  # every job read the same data
    assert len(list((cache / "listops" / "generated").glob("*/basic_train.tsv"))) == 1
    assert len([p for p in (cache / "listops" / "tokens").iterdir() if p.is_dir()]) == 1
    leftovers = [p for p in cache.rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers
    written = sorted(records.glob("*.json"))
    assert len(written) == JOBS * RECORDS_PER_JOB and not list(records.glob(".*"))
    assert all(json.loads(p.read_text())["payload"] == "x" * 100_000 for p in written)
