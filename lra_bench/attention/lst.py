"""Linear Spectral Transform (LST) attention, with the API of spectrans' LSTAttention,
DCTAttention and HadamardAttention (spectrans.layers.attention.lst).

Per head h, with T an orthonormal transform along the sequence (DCT-II, DST-II or
Walsh-Hadamard): A = T(Q) * T(K) * scale[h], O = A * T(V), optionally
O /= sum_d |A| + 1e-6, out_h = T^-1(O); heads are concatenated, projected by
`out_proj` and dropped out. The token mixing costs O(n log n) instead of softmax
attention's O(n^2) (cf. FNet, Lee-Thorp et al., NAACL 2022; evaluated on Long Range
Arena, Tay et al., ICLR 2021).

Differences from the reference, all on purpose: real O(n log n) transforms batched over
heads (lra_bench.transforms), a custom autograd core that saves three spectra instead of
every intermediate, Hadamard at any length (zero-padded to a power of two as padding
tokens), `dct_type` 1-4 honoured, and padding masks that keep padded positions from
influencing real ones (the reference multiplies by the transformed mask, which does
not). With the same weights and an unmasked power-of-two input, outputs equal the
reference's; its state_dict keys (q_proj, k_proj, v_proj, out_proj, scale) load as is.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from lra_bench.attention import lst_tokens
from lra_bench.attention.lst_core import batched, gather_tokens, spectral_core, sum_of_products
from lra_bench.transforms.cosine import DCT_TYPES
from lra_bench.transforms.hadamard import is_pow2
from lra_bench.transforms.spectral import FastDCT2, Fourier, MixedBasis, basis, makhoul_perm, transform_pair

TRANSFORM_TYPES = ("dct", "dst", "hadamard", "mixed")
MIXED_CYCLE = ("dct", "dst", "hadamard")


class SpectralTransform(nn.Module):
    """A parameter-free transform along one axis (the modules in `LSTAttention.transforms`)."""

    def __init__(self, kind: str, dct_type: int = 2):
        super().__init__()
        self.kind, self.dct_type = kind, dct_type
        self.basis = basis(kind, dct_type)
        self._forward, self._inverse = transform_pair(kind, dct_type)

    def transform(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return self._forward(x.transpose(dim, -1)).transpose(dim, -1)

    def inverse_transform(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return self._inverse(x.transpose(dim, -1)).transpose(dim, -1)

    def extra_repr(self) -> str:
        return f"{self.kind}" + (f", type={self.dct_type}" if self.kind == "dct" else "")


class _PermuteTokens(torch.autograd.Function):
    """x[:, perm] whose backward is the inverse gather (not a zero-fill and scatter-add)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, perm: torch.Tensor, inv_perm: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inv_perm)
        return gather_tokens(x, perm)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        (inv_perm,) = ctx.saved_tensors
        return gather_tokens(grad, inv_perm), None, None


def permute_tokens(x: torch.Tensor, perm: torch.Tensor, inv_perm: torch.Tensor) -> torch.Tensor:
    """Reorder the token axis (dim 1) of `x` by the permutation `perm` (inverse `inv_perm`)."""
    return _PermuteTokens.apply(x, perm, inv_perm)


class _OutProjection(torch.autograd.Function):
    """y = o^T wo^T (+ bias) per sequence: heads' output o (B, G, L), channels first, to
    tokens (B, L, D).

    Autograd would compute dL/do as (B, L, G) and leave the core a transposed view to copy;
    this backward writes it channels-first, one product per sequence. Products run in the
    forward's dtype (autocast's choice) and gradients come back in the inputs' dtypes."""

    @staticmethod
    def forward(ctx: Any, o: torch.Tensor, wo: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        w = batched(wo.t(), o.shape[0])
        y = torch.bmm(o.transpose(1, 2), w) if bias is None else torch.baddbmm(bias, o.transpose(1, 2), w)
        ctx.save_for_backward(o, wo)
        ctx.dtype, ctx.bias_dtype = y.dtype, None if bias is None else bias.dtype
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: torch.Tensor):
        o, wo = ctx.saved_tensors
        with torch.autocast(dy.device.type, enabled=False):
            dy = dy.to(ctx.dtype)
            d_o = d_wo = d_b = None
            if ctx.needs_input_grad[0]:
                w = batched(wo.to(ctx.dtype).t(), dy.shape[0])
                d_o = torch.bmm(w, dy.transpose(1, 2)).to(o.dtype)  # (B, G, L)
            if ctx.needs_input_grad[1]:
                d_wo = sum_of_products(dy.transpose(1, 2), o.to(ctx.dtype).transpose(1, 2)).to(wo.dtype)
            if ctx.bias_dtype is not None and ctx.needs_input_grad[2]:
                d_b = dy.sum((0, 1)).to(ctx.bias_dtype)
        return d_o, d_wo, d_b


