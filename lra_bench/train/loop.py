"""The training loop: step, evaluate on val, checkpoint, and test the best-val weights.

Data order is a pure function of (seed, step): batch `s` is slice `s % n` of epoch
`s // n`'s permutation drawn from `seed + epoch`. Together with the RNG state in the
checkpoint this makes a resumed run continue exactly where the interrupted one was.
The test split is evaluated once, at the end, with the weights of the best val step.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lra_bench.data.spec import Split, TaskData
from lra_bench.train.checkpoint import atomic_save, load_training_state, rng_state, save_training_state, set_rng_state
from lra_bench.train.metrics import Throughput, peak_memory_bytes, reset_peak_memory
from lra_bench.train.schedule import lr_factor

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    def __init__(self, step: int, loss: float):
        super().__init__(f"loss became {loss} at step {step}")
        self.step, self.loss = step, loss


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


def train_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Row indices of training batch `step` (drop-last epochs of seeded permutations)."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"trainer.batch_size={batch_size} exceeds the {n} training examples")
    epoch, i = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return np.sort(perm[i * batch_size:(i + 1) * batch_size])


def make_optimizer(model: nn.Module, tcfg: Any) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW and its learning-rate schedule from the trainer config (`trainer.*`)."""
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, betas=tuple(tcfg.betas), eps=tcfg.eps,
                            weight_decay=tcfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_factor(tcfg.schedule, tcfg.warmup_steps, tcfg.max_steps, tcfg.min_lr_ratio))
    return opt, sched


def train_step(model: nn.Module, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
               x: torch.Tensor, y: torch.Tensor, grad_clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on the batch (x, y): forward, cross-entropy, backward, gradient
    clipping (when grad_clip > 0), AdamW and schedule steps. Returns (logits, loss)."""
    logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    sched.step()
    return logits, loss


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int, device: torch.device,
             max_batches: Optional[int] = None) -> dict:
    """Loss and accuracy over the whole split (the last partial batch included)."""
    model.eval()
    total, correct, loss_sum = 0, 0, 0.0
    for b, start in enumerate(range(0, len(split), batch_size)):
        if max_batches is not None and b >= max_batches:
            break
        x, y = split.batch(np.arange(start, min(start + batch_size, len(split))))
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
        total += len(y)
    return {"loss": loss_sum / max(total, 1), "accuracy": correct / max(total, 1), "examples": total}


def train(model: nn.Module, data: TaskData, tcfg: Any, *, seed: int, device: torch.device, ckpt_dir: Path,
          on_metrics: Callable[[dict, int], None] = lambda m, s: None) -> TrainResult:
    """Train for `tcfg.max_steps` steps, resuming from `ckpt_dir` when it holds a checkpoint."""
    model.to(device)
    opt, sched = make_optimizer(model, tcfg)
    eval_bs = tcfg.eval_batch_size or tcfg.batch_size
    step, best_acc, best_step, history, resumed_from = 0, -1.0, 0, [], None

    state = load_training_state(ckpt_dir) if tcfg.resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        step, best_acc, best_step, history = state["step"], state["best_val_accuracy"], state["best_step"], state["history"]
        resumed_from = step
        log.info("resumed from %s at step %d (best val accuracy %.4f at step %d)", ckpt_dir, step, best_acc, best_step)

    def checkpoint() -> None:
        save_training_state(ckpt_dir, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                       "scheduler": sched.state_dict(), "rng": rng_state(), "step": step,
                                       "best_val_accuracy": best_acc, "best_step": best_step, "history": history})

    meter = Throughput(device)
    peak_kind = reset_peak_memory(device)
    span_loss, span_correct, span_n = 0.0, 0, 0
    bar = tqdm(total=tcfg.max_steps, initial=step, desc="train", disable=not tcfg.progress, dynamic_ncols=True)
    while step < tcfg.max_steps:
        x, y = data.train.batch(train_indices(len(data.train), tcfg.batch_size, seed, step))
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        model.train()
        meter.start()
        logits, loss = train_step(model, opt, sched, x, y, tcfg.grad_clip)
        meter.stop(examples=x.shape[0], tokens=x.numel())
        step += 1
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise Diverged(step, loss_value)
        span_loss += loss_value * len(y)
        span_correct += (logits.argmax(-1) == y).sum().item()
        span_n += len(y)
        bar.update(1)
        if step % tcfg.log_every == 0:
            bar.set_postfix(loss=f"{span_loss / span_n:.3f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        if step % tcfg.eval_every == 0 or step == tcfg.max_steps:
            val = evaluate(model, data.val, eval_bs, device, tcfg.eval_max_batches)
            metrics = {"step": step, "train_loss": span_loss / span_n, "train_accuracy": span_correct / span_n,
                       "val_loss": val["loss"], "val_accuracy": val["accuracy"], "lr": sched.get_last_lr()[0],
                       "peak_memory_bytes": peak_memory_bytes(device), **meter.rates()}
            span_loss, span_correct, span_n = 0.0, 0, 0
            if val["accuracy"] > best_acc:
                best_acc, best_step = val["accuracy"], step
                atomic_save(model.state_dict(), ckpt_dir / "best.pt")
            history.append(metrics)
            on_metrics(metrics, step)
            log.info("step %d: train loss %.4f, val loss %.4f, val acc %.4f (best %.4f @ %d), %.1f ex/s",
                     step, metrics["train_loss"], val["loss"], val["accuracy"], best_acc, best_step,
                     metrics["examples_per_s"])
        if step % tcfg.checkpoint_every == 0 or step == tcfg.max_steps:
            checkpoint()
    bar.close()

    model.load_state_dict(torch.load(ckpt_dir / "best.pt", map_location=device, weights_only=True))
    test = evaluate(model, data.test, eval_bs, device)
    log.info("test accuracy %.4f with the weights of step %d (best val accuracy %.4f)",
             test["accuracy"], best_step, best_acc)
    return TrainResult(steps=step, best_val_accuracy=best_acc, best_step=best_step, test_accuracy=test["accuracy"],
                       test_loss=test["loss"], throughput=meter.rates(), peak_memory_bytes=peak_memory_bytes(device),
                       resumed_from=resumed_from, history=history, peak_memory_kind=peak_kind)
