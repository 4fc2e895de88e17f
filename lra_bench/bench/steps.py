"""Training steps per second and peak memory of whole models, per mixer and length (LRA Table 2).

LRA's efficiency table (Tay et al., "Long Range Arena", ICLR 2021, Table 2) times training
steps of each model on byte-level Text at batch 32 and lengths 1K-4K, and reports steps/s
and peak memory relative to the vanilla Transformer. `bench_steps` does the same for the
`conf/attn/` mixers, with every piece a training run uses:

- the config is the real one: `conf/config.yaml` composed with `task=<task>`,
  `attn=<attn>`, `task.max_length=<length>`, `trainer.batch_size=<batch>` and any other
  overrides (e.g. `model=small`), then checked by `lra_bench.config.validate`;
- the model is `build_model` with the task's TaskSpec from its data module's `task_spec`
  (no data read), the optimizer, schedule, loss and gradient clipping those of
  `lra_bench.train.step` (`make_optimizer`, `train_step`), dropout on (train mode), at
  the precision a run would use (`trainer.precision`, default auto: bf16 autocast on GPUs
  with native bf16, fp32 on CPU; the record and the header say which);
- batches are random token ids of the task's shape, (B, L) or (B, 2, L), at full length:
  no padding (the pad id is never drawn), as LRA times full-length batches. One batch is
  reused, so data loading is not timed.

`--warmup` untimed steps, then `--steps` timed ones between two CUDA synchronisations.
Peak memory is that of the timed steps, measured as a training run measures it
(`lra_bench.train.metrics`): CUDA `max_memory_allocated` (weights, optimizer state,
activations), on CPU the process's peak resident set size, which includes the Python
and torch baseline; freed heap memory is handed back to the OS (glibc `malloc_trim`)
before each configuration so an earlier, larger one does not count.

Each (attn, length) leaves one run record (`lra_bench.train.record`) with `kind="speed"`:
status `ok`, `oom` (out of memory: recorded, memory freed, the next configuration runs)
or `failed` (any other error, with its message). Bad arguments raise ConfigError before
any model is built or anything is written.
"""
from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from lra_bench.cli import CONF_DIR, available, check_overrides
from lra_bench.config import attn_kwargs, register_configs, split_task, validate
from lra_bench.data.cache import digest
from lra_bench.data.spec import TaskSpec
from lra_bench.errors import ConfigError
from lra_bench.models import build_model
from lra_bench.train import precision as amp_mode
from lra_bench.train.step import make_optimizer, train_step
from lra_bench.train.metrics import (environment, free_memory, hardware, is_out_of_memory, peak_memory_bytes,
                                     reset_peak_memory)
from lra_bench.train.record import git_commit, write_record
from lra_bench.train.distributed import pick_device
from lra_bench.train.run import seed_everything

DEFAULT_LENGTHS = (1000, 2000, 3000, 4000)
DEFAULT_OUT = "outputs/speed"
LRA_BATCH, CPU_BATCH = 32, 4
# --size: (default batch, overrides put before the user's). lra: LRA's Table 2 setting; cpu: a
# size whose softmax at 4K fits a CPU machine's memory (about 8 GB with attention dropout).
SIZES = {"lra": (LRA_BATCH, ()), "cpu": (CPU_BATCH, ("model=small",))}
SOFTMAX = "softmax"
# Override keys the command's own options set: given as overrides they would contradict them.
RESERVED = {"task": "--task", "attn": "--attn", "task.max_length": "--lengths", "trainer.batch_size": "--batch",
            "trainer.device": "--device", "trainer.threads": "--threads", "paths.root": "--out"}
# Keys of training-run records that a speed measurement has no value for (the schema keeps every key).
TRAIN_ONLY = ("best_val_accuracy", "best_step", "test_accuracy", "test_loss", "resumed_from")