class HeadGroup:
    """Heads sharing one core call: their channels, their basis and their token order.
    `head_kinds` names each head's transform where a group has several (else None)."""

    def __init__(self, kind: str, basis_: Any, heads: list[int], num_heads: int, head_dim: int,
                 head_kinds: Optional[list[str]] = None):
        self.kind, self.basis, self.heads, self.head_kinds = kind, basis_, list(heads), head_kinds
        self.all_heads = heads == list(range(num_heads))  # all, in order: no channel selection
        # q/k/v rows and out_proj columns of these heads, and the heads, per device (copied once)
        self._index = {torch.device("cpu"): (torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim)
                                                         for h in heads]), torch.tensor(heads))}

    def index(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(channels, heads) of this group as index tensors on `device`."""
        if device not in self._index:
            self._index[device] = tuple(t.to(device) for t in self._index[torch.device("cpu")])
        return self._index[device]


def head_groups(kinds: list[str], bases: dict, head_dim: int) -> list[HeadGroup]:
    """One group per transform kind, in first-seen order (heads batched, never looped)."""
    return [HeadGroup(kind, bases[kind], [h for h, k in enumerate(kinds) if k == kind], len(kinds), head_dim)
            for kind in dict.fromkeys(kinds)]


def merge_groups(groups: list[HeadGroup], num_heads: int, head_dim: int, pow2: bool) -> list[HeadGroup]:
    """The groups to run at power-of-two lengths (`pow2`) or at others: the DCT-II/DST-II
    group, the Fourier group and, at power-of-two lengths, the Hadamard group become one
    `MixedBasis` group (heads in their layer order), which projects, reorders and mixes once;
    other groups stay as they are, and so do all when fewer than two of these are present."""
    def kinds_of(g: HeadGroup) -> Optional[list[str]]:
        if isinstance(g.basis, FastDCT2):
            return ["dst" if sine else "dct" for sine in g.basis.sine_flags(len(g.heads))]
        if isinstance(g.basis, Fourier) or (pow2 and g.kind == "hadamard"):
            return [g.kind] * len(g.heads)
        return None

    parts = [g for g in groups if kinds_of(g) is not None]
    if len(parts) < 2:
        return groups
    kind = {h: k for g in parts for h, k in zip(g.heads, kinds_of(g))}
    heads = sorted(kind)
    kinds = [kind[h] for h in heads]
    merged = HeadGroup("+".join(g.kind for g in parts), MixedBasis(kinds), heads, num_heads, head_dim,
                       head_kinds=kinds)
    return [merged if g is parts[0] else g for g in groups if g is parts[0] or g not in parts]


def spectral_heads(x: torch.Tensor, mask: Optional[torch.Tensor], q: nn.Linear, k: nn.Linear, v: nn.Linear,
                   out: nn.Linear, groups: list[HeadGroup], run: Callable,
                   pow2_groups: Optional[list[HeadGroup]] = None) -> torch.Tensor:
    """Mix each head group with `run(group, x, (q, k, v) projections, perms, mask, channels)`
    -> (B, Hg * Dh, L) and project back to (B, L, D), zero at padded positions. At a
    power-of-two length L the groups are `pow2_groups` when given (see `merge_groups`).

    Head outputs stay channels-first, so the transforms run along a contiguous axis, and the
    output projection reads them as a transposed operand (`_OutProjection`). Groups whose basis wants
    Makhoul order get their tokens reordered (perms = (perm, inverse)) and their output
    restored after the projection: cheaper than reordering every transform's input and
    output. A group of some heads uses only its `channels` of the projections.
    """
    L = x.shape[1]
    if pow2_groups is not None and is_pow2(L):
        groups = pow2_groups
    proj = [(lin.weight, lin.bias) for lin in (q, k, v)]
    y = None
    for g in groups:
        perms = makhoul_perm(L, x.device) if g.basis.makhoul_order else None
        wo, channels = out.weight, None
        if not g.all_heads:
            channels = g.index(x.device)[0]
            wo = wo.index_select(1, channels)
        m = mask if mask is None or perms is None else mask.index_select(1, perms[0])
        o = run(g, x, proj, perms, m, channels)  # (B, Dg, L), float32
        if not torch.is_autocast_enabled(x.device.type):
            o = o.to(wo.dtype)
        bias = out.bias if y is None else None  # the bias, added once (it commutes with reordering)
        yg = _OutProjection.apply(o, wo, bias)  # (B, L, D); autocast picks the dtype
        if perms is not None:
            yg = permute_tokens(yg, perms[1], perms[0])
        y = yg if y is None else y + yg
    if mask is not None:
        y = y * mask.unsqueeze(-1).to(y.dtype)
    return y


class LSTAttention(nn.Module):
    supports_mask = True
    complexity = "O(n log n)"

    def __init__(self, hidden_dim: int, num_heads: int = 8, transform_type: str = "dct", learnable_scale: bool = True,
                 normalize: bool = True, dropout: float = 0.0, use_bias: bool = True):
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim={hidden_dim} is not divisible by num_heads={num_heads}")
        if transform_type not in TRANSFORM_TYPES:
            raise ValueError(f"transform_type={transform_type!r} is not one of {', '.join(TRANSFORM_TYPES)}")
        self.hidden_dim, self.num_heads, self.head_dim = hidden_dim, num_heads, hidden_dim // num_heads
        self.transform_type, self.normalize = transform_type, normalize
        self.q_proj = nn.Linear(hidden_dim, hidden_dim, bias=use_bias)
        self.k_proj = nn.Linear(hidden_dim, hidden_dim, bias=use_bias)
        self.v_proj = nn.Linear(hidden_dim, hidden_dim, bias=use_bias)
        self.out_proj = nn.Linear(hidden_dim, hidden_dim, bias=use_bias)
        self.dropout = nn.Dropout(dropout)
        kinds = [MIXED_CYCLE[h % 3] if transform_type == "mixed" else transform_type for h in range(num_heads)]
        self._build_transforms(kinds, dct_type=2)
        ones = torch.ones(num_heads, 1, self.head_dim)
        if learnable_scale:
            self.scale = nn.Parameter(ones)
        else:
            self.register_buffer("scale", ones)

    def _build_transforms(self, kinds: list[str], dct_type: int) -> None:
        shared = {kind: SpectralTransform(kind, dct_type) for kind in dict.fromkeys(kinds)}
        self.transforms = nn.ModuleList(shared[k] for k in kinds)
        # DCT-II and DST-II heads share one group: a DST head is a DCT head with signed input/output.
        keys = ["dct/dst" if k in ("dct", "dst") and dct_type == 2 else k for k in kinds]
        bases = {k: t.basis for k, t in shared.items()}
        if "dct/dst" in keys:
            bases["dct/dst"] = FastDCT2(sine=[kind == "dst" for kind, key in zip(kinds, keys) if key == "dct/dst"])
        self._kind_groups = head_groups(keys, bases, self.head_dim)
        self._groups = merge_groups(self._kind_groups, len(kinds), self.head_dim, pow2=False)
        self._pow2_groups = merge_groups(self._kind_groups, len(kinds), self.head_dim, pow2=True)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, return_attention: bool = False):
        if lst_tokens.applies(self, x):  # DCT-II/DST-II heads on CPU: transform the tokens once
            out = self.dropout(lst_tokens.token_lst(self, x, mask))
            return (out, None) if return_attention else out
        scale = self.scale[:, 0]  # (H, Dh)

        def run(g: HeadGroup, x: torch.Tensor, proj: list, perms: Optional[tuple], m: Optional[torch.Tensor],
                channels: Optional[torch.Tensor]) -> torch.Tensor:
            s = scale if g.all_heads else scale.index_select(0, g.index(scale.device)[1])
            return spectral_core(x, *proj, s, m, g.basis, perms, self.normalize, channels=channels)

        out = spectral_heads(x, mask, self.q_proj, self.k_proj, self.v_proj, self.out_proj, self._groups, run,
                             self._pow2_groups)
        out = self.dropout(out)
        return (out, None) if return_attention else out


class DCTAttention(LSTAttention):
    """LST attention with an orthonormal DCT of `dct_type` (1-4) on every head, normalized."""

    def __init__(self, hidden_dim: int, num_heads: int = 8, dct_type: int = 2, learnable_scale: bool = True,
                 dropout: float = 0.0):
        if dct_type not in DCT_TYPES:
            raise ValueError(f"dct_type={dct_type} is not an orthonormal DCT type; use 1, 2, 3 or 4")
        super().__init__(hidden_dim, num_heads, transform_type="dct", learnable_scale=learnable_scale,
                         normalize=True, dropout=dropout)
        self.dct_type = dct_type
        self._build_transforms(["dct"] * num_heads, dct_type)


class HadamardAttention(LSTAttention):
    """LST attention with the Walsh-Hadamard transform on every head; with `scale_by_sqrt`
    the scale starts at 1/sqrt(head_dim)."""

    def __init__(self, hidden_dim: int, num_heads: int = 8, scale_by_sqrt: bool = True, learnable_scale: bool = True,
                 dropout: float = 0.0):
        super().__init__(hidden_dim, num_heads, transform_type="hadamard", learnable_scale=learnable_scale,
                         normalize=True, dropout=dropout)
        self.scale_by_sqrt = scale_by_sqrt
        if scale_by_sqrt:
            with torch.no_grad():
                self.scale.div_(math.sqrt(self.head_dim))
