"""Runs that survive: exact resume after SIGKILL / SIGTERM, corrupt checkpoints, non-finite
losses, out of memory, resuming against another config, W&B failures."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lra_bench.errors import ConfigError
from lra_bench.train import loop
from lra_bench.train import step as step_module
from lra_bench.train.preempt import EXIT_RESUMABLE, Preempted
from lra_bench.train.run import run
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]
METRICS = ("step", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")


def curve(record: dict) -> list:
    return [[h[k] for k in METRICS] for h in record["history"]]


def weights(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# A run long enough to be stopped half way (60 steps, a checkpoint every 2), dropout on so
# that the restored RNG state matters.
LONG = [*TINY, "trainer.max_steps=60", "trainer.checkpoint_every=2", "trainer.eval_every=10",
        "trainer.threads=1", "model.dropout=0.1", "model.attention_dropout=0.1"]


def start(root: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "lra_bench", *LONG, f"paths.root={root}",
                             f"paths.cache={root.parent / 'cache'}", *extra], cwd=root.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc: subprocess.Popen, path: Path, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.002)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def only_record(root: Path) -> dict:
    records = list((root / "records").glob("*.json"))
    assert len(records) == 1, records
    return json.loads(records[0].read_text())


def test_sigterm_then_sigkill_then_resume_ends_exactly_like_an_uninterrupted_run(tmp_path):
    full_root, cut_root = tmp_path / "full", tmp_path / "cut"
    code, err = finish(start(full_root))
    assert code == 0, err[-2000:]
    full = only_record(full_root)

    # SIGTERM (what Slurm sends before preemption): a checkpoint, exit 75, no record.
    proc = start(cut_root)
    ckpt = cut_root / "checkpoints" / full["run_id"]
    wait_for(proc, ckpt / "last.pt")
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == EXIT_RESUMABLE, err[-2000:]
    assert "preempted: stopped by SIGTERM at step" in err and "rerun the same command to resume" in err
    assert not (cut_root / "records").exists()
    stopped_at = torch.load(ckpt / "last.pt", weights_only=False)["step"]
    assert 0 < stopped_at < 60

    # Same command again, then SIGKILL at whatever moment a later checkpoint appears.
    proc = start(cut_root)
    (ckpt / "prev.pt").unlink(missing_ok=True)
    wait_for(proc, ckpt / "prev.pt")
    proc.kill()
    finish(proc)
    assert not (cut_root / "records").exists()

    code, err = finish(start(cut_root))
    assert code == 0, err[-2000:]
    resumed = only_record(cut_root)
    assert resumed["resumed_from"] >= stopped_at and resumed["steps"] == 60
    assert curve(resumed) == curve(full)
    assert (resumed["test_accuracy"], resumed["best_step"]) == (full["test_accuracy"], full["best_step"])
    assert same_weights(weights(ckpt / "last.pt"), weights(full_root / "checkpoints" / full["run_id"] / "last.pt"))
    assert same_weights(weights(ckpt / "best.pt"), weights(full_root / "checkpoints" / full["run_id"] / "best.pt"))


def _interrupt_at_eval(monkeypatch, n: int, action) -> None:
    real = loop.evaluate
    calls = {"n": 0}

    def evaluate(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            action()
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", evaluate)


def test_sigterm_in_process_saves_a_checkpoint_and_raises_preempted(compose_cfg, monkeypatch):
    full = run(compose_cfg("trainer.resume=false", "paths.checkpoints=${paths.root}/ckpt_full"))
    cfg = compose_cfg("trainer.checkpoint_every=4")  # step 6's eval is not a checkpoint step
    _interrupt_at_eval(monkeypatch, 1, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(Preempted, match="stopped by SIGTERM at step 6"):
        run(cfg)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone with the run
    assert [p.name for p in Path(cfg.paths.records).glob("*.json")] == [Path(full["record_path"]).name]
    monkeypatch.undo()
    resumed = run(cfg)
    assert resumed["resumed_from"] == 6 and curve(resumed) == curve(full)


def test_a_corrupt_checkpoint_is_reported_and_the_previous_one_used(compose_cfg, monkeypatch, caplog):
    full = run(compose_cfg("trainer.resume=false", "paths.checkpoints=${paths.root}/ckpt_full"))
    cfg = compose_cfg("trainer.checkpoint_every=3")
    _interrupt_at_eval(monkeypatch, 2, lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    monkeypatch.undo()
    (ckpt,) = [p for p in Path(cfg.paths.checkpoints).iterdir() if p.is_dir()]
    last = ckpt / "last.pt"
    assert torch.load(last, weights_only=False)["step"] == 9
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # truncated, as by a full disk
    with caplog.at_level(logging.WARNING, logger="lra_bench.train.checkpoint"):
        resumed = run(cfg)
    assert any("last.pt is unreadable" in r.getMessage() for r in caplog.records)
    assert resumed["resumed_from"] == 6 and curve(resumed) == curve(full)
    assert resumed["test_accuracy"] == full["test_accuracy"]


def _nan_from_step(monkeypatch, first: int, last: int = 10**9) -> None:
    real = torch.nn.functional.cross_entropy
    calls = {"n": 0}

    def loss(*args, **kwargs):
        value = real(*args, **kwargs)
        if kwargs.get("reduction") == "sum":  # evaluation
            return value
        calls["n"] += 1
        return value * float("nan") if first <= calls["n"] <= last else value

    monkeypatch.setattr(step_module.F, "cross_entropy", loss)


def test_divergence_stops_before_the_update_and_keeps_the_last_good_checkpoints(compose_cfg, monkeypatch):
    _nan_from_step(monkeypatch, 7)
    record = run(compose_cfg("trainer.resume=false"))
    assert record["status"] == "diverged" and record["steps"] == 7 and "at step 7" in record["error"]
    ckpt = Path(record["config"]["paths"]["checkpoints"]) / record["run_id"]
    assert [p.name for p in ckpt.glob("best*.pt")] == ["best-6.pt"]  # never published: the run did not end
    best = torch.load(ckpt / "best-6.pt", weights_only=True)
    assert best["step"] == 6 and all(torch.isfinite(t).all() for t in best["model"].values())
    last = torch.load(ckpt / "last.pt", weights_only=False)
    assert last["step"] == 6 and all(torch.isfinite(t).all() for t in last["model"].values())


def test_a_non_finite_gradient_with_a_finite_loss_also_stops_before_the_update(compose_cfg, monkeypatch):
    real = torch.Tensor.backward
    calls = {"n": 0}

    def backward(self, *args, **kwargs):
        real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # the third step's gradients blow up although its loss was finite
            next(p for p in torch.nn.Module.parameters(model[0]) if p.grad is not None).grad.fill_(float("inf"))

    model = []
    real_build = sys.modules["lra_bench.train.run"].build_model
    monkeypatch.setattr(sys.modules["lra_bench.train.run"], "build_model",
                        lambda *a, **k: model.append(real_build(*a, **k)) or model[0])
    monkeypatch.setattr(torch.Tensor, "backward", backward)
    record = run(compose_cfg("trainer.resume=false"))
    assert record["status"] == "diverged" and record["steps"] == 3 and "gradient norm became" in record["error"]
    assert all(torch.isfinite(p).all() for p in model[0].parameters())


def test_only_the_best_weights_checkpoints_point_at_are_kept_and_published(compose_cfg):
    record = run(compose_cfg("trainer.resume=false", "trainer.checkpoint_every=2", "trainer.eval_every=3"))
    ckpt = Path(record["config"]["paths"]["checkpoints"]) / record["run_id"]
    pointed = {torch.load(ckpt / name, weights_only=False)["best_step"] for name in ("last.pt", "prev.pt")}
    assert {int(p.stem.split("-")[1]) for p in ckpt.glob("best-*.pt")} <= pointed
    best = torch.load(ckpt / "best.pt", weights_only=True)
    assert best["step"] == record["best_step"]
    assert same_weights(best["model"], torch.load(ckpt / f"best-{record['best_step']}.pt", weights_only=True)["model"])


def test_skip_mode_skips_non_finite_steps_and_stops_after_too_many_in_a_row(compose_cfg, monkeypatch):
    _nan_from_step(monkeypatch, 3, 4)
    record = run(compose_cfg("trainer.resume=false", "trainer.on_nonfinite=skip"))
    assert record["status"] == "ok" and record["skipped_steps"] == 2 and record["steps"] == 12
    monkeypatch.undo()
    _nan_from_step(monkeypatch, 5)
    record = run(compose_cfg("trainer.resume=false", "trainer.on_nonfinite=skip", "trainer.max_nonfinite_skips=3"))
    assert record["status"] == "diverged" and record["steps"] == 7


def test_out_of_memory_in_a_step_is_recorded_with_the_shape_that_failed(compose_cfg, monkeypatch):
    from lra_bench.attention.softmax import SoftmaxAttention

    real = SoftmaxAttention.forward
    calls = {"n": 0}

    def forward(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3 and self.training:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99999999999 bytes")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SoftmaxAttention, "forward", forward)
    record = run(compose_cfg("trainer.resume=false", "attn=softmax"))
    on_disk = json.loads(Path(record["record_path"]).read_text())
    assert on_disk["status"] == "oom" and on_disk["steps"] == 3
    assert on_disk["oom"] == {"phase": "training step", "step": 3, "input_shape": [16, 48]}
    assert "out of memory in training step at step 3 with input shape [16, 48]" in on_disk["error"]


def test_resuming_from_a_run_with_another_config_is_refused_unless_forced(compose_cfg, tmp_path):
    first = run(compose_cfg("trainer.lr=0.002"))
    source = Path(first["config"]["paths"]["checkpoints"]) / first["run_id"]
    with pytest.raises(ConfigError, match=r"different config \(trainer\.lr: 0\.002 -> 0\.001\).*force_resume=true"):
        run(compose_cfg(f"trainer.resume_from={source}"))
    assert len(list((tmp_path / "out" / "records").glob("*.json"))) == 1  # the refused run wrote nothing
    forced = run(compose_cfg(f"trainer.resume_from={source}", "trainer.force_resume=true"))
    assert forced["status"] == "ok" and forced["resumed_from"] == 12
    with pytest.raises(ConfigError, match="does not exist"):
        run(compose_cfg(f"trainer.resume_from={tmp_path / 'nowhere'}"))


class _FlakyWandb:
    """A stand-in `wandb` module whose online init fails, as without network or with a bad key."""

    def __init__(self):
        self.modes = []

    def init(self, mode, **kwargs):
        self.modes.append(mode)
        if mode == "online":
            raise RuntimeError("api.wandb.ai: Temporary failure in name resolution")
        return _FakeRun(kwargs["dir"])


class _FakeRun:
    def __init__(self, directory):
        self.dir, self.summary, self.logged = directory, {}, []

    def log(self, metrics, step):
        self.logged.append(step)

    def finish(self, exit_code=0):
        pass


def test_wandb_online_failure_falls_back_to_offline_and_the_record_is_written(compose_cfg, monkeypatch, caplog):
    fake = _FlakyWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    with caplog.at_level(logging.WARNING, logger="lra_bench.train.logger"):
        record = run(compose_cfg("trainer.resume=false", "logger=wandb", "logger.mode=online"))
    assert fake.modes == ["online", "offline"] and record["status"] == "ok"
    assert Path(record["record_path"]).is_file()
    assert any("trying offline" in r.getMessage() for r in caplog.records)


def test_rerunning_a_finished_run_reports_its_training_not_the_rerun(compose_cfg):
    cfg = compose_cfg()
    first = run(cfg)
    again = run(cfg)  # finds last.pt at max_steps: nothing to train, the test split evaluated again
    assert again["resumed_from"] == 12 and again["test_accuracy"] == first["test_accuracy"]
    for key in ("examples_per_s", "tokens_per_s", "steps_per_s"):
        assert again[key] == pytest.approx(first[key]) and again[key] > 0
    assert again["peak_memory_bytes"] >= first["peak_memory_bytes"] * 0.99
    last = torch.load(Path(first["config"]["paths"]["checkpoints"]) / first["run_id"] / "last.pt", weights_only=False)
    assert again["train_wall_s"] >= last["wall_s"] > 0.5 * first["train_wall_s"]  # the first run's training counted
