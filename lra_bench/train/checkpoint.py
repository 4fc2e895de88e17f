"""Atomic checkpoints: written to a temporary file, then renamed over the target.

The previous `last.pt` is kept as `prev.pt`, so a checkpoint that fails to load (a
truncated file, a disk error) falls back to the one before it.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from lra_bench.io import atomic_write

log = logging.getLogger(__name__)


def atomic_save(obj: Any, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(ckpt_dir: Path, state: dict) -> None:
    last, prev = ckpt_dir / "last.pt", ckpt_dir / "prev.pt"
    if last.exists():
        os.replace(last, prev)
    atomic_save(state, last)


def load_training_state(ckpt_dir: Path) -> Optional[dict]:
    """The newest loadable training state in `ckpt_dir`, or None when there is none."""
    for path in (ckpt_dir / "last.pt", ckpt_dir / "prev.pt"):
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            if not isinstance(state, dict) or "step" not in state:
                raise ValueError("not a training state")
            return state
        except Exception as exc:  # a corrupt file can fail in many ways inside torch.load
            log.warning("checkpoint %s is unreadable (%s); trying an older one", path, exc)
    return None
