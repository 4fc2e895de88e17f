"""The LST layer's fast CPU path for DCT-II and DST-II heads: transform the tokens once,
project and mix their spectra, and transform back once, all token-major.

T acts along the sequence and the projections along channels, so they commute:
T(mask * (x W^T + b)) = T(mask * x) W^T + T(mask) b^T, and out_proj(T^-1(O)) =
T^-1(O W_o^T) + b_o. A layer whose heads all share T therefore needs one transform of its
D input channels and one inverse of its D output channels per forward, where the general
core (`lst_core`) transforms the 3 x D projected channels and inverts D; the backward needs
three transforms of D channels (the output gradient, the input gradient and the input's
spectra again) where the general core transforms D and inverts 3 x D. The transforms run along the token axis of
token-major data, which torch's FFTs do slowly; the compiled kernel behind
`transforms.cosine_tokens` does it with the Makhoul reordering, the padding mask, the DST
signs, the output bias and the output mask folded into its reads and writes, so the path
needs no token reorders or layout changes at all. The spectra are the genuine real DCT-II
coefficients (no packed half spectrum), so the algebra is the formula's own:
A = Q * K * scale, O = A * V (/ (sum_d |A| + eps)). It runs in one pass each way in
`kernels/mix_tokens.c`, which also adds the projection biases' term T(mask) b^T on the fly
and sums their gradient, so the bias costs no pass of its own either.

The saved state matches the general core's: the three spectra (without their bias term;
the backward reuses their memory for their gradients), the normaliser, and the heads'
mixed spectra for the output projection's weight gradient. `lst_core.retain_spectra()`
makes the backward copy them, for repeated backward passes.

Used by `LSTAttention` (and so `DCTAttention` with `dct_type=2`) when `applies` says so:
one DCT-II or DST-II group of all heads, a CPU float32/float64 input with parameters of the
same dtype, no autocast, an even hidden size (up to about 5400), a length n = 2^a 3^b 5^c
and both compiled kernels. Otherwise the general core runs; both give the same results to
rounding.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Optional

import torch
from torch.autograd.function import once_differentiable

from lra_bench import kernels
from lra_bench.attention import lst_core
from lra_bench.transforms import cosine_tokens
from lra_bench.transforms.spectral import FastDCT2


MAX_STACK_VALUES = 16384  # mix_tokens.c keeps 3 H Dh + 3 Dh values per thread on its stack


def _mix_kernel(dtype: torch.dtype, direction: str) -> Optional[Any]:
    """The compiled mixing step (`kernels/mix_tokens.c`) for dtype, forward or backward."""
    p, i, long, real = kernels.P, kernels.INT, kernels.LONG, kernels.REAL
    argtypes = (p, long, long, long, p, p, p, p, real, i, i) if direction == "forward" else (p, p, p, long, long,
                                                                                            long, p, p, p, p, i, i)
    return kernels.typed_function("mix_tokens", f"mix_{direction}", dtype, argtypes)


def _mix_forward(qkv: torch.Tensor, heads: int, head_dim: int, tm: torch.Tensor, bias: Optional[torch.Tensor],
                 normalize: bool, eps: float):
    """(O (rows, H * Dh), normaliser (rows, H) or None) from the spectra qkv (rows, 3 * H * Dh),
    whose rows take tm[row] * bias on the way (tm: (rows,), the mask's coefficients)."""
    rows = qkv.shape[0]
    qkv, tm, bias = qkv.contiguous(), tm.contiguous(), None if bias is None else bias.contiguous()
    o = qkv.new_empty((rows, heads * head_dim))
    norm = qkv.new_empty((rows, heads)) if normalize else None
    _mix_kernel(qkv.dtype, "forward")(qkv.data_ptr(), rows, heads, head_dim, tm.data_ptr(), kernels.address(bias),
                                      o.data_ptr(), kernels.address(norm), eps, int(normalize), torch.get_num_threads())
    return o, norm


def _mix_backward(qkv: torch.Tensor, grad: torch.Tensor, norm: Optional[torch.Tensor], heads: int, head_dim: int,
                  tm: torch.Tensor, bias: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """dL/d(s * Q, K, V) over qkv in place, from dL/dO `grad` (rows, H * Dh); returns the
    biases' gradient sum_row tm[row] dL/d(row) (3 * H * Dh,) when there is a bias."""
    if not qkv.is_contiguous():
        raise ValueError("the spectra must be contiguous (their gradients are written in place)")
    grad, tm, bias = grad.contiguous(), tm.contiguous(), None if bias is None else bias.contiguous()
    threads = torch.get_num_threads()
    partial = qkv.new_zeros((threads, qkv.shape[1])) if bias is not None else None
    d_bias = qkv.new_empty(qkv.shape[1]) if bias is not None else None
    _mix_kernel(qkv.dtype, "backward")(qkv.data_ptr(), grad.data_ptr(), kernels.address(norm), qkv.shape[0], heads,
                                       head_dim, tm.data_ptr(), kernels.address(bias), kernels.address(partial),
                                       kernels.address(d_bias), int(norm is not None), threads)
    return d_bias


def applies(layer: Any, x: torch.Tensor) -> bool:
    """Whether `layer` (an LSTAttention) can run `x` on the token-major path."""
    groups = layer._groups
    if len(groups) != 1 or not groups[0].all_heads:
        return False
    basis = groups[0].basis
    if not isinstance(basis, FastDCT2) or basis.sine is None:
        return False
    if x.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
        return False
    if any(t.dtype != x.dtype or t.device != x.device for t in itertools.chain(layer.parameters(), layer.buffers())):
        return False
    if 3 * layer.hidden_dim + 3 * layer.head_dim > MAX_STACK_VALUES:
        return False
    return cosine_tokens.available(x) and _mix_kernel(x.dtype, "forward") is not None


def _mask_coeffs(weight: Optional[torch.Tensor], batch: int, n: int, sine: bool, like: torch.Tensor) -> torch.Tensor:
    """T(weight) along the sequence, (n * B,) in the spectra's row order: the coefficients of
    the projection biases (weight None: of ones, which for the DCT is sqrt(n) at k = 0 only)."""
    if weight is None and not sine:
        tm = like.new_zeros((n, batch))
        tm[0] = math.sqrt(n)
        return tm.view(-1)
    w = like.new_ones((batch, n)) if weight is None else weight
    coeffs = cosine_tokens.dct2_tokens(torch.stack([w, torch.zeros_like(w)], -1), sine=sine)  # (n, B, 2)
    return coeffs[..., 0].contiguous().view(-1)


class TokenSpectralLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor,
                b_q: Optional[torch.Tensor], b_k: Optional[torch.Tensor], b_v: Optional[torch.Tensor],
                w_o: torch.Tensor, b_o: Optional[torch.Tensor], scale: torch.Tensor, weight: Optional[torch.Tensor],
                sine: bool, normalize: bool, eps: float) -> torch.Tensor:
        """x (B, n, D); w_*, b_* the q/k/v/out projections (biases may be None); scale (H, Dh);
        weight (B, n) the padding mask as 0/1 weights, or None. Returns (B, n, D), zero at
        padded positions."""
        batch, n, d = x.shape
        heads, head_dim = scale.shape
        s_rows = scale.reshape(-1)
        spectra = cosine_tokens.dct2_tokens(x, weight, sine)  # (n, B, D)
        weight_eff = torch.cat([w_q * s_rows.unsqueeze(-1), w_k, w_v])  # (3G, D), queries scaled
        qkv = torch.mm(spectra.view(n * batch, d), weight_eff.t())  # (n * B, 3G)
        del spectra, weight_eff
        bias = None if b_q is None else torch.cat([b_q * s_rows, b_k, b_v])  # enters as T(mask) bias^T
        tm = _mask_coeffs(weight, batch, n, sine, x)
        o, norm = _mix_forward(qkv, heads, head_dim, tm, bias, normalize, eps)  # (n * B, G), (n * B, H)
        out = torch.mm(o.view(n * batch, -1), w_o.t()).view(n, batch, -1)  # (n, B, D) spectra
        y = cosine_tokens.dct3_tokens(out, weight, b_o, sine)
        ctx.save_for_backward(x, w_q, w_k, w_v, b_q, w_o, scale, weight)
        ctx.spectra, ctx.norm, ctx.mixed, ctx.tm = qkv, norm, o, tm  # qkv: the spectra without their bias
        ctx.bias = bias
        ctx.sine, ctx.normalize, ctx.has_out_bias = sine, normalize, b_o is not None
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: torch.Tensor):
        x, w_q, w_k, w_v, b_q, w_o, scale, weight = ctx.saved_tensors
        qkv, norm, o = ctx.spectra, ctx.norm, ctx.mixed
        if qkv is None:
            raise RuntimeError("the LST layer's saved spectra were used up by an earlier backward; wrap both "
                               "passes in lra_bench.attention.lst_core.retain_spectra() to backpropagate twice")
        if lst_core._REUSE_SPECTRA:
            ctx.spectra = ctx.norm = ctx.mixed = None
        else:
            qkv = qkv.clone()
        need = ctx.needs_input_grad
        batch, n, d = x.shape
        heads, head_dim = scale.shape
        s_rows = scale.reshape(-1)
        sine = ctx.sine
        g, out_bias_sum = cosine_tokens.dct2_tokens(dy.to(x.dtype), weight, sine, column_sums=True)  # dL/d(out)
        g = g.view(n * batch, d)
        d_w_o = torch.mm(g.t(), o.view(n * batch, -1)) if need[7] else None
        d_b_o = out_bias_sum.sum(0) if ctx.has_out_bias and need[8] else None
        g_o = torch.mm(g, w_o)  # dL/dO (n * B, G)
        del g, o, out_bias_sum
        d_bias = _mix_backward(qkv, g_o, norm, heads, head_dim, ctx.tm, ctx.bias)
        del g_o
        d_qkv = qkv  # (n * B, 3G): dL/d(s * Q, K, V) spectra
        d_x = None
        if need[0]:
            weight_eff = torch.cat([w_q * s_rows.unsqueeze(-1), w_k, w_v])
            d_spectra = torch.mm(d_qkv, weight_eff).view(n, batch, d)
            del weight_eff
            d_x = cosine_tokens.dct3_tokens(d_spectra, weight, None, sine)
            del d_spectra
        d_w, d_b, d_scale = [None] * 3, [None] * 3, None
        if any(need[1:7]) or need[9]:
            spectra = cosine_tokens.dct2_tokens(x, weight, sine)  # recomputed: cheaper than keeping it
            d_weff = torch.mm(d_qkv.t(), spectra.view(n * batch, d)).chunk(3)  # (G, D) each
            del spectra
            d_beff = (None,) * 3 if d_bias is None else d_bias.chunk(3)
            if need[9]:
                d_s = (d_weff[0] * w_q).sum(1)
                if b_q is not None:
                    d_s = d_s + d_beff[0] * b_q
                d_scale = d_s.view(heads, head_dim)
            d_w = [d_weff[0] * s_rows.unsqueeze(-1), d_weff[1], d_weff[2]]
            if b_q is not None:
                d_b = [d_beff[0] * s_rows, d_beff[1], d_beff[2]]
        return (d_x, *d_w, *d_b, d_w_o, d_b_o, d_scale, None, None, None, None)


def token_lst(layer: Any, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """`layer`'s attention output (B, n, D), before dropout, on the token-major path."""
    weight = None if mask is None else mask.to(x.dtype)
    q, k, v, o = layer.q_proj, layer.k_proj, layer.v_proj, layer.out_proj
    return TokenSpectralLayer.apply(x, q.weight, k.weight, v.weight, q.bias, k.bias, v.bias, o.weight, o.bias,
                                    layer.scale[:, 0], weight, bool(layer._groups[0].basis.sine), layer.normalize,
                                    1e-6)
