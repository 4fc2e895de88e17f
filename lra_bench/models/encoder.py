"""Transformer encoder with a pluggable token mixer (LRA's encoder: Tay et al., ICLR 2021)."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn


class FeedForward(nn.Sequential):
    def __init__(self, hidden_dim: int, mlp_dim: int, dropout: float):
        super().__init__(nn.Linear(hidden_dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(mlp_dim, hidden_dim), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    """mixer + feed-forward, each residual; LayerNorm before (pre) or after (post) each."""

    def __init__(self, mixer: nn.Module, hidden_dim: int, mlp_dim: int, dropout: float, norm: str = "pre"):
        super().__init__()
        self.mixer, self.norm = mixer, norm
        self.ln1, self.ln2 = nn.LayerNorm(hidden_dim), nn.LayerNorm(hidden_dim)
        self.drop = nn.Dropout(dropout)
        self.ff = FeedForward(hidden_dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.norm == "pre":
            x = x + self.drop(self.mixer(self.ln1(x), mask=mask))
            return x + self.ff(self.ln2(x))
        x = self.ln1(x + self.drop(self.mixer(x, mask=mask)))
        return self.ln2(x + self.ff(x))


class Encoder(nn.Module):
    """Token + learned position embeddings, `num_layers` blocks, final LayerNorm (pre-norm)."""

    def __init__(self, vocab_size: int, max_positions: int, hidden_dim: int, num_layers: int, mlp_dim: int,
                 dropout: float, norm: str, make_mixer: Callable[[], nn.Module]):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, hidden_dim)
        self.pos = nn.Embedding(max_positions, hidden_dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(EncoderBlock(make_mixer(), hidden_dim, mlp_dim, dropout, norm)
                                    for _ in range(num_layers))
        self.final_ln = nn.LayerNorm(hidden_dim) if norm == "pre" else nn.Identity()

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None,
                prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B, L) ids; prefix: (1, P, D) learned vectors placed before the tokens (e.g. CLS)."""
        h = self.tok(x)  # (B, L, D)
        if prefix is not None:
            h = torch.cat([prefix.expand(h.shape[0], -1, -1), h], dim=1)  # (B, P + L, D)
        if h.shape[1] > self.pos.num_embeddings:
            raise ValueError(f"sequence of {h.shape[1]} positions exceeds the {self.pos.num_embeddings} "
                             f"position embeddings; raise task.max_length")
        h = self.drop(h + self.pos.weight[: h.shape[1]])
        for block in self.blocks:
            h = block(h, mask)
        return self.final_ln(h)
