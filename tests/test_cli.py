"""`python -m lra_bench` as a user runs it: one-line errors, multirun sweeps."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lra_bench.cli import check_overrides
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def cli(tmp_path, *args, timeout=300):
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "-m", "lra_bench", *args, f"paths.root={tmp_path / 'out'}",
                           f"paths.cache={tmp_path / 'cache'}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args,fragment", [
    (["attn=nope"], "attn=nope is not a config in conf/attn/; available: dct, dct_attention, dst, fnet"),
    (["attn=softmax,nope"], "attn=nope is not a config"),
    (["task=imagenet"], "task=imagenet is not a config"),
    (["model.hiden_dim=3"], "unknown key model.hiden_dim; model accepts: hidden_dim"),
    (["trainer.epochs=3"], "unknown key trainer.epochs"),
    (["sed=3"], "unknown key sed"),
])
def test_check_overrides(args, fragment):
    assert fragment in check_overrides(args)


@pytest.mark.parametrize("args", [["task=listops", "attn=softmax,fnet", "model=small", "seed=0,1"],
                                  ["attn=glob(*)"], ["+attn.anything=1"], ["hydra.verbose=true"]])
def test_check_overrides_leaves_valid_and_hydra_syntax_alone(args):
    assert check_overrides(args) is None


@pytest.mark.parametrize("args,fragment", [
    (["attn=nope"], "error: attn=nope is not a config"),
    (["model.hidden_dim=100", "model.num_heads=3"], "error: model.hidden_dim=100 is not divisible"),
    (["task.data_dir=/nonexistent/listops"], "error: ListOps data not found; looked for /nonexistent/listops/basic_train.tsv"),
])
def test_cli_errors_are_one_line_and_write_nothing(tmp_path, args, fragment):
    res = cli(tmp_path, *args, "logger=none")
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(fragment), res.stderr
    assert not (tmp_path / "out" / "records").exists() and not (tmp_path / "out" / "checkpoints").exists()
    assert not (tmp_path / "cache").exists()


def test_multirun_writes_one_record_per_job(tmp_path):
    res = cli(tmp_path, "-m", "attn=softmax,fnet", "seed=0,1", *TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "records").glob("*.json")]
    assert sorted((r["attn"], r["seed"]) for r in records) == [("fnet", 0), ("fnet", 1), ("softmax", 0), ("softmax", 1)]
    assert all(r["status"] == "ok" for r in records)
    assert len({r["config"]["task"]["generate"]["seed"] for r in records}) == 1  # one data set for the sweep
