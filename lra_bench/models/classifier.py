"""Sequence classifier used for every single-input LRA task: encoder -> pool -> MLP head.

Pooling is LRA's: `cls` prepends a learned vector and reads its output, `mean` averages
the outputs of real (unpadded) tokens. The head is LRA's: Dense(mlp) -> ReLU -> Dense(C).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict

import torch
from torch import nn

from lra_bench.data.spec import TaskSpec
from lra_bench.models.encoder import Encoder


class Classifier(nn.Module):
    def __init__(self, spec: TaskSpec, make_mixer: Callable[[], nn.Module], hidden_dim: int, num_layers: int,
                 mlp_dim: int, dropout: float, pooling: str = "cls", norm: str = "pre"):
        super().__init__()
        self.pad_id, self.pooling = spec.pad_id, pooling
        extra = 1 if pooling == "cls" else 0
        self.encoder = Encoder(spec.vocab_size, spec.max_length + extra, hidden_dim, num_layers, mlp_dim,
                               dropout, norm, make_mixer)
        self.cls = nn.Parameter(torch.zeros(1, 1, hidden_dim)) if pooling == "cls" else None
        self.head = nn.Sequential(nn.Linear(hidden_dim, mlp_dim), nn.ReLU(), nn.Linear(mlp_dim, spec.num_classes))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, L) ids with `pad_id` at padding -> logits (B, C)."""
        mask = tokens != self.pad_id  # (B, L) True at real tokens
        if self.cls is not None:
            mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)  # (B, 1 + L)
        h = self.encoder(tokens, mask, prefix=self.cls)  # (B, L', D)
        if self.pooling == "cls":
            pooled = h[:, 0]
        else:
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.head(pooled)


def build_model(spec: TaskSpec, model_cfg: Any, attn_cls: type, attn_kwargs: Dict[str, Any]) -> Classifier:
    """The classifier for `spec` with `attn_cls` mixers sized from the model config."""
    make_mixer = partial(attn_cls, hidden_dim=model_cfg.hidden_dim, num_heads=model_cfg.num_heads,
                         dropout=model_cfg.attention_dropout, **attn_kwargs)
    return Classifier(spec, make_mixer, hidden_dim=model_cfg.hidden_dim, num_layers=model_cfg.num_layers,
                      mlp_dim=model_cfg.mlp_dim, dropout=model_cfg.dropout, pooling=model_cfg.pooling,
                      norm=model_cfg.norm)
