"""`torchrun --nproc_per_node=2 -m lra_bench ...` on CPU (gloo): the same run as one process
at the same global batch, only rank 0 writing, and resume after a SIGTERM to torchrun."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lra_bench.train.distributed import Dist
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]
ARGS = [*TINY, "trainer.max_steps=40", "trainer.eval_every=10", "trainer.checkpoint_every=2", "trainer.threads=1",
        "trainer.device=cpu", "model.dropout=0", "model.attention_dropout=0", "attn=dct"]


def command(root: Path, processes: int) -> list[str]:
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone",
                                          f"--nproc_per_node={processes}"]
    return [sys.executable, *launcher, "-m", "lra_bench", *ARGS, f"paths.root={root}",
            f"paths.cache={root.parent / 'cache'}"]


def launch(root: Path, processes: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen(command(root, processes), cwd=root.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def record(root: Path) -> dict:
    paths = list((root / "records").glob("*.json"))
    assert len(paths) == 1, paths  # rank 0 alone writes
    return json.loads(paths[0].read_text())


def test_two_gloo_processes_train_like_one_and_resume_after_sigterm(tmp_path):
    one = launch(tmp_path / "one", 1)
    _, err = one.communicate(timeout=300)
    assert one.returncode == 0, err[-3000:]
    single = record(tmp_path / "one")

    two_root = tmp_path / "two"
    proc = launch(two_root, 2)
    end = time.monotonic() + 300
    while not list(two_root.glob("checkpoints/*/last.pt")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < end
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both workers
    _, err = proc.communicate(timeout=300)
    assert err.count("preempted: stopped by SIGTERM") == 2, err[-3000:]
    assert not (two_root / "records").exists()

    proc = launch(two_root, 2)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    both = record(two_root)
    assert both["status"] == "ok" and both["resumed_from"] > 0 and both["steps"] == 40
    assert both["run_id"] == single["run_id"] and both["batch_size"] == single["batch_size"] == 16
    for a, b in zip(both["history"], single["history"], strict=True):
        assert a["step"] == b["step"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)
        assert a["val_accuracy"] == b["val_accuracy"]
    assert both["test_accuracy"] == single["test_accuracy"]
    assert both["test_loss"] == pytest.approx(single["test_loss"], abs=1e-5)


def test_rank_layout_helpers():
    ranks = Dist(rank=1, world_size=4)
    assert ranks.local_batch(32) == 8 and list(ranks.shard(list(range(32)))) == list(range(8, 16))
    with pytest.raises(ValueError, match="trainer.batch_size=30 does not split over 4 processes; use a multiple of 4"):
        ranks.local_batch(30)
    single = Dist()
    assert not single.enabled and single.is_main and single.sum([1.0, 2.0], None) == [1.0, 2.0]


def test_a_global_batch_that_does_not_split_over_the_processes_fails_before_any_work(compose_cfg, monkeypatch,
                                                                                      tmp_path):
    from lra_bench.errors import ConfigError
    from lra_bench.train.run import run

    monkeypatch.setenv("WORLD_SIZE", "3")  # as torchrun --nproc_per_node=3 sets it
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="trainer.batch_size=16 does not split over 3 processes; use a multiple of 3"):
        run(compose_cfg())
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
