"""What a task hands to the model and the loop: token arrays per split and a TaskSpec."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np
import torch


@dataclass(frozen=True)
class TaskSpec:
    """Shape facts the model is built from.

    `pad_id` is the token id of padding (masked out of attention and mean pooling), or
    None when every position is real (images, Pathfinder: pixel 0 is a value, not padding).
    `dual_input` tasks (retrieval) hold two sequences per example: inputs (N, 2, L).
    """

    name: str
    vocab_size: int
    max_length: int
    num_classes: int
    pad_id: Optional[int] = 0
    dual_input: bool = False


@dataclass
class Split:
    """One split: `inputs` (N, L) -- or (N, 2, L) for dual-input tasks -- integer tokens
    (array or memmap), `labels` (N,) ints."""

    inputs: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.labels):
            raise ValueError(f"inputs ({len(self.inputs)}) and labels ({len(self.labels)}) differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather rows `index` as int64 tensors (B, L) or (B, 2, L), and (B,)."""
        index = np.asarray(index)
        return (torch.from_numpy(np.asarray(self.inputs[index], dtype=np.int64)),
                torch.from_numpy(np.asarray(self.labels[index], dtype=np.int64)))


@dataclass
class TaskData:
    train: Split
    val: Split
    test: Split
    spec: TaskSpec
    info: Dict[str, Any] = field(default_factory=dict)
