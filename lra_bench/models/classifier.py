"""Sequence classifiers for the LRA tasks: encoder -> pool -> MLP head.

`Classifier` serves the single-input tasks; `DualClassifier` the two-document Retrieval
task (one shared encoder, LRA's dual head). Pooling is LRA's: `cls` prepends a learned
vector and reads its output, `mean` averages the outputs of real (unpadded) tokens. With
`spec.pad_id = None` (images, Pathfinder) every position is real: no mask at all.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict, Optional

import torch
from torch import nn

from lra_bench.data.spec import TaskSpec
from lra_bench.models.encoder import Encoder

INTERACTIONS = ("concat", "nli")


class PooledEncoder(nn.Module):
    """Tokens (B, L) -> one vector per sequence (B, D): embeddings, encoder, pooling."""

    def __init__(self, spec: TaskSpec, make_mixer: Callable[[], nn.Module], hidden_dim: int, num_layers: int,
                 mlp_dim: int, dropout: float, pooling: str = "cls", norm: str = "pre"):
        super().__init__()
        self.pad_id, self.pooling = spec.pad_id, pooling
        extra = 1 if pooling == "cls" else 0
        self.encoder = Encoder(spec.vocab_size, spec.max_length + extra, hidden_dim, num_layers, mlp_dim,
                               dropout, norm, make_mixer)
        self.cls = nn.Parameter(torch.zeros(1, 1, hidden_dim)) if pooling == "cls" else None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask: Optional[torch.Tensor] = None if self.pad_id is None else tokens != self.pad_id  # True at real tokens
        if mask is not None and self.cls is not None:
            mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)  # (B, 1 + L)
        h = self.encoder(tokens, mask, prefix=self.cls)  # (B, L', D)
        if self.pooling == "cls":
            return h[:, 0]
        if mask is None:
            return h.mean(1)
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


class Classifier(PooledEncoder):
    """Single-input tasks; the head is LRA's: Dense(mlp) -> ReLU -> Dense(C)."""

    def __init__(self, spec: TaskSpec, make_mixer: Callable[[], nn.Module], hidden_dim: int, num_layers: int,
                 mlp_dim: int, dropout: float, pooling: str = "cls", norm: str = "pre"):
        super().__init__(spec, make_mixer, hidden_dim, num_layers, mlp_dim, dropout, pooling, norm)
        self.head = nn.Sequential(nn.Linear(hidden_dim, mlp_dim), nn.ReLU(), nn.Linear(mlp_dim, spec.num_classes))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, L) ids (`pad_id` at padding) -> logits (B, C)."""
        return self.head(super().forward(tokens))


class DualClassifier(nn.Module):
    """Two documents per example through one shared encoder, then LRA's dual head
    (`classifier_head_dual`): the pooled vectors a, b are combined as [a, b] (`concat`)
    or [a, b, a * b, a - b] (`nli`), then Dense(mlp) -> ReLU -> Dense(mlp // 2) -> ReLU -> Dense(C)."""

    def __init__(self, spec: TaskSpec, make_mixer: Callable[[], nn.Module], hidden_dim: int, num_layers: int,
                 mlp_dim: int, dropout: float, pooling: str = "cls", norm: str = "pre",
                 interaction: str = "concat"):
        super().__init__()
        if interaction not in INTERACTIONS:
            raise ValueError(f"interaction={interaction!r} is not one of {', '.join(INTERACTIONS)}")
        self.interaction = interaction
        self.body = PooledEncoder(spec, make_mixer, hidden_dim, num_layers, mlp_dim, dropout, pooling, norm)
        width = hidden_dim * (4 if interaction == "nli" else 2)
        self.head = nn.Sequential(nn.Linear(width, mlp_dim), nn.ReLU(), nn.Linear(mlp_dim, mlp_dim // 2), nn.ReLU(),
                                  nn.Linear(mlp_dim // 2, spec.num_classes))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, 2, L) -> logits (B, C). Both documents go through the encoder as one batch."""
        if tokens.dim() != 3 or tokens.shape[1] != 2:
            raise ValueError(f"a dual-input model takes (batch, 2, length) tokens, got shape {tuple(tokens.shape)}")
        batch = tokens.shape[0]
        pooled = self.body(tokens.transpose(0, 1).reshape(2 * batch, -1))  # (2B, D): all firsts, then all seconds
        a, b = pooled[:batch], pooled[batch:]
        parts = [a, b, a * b, a - b] if self.interaction == "nli" else [a, b]
        return self.head(torch.cat(parts, dim=-1))


def build_model(spec: TaskSpec, model_cfg: Any, attn_cls: type, attn_kwargs: Dict[str, Any]) -> nn.Module:
    """The classifier for `spec` (dual-input tasks get `DualClassifier`) with `attn_cls` mixers."""
    make_mixer = partial(attn_cls, hidden_dim=model_cfg.hidden_dim, num_heads=model_cfg.num_heads,
                         dropout=model_cfg.attention_dropout, **attn_kwargs)
    common = dict(hidden_dim=model_cfg.hidden_dim, num_layers=model_cfg.num_layers, mlp_dim=model_cfg.mlp_dim,
                  dropout=model_cfg.dropout, pooling=model_cfg.pooling, norm=model_cfg.norm)
    if spec.dual_input:
        return DualClassifier(spec, make_mixer, interaction=model_cfg.get("interaction", "concat"), **common)
    return Classifier(spec, make_mixer, **common)
