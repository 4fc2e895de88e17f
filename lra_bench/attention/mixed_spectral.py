"""Mixed spectral attention: heads split round-robin between FFT, DCT and Hadamard
transforms, with the API of spectrans' MixedSpectralAttention.

FFT heads compute T(Q) * conj(T(K)) * scale * T(V) with the unitary DFT and keep the
real part of the inverse (for real inputs that is an irFFT of the half spectrum, so we
compute exactly that, in the same fused, memory-lean core and group as the DCT heads, and
the Hadamard heads at power-of-two lengths); DCT and Hadamard heads compute
T(Q) * T(K) * scale * T(V) and invert. No normalisation. One learnable scale of shape
(1, 1, head_dim) per transform type, in the ParameterDict `scales`. Unlike the reference,
padding masks are honoured and Hadamard heads accept any length (zero-padded to a power of
two).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from lra_bench.attention.lst import HeadGroup, SpectralTransform, head_groups, merge_groups, spectral_heads
from lra_bench.attention.lst_core import spectral_core
from lra_bench.transforms.spectral import basis


class FourierTransform(nn.Module):
    """Unitary DFT along one axis (parameter-free), as spectrans' FFT1D(norm="ortho")."""

    kind = "fft"

    def transform(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return torch.fft.fft(x, dim=dim, norm="ortho")

    def inverse_transform(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return torch.fft.ifft(x, dim=dim, norm="ortho")


class MixedSpectralAttention(nn.Module):
    supports_mask = True
    complexity = "O(n log n)"

    def __init__(self, hidden_dim: int, num_heads: int = 9, use_fft: bool = True, use_dct: bool = True,
                 use_hadamard: bool = True, dropout: float = 0.0):
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim={hidden_dim} is not divisible by num_heads={num_heads}")
        enabled = [t for t, on in (("fft", use_fft), ("dct", use_dct), ("hadamard", use_hadamard)) if on]
        if not enabled:
            raise ValueError("MixedSpectralAttention needs at least one of use_fft, use_dct, use_hadamard")
        self.hidden_dim, self.num_heads, self.head_dim = hidden_dim, num_heads, hidden_dim // num_heads
        self.enabled_transforms = enabled
        self.head_transforms = [enabled[h % len(enabled)] for h in range(num_heads)]
        self.q_proj = nn.Linear(hidden_dim, hidden_dim)
        self.k_proj = nn.Linear(hidden_dim, hidden_dim)
        self.v_proj = nn.Linear(hidden_dim, hidden_dim)
        self.out_proj = nn.Linear(hidden_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.fft = FourierTransform() if use_fft else None
        self.dct = SpectralTransform("dct") if use_dct else None
        self.hadamard = SpectralTransform("hadamard") if use_hadamard else None
        self.scales = nn.ParameterDict({t: nn.Parameter(torch.ones(1, 1, self.head_dim)) for t in enabled})
        bases = {t: basis("fft") if t == "fft" else getattr(self, t).basis for t in enabled}
        self._kind_groups = head_groups(self.head_transforms, bases, self.head_dim)
        self._groups = merge_groups(self._kind_groups, num_heads, self.head_dim, pow2=False)
        self._pow2_groups = merge_groups(self._kind_groups, num_heads, self.head_dim, pow2=True)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, return_attention: bool = False):
        def run(g: HeadGroup, x: torch.Tensor, proj: list, perms: Optional[tuple], m: Optional[torch.Tensor],
                channels: Optional[torch.Tensor]) -> torch.Tensor:
            if g.head_kinds is None:
                scale = self.scales[g.kind][0]  # (1, Dh): one scale for every head of this kind
            else:  # a group of several kinds: (Hg, Dh), each head its kind's scale
                scale = torch.cat([self.scales[kind][0] for kind in g.head_kinds])
            return spectral_core(x, *proj, scale, m, g.basis, perms, normalize=False, channels=channels)

        out = spectral_heads(x, mask, self.q_proj, self.k_proj, self.v_proj, self.out_proj, self._groups, run,
                             self._pow2_groups)
        out = self.dropout(out)
        return (out, None) if return_attention else out
