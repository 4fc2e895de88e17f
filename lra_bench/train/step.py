"""One training step and one evaluation pass: the pieces the loop (and the speed benchmark) share."""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lra_bench.data.spec import Split
from lra_bench.train.distributed import Dist
from lra_bench.train.metrics import is_out_of_memory
from lra_bench.train.schedule import lr_factor


class OutOfMemory(RuntimeError):
    """Out of memory, with where it happened and the shape of the batch that did not fit."""

    def __init__(self, phase: str, shape: tuple, cause: BaseException, step: Optional[int] = None):
        super().__init__(phase)
        self.phase, self.shape, self.step = phase, [int(s) for s in shape], step
        self.cause = " ".join(str(cause).split())[:300]

    def __str__(self) -> str:
        where = self.phase if self.step is None else f"{self.phase} at step {self.step}"
        return f"out of memory in {where} with input shape {self.shape}: {self.cause}"


def make_optimizer(model: nn.Module, tcfg: Any) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW and its learning-rate schedule from the trainer config (`trainer.*`)."""
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, betas=tuple(tcfg.betas), eps=tcfg.eps,
                            weight_decay=tcfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_factor(tcfg.schedule, tcfg.warmup_steps, tcfg.max_steps, tcfg.min_lr_ratio))
    return opt, sched


def forward_backward(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                     amp: Optional[ContextManager] = None, scaler: Optional[Any] = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward (under `amp`), float32 cross-entropy and backward into cleared gradients: (logits, loss)."""
    with amp or contextlib.nullcontext():
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    return logits, loss


def unscale_and_clip(model: nn.Module, opt: torch.optim.Optimizer, grad_clip: float,
                     scaler: Optional[Any] = None) -> float:
    """Unscale fp16 gradients, clip them to `grad_clip` (when > 0) and return their total
    norm before clipping: a non-finite norm means the step must not be applied (under the
    fp16 scaler inf gradients are routine and its step skips them itself)."""
    if scaler is not None:
        scaler.unscale_(opt)
    params = [p for p in model.parameters() if p.grad is not None]
    norm = nn.utils.get_total_norm([p.grad for p in params])
    if grad_clip > 0:
        nn.utils.clip_grads_with_norm_(params, grad_clip, norm)
    return float(norm)


def apply_update(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
                 scaler: Optional[Any] = None) -> None:
    """The AdamW step (through the fp16 scaler) and the schedule step."""
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    sched.step()


def train_step(model: nn.Module, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
               x: torch.Tensor, y: torch.Tensor, grad_clip: float, amp: Optional[ContextManager] = None,
               scaler: Optional[Any] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on the batch (x, y), whatever the loss (the speed benchmark's step): (logits, loss)."""
    logits, loss = forward_backward(model, opt, x, y, amp, scaler)
    unscale_and_clip(model, opt, grad_clip, scaler)
    apply_update(opt, sched, scaler)
    return logits, loss


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int, device: torch.device,
             max_batches: Optional[int] = None, amp: Optional[ContextManager] = None, dist: Dist = Dist()) -> dict:
    """Loss and accuracy over the split (the last partial batch included; with `max_batches`,
    its first max_batches * batch_size examples). With several processes each evaluates a
    contiguous share and the sums are added up, so the result is the single-process one."""
    model.eval()
    limit = len(split) if max_batches is None else min(len(split), max_batches * batch_size)
    lo, hi = limit * dist.rank // dist.world_size, limit * (dist.rank + 1) // dist.world_size
    total, correct, loss_sum = 0, 0, 0.0
    for start in range(lo, hi, batch_size):
        x, y = split.batch(np.arange(start, min(start + batch_size, hi)))
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        try:
            with amp or contextlib.nullcontext():
                logits = model(x)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise OutOfMemory("evaluation", x.shape, exc) from exc
            raise
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += int((logits.argmax(-1) == y).sum().item())
        total += len(y)
    loss_sum, correct, total = dist.sum([loss_sum, correct, total], device)
    return {"loss": loss_sum / max(total, 1), "accuracy": correct / max(total, 1), "examples": int(total)}
