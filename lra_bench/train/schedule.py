"""Learning-rate schedules as multiplicative factors of `trainer.lr` (LRA's factor form).

`rsqrt` is LRA's "constant * linear_warmup * rsqrt_decay": lr * min(1, t/warmup) /
sqrt(max(t, warmup)), so with LRA's lr=0.05 and warmup=1000 the peak is ~1.6e-3.
`cosine` warms up linearly to lr and decays to lr * min_lr_ratio at max_steps.
t counts optimizer steps from 1 (the step being taken).
"""
from __future__ import annotations

import math
from typing import Callable


def lr_factor(schedule: str, warmup_steps: int, max_steps: int, min_lr_ratio: float = 0.0) -> Callable[[int], float]:
    def warmup(t: int) -> float:
        return min(1.0, t / warmup_steps) if warmup_steps > 0 else 1.0

    def rsqrt(step: int) -> float:
        t = step + 1
        return warmup(t) / math.sqrt(max(t, warmup_steps, 1))

    def cosine(step: int) -> float:
        t = step + 1
        if t <= warmup_steps:
            return warmup(t)
        progress = min(1.0, (t - warmup_steps) / max(1, max_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def constant(step: int) -> float:
        return warmup(step + 1)

    try:
        return {"rsqrt": rsqrt, "cosine": cosine, "constant": constant}[schedule]
    except KeyError:
        raise ValueError(f"unknown schedule {schedule!r}") from None
