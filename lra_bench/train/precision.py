"""Mixed precision and compilation for a training run (`trainer.precision`, `trainer.compile`).

`precision=auto` is bf16 autocast on CUDA devices with native bf16 (Ampere and later) and
float32 elsewhere
(CPU autocast is opt-in: `trainer.precision=bf16`). fp16 adds a gradient scaler and needs
CUDA. Weights, optimizer state and the loss stay float32 in every mode, and the LST layers
run their transforms in float32 inside autocast (lra_bench.attention.lst_core).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, ContextManager, Optional

import torch

from lra_bench.errors import ConfigError

log = logging.getLogger(__name__)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve(precision: str, device: torch.device) -> str:
    """The precision a run uses: `auto` made concrete for `device`, others checked against it."""
    native_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    if precision == "auto":
        return "bf16" if native_bf16 else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"trainer.precision=fp16 needs a CUDA device, not {device}; use trainer.precision=bf16 "
                          "or fp32")
    if precision == "bf16" and device.type == "cuda" and not native_bf16:
        raise ConfigError(f"trainer.precision=bf16: {torch.cuda.get_device_name(device)} has no native bfloat16; "
                          "use trainer.precision=fp16 or fp32")
    return precision


def autocast(precision: str, device: torch.device) -> ContextManager:
    """The autocast context for forward passes at `precision` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> Optional[Any]:
    """A gradient scaler for fp16 (None otherwise)."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def maybe_compile(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """`torch.compile(model)` when asked; the original module keeps the weights and state_dict keys."""
    if not enabled:
        return model
    log.info("compiling the model with torch.compile (the first steps are slow)")
    return torch.compile(model)
