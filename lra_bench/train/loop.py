"""The training loop: step, evaluate on val, checkpoint, and test the best-val weights.

Data order is a pure function of (seed, step): batch `s` is slice `s % n` of epoch
`s // n`'s permutation drawn from `seed + epoch`. The checkpoint holds everything else the
next step depends on (weights, optimizer and schedule state, every process's RNG state,
the running train-loss sums, the best val score), so a run killed at any moment and
started again with the same command ends with the same metrics and weights as one that
was never interrupted (bitwise on CPU). SIGTERM / SIGINT save a checkpoint at the next
step boundary and raise `Preempted`. A non-finite loss stops the run (`Diverged`, before
the optimizer step, so no NaN weights are ever checkpointed) or, with
`trainer.on_nonfinite=skip`, skips that step. Under torchrun the loop runs data-parallel
(lra_bench.train.distributed). The test split is evaluated once, at the end, with the
weights of the best val step.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lra_bench.data.spec import TaskData
from lra_bench.train import precision as amp_mode
from lra_bench.train.checkpoint import clear, copy_best, load_best, prune_best, publish_best, restore_rng, \
    rng_state, save_best, save_training_state
from lra_bench.train.distributed import Dist
from lra_bench.train.metrics import Throughput, is_out_of_memory, peak_memory_bytes, reset_peak_memory
from lra_bench.train.preempt import Preempted, StopSignals
from lra_bench.train.step import OutOfMemory, apply_update, evaluate, forward_backward, make_optimizer, \
    unscale_and_clip

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    def __init__(self, step: int, value: float, what: str = "loss"):
        super().__init__(f"{what} became {value} at step {step}")
        self.step, self.value, self.what = step, value, what


@dataclass
class TrainResult:
    steps: int
    best_val_accuracy: float
    best_step: int
    test_accuracy: float
    test_loss: float
    throughput: dict
    peak_memory_bytes: int
    resumed_from: Optional[int] = None
    history: list = field(default_factory=list)
    peak_memory_kind: str = ""
    skipped_steps: int = 0
    precision: str = "fp32"
    train_wall_s: float = 0.0  # training and evaluation time of every process the run took (to its last checkpoint)
    trained_at_commits: list = field(default_factory=list)  # the code of each stretch of training, in order


def train_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Row indices of training batch `step` (drop-last epochs of seeded permutations)."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"trainer.batch_size={batch_size} exceeds the {n} training examples")
    epoch, i = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return np.sort(perm[i * batch_size:(i + 1) * batch_size])


def _wrap(model: nn.Module, tcfg: Any, device: torch.device, dist: Dist) -> nn.Module:
    """The module the steps run: DistributedDataParallel under torchrun, then torch.compile if asked."""
    net = model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return amp_mode.maybe_compile(net, tcfg.compile)


def train(model: nn.Module, data: TaskData, tcfg: Any, *, seed: int, device: torch.device, ckpt_dir: Path,
          on_metrics: Callable[[dict, int], None] = lambda m, s: None, dist: Dist = Dist(),
          resume: Optional[tuple[Path, dict]] = None, commit: Optional[str] = None) -> TrainResult:
    """Train for `tcfg.max_steps` steps into `ckpt_dir`, continuing `resume` = (the folder it
    was read from, the training state loaded from it) when given, else from scratch.
    `commit` (the code's git commit) joins the checkpointed list of commits that trained
    when this process has steps to train."""
    model.to(device)
    precision = amp_mode.resolve(tcfg.precision, device)
    scaler = amp_mode.grad_scaler(precision, device)
    net = _wrap(model, tcfg, device, dist)
    opt, sched = make_optimizer(model, tcfg)
    eval_bs = tcfg.eval_batch_size or tcfg.batch_size
    if dist.rank > 0:  # each process its own dropout stream; rank 0 keeps the single-process one
        torch.manual_seed(seed * 1_000_003 + dist.rank)
    # everything the next step and the final record depend on besides weights, optimizer and RNG
    s = {"step": 0, "best_val_accuracy": -1.0, "best_step": 0, "history": [], "span": [0.0, 0.0, 0.0],
         "skipped_steps": 0, "nonfinite_run": 0, "throughput": None, "peak_memory_bytes": 0, "wall_s": 0.0,
         "commits": []}
    resumed_from = None
    source, state = resume if resume is not None else (None, None)
    if state is None and dist.is_main:  # a fresh start never falls back to an older run's files
        clear(ckpt_dir)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"], dist)
        s.update({k: state[k] for k in s if k in state})
        if "commits" not in state and s["step"] > 0:  # trained before checkpoints kept their commits
            s["commits"] = [None]  # unknown
        resumed_from = s["step"]
        if dist.is_main:  # from another run's folder, the best weights so far come along
            copy_best(source, ckpt_dir, s["best_step"])
        log.info("resumed from %s at step %d (best val accuracy %.4f at step %d)", source, s["step"],
                 s["best_val_accuracy"], s["best_step"])
    if commit is not None and s["step"] < tcfg.max_steps and s["commits"][-1:] != [commit]:
        s["commits"] = s["commits"] + [commit]  # a re-entered finished run trains nothing: not added
    kept_best = {s["best_step"]}  # the best weights the newest checkpoint points at

    def evaluation(split: Any, max_batches: Optional[int]) -> dict:
        try:
            return evaluate(model, split, eval_bs, device, max_batches, amp_mode.autocast(precision, device), dist)
        except OutOfMemory as exc:
            exc.step = s["step"]
            raise

    def checkpoint() -> None:
        rngs = dist.gather(rng_state())  # every process's RNG state, on rank 0
        s.update(throughput=meter.state(), peak_memory_bytes=max(s["peak_memory_bytes"], peak_memory_bytes(device)),
                 wall_s=earlier_wall_s + time.perf_counter() - t0)
        if dist.is_main:
            save_training_state(ckpt_dir, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                           "scheduler": sched.state_dict(), "rng": rngs,
                                           "scaler": scaler.state_dict() if scaler is not None else None, **s})
            prune_best(ckpt_dir, kept_best | {s["best_step"]})  # what last.pt and prev.pt point at
        kept_best.clear()
        kept_best.add(s["best_step"])
        dist.barrier()

    meter = Throughput(device)
    if s["throughput"]:
        meter.load(s["throughput"])
    peak_kind = reset_peak_memory(device)
    t0, earlier_wall_s = time.perf_counter(), s["wall_s"]
    bar = tqdm(total=tcfg.max_steps, initial=s["step"], desc="train", disable=not (tcfg.progress and dist.is_main),
               dynamic_ncols=True)
    with StopSignals() as stop:
        while s["step"] < tcfg.max_steps:
            rows = dist.shard(train_indices(len(data.train), tcfg.batch_size, seed, s["step"]))
            x, y = data.train.batch(rows)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            net.train()
            meter.start()
            try:
                logits, loss = forward_backward(net, opt, x, y, amp_mode.autocast(precision, device), scaler)
            except Exception as exc:
                if is_out_of_memory(exc):
                    raise OutOfMemory("training step", x.shape, exc, s["step"] + 1) from exc
                raise
            # one reduction per step: the batch's loss and hits, and whether any process was told to stop
            loss_sum, hits, count, stop_flag = dist.sum(
                [loss.item() * len(y), (logits.argmax(-1) == y).sum().item(), len(y), float(stop.requested)], device)
            s["step"] += 1
            # a non-finite gradient with a finite loss would put NaN in the weights just the same
            norm = unscale_and_clip(net, opt, tcfg.grad_clip, scaler) if math.isfinite(loss_sum) else math.nan
            if not math.isfinite(loss_sum) or not (math.isfinite(norm) or scaler is not None):
                bad = ("loss", loss_sum / count) if not math.isfinite(loss_sum) else ("gradient norm", norm)
                _nonfinite(s, tcfg, bad, opt, sched)
            else:
                apply_update(opt, sched, scaler)
                s["nonfinite_run"] = 0
                span = s["span"]
                span[0], span[1], span[2] = span[0] + loss_sum, span[1] + hits, span[2] + count
            meter.stop(examples=int(count), tokens=x.numel() * dist.world_size)
            bar.update(1)
            if s["step"] % tcfg.log_every == 0 and s["span"][2]:
                bar.set_postfix(loss=f"{s['span'][0] / s['span'][2]:.3f}", lr=f"{sched.get_last_lr()[0]:.2e}")
            if s["step"] % tcfg.eval_every == 0 or s["step"] == tcfg.max_steps:
                _evaluate_and_keep_best(s, evaluation(data.val, tcfg.eval_max_batches), sched, meter, device, model,
                                        ckpt_dir, dist, on_metrics)
            saved = s["step"] % tcfg.checkpoint_every == 0 or s["step"] == tcfg.max_steps
            if saved:
                checkpoint()
            # one process reacts at once; several act on the flag they agreed on at this step's reduction
            if stop_flag or (stop.requested and not dist.enabled):
                if not saved:
                    checkpoint()
                bar.close()
                raise Preempted(s["step"], stop.signame or "a signal to another process", ckpt_dir)
    bar.close()

    dist.barrier()  # rank 0 has written the best weights
    model.load_state_dict(load_best(ckpt_dir, s["best_step"], device))
    if dist.is_main:
        publish_best(ckpt_dir, s["best_step"])
    test = evaluation(data.test, None)
    log.info("test accuracy %.4f with the weights of step %d (best val accuracy %.4f)",
             test["accuracy"], s["best_step"], s["best_val_accuracy"])
    return TrainResult(steps=s["step"], best_val_accuracy=s["best_val_accuracy"], best_step=s["best_step"],
                       test_accuracy=test["accuracy"], test_loss=test["loss"], throughput=meter.rates(),
                       peak_memory_bytes=max(s["peak_memory_bytes"], peak_memory_bytes(device)),
                       resumed_from=resumed_from, history=s["history"], peak_memory_kind=peak_kind,
                       skipped_steps=s["skipped_steps"], precision=precision,
                       train_wall_s=earlier_wall_s + time.perf_counter() - t0, trained_at_commits=list(s["commits"]))


def _nonfinite(s: dict, tcfg: Any, bad: tuple[str, float], opt: torch.optim.Optimizer, sched: Any) -> None:
    """A NaN/inf loss or gradient (`bad` = (what, value)): stop (`Diverged`) or, with
    on_nonfinite=skip, drop the step's gradients (the schedule still advances: the lr
    follows the step count)."""
    what, value = bad
    if tcfg.on_nonfinite == "stop":
        raise Diverged(s["step"], value, what)
    s["skipped_steps"] += 1
    s["nonfinite_run"] += 1
    if s["nonfinite_run"] >= tcfg.max_nonfinite_skips:
        raise Diverged(s["step"], value, what)
    log.warning("%s %s at step %d: step skipped (%d in a row)", what, value, s["step"], s["nonfinite_run"])
    opt.zero_grad(set_to_none=True)
    sched.step()


def _evaluate_and_keep_best(s: dict, val: dict, sched: Any, meter: Throughput, device: torch.device,
                            model: nn.Module, ckpt_dir: Path, dist: Dist, on_metrics: Callable) -> None:
    """Record the val metrics of this step and save the weights when they are the best so far."""
    span = s["span"]
    metrics = {"step": s["step"], "train_loss": span[0] / span[2] if span[2] else float("nan"),
               "train_accuracy": span[1] / span[2] if span[2] else float("nan"),
               "val_loss": val["loss"], "val_accuracy": val["accuracy"], "lr": sched.get_last_lr()[0],
               "peak_memory_bytes": peak_memory_bytes(device), **meter.rates()}
    s["span"] = [0.0, 0.0, 0.0]
    if val["accuracy"] > s["best_val_accuracy"]:
        s["best_val_accuracy"], s["best_step"] = val["accuracy"], s["step"]
        if dist.is_main:
            save_best(ckpt_dir, s["step"], model.state_dict())
    s["history"].append(metrics)
    if dist.is_main:
        on_metrics(metrics, s["step"])
    log.info("step %d: train loss %.4f, val loss %.4f, val acc %.4f (best %.4f @ %d), %.1f ex/s", s["step"],
             metrics["train_loss"], val["loss"], val["accuracy"], s["best_val_accuracy"], s["best_step"],
             metrics["examples_per_s"])
