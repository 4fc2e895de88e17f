"""`python -m lra_bench` as a user runs it: one-line errors, multirun sweeps."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lra_bench.cli import check_overrides
from tests.cli_helpers import cli
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args,fragment", [
    (["attn=nope"], "attn=nope is not a config in conf/attn/; available: dct, dct_attention, dst, fnet"),
    (["attn=softmax,nope"], "attn=nope is not a config"),
    (["task=imagenet"], "task=imagenet is not a config"),
    (["model.hiden_dim=3"], "unknown key model.hiden_dim; model accepts: hidden_dim"),
    (["trainer.epochs=3"], "unknown key trainer.epochs"),
    (["task=image", "task.max_length=1000"], "unknown key task.max_length for task=image; task lists: _target_,"),
    (["task.generate.foo=1"], "unknown key task.generate.foo for task=listops; task.generate lists: max_args"),
    (["task=listops,pathfinder", "task.generate.num_train=5"], "unknown key task.generate.num_train for task=pathf"),
    (["sed=3"], "unknown key sed"),
    (["experiment=listops_cpu", "task.resolution=16"], "unknown key task.resolution for task=listops"),
])
def test_check_overrides(args, fragment):
    assert fragment in check_overrides(args)


@pytest.mark.parametrize("args", [["task=listops", "attn=softmax,fnet", "model=small", "seed=0,1"],
                                  ["experiment=pathfinder_cpu", "task.resolution=16"],  # the experiment's task
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


def _final_report(stderr: str) -> tuple[str, str]:
    """Hydra's closing "Error executing job with overrides: [...]" line and the line after it
    (the start of each); asserts that no traceback was printed."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.splitlines()
    i = max(k for k, line in enumerate(lines) if line.startswith("Error executing job with overrides"))
    return lines[i], lines[i + 1][:64]


def test_multirun_goes_on_after_a_failed_job_and_exits_nonzero(tmp_path):
    """A job with a config error writes no record; the rest of the sweep still runs."""
    res = cli(tmp_path, "-m", *TINY, "model.num_heads=3,2")  # hidden_dim 16 is not divisible by 3
    assert res.returncode == 1
    # once the sweep ends Hydra names the failed job and its one-line error, without a traceback
    job, error = _final_report(res.stderr)
    assert "'model.num_heads=3'" in job and error == "error: model.hidden_dim=16 is not divisible by model.num_heads=3"
    records = list((tmp_path / "out" / "records").glob("*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["config"]["model"]["num_heads"] == 2


def test_a_failed_job_under_the_joblib_launcher_is_reported_in_one_line(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    res = cli(tmp_path, "-m", "hydra/launcher=local", "hydra.launcher.n_jobs=2", "trainer.threads=1", *TINY,
              "model.num_heads=3,2")
    assert res.returncode == 1
    assert _final_report(res.stderr)[1] == "error: model.hidden_dim=16 is not divisible by model.num_heads=3"
    assert len(list((tmp_path / "out" / "records").glob("*.json"))) == 1


def test_multirun_in_parallel_with_the_local_joblib_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    res = cli(tmp_path, "-m", "hydra/launcher=local", "hydra.launcher.n_jobs=2", "trainer.threads=1",
              "attn=softmax,dct", *TINY)
    assert res.returncode == 0, res.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "records").glob("*.json")]
    assert sorted(r["attn"] for r in records) == ["dct", "softmax"] and all(r["status"] == "ok" for r in records)


@pytest.mark.parametrize("launcher,target", [("slurm", "SlurmLauncher"), ("local", "JoblibLauncher"),
                                             ("joblib", "JoblibLauncher")])
def test_launcher_configs_compose(compose_cfg, launcher, target):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}", "task=text", "attn=dct"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.timeout_min > 0


def test_a_user_error_with_hydra_run_dir_dot_removes_only_what_hydra_wrote(tmp_path):
    (tmp_path / "notes.txt").write_text("the user's own file")
    res = cli(tmp_path, "hydra.run.dir=.", "task.data_dir=/nonexistent/listops", "logger=none")
    assert res.returncode == 2 and res.stderr.startswith("error: ListOps data not found")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
