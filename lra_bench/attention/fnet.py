"""FNet token mixing (Lee-Thorp et al., "FNet: Mixing Tokens with Fourier Transforms", NAACL 2022).

The mixer is the real part of the 2-D DFT over the sequence and hidden axes; it has no
parameters. Padded positions are zeroed before the transform (so their content cannot
reach real positions) and their outputs are zero. The DFT runs over the padded length,
as in FNet's own LRA runs, so the padded length is part of the model's definition.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class FNetMixer(nn.Module):
    supports_mask = True
    complexity = "O(n log n)"

    def __init__(self, hidden_dim: int, num_heads: int = 8, dropout: float = 0.0):
        super().__init__()
        self.hidden_dim, self.num_heads = hidden_dim, num_heads  # heads are unused: FNet mixes all channels
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, return_attention: bool = False):
        dtype = x.dtype
        if mask is not None:
            x = x.masked_fill(~mask[..., None], 0.0)
        with torch.autocast(device_type=x.device.type, enabled=False):
            out = torch.fft.fft2(x.float(), dim=(-2, -1)).real.to(dtype)  # (B, L, D)
        if mask is not None:
            out = out.masked_fill(~mask[..., None], 0.0)
        out = self.dropout(out)
        return (out, None) if return_attention else out
