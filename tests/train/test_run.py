"""End-to-end runs on tiny generated ListOps: records, resume, determinism, W&B offline."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from lra_bench import kernels
from lra_bench.train import loop
from lra_bench.train import step as step_module
from lra_bench.train.metrics import malloc_setting
from lra_bench.train.record import STATUSES
from lra_bench.train.run import run

RECORD_KEYS = {"task", "attn", "seed", "run_id", "status", "best_val_accuracy", "best_step", "test_accuracy",
               "steps", "examples_per_s", "tokens_per_s", "peak_memory_bytes", "num_params", "wall_time_s",
               "hardware", "torch_version", "malloc", "kernels", "git_commit", "config", "history",
               "majority_test_accuracy"}


@pytest.mark.parametrize("attn", ["softmax", "fnet", "dct", "hadamard", "mixed_spectral"])
def test_tiny_run_writes_a_complete_record(compose_cfg, tmp_path, attn):
    record = run(compose_cfg(f"attn={attn}"))
    path = Path(record["record_path"])
    assert path.parent == tmp_path / "out" / "records"
    on_disk = json.loads(path.read_text())
    assert RECORD_KEYS <= set(on_disk)
    assert on_disk["status"] == "ok" and on_disk["status"] in STATUSES
    assert on_disk["task"] == "listops" and on_disk["steps"] == 12
    assert 0.0 <= on_disk["test_accuracy"] <= 1.0 and on_disk["examples_per_s"] > 0 and on_disk["peak_memory_bytes"] > 0
    assert [h["step"] for h in on_disk["history"]] == [6, 12]
    assert on_disk["best_val_accuracy"] == max(h["val_accuracy"] for h in on_disk["history"])
    assert on_disk["config"]["model"]["hidden_dim"] == 16
    assert on_disk["malloc"] == malloc_setting()  # the allocator's tuning, e.g. "default"
    assert on_disk["kernels"] == kernels.status()  # the compiled kernels ran, or why not
    assert not list(path.parent.glob("*.tmp"))


def test_same_seed_same_result_and_other_seed_differs(compose_cfg):
    a = run(compose_cfg("trainer.resume=false"))
    b = run(compose_cfg("trainer.resume=false"))
    c = run(compose_cfg("trainer.resume=false", "seed=1"))
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert [h["train_loss"] for h in a["history"]] != [h["train_loss"] for h in c["history"]]
    assert a["run_id"] != c["run_id"]


def test_resume_after_interruption_continues_from_saved_step(compose_cfg, monkeypatch):
    full = run(compose_cfg("trainer.resume=false", "paths.checkpoints=${paths.root}/ckpt_full"))

    real_evaluate = loop.evaluate
    calls = {"n": 0}

    def interrupt_at_second_eval(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # during step 12's eval, after the step-6 checkpoint
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    cfg = compose_cfg()
    monkeypatch.setattr(loop, "evaluate", interrupt_at_second_eval)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    assert [p.name for p in Path(cfg.paths.records).glob("*.json")] == [Path(full["record_path"]).name]
    monkeypatch.setattr(loop, "evaluate", real_evaluate)

    resumed = run(cfg)
    assert resumed["resumed_from"] == 6 and resumed["steps"] == 12
    assert [h["step"] for h in resumed["history"]] == [6, 12]
    # Same data order, RNG and optimizer state: the resumed run ends where the uninterrupted one did.
    assert resumed["history"][-1]["train_loss"] == pytest.approx(full["history"][-1]["train_loss"], abs=1e-6)
    assert resumed["test_accuracy"] == full["test_accuracy"]


def test_wandb_offline_logs_and_keeps_record(compose_cfg, tmp_path):
    record = run(compose_cfg("logger=wandb", "logger.mode=offline"))
    assert record["status"] == "ok"
    runs = list((tmp_path / "out" / "wandb").glob("offline-run-*"))
    assert runs, "an offline W&B run directory is written under paths.wandb"


def test_wandb_summary_carries_every_field_the_report_reads(compose_cfg, monkeypatch):
    from lra_bench.report.records import COLUMNS

    class FakeRun:
        def __init__(self, config):
            self.dir, self.config, self.summary = None, config, {}

        def log(self, metrics, step):
            pass

        def finish(self, exit_code=0):
            pass

    runs = []
    fake = type(sys)("wandb")
    fake.init = lambda mode, **kwargs: runs.append(FakeRun(kwargs["config"])) or runs[-1]
    monkeypatch.setitem(sys.modules, "wandb", fake)
    record = run(compose_cfg("logger=wandb", "logger.mode=offline"))
    (wandb_run,) = runs
    derived = {"length", "batch", "fp_identity", "fp_arch", "path"}  # the report computes these from the rest
    for key in set(COLUMNS) - derived | {"seq_len", "batch_size"}:
        assert key in wandb_run.summary and wandb_run.summary[key] == record[key], key
    assert wandb_run.summary["hardware"] and wandb_run.summary["torch_version"] == torch.__version__
    assert wandb_run.config == record["config"]


def test_divergence_is_recorded(compose_cfg, monkeypatch):
    real = torch.nn.functional.cross_entropy
    monkeypatch.setattr(step_module.F, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    record = run(compose_cfg("trainer.resume=false"))
    assert record["status"] == "diverged" and record["steps"] == 1 and "nan" in record["error"]
    assert record["test_accuracy"] is None


def test_cpu_peak_memory_window_excludes_earlier_allocations():
    from lra_bench.train.metrics import peak_memory_bytes, reset_peak_memory

    cpu = torch.device("cpu")
    big = torch.ones(64 * 2**20, dtype=torch.uint8)  # 64 MiB touched
    big.fill_(1)
    before = peak_memory_bytes(cpu)
    del big
    reset_peak_memory(cpu)
    after = peak_memory_bytes(cpu)
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("the peak can only be reset on Linux (/proc/self/clear_refs)")
    assert after < before - 32 * 2**20


def test_out_of_memory_is_recorded_as_oom_not_raised(compose_cfg, monkeypatch):
    def oom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 8.00 GiB")

    import sys

    monkeypatch.setattr(sys.modules["lra_bench.train.run"], "train", oom)
    record = run(compose_cfg("trainer.resume=false"))
    on_disk = json.loads(Path(record["record_path"]).read_text())
    assert on_disk["status"] == "oom" and "out of memory" in on_disk["error"] and on_disk["kind"] == "train"


def test_a_crash_leaves_a_failed_record_then_raises(compose_cfg, monkeypatch):
    def crash(*args, **kwargs):
        raise ValueError("a bug in a mixer")

    monkeypatch.setattr(sys.modules["lra_bench.train.run"], "train", crash)
    cfg = compose_cfg("trainer.resume=false")
    with pytest.raises(ValueError, match="a bug in a mixer"):
        run(cfg)
    (path,) = Path(cfg.paths.records).glob("*.json")
    on_disk = json.loads(path.read_text())
    assert on_disk["status"] == "failed" and on_disk["error"] == "ValueError: a bug in a mixer"
    assert on_disk["test_accuracy"] is None and on_disk["kind"] == "train" and on_disk["finished_at"]


def test_records_name_the_commits_that_trained(compose_cfg, monkeypatch):
    run_module = sys.modules["lra_bench.train.run"]
    monkeypatch.setattr(run_module, "git_commit", lambda: "c1")
    first = run(compose_cfg("trainer.max_steps=6"))
    assert first["git_commit"] == "c1" and first["trained_at_commits"] == ["c1"]
    # continued at another commit: both trained it, in order
    monkeypatch.setattr(run_module, "git_commit", lambda: "c2")
    folder = Path(first["config"]["paths"]["checkpoints"]) / first["run_id"]
    second = run(compose_cfg(f"trainer.resume_from={folder}", "trainer.force_resume=true"))
    assert second["resumed_from"] == 6 and second["trained_at_commits"] == ["c1", "c2"]
    # a finished run entered again at a third commit: that commit wrote the record but trained nothing
    monkeypatch.setattr(run_module, "git_commit", lambda: "c3")
    again = run(compose_cfg(f"trainer.resume_from={folder}", "trainer.force_resume=true"))
    on_disk = json.loads(Path(again["record_path"]).read_text())
    assert on_disk["git_commit"] == "c3" and on_disk["trained_at_commits"] == ["c1", "c2"]


def test_a_checkpoint_from_before_commits_were_kept_counts_as_unknown(compose_cfg, monkeypatch):
    run_module = sys.modules["lra_bench.train.run"]
    monkeypatch.setattr(run_module, "git_commit", lambda: "c1")
    first = run(compose_cfg("trainer.max_steps=6"))
    folder = Path(first["config"]["paths"]["checkpoints"]) / first["run_id"]
    for name in ("last.pt", "prev.pt"):  # as an older version wrote them
        if (folder / name).exists():
            state = torch.load(folder / name, weights_only=False)
            del state["commits"]
            torch.save(state, folder / name)
    monkeypatch.setattr(run_module, "git_commit", lambda: "c2")
    second = run(compose_cfg(f"trainer.resume_from={folder}", "trainer.force_resume=true"))
    assert second["resumed_from"] == 6 and second["trained_at_commits"] == [None, "c2"]
