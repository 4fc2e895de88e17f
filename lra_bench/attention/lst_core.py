"""The LST attention core -- input projection, transforms and elementwise mixing -- as one
autograd Function that saves only what it needs.

Per head, with T orthonormal along the sequence: A = T(Q) * T(K) * scale,
O = A * T(V), optionally O /= sum_d |A| + eps, out = T^-1(O) (the formula of
spectrans' LSTAttention). Autograd over these steps would keep the projected q, k, v
and every elementwise intermediate. This forward keeps only the three spectra (plus the
input and weights, which the caller holds anyway); the projection's output is freed as
soon as it is transformed, and the token reordering, the concatenated weights and the
normaliser are recomputed in the backward. The backward uses that T's adjoint is T^-1
(and T^-1's is T), computes the three gradients inside the spectra's own buffer plus two
buffers a third its size (recomputing Q * K rather than keeping temporaries), and writes
the signal-domain result back into that buffer. At n = 4096 this keeps a layer's peak
training memory at that of CPU flash attention (see results/README.md).
The price: a graph through the core can be backpropagated once. `retain_spectra()`
keeps the spectra intact (at the cost of a copy) for repeated backward passes, such as
gradcheck's.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

_REUSE_SPECTRA = True


@contextlib.contextmanager
def retain_spectra() -> Iterator[None]:
    """Within this context the core's backward copies its saved spectra instead of reusing
    their memory, so the same graph can be backpropagated more than once."""
    global _REUSE_SPECTRA
    previous, _REUSE_SPECTRA = _REUSE_SPECTRA, False
    try:
        yield
    finally:
        _REUSE_SPECTRA = previous


def _stack(channels: Optional[torch.Tensor], *tensors: torch.Tensor) -> torch.Tensor:
    """Concatenate the q, k, v weights (or biases), keeping only rows `channels` if given."""
    return torch.cat([t if channels is None else t.index_select(0, channels) for t in tensors])


def _unstack(grad: torch.Tensor, channels: Optional[torch.Tensor], like: torch.Tensor) -> tuple:
    """The gradients of the three tensors `_stack` concatenated (full size, zero elsewhere)."""
    parts = grad.to(like.dtype).chunk(3)
    if channels is None:
        return parts
    return tuple(like.new_zeros(like.shape).index_copy_(0, channels, p) for p in parts)


def _rows(x: torch.Tensor, perm: Optional[torch.Tensor]) -> torch.Tensor:
    """(B, L, D) tokens -> (B*L, D) rows, reordered along L by perm when given."""
    return (x if perm is None else x.index_select(1, perm)).reshape(-1, x.shape[-1])


class SpectralCore(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor,
                b_q: Optional[torch.Tensor], b_k: Optional[torch.Tensor], b_v: Optional[torch.Tensor],
                perm: Optional[torch.Tensor], inv_perm: Optional[torch.Tensor], in_weight: Optional[torch.Tensor],
                scale: torch.Tensor, channels: Optional[torch.Tensor], basis: Any, normalize: bool,
                eps: float) -> torch.Tensor:
        """x (B, L, D) tokens; w_*, b_* the q/k/v projections onto G = H * Dh channels; perm:
        token order the basis wants (inverse inv_perm), or None; in_weight (B or 1, L) applied
        to q, k, v before the transform (padding mask, DST signs; in perm's order) or None;
        scale (H or 1, Dh); channels: the G rows of w_* and b_* to use (None: all)
        -> (H, Dh, B, L) in float32 (float64 for float64 inputs)."""
        batch, n, _ = x.shape
        m = basis.length(n)
        qkv = torch.mm(_stack(channels, w_q, w_k, w_v), _rows(x, perm).t())  # (3G, B*L); autocast may pick dtype
        heads, head_dim = qkv.shape[0] // 3 // scale.shape[1], scale.shape[1]
        if b_q is not None:
            qkv = qkv.add_(_stack(channels, b_q, b_k, b_v).to(qkv.dtype).unsqueeze(-1))
        ctx.dtype = torch.promote_types(qkv.dtype, torch.float32)  # at least float32, float64 stays
        qkv = qkv.to(ctx.dtype).view(3, heads, head_dim, batch, n)
        if in_weight is not None:
            qkv.mul_(in_weight.view(1, 1, 1, -1, n))
        if m != n:
            qkv = F.pad(qkv, (0, m - n))  # zero-pad to the transform length, as padding tokens
        c = basis.coeffs(qkv)  # (3, H, Dh, B, S, P)
        del qkv
        s = scale.to(ctx.dtype)[..., None, None, None]  # (H, Dh, 1, 1, 1)
        q, k, v = c.unbind(0)
        if getattr(basis, "complex", False):  # Fourier heads: Q * conj(K) * scale * V, unnormalised
            if normalize:
                raise ValueError("Fourier heads are not normalised")
            o = torch.mul(q, k.conj()).mul_(s).mul_(v)
        elif normalize:
            o = torch.mul(q, k).mul_(s)  # A
            norm = o.abs_().sum(1, keepdim=True).add_(eps)  # (H, 1, B, S, P)
            torch.mul(q, k, out=o).mul_(s).mul_(v).div_(norm)  # A * V / norm (A recomputed: no temporary)
        else:
            o = torch.mul(q, k).mul_(s).mul_(v)
        out = basis.signal(o, n)
        # x and the weights are held by the caller anyway; the permuted rows, the
        # concatenated weights and the normaliser are recomputed in the backward.
        ctx.save_for_backward(x, w_q, w_k, w_v, perm, inv_perm, in_weight, channels, scale)
        ctx.spectra = c  # an intermediate, on ctx so that the backward may reuse its memory
        ctx.basis, ctx.has_bias, ctx.normalize, ctx.eps, ctx.n = basis, b_q is not None, normalize, eps, n
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor):
        scale = ctx.saved_tensors[-1]
        c, basis = ctx.spectra, ctx.basis
        if c is None:
            raise RuntimeError("the LST core's saved spectra were used up by an earlier backward; wrap both "
                               "passes in lra_bench.attention.lst_core.retain_spectra() to backpropagate twice")
        if _REUSE_SPECTRA:
            ctx.spectra = None
        else:
            c = c.clone()
        n = grad.shape[-1]
        m = basis.length(n)
        s = scale.to(ctx.dtype)[..., None, None, None]
        grad = grad.to(ctx.dtype).contiguous() if m == n else F.pad(grad.to(ctx.dtype), (0, m - n))
        g = basis.grad_coeffs(grad)  # dL/dO  (H, Dh, B, S, P)
        del grad
        if getattr(basis, "complex", False):
            d_qkv, g_scale = _fourier_backward(ctx, c, g, s, scale)
            return _projection_backward(ctx, d_qkv, g_scale)
        q, k, v = c.unbind(0)
        t = torch.mul(q, k)  # QK; the one scratch buffer, refilled from Q and K when needed
        if ctx.normalize:
            norm = t.mul_(s).abs_().sum(1, keepdim=True).add_(ctx.eps)  # (H, 1, B, S, P), as in the forward
            torch.mul(q, k, out=t)
            g.div_(norm)
            v.mul_(g)  # dL/dO * V / norm; V is not needed again
            g.mul_(t).mul_(s)  # g := dL/dV = dL/dO * A / norm
            # dL/dnorm = -sum_d dL/dO * A * V / norm^2                                (H, 1, B, S, P)
            g_norm = t.mul_(v).mul_(s).sum(1, keepdim=True).div_(norm).neg_()
            g_a = v.addcmul_(g_norm, torch.mul(q, k, out=t).mul_(s).sign_())  # dL/dA, in V's slot
        else:
            v.mul_(g)  # dL/dA = dL/dO * V
            g.mul_(t).mul_(s)  # dL/dV = dL/dO * A
            g_a = v
        g_scale = None
        if ctx.needs_input_grad[10]:
            g_scale = torch.mul(q, k, out=t).mul_(g_a).sum(dim=(2, 3, 4))  # (H, Dh)
            if scale.shape[0] == 1:  # one scale shared by every head
                g_scale = g_scale.sum(0, keepdim=True)
        g_a.mul_(s)
        d_q = torch.mul(g_a, k, out=t)  # dL/dQ = dL/dA * scale * K
        d_k = q.mul_(g_a)  # dL/dK = dL/dA * scale * Q, in Q's slot
        del g_a, k, v
        # Back to the signal domain, into c's own memory (see _signal_view): part 2 first
        # (slots 1 and 2 are free), then move dL/dK out of slot 0 and write part 1, then part 0.
        d_qkv = _signal_view(c, n)
        basis.grad_signal(g, n, out=d_qkv[2])
        basis.grad_signal(g.copy_(d_k), n, out=d_qkv[1])
        basis.grad_signal(d_q, n, out=d_qkv[0])
        del g, d_q, d_k, c
        return _projection_backward(ctx, d_qkv, g_scale)


def _signal_view(c: torch.Tensor, n: int) -> torch.Tensor:
    """A (3, H, Dh, B, n) real view of the start of c's memory (c: (3, H, Dh, B, S, P)).

    Each slot of c holds at least n real values per signal, so part i of the view lies
    within slots i-1 and i of c: it may be written once those slots are no longer needed."""
    flat = torch.view_as_real(c).view(-1) if c.is_complex() else c.view(-1)
    return flat[: 3 * c[0, ..., 0, 0].numel() * n].view(3, *c.shape[1:-2], n)


def _fourier_backward(ctx: Any, c: torch.Tensor, g: torch.Tensor, s: torch.Tensor, scale: torch.Tensor):
    """Gradients of O = Q * conj(K) * s * V for a real loss (g = dL/dRe O + i dL/dIm O)."""
    n = ctx.n
    q, k, v = c.unbind(0)
    t = torch.mul(q.conj(), k).mul_(g)  # g * conj(Q) * K
    g_scale = None
    if ctx.needs_input_grad[10]:  # dL/ds = sum Re(conj(g) * Q * conj(K) * V) = sum Re(conj(t) * V)
        g_scale = torch.view_as_real(t).mul(torch.view_as_real(v)).sum(dim=(2, 3, 4, 5))
        if scale.shape[0] == 1:
            g_scale = g_scale.sum(0, keepdim=True)
    t.mul_(s)  # dL/dV = g * conj(Q * conj(K) * s)
    k.mul_(v.conj()).mul_(g).mul_(s)  # dL/dQ = g * conj(conj(K) * s * V), in K's slot
    q.mul_(v).mul_(g.conj()).mul_(s)  # dL/dK = conj(g) * Q * s * V, in Q's slot
    del v
    d_qkv = _signal_view(c, n)  # parts 2, 1, 0 in turn, moving gradients out of slots about to be written
    g.copy_(k)
    ctx.basis.grad_signal(t, n, out=d_qkv[2])
    ctx.basis.grad_signal(t.copy_(q), n, out=d_qkv[1])
    ctx.basis.grad_signal(g, n, out=d_qkv[0])
    return d_qkv, g_scale


def _projection_backward(ctx: Any, d_qkv: torch.Tensor, g_scale: Optional[torch.Tensor]):
    """From dL/d(weighted q, k, v) (3, H, Dh, B, L) to the Function's input gradients."""
    x, w_q, w_k, w_v, perm, inv_perm, in_weight, channels, _ = ctx.saved_tensors
    if in_weight is not None:
        d_qkv.mul_(in_weight.view(1, 1, 1, -1, ctx.n))
    d_qkv = d_qkv.view(-1, x.shape[0] * ctx.n)  # (3G, B*L)
    d_x, d_w, d_b = None, (None,) * 3, (None,) * 3
    if ctx.needs_input_grad[0]:
        d_x = torch.mm(d_qkv.t(), _stack(channels, w_q, w_k, w_v).to(ctx.dtype)).view(x.shape)
        d_x = (d_x if inv_perm is None else d_x.index_select(1, inv_perm)).to(x.dtype)
    if any(ctx.needs_input_grad[1:4]):
        d_w = _unstack(torch.mm(d_qkv, _rows(x, perm).to(ctx.dtype)), channels, w_q)
    if ctx.has_bias and any(ctx.needs_input_grad[4:7]):
        d_b = _unstack(d_qkv.sum(1), channels, w_q[:, 0])
    return (d_x, *d_w, *d_b, None, None, None, g_scale, None, None, None, None)


def spectral_core(x: torch.Tensor, q: tuple, k: tuple, v: tuple, scale: torch.Tensor, mask: Optional[torch.Tensor],
                  basis: Any, perms: Optional[tuple] = None, normalize: bool = True, eps: float = 1e-6,
                  channels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Project tokens x (B, L, D) with q, k, v = (weight, bias or None) -- restricted to
    rows `channels` when given -- onto H heads of Dh channels and mix them: (H, Dh, B, L),
    float32 (float64 for float64 inputs).

    perms = (perm, inverse) reorders the tokens first (Makhoul order, when
    `basis.makhoul_order`); `mask` (B, L) bool, True at real tokens, is given in that order.
    Padded positions (and, for the DST, the input signs) are weighted before the transform,
    so padding never reaches real positions; outputs at padded positions are left for the
    caller to zero. Transforms run in float32 under any autocast.
    """
    n = x.shape[1]
    in_weight = None if mask is None else mask.to(torch.float32)
    sign = basis.input_sign(n, x.device)
    if sign is not None:
        in_weight = sign.view(1, n) if in_weight is None else in_weight * sign
    perm, inv_perm = perms if perms is not None else (None, None)
    return SpectralCore.apply(x, q[0], k[0], v[0], q[1], k[1], v[1], perm, inv_perm, in_weight, scale, channels,
                              basis, normalize, eps)
