"""One run end to end: validate, build data and model, train, write the run record.

User mistakes (config, data) raise `LRABenchError` before anything is written. Once
training starts, every outcome leaves a run record: `ok`, or `failed` / `diverged`
with the error, so a sweep's table shows what happened.
"""
from __future__ import annotations

import logging
import random
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from lra_bench.config import attn_kwargs, split_task, validate
from lra_bench.data.cache import digest
from lra_bench.errors import ConfigError, DataError
from lra_bench.models import build_model
from lra_bench.train import distributed
from lra_bench.train import precision as amp_mode
from lra_bench.train.checkpoint import load_training_state, resume_source, write_run_info
from lra_bench.train.logger import NullLogger, make_logger
from lra_bench.train.loop import Diverged, train
from lra_bench.train.preempt import EXIT_RESUMABLE, Preempted
from lra_bench.train.step import OutOfMemory
from lra_bench.train.metrics import environment, free_memory, is_out_of_memory
from lra_bench.train.record import NOT_IDENTITY, config_without, git_commit, write_record

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_fits(data: Any, batch_size: int, task: str) -> None:
    """Splits the loop can use: none empty, and at least one full training batch."""
    empty = [name for name in ("train", "val", "test") if len(getattr(data, name)) == 0]
    if empty:
        raise DataError(f"{task}: the {' and '.join(empty)} split(s) are empty ({len(data.train)}/{len(data.val)}/"
                        f"{len(data.test)} train/val/test examples); use more data or change the split options")
    if batch_size > len(data.train):
        raise ConfigError(f"trainer.batch_size={batch_size} exceeds the {len(data.train)} training examples of "
                          f"{task}; set trainer.batch_size<={len(data.train)} or use more data")


def attn_name(cfg: DictConfig) -> str:
    """The attn= choice when run through Hydra, else the mixer class name."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.choices["attn"]
    except (ValueError, KeyError, AttributeError):
        return cfg.attn._target_.rsplit(".", 1)[-1].lower()


def identity(cfg: DictConfig) -> dict:
    """The resolved config less what does not change a run's results (record.NOT_IDENTITY)."""
    return config_without(OmegaConf.to_container(cfg, resolve=True), NOT_IDENTITY)


def run_id(cfg: DictConfig, task: str, attn: str) -> str:
    return f"{task}-{attn}-s{cfg.seed}-{digest(identity(cfg))[:10]}"


def check_writable(cfg: DictConfig) -> None:
    """Every output folder can be created and written (checked on the nearest existing folder,
    so nothing is created here)."""
    targets = [("paths.records", cfg.paths.records), ("paths.checkpoints", cfg.paths.checkpoints)]
    if cfg.logger.backend != "none" and cfg.logger.mode != "disabled":
        targets.append(("paths.wandb", cfg.paths.wandb))
    for key, value in targets:
        path = Path(str(value)).expanduser().absolute()
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            raise ConfigError(f"{key}={value} cannot be created: {existing} is a file; set paths.root (or {key}) "
                              "to a writable folder")
        try:  # a probe file, gone at once: permissions, read-only mounts and pseudo file systems alike
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as exc:
            raise ConfigError(f"{key}={value} is not writable ({exc.strerror or exc} in {existing}); set paths.root "
                              f"(or {key}) to a writable folder") from None