@dataclass
class Planned:
    """One configuration to measure: composed, validated, with its TaskSpec and run id."""

    attn: str
    length: int
    cfg: DictConfig
    spec: TaskSpec
    run_id: str
    device: torch.device  # --device, parsed once
    size: str  # lra or cpu (see `sized`)
    given: str = ""  # what the command line set instead of the size's defaults, e.g. "batch, model"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _compose(overrides: list[str], conf_dir: Path) -> DictConfig:
    """conf/config.yaml composed with `overrides`, as `python -m lra_bench` would (no hydra node)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            return compose("config", overrides=overrides)
    except Exception as exc:  # hydra and omegaconf raise many types; the first lines say what is wrong
        cause = f": {_first_line(exc.__cause__)}" if exc.__cause__ is not None else ""
        raise ConfigError(f"{_first_line(exc)}{cause}") from None
    finally:
        GlobalHydra.instance().clear()


def _key(override: str) -> str:
    """The key an override sets: `+model=small` -> model."""
    return override.split("=", 1)[0].lstrip("+~")


def _check_overrides(overrides: Sequence[str], conf_dir: Path) -> None:
    for arg in overrides:
        key = _key(arg)
        if key in RESERVED:
            raise ConfigError(f"override {arg}: {key} is set by {RESERVED[key]}; use that option instead")
    problem = check_overrides(overrides, conf_dir)
    if problem:
        raise ConfigError(problem)


def _check_out(out: Path) -> None:
    """Fail before any work when records could not be written under `out` (nothing is created)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder (records go to <out>/records)")
    existing = next(p for p in [out, *out.parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {existing} is not a writable folder; choose another --out")


def task_spec_of(cfg: DictConfig) -> TaskSpec:
    """The TaskSpec a run of `cfg` would build, from the task module's `task_spec` (no data read)."""
    _, builder, kwargs = split_task(cfg.task)
    spec_fn = getattr(importlib.import_module(builder.__module__), "task_spec", None)
    if spec_fn is None:
        raise ConfigError(f"task {cfg.task.get('name')}: {builder.__module__} has no task_spec(), which the speed "
                          f"mode needs to build the model without data")
    return spec_fn(**kwargs)


def sized(size: str, device: torch.device, batch: Optional[int], overrides: Sequence[str]
          ) -> tuple[str, int, list, str]:
    """(size, batch, overrides, given) for --size (auto: lra on CUDA, cpu elsewhere): the
    size's batch unless `batch` is given, and its model unless the overrides choose one
    (model=... or an experiment=, which sets its own); `given` names what was given instead."""
    if size not in ("auto", *SIZES):
        raise ConfigError(f"--size {size}: expected auto, {' or '.join(SIZES)}")
    if size == "auto":
        size = "lra" if device.type == "cuda" else "cpu"
    default_batch, extra = SIZES[size]
    chosen = [_key(a) for a in overrides if _key(a) in ("model", "experiment")]
    given = ["batch"] * (batch is not None) + list(dict.fromkeys(chosen))
    return (size, default_batch if batch is None else batch, [a for a in extra if not chosen] + list(overrides),
            ", ".join(given))


def plan(task: str, attns: Optional[Iterable[str]], lengths: Sequence[int], batch: Optional[int] = None, *,
         steps: int, warmup: int, device: str = "auto", threads: Optional[int] = None,
         out: str | os.PathLike = DEFAULT_OUT, overrides: Sequence[str] = (), conf_dir: Path = CONF_DIR,
         size: str = "auto") -> list[Planned]:
    """Every (length, attn) configuration, composed and validated; ConfigError on any user error.

    `size` sets the defaults (see `sized`): LRA's batch 32 and model on a GPU, batch 4 and
    model=small on a CPU; `batch` and a model= override take precedence.
    Lengths ascend; at each length softmax comes first, so the others can be compared to it."""
    dev = pick_device(device, option="--device")  # cpu, cuda[:N] or auto, and CUDA present when asked for
    size, batch, overrides, given = sized(size, dev, batch, overrides)
    tasks, choices = available("task", conf_dir), available("attn", conf_dir)
    if task not in tasks:
        raise ConfigError(f"unknown --task {task}; available: {', '.join(tasks)} (from {conf_dir / 'task'})")
    names = list(dict.fromkeys(attns)) if attns is not None else choices
    unknown = [a for a in names if a not in choices]
    if unknown or not names:
        raise ConfigError(f"unknown --attn {', '.join(unknown) or '(none given)'}; available: {', '.join(choices)} "
                          f"(from {conf_dir / 'attn'})")
    names.sort(key=lambda a: a != SOFTMAX)  # stable: softmax first, the rest in the order given
    lengths = sorted(dict.fromkeys(lengths))
    if not lengths or min(lengths) < 1:
        raise ConfigError(f"--lengths must be positive integers, got {lengths}")
    for label, value, low in (("--batch", batch, 1), ("--steps", steps, 1), ("--warmup", warmup, 0),
                              ("--threads", 1 if threads is None else threads, 1)):
        if value < low:
            raise ConfigError(f"{label} must be at least {low}, got {value}")
    _check_overrides(overrides, conf_dir)
    out = Path(out)
    _check_out(out)

    flags = [f"trainer.batch_size={batch}", f"trainer.device={device}"]
    flags += [f"trainer.threads={threads}"] if threads is not None else []
    # image, pathfinder, pathx have no task.max_length: their length follows from the data (resolution)
    fixed = "max_length" not in OmegaConf.load(conf_dir / "task" / f"{task}.yaml").get("task", {})
    planned: list[Planned] = []
    for attn in names:
        base = [f"task={task}", f"attn={attn}"] + flags + list(overrides)
        for n in lengths[:1] if fixed else lengths:
            cfg = _compose(base if fixed else base + [f"task.max_length={n}"], conf_dir)
            cfg.paths.root = str(out)
            validate(cfg)
            spec = task_spec_of(cfg)
            if fixed and lengths != [spec.max_length]:
                wrong = ",".join(str(m) for m in lengths if m != spec.max_length)
                raise ConfigError(f"--lengths {wrong}: task {task} has a fixed length of {spec.max_length}; "
                                  f"use --lengths {spec.max_length}")
            planned.append(Planned(attn, spec.max_length, cfg, spec, "", dev, size, given))
    if threads is not None:
        torch.set_num_threads(threads)
    machine = {"steps": steps, "warmup": warmup, "device": dev.type, "hardware": hardware(dev)}
    for p in planned:
        ident = OmegaConf.to_container(p.cfg, resolve=True)
        for key in ("paths", "logger"):  # where results go and how they are logged: not what is measured
            ident.pop(key)
        p.run_id = f"speed-{task}-{p.attn}-L{p.length}-B{batch}-{digest({**ident, **machine})[:10]}"
    planned.sort(key=lambda p: p.length)  # stable: the attn order within each length
    return planned


def synthetic_batch(spec: TaskSpec, batch: int, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids (B, L) -- (B, 2, L) for dual-input tasks -- that never draw the pad id, and labels (B,)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, 2, spec.max_length) if spec.dual_input else (batch, spec.max_length)
    if spec.pad_id is None:
        x = torch.randint(0, spec.vocab_size, shape, generator=gen)
    else:  # draw from vocab_size - 1 ids and skip over pad_id
        x = torch.randint(0, spec.vocab_size - 1, shape, generator=gen)
        x += (x >= spec.pad_id).long()
    y = torch.randint(0, spec.num_classes, (batch,), generator=gen)
    return x.to(device), y.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(p: Planned, device: torch.device, steps: int, warmup: int, record: dict) -> None:
    """Build p's model and optimizer, run `warmup` then `steps` timed training steps; fill `record`."""
    cfg = p.cfg
    attn_cls, mixer_kwargs = attn_kwargs(cfg.attn)
    seed_everything(cfg.seed)
    model = build_model(p.spec, cfg.model, attn_cls, mixer_kwargs).to(device).train()
    record["num_params"] = sum(t.numel() for t in model.parameters())
    opt, sched = make_optimizer(model, cfg.trainer)
    precision = amp_mode.resolve(cfg.trainer.precision, device)  # as training runs it: bf16 on recent GPUs
    scaler = amp_mode.grad_scaler(precision, device)
    record["precision"] = precision
    x, y = synthetic_batch(p.spec, cfg.trainer.batch_size, device, cfg.seed)

    def step() -> torch.Tensor:
        return train_step(model, opt, sched, x, y, cfg.trainer.grad_clip, amp_mode.autocast(precision, device),
                          scaler)[1]

    for _ in range(warmup):
        step()
    _sync(device)
    record["peak_memory_kind"] = reset_peak_memory(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    _sync(device)
    seconds = time.perf_counter() - start
    record.update(status="ok", peak_memory_bytes=peak_memory_bytes(device), timed_s=seconds,
                  steps_per_s=steps / seconds, examples_per_s=steps * x.shape[0] / seconds,
                  tokens_per_s=steps * x.numel() / seconds, final_loss=loss.item())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_one(p: Planned, device: torch.device, steps: int, warmup: int, commit: Optional[str]) -> dict:
    """Measure one configuration and write its run record; out-of-memory and errors are records too."""
    cfg = p.cfg
    record = {"kind": "speed", "run_id": p.run_id, "task": cfg.task.get("name") or p.spec.name, "attn": p.attn,
              "seed": cfg.seed, "status": None, "error": None, "seq_len": p.spec.max_length,
              "batch_size": cfg.trainer.batch_size, "steps": steps, "warmup": warmup, "timed_s": None,
              "steps_per_s": None, "examples_per_s": None, "tokens_per_s": None, "final_loss": None,
              "peak_memory_bytes": None, "peak_memory_kind": None, "num_params": None, "device": str(device),
              **environment(device), "threads": torch.get_num_threads(),
              "torch_version": torch.__version__, "git_commit": commit,
              "config": OmegaConf.to_container(cfg, resolve=True), "started_at": _now(),
              **dict.fromkeys(TRAIN_ONLY), "history": []}
    t0 = time.perf_counter()
    try:
        measure(p, device, steps, warmup, record)
    except Exception as exc:  # out of memory, or a mixer/model failing at this size: a record, then go on
        status = "oom" if is_out_of_memory(exc) else "failed"
        record.update(status=status, error=f"{type(exc).__name__}: {exc}", steps_per_s=None, examples_per_s=None,
                      tokens_per_s=None, peak_memory_bytes=None)
    # The traceback (and the tensors its frames hold) is gone once the except clause ends; the
    # next configuration starts from the memory this one found.
    free_memory(device)
    record.update(wall_time_s=time.perf_counter() - t0, finished_at=_now())
    record["record_path"] = str(write_record(Path(cfg.paths.records), record))
    return record


def bench_steps(task: str = "text", attns: Optional[Iterable[str]] = None, lengths: Sequence[int] = DEFAULT_LENGTHS,
                batch: Optional[int] = None, *, steps: int = 10, warmup: int = 3, device: str = "auto",
                threads: Optional[int] = None, out: str | os.PathLike = DEFAULT_OUT, overrides: Sequence[str] = (),
                conf_dir: Path = CONF_DIR, progress: Optional[Callable[[dict, int, int], None]] = None,
                size: str = "auto") -> list[dict]:
    """Measure every (length, attn) of `plan` (see the module doc) and return their run records.

    Records go to `paths.records` (`<out>/records` unless overridden). `progress(record,
    index, total)` is called after each configuration."""
    planned = plan(task, attns, lengths, batch, steps=steps, warmup=warmup, device=device, threads=threads, out=out,
                   overrides=overrides, conf_dir=conf_dir, size=size)
    dev = planned[0].device
    commit = git_commit()
    free_memory(dev)
    records = []
    for i, p in enumerate(planned, start=1):
        records.append(run_one(p, dev, steps, warmup, commit))
        if progress is not None:
            progress(records[-1], i, len(planned))
    return records


# ---------------------------------------------------------------- printing

COLUMNS = ("attn", "length", "steps/s", "x softmax", "peak MiB", "mem x softmax", "status")
WIDTHS = (20, 6, 9, 9, 10, 13, 0)


def _softmax(records: list[dict], record: dict) -> Optional[dict]:
    return next((r for r in records if r["attn"] == SOFTMAX and r["seq_len"] == record["seq_len"]
                 and r["status"] == "ok"), None)


def row(record: dict, records: list[dict]) -> str:
    """One table line for `record`; ratios against the ok softmax record at its length among `records`."""
    ok, ref = record["status"] == "ok", _softmax(records, record)
    cells = [record["attn"], str(record["seq_len"]), "", "", "", "", record["status"]]
    if ok:
        cells[2], cells[4] = f"{record['steps_per_s']:.3f}", f"{record['peak_memory_bytes'] / 2**20:.1f}"
        if ref is not None:
            cells[3] = f"{record['steps_per_s'] / ref['steps_per_s']:.2f}x"
            cells[5] = f"{record['peak_memory_bytes'] / ref['peak_memory_bytes']:.2f}x"
    else:
        cells[6] += f" ({' '.join(str(record['error']).split())[:100]})"
    return "  ".join(c.ljust(w) if i in (0, 6) else c.rjust(w)
                     for i, (c, w) in enumerate(zip(cells, WIDTHS))).rstrip()


def header_line(task: str, planned: list[Planned], device: torch.device, steps: int, warmup: int) -> str:
    """What the numbers depend on: task, machine, torch, batch, step counts, memory method."""
    memory = ("CUDA max_memory_allocated" if device.type == "cuda"
              else "process peak RSS, Python and torch included")
    first = planned[0]
    cfg, given = first.cfg, f" ({first.given} given)" if first.given else ""
    precision = amp_mode.resolve(cfg.trainer.precision, device)
    model = f"model emb {cfg.model.hidden_dim}, {cfg.model.num_heads} heads, {cfg.model.num_layers} layers"
    return (f"speed benchmark | task {task} | {device.type} ({hardware(device)}) | torch {torch.__version__} | "
            f"size {first.size}{given}: batch {cfg.trainer.batch_size}, {model} | {precision} | {steps} timed "
            f"training steps after {warmup} warm-up | memory: {memory}")


def table_header() -> str:
    return "  ".join(c.ljust(w) if i in (0, 6) else c.rjust(w)
                     for i, (c, w) in enumerate(zip(COLUMNS, WIDTHS))).rstrip()
