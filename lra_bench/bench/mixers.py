"""The modules the attention benchmark times: the `conf/attn/` mixers and a projections-only bound.

Mixers are built exactly as a run builds them: the YAML file's `_target_` and options,
instantiated by Hydra with the benchmark's hidden size and head count and no dropout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import hydra.utils
import torch
from omegaconf import OmegaConf
from torch import nn

from lra_bench.cli import CONF_DIR, available
from lra_bench.errors import ConfigError

PROJECTIONS = "projections"
SOFTMAX = "softmax"


class Projections(nn.Module):
    """The four hidden x hidden projections (q, k, v, out) of an attention layer, and nothing else.

    `out(q(x) + k(x) + v(x))` costs what those four matmuls cost, so its time and memory
    bound from below any mixer built from the same projections: the ratio of a mixer to
    this row is the price of its token-mixing step itself.
    """

    def __init__(self, hidden_dim: int, num_heads: int = 8, dropout: float = 0.0):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(hidden_dim, hidden_dim) for _ in range(4))

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, return_attention: bool = False):
        out = self.out_proj(self.q_proj(x) + self.k_proj(x) + self.v_proj(x))
        return (out, None) if return_attention else out


def mixer_names(conf_dir: Path = CONF_DIR) -> list[str]:
    """Every mixer config in `conf/attn/`, sorted."""
    return available("attn", conf_dir)


def check_names(names: Iterable[str], conf_dir: Path = CONF_DIR) -> list[str]:
    """`names` without duplicates, in order; a ConfigError naming the unknown ones and the choices."""
    choices = mixer_names(conf_dir)
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in choices and n != PROJECTIONS]
    if unknown:
        raise ConfigError(f"unknown --attn {', '.join(unknown)}; available: {', '.join(choices)} "
                          f"(from {conf_dir / 'attn'})")
    if not names:
        raise ConfigError(f"no mixers given; available: {', '.join(choices)}")
    return names


def build_mixer(name: str, hidden_dim: int, num_heads: int, conf_dir: Path = CONF_DIR) -> nn.Module:
    """The module `attn=<name>` would put in a model, or `Projections` for `projections`."""
    if name == PROJECTIONS:
        return Projections(hidden_dim, num_heads)
    node = OmegaConf.load(conf_dir / "attn" / f"{name}.yaml")
    return hydra.utils.instantiate(node, hidden_dim=hidden_dim, num_heads=num_heads, dropout=0.0)