def run(cfg: DictConfig) -> dict:
    """Train one configuration and return its run record (also written to paths.records)."""
    validate(cfg)
    task, builder, task_kwargs = split_task(cfg.task)
    attn_cls, mixer_kwargs = attn_kwargs(cfg.attn)
    attn, seed = attn_name(cfg), cfg.seed
    rid = run_id(cfg, task, attn)
    ranks = distributed.from_env()
    if not ranks.is_main:  # one process tells the story
        logging.getLogger("lra_bench").setLevel(logging.WARNING)
    ranks.local_batch(cfg.trainer.batch_size)
    check_writable(cfg)
    ckpt_dir = Path(cfg.paths.checkpoints) / rid
    resume_dir = resume_source(cfg.trainer, ckpt_dir, identity(cfg))
    state = load_training_state(resume_dir) if resume_dir is not None else None  # unreadable: one line, now
    device = distributed.init(ranks, cfg.trainer.device)
    amp_mode.resolve(cfg.trainer.precision, device)  # e.g. fp16 without CUDA: one line, before the data
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)

    data = builder(**task_kwargs, cache_dir=cfg.paths.cache, data_root=cfg.paths.data_root)
    check_fits(data, cfg.trainer.batch_size, task)
    seed_everything(seed)
    try:
        model = build_model(data.spec, cfg.model, attn_cls, mixer_kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"attn={attn}: {exc}") from None
    num_params = sum(p.numel() for p in model.parameters())
    log.info("%s: %s on %s (%d/%d/%d examples, length %d), %.2fM parameters, device %s", rid, attn, task,
             len(data.train), len(data.val), len(data.test), data.spec.max_length, num_params / 1e6, device)

    majority = int(np.bincount(np.asarray(data.train.labels)).argmax())
    resolved = OmegaConf.to_container(cfg, resolve=True)
    record = {"run_id": rid, "kind": "train", "task": task, "attn": attn, "seed": seed, "num_params": num_params,
              "seq_len": data.spec.max_length, "batch_size": cfg.trainer.batch_size,
              "majority_test_accuracy": float(np.mean(np.asarray(data.test.labels) == majority)),
              "device": str(device), **environment(device), "torch_version": torch.__version__,
              "git_commit": git_commit(), "config": resolved, "data": data.info,
              "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "error": None}
    lock = _lock_run(ckpt_dir, rid) if ranks.is_main else None
    logger = make_logger(cfg, name=rid, config=resolved) if ranks.is_main else NullLogger()
    if ranks.is_main:
        write_run_info(ckpt_dir, rid, identity(cfg))
    t0 = time.perf_counter()
    try:
        result = train(model, data, cfg.trainer, seed=seed, device=device, ckpt_dir=ckpt_dir, on_metrics=logger.log,
                       dist=ranks, resume=None if state is None else (resume_dir, state), commit=record["git_commit"])
        record.update(status="ok", steps=result.steps, best_val_accuracy=result.best_val_accuracy,
                      best_step=result.best_step, test_accuracy=result.test_accuracy, test_loss=result.test_loss,
                      peak_memory_bytes=result.peak_memory_bytes, peak_memory_kind=result.peak_memory_kind,
                      resumed_from=result.resumed_from, skipped_steps=result.skipped_steps,
                      train_wall_s=result.train_wall_s, precision=result.precision, history=result.history,
                      trained_at_commits=result.trained_at_commits,
                      **result.throughput)
    except Diverged as exc:
        record.update(status="diverged", error=str(exc), steps=exc.step)
    except OutOfMemory as exc:  # a result of the configuration (too long, too big): recorded, not raised
        record.update(status="oom", error=str(exc), steps=exc.step,
                      oom={"phase": exc.phase, "step": exc.step, "input_shape": exc.shape})
        log.error("%s", exc)
        free_memory(device)
    except Preempted as exc:  # SIGTERM / SIGINT: checkpoint saved, no record; the same command resumes
        log.warning("%s", exc)
        logger.finish(exit_code=EXIT_RESUMABLE)
        raise
    except Exception as exc:
        status = "oom" if is_out_of_memory(exc) else "failed"
        record.update(status=status, error=f"{type(exc).__name__}: {exc}")
        if status == "oom":  # a result of the configuration (too long, too big), not a bug: recorded, not raised
            log.error("out of memory: %s", exc)
            free_memory(device)
        else:
            raise
    except BaseException:  # interrupted (Ctrl-C): no record; the checkpoint lets the same command resume
        log.warning("interrupted; rerun the same command to resume from the last checkpoint in %s", ckpt_dir)
        logger.finish(exit_code=1)
        raise
    finally:
        if "status" in record and ranks.is_main:
            _finish(record, cfg, logger, device, t0)
        distributed.shutdown(ranks)
        if lock is not None:
            lock.release()
    return record


def _lock_run(ckpt_dir: Path, rid: str) -> FileLock:
    """Hold `<checkpoints>/<run id>.lock` while the run trains: a second process with the
    same run id (the same config launched twice) would interleave checkpoints with it."""
    ckpt_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(ckpt_dir) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(f"run {rid} is already training in another process (it holds {lock.lock_file}); wait "
                          "for it to finish, or give this one another paths.root") from None
    return lock


def _finish(record: dict, cfg: DictConfig, logger: Any, device: torch.device, t0: float) -> None:
    """Complete, write (atomically) and report the run record."""
    record["wall_time_s"] = time.perf_counter() - t0
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for key, value in _complete(record).items():
        record.setdefault(key, value)
    path = write_record(Path(cfg.paths.records), record)
    logger.summary({k: record.get(k) for k in _SUMMARY_KEYS})
    logger.finish(exit_code=0 if record["status"] == "ok" else 1)
    record["record_path"] = str(path)
    log.info("run record (%s) written to %s", record["status"], path)


# What a W&B run's summary carries: every field of the record that the report's tables and their
# provenance use (lra_bench.report.records.COLUMNS; the config is the W&B run's config).
_SUMMARY_KEYS = ("run_id", "kind", "task", "attn", "seed", "seq_len", "batch_size", "status", "best_val_accuracy",
                 "test_accuracy", "majority_test_accuracy", "steps", "examples_per_s", "tokens_per_s", "steps_per_s",
                 "peak_memory_bytes", "peak_memory_kind", "num_params", "precision", "device", "hardware",
                 "torch_version", "git_commit", "trained_at_commits", "finished_at", "wall_time_s")


def _complete(record: dict) -> dict:
    """Every schema key present (None where the run did not get that far)."""
    return {**{k: None for k in _SUMMARY_KEYS + ("best_step", "test_loss", "resumed_from", "skipped_steps", "oom",
                                                       "train_wall_s")},
            "history": [], **record}
