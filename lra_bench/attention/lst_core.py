"""The LST attention core -- input projection, transforms and elementwise mixing -- as one
autograd Function that saves only what it needs.

Per head, with T orthonormal along the sequence: A = T(Q) * T(K) * scale,
O = A * T(V), optionally O /= sum_d |A| + eps, out = T^-1(O) (the formula of
spectrans' LSTAttention). Autograd over these steps would keep the projected q, k, v
and every elementwise intermediate. This forward keeps only the three spectra and, when
normalising, the normaliser (1/Dh of one spectrum), plus the input and weights, which the
caller holds anyway; the projection's output is freed as soon as it is transformed, and
the token reordering and the concatenated weights are recomputed in the backward. The
backward uses that T's adjoint is T^-1 (and T^-1's is T), computes the three gradients
inside the spectra's own buffer plus two buffers a third its size (and, when normalising,
one short-lived temporary of that size, no larger than what an inverse transform allocates
later), and writes the signal-domain result back into that buffer. The per-channel scale
multiplies Q, so it is folded into the rows of the query projection (T acts along the
sequence, the scale along channels: T(s * q) = s * T(q)), which saves two passes over the
spectra each way. At n = 4096 this keeps a layer's peak training memory at that of CPU
flash attention (see results/README.md). Fourier heads (`complex_runs` of the basis) hold
(re, im) pairs and mix as complex numbers. On CPU the elementwise mixing, forward and
backward, is one compiled pass (`kernels/mix_channels.c`, into the same buffers); elsewhere,
torch operations.
Layout: channels first within each sequence, (B, 3, H, Dh, L), so the transforms run
along a contiguous axis and every projection (here and in the layer's `_OutProjection`) is
one product per sequence. On CPU (MKL) these batched products run as fast as nn.Linear's
token-major ones, while a single (3G, D) x (D, B*L) product with its wide channels-first
output is 10-20% slower (B=2, L=4096, D=256: 17.5 ms against 19.3-20.3 ms).
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

from lra_bench import kernels

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


def _select(channels: Optional[torch.Tensor], t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return t if t is None or channels is None else t.index_select(0, channels)


def _effective(w_q, w_k, w_v, b_q, b_k, b_v, scale_rows, channels):
    """Concatenated q/k/v weight (3G, D) and bias (3G,) of the used channels, queries scaled."""
    w = torch.cat([_select(channels, w_q) * scale_rows.unsqueeze(-1), _select(channels, w_k), _select(channels, w_v)])
    b = None if b_q is None else torch.cat([_select(channels, b_q) * scale_rows, _select(channels, b_k),
                                            _select(channels, b_v)])
    return w, b


def _scale_rows(scale: torch.Tensor, heads: int) -> torch.Tensor:
    """(H or 1, Dh) per-head scales -> (heads * Dh,), one per query channel."""
    return scale.expand(heads, -1).reshape(-1)


def _full(grad: torch.Tensor, channels: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """The gradient of `like` from that of its rows `channels` (zero elsewhere)."""
    grad = grad.to(like.dtype)
    return grad if channels is None else like.new_zeros(like.shape).index_copy_(0, channels, grad)


def _weight_view(in_weight: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, L) mask weights -> broadcastable to (B, 3, H, Dh, L)."""
    return in_weight.unsqueeze(1)


def gather_tokens(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """x[:, perm] for x (B, L, ...), into a fresh buffer.

    A contiguous x is gathered as rows of its (B * L, ...) view: `index_select` along the
    first axis copies whole rows, and on CPU (torch 2.13, (2, 4096, 256) float32, cache
    cold) takes 0.8 ms where the same gather along axis 1 takes 1.1-1.2 ms; a layer does
    five of these per training step."""
    batch, length = x.shape[0], x.shape[1]
    out = x.new_empty((batch, perm.numel()) + x.shape[2:])
    if not x.is_contiguous():
        return torch.index_select(x, 1, perm, out=out)
    rows = (perm + torch.arange(0, batch * length, length, device=perm.device).unsqueeze(1)).view(-1)
    torch.index_select(x.view((batch * length,) + x.shape[2:]), 0, rows, out=out.view((-1,) + x.shape[2:]))
    return out


def _tokens(x: torch.Tensor, perm: Optional[torch.Tensor]) -> torch.Tensor:
    """(B, L, D) tokens, reordered along L by perm when given."""
    return x if perm is None else gather_tokens(x, perm)


def batched(w: torch.Tensor, batch: int) -> torch.Tensor:
    """A matrix as a batch of `batch` copies of itself (a view)."""
    return w.expand(batch, *w.shape)


def sum_of_products(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum_i a[i] @ b[i] for batches of matrices, accumulated in place: a batched product and
    a sum would hold every per-sequence product at once (a weight-sized matrix per sequence)."""
    total = torch.mm(a[0], b[0])
    for i in range(1, a.shape[0]):
        total.addmm_(a[i], b[i])
    return total


class SpectralCore(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor,
                b_q: Optional[torch.Tensor], b_k: Optional[torch.Tensor], b_v: Optional[torch.Tensor],
                perm: Optional[torch.Tensor], inv_perm: Optional[torch.Tensor], in_weight: Optional[torch.Tensor],
                scale: torch.Tensor, channels: Optional[torch.Tensor], basis: Any, normalize: bool,
                eps: float) -> torch.Tensor:
        """x (B, L, D) tokens; w_*, b_* the q/k/v projections; channels: the G = H * Dh rows
        of them to use (None: all); perm: the token order the basis wants (inverse inv_perm)
        or None; in_weight (B, 1, 1, L), the padding mask as weights applied to q, k, v before
        the basis's input signs (`basis.sign_inputs_`) and the transform (in perm's order), or
        None; scale (H or 1, Dh) -> (B, H * Dh, L) in float32 (float64 for float64 inputs)."""
        batch, n, _ = x.shape
        heads = (w_q.shape[0] if channels is None else channels.numel()) // scale.shape[1]
        _check_mixing(normalize, complex_runs(basis, heads), 2)
        weight, bias = _effective(w_q, w_k, w_v, b_q, b_k, b_v, _scale_rows(scale, heads), channels)
        tokens = _tokens(x, perm).transpose(1, 2)  # (B, D, L)
        # (B, 3G, L), one product per sequence (on CPU this beats a single (3G, B*L) product, whose
        # wide output MKL handles more slowly); autocast may pick the dtype
        w = batched(weight, batch)
        qkv = torch.bmm(w, tokens) if bias is None else torch.baddbmm(bias.view(1, -1, 1), w, tokens)
        del weight, w, tokens
        ctx.dtype = torch.promote_types(qkv.dtype, torch.float32)  # at least float32, float64 stays
        with torch.autocast(x.device.type, enabled=False):  # transforms and products in ctx.dtype
            out = _mix_forward(ctx, qkv.to(ctx.dtype).view(batch, 3, heads, scale.shape[1], n), in_weight, basis,
                               normalize, eps)
        ctx.save_for_backward(x, w_q, w_k, w_v, b_q, perm, inv_perm, in_weight, channels, scale)
        ctx.basis, ctx.normalize, ctx.eps, ctx.n, ctx.heads = basis, normalize, eps, n, heads
        ctx.has_bias = b_q is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor):
        with torch.autocast(grad.device.type, enabled=False):
            return _backward(ctx, grad)


def complex_runs(basis: Any, heads: int) -> list[tuple[int, int]]:
    """[start, stop) of each run of a basis's complex heads (Fourier heads, whose (re, im)
    pairs mix as complex numbers) among `heads`; none for real bases."""
    runs = getattr(basis, "complex_runs", None)
    return [] if runs is None else runs(heads)


def _check_mixing(normalize: bool, cplx: list[tuple[int, int]], components: int) -> None:
    """Complex heads need (re, im) pairs (`components` 2) and are never normalised."""
    if cplx and normalize:
        raise ValueError("Fourier heads are never normalised: use normalize=False with this basis")
    if cplx and components != 2:
        raise ValueError(f"complex heads need (re, im) pairs, got {components} components per coefficient")


def _head_runs(heads: int, complex_: list[tuple[int, int]]) -> list[tuple[int, int, bool]]:
    """Every head once, as consecutive (start, stop, is_complex) runs."""
    cuts = sorted({0, heads, *(i for run in complex_ for i in run)})
    inside = {a for a, _ in complex_}
    return [(a, b, a in inside) for a, b in zip(cuts, cuts[1:])]


def _mix_forward(ctx: Any, qkv: torch.Tensor, in_weight: Optional[torch.Tensor], basis: Any, normalize: bool,
                 eps: float) -> torch.Tensor:
    """(B, 3, H, Dh, n) projected s * q, k, v -> (B, H * Dh, n) mixed; keeps the spectra on ctx."""
    n = qkv.shape[-1]
    m = basis.length(n)
    cplx = complex_runs(basis, qkv.shape[2])
    if in_weight is not None:
        qkv.mul_(_weight_view(in_weight))
    basis.sign_inputs_(qkv)  # DST heads: negations, cheaper than a product with a sign tensor
    if m != n:
        qkv = F.pad(qkv, (0, m - n))  # zero-pad to the transform length, as padding tokens
    c = basis.coeffs(qkv, overwrite=True)  # (B, 3, H, Dh, S, P): spectra of s * q, k, v (qkv is ours)
    del qkv
    compiled = _compiled_mix_forward(c, normalize, eps, cplx)
    if compiled is not None:  # one pass, on CPU
        o, norm = compiled
    else:
        o, norm = _torch_mix_forward(*c.unbind(1), normalize, eps, cplx)
    if normalize:
        ctx.norm = norm  # 1/Dh of a spectrum: kept for the backward rather than computed again
    out = basis.signal(o, n).flatten(1, 2)
    ctx.spectra = c  # an intermediate, on ctx so that the backward may reuse its memory
    return out


def _torch_mix_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, normalize: bool, eps: float,
                       cplx: list[tuple[int, int]]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The mixing by torch operations: (O (B, H, Dh, S, P), normaliser (B, H, 1, S, P) or None)."""
    _check_mixing(normalize, cplx, q.shape[-1])
    if normalize:
        o = torch.mul(q, k)  # A
        norm = torch.abs(o).sum(2, keepdim=True).add_(eps)  # (B, H, 1, S, P); |A| is freed at once
        return o.mul_(v).div_(norm), norm  # A * V / norm
    o = torch.mul(q, k).mul_(v)
    for a, b in cplx:  # Fourier heads: Q * conj(K) * V, as complex numbers
        cq, ck, cv = (torch.view_as_complex(t[:, a:b]) for t in (q, k, v))
        torch.mul(cq, ck.conj(), out=torch.view_as_complex(o[:, a:b])).mul_(cv)
    return o, None


def _mix_kernel(c: torch.Tensor, direction: str) -> Optional[Any]:
    """The compiled mixing step (`kernels/mix_channels.c`) for the real spectra c, forward or
    backward, where it applies (CPU, float32/float64, contiguous), else None."""
    if c.device.type != "cpu" or not c.is_contiguous():
        return None
    p, i, long, real = kernels.P, kernels.INT, kernels.LONG, kernels.REAL
    argtypes = (p, long, long, long, long, p, p, real, i, p, i) if direction == "forward" else (
        p, p, p, p, long, long, long, long, i, p, i)
    return kernels.typed_function("mix_channels", f"mix_channels_{direction}", c.dtype, argtypes)


def _complex_flags(heads: int, cplx: list[tuple[int, int]]) -> Optional[torch.Tensor]:
    """One byte per head, 1 for a complex head (the kernel's `cplx`), or None when there is none."""
    if not cplx:
        return None
    flags = torch.zeros(heads, dtype=torch.uint8)
    for a, b in cplx:
        flags[a:b] = 1
    return flags


def _compiled_mix_forward(c: torch.Tensor, normalize: bool, eps: float, cplx: list[tuple[int, int]] = ()):
    """(O (B, H, Dh, S, P), normaliser (B, H, 1, S, P) or None) by the compiled kernel, or None;
    heads in the runs `cplx` mix as complex pairs (P = 2), never normalised."""
    _check_mixing(normalize, list(cplx), c.shape[-1])
    fn = _mix_kernel(c, "forward")
    if fn is None:
        return None
    batch, _, heads, head_dim = c.shape[:4]
    o = c.new_empty((batch,) + c.shape[2:])
    norm = c.new_empty((batch, heads, 1) + c.shape[4:]) if normalize else None
    flags = _complex_flags(heads, list(cplx))
    fn(c.data_ptr(), batch, heads, head_dim, c[0, 0, 0, 0].numel(), o.data_ptr(), kernels.address(norm), eps,
       int(normalize), kernels.address(flags), torch.get_num_threads())
    return o, norm


def _compiled_mix_backward(c: torch.Tensor, g: torch.Tensor, norm: Optional[torch.Tensor],
                           cplx: list[tuple[int, int]] = ()) -> Optional[torch.Tensor]:
    """dL/dQ into a new buffer (returned), dL/dK over V's slot of c and dL/dV over g, by the
    compiled kernel; None (and nothing written) where it does not apply."""
    _check_mixing(norm is not None, list(cplx), c.shape[-1])
    fn = _mix_kernel(c, "backward")
    if fn is None or not g.is_contiguous() or g.dtype != c.dtype:
        return None
    batch, _, heads, head_dim = c.shape[:4]
    t = torch.empty_like(g)
    norm = None if norm is None else norm.contiguous()  # held until the kernel returns
    flags = _complex_flags(heads, list(cplx))
    fn(c.data_ptr(), g.data_ptr(), t.data_ptr(), kernels.address(norm), batch, heads, head_dim,
       c[0, 0, 0, 0].numel(), int(norm is not None), kernels.address(flags), torch.get_num_threads())
    return t


def _backward(ctx: Any, grad: torch.Tensor):
    """Gradients of SpectralCore (autocast off); see the module docstring."""
    c, basis, n = ctx.spectra, ctx.basis, ctx.n
    if c is None:
        raise RuntimeError("the LST core's saved spectra were used up by an earlier backward; wrap both "
                           "passes in lra_bench.attention.lst_core.retain_spectra() to backpropagate twice")
    if _REUSE_SPECTRA:
        ctx.spectra = None
    else:
        c = c.clone()
    m = basis.length(n)
    grad = grad.to(ctx.dtype).contiguous().view(c.shape[0], c.shape[2], c.shape[3], n)
    if m != n:
        grad = F.pad(grad, (0, m - n))
    g = basis.grad_coeffs(grad)  # dL/dO  (B, H, Dh, S, P); for complex heads dL/dRe O + i dL/dIm O
    del grad
    q, k, v = c.unbind(1)
    d_qkv = _signal_view(c, n)  # the result goes into c's own memory, parts 2, 1, 0 in turn
    norm = ctx.norm if ctx.normalize else None  # (B, H, 1, S, P), from the forward (read only here)
    if _REUSE_SPECTRA:
        ctx.norm = None
    cplx = complex_runs(basis, c.shape[2])
    t = _compiled_mix_backward(c, g, norm, cplx)  # on CPU: dL/dQ in t, dL/dK in V's slot, dL/dV in g
    if t is None:
        t = torch.empty_like(g)
        for a, b, is_complex in _head_runs(c.shape[2], cplx):
            heads = slice(None), slice(a, b)
            mix = _complex_mix_backward if is_complex else _mix_backward
            mix(q[heads], k[heads], v[heads], g[heads], None if norm is None else norm[heads], out=t[heads])
    d_q, d_k = t, v
    del q, k, v
    # Part i of d_qkv lies within slots i-1 and i (see _signal_view): part 0 overwrites Q's
    # slot; part 1 ends before slot 2 starts, so dL/dK goes straight from slot 2 into it (one
    # sequence at a time, where the slot is contiguous: no copy of the strided slot); part 2
    # then overwrites what is left.
    basis.grad_signal(d_q, n, out=d_qkv[:, 0])
    del d_q, t
    for b in range(c.shape[0]):
        basis.grad_signal(d_k[b], n, out=d_qkv[b, 1])
    basis.grad_signal(g, n, out=d_qkv[:, 2])
    del g, d_k, c
    return _projection_backward(ctx, d_qkv)


def _mix_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, norm: Optional[torch.Tensor],
                  out: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixing's backward by torch operations: (dL/dQ in `out` or a new buffer, dL/dK in
    V's slot); dL/dV goes over g."""
    t = torch.mul(q, k, out=out)  # A = QK; the one scratch buffer
    if norm is not None:
        g.div_(norm)
        v.mul_(g)  # dL/dO * V / norm; V is not needed again
        g.mul_(t)  # g := dL/dV = dL/dO * A / norm
        # dL/dnorm = -sum_d dL/dO * A * V / norm^2                                (B, H, 1, S, P)
        g_norm = torch.mul(t, v).sum(2, keepdim=True).div_(norm).neg_()
        g_a = v.addcmul_(g_norm, t.sign_())  # dL/dA, in V's slot
    else:
        v.mul_(g)  # dL/dA = dL/dO * V
        g.mul_(t)  # dL/dV = dL/dO * A
        g_a = v
    d_q = torch.mul(g_a, k, out=t)  # dL/dQ = dL/dA * K
    d_k = g_a.mul_(q)  # dL/dK = dL/dA * Q, in V's slot (slot 2)
    return d_q, d_k


def _complex_mix_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                          norm: None, out: torch.Tensor) -> None:
    """As `_mix_backward` for complex heads ((re, im) pairs; O = Q * conj(K) * V, never
    normalised; g = dL/dRe O + i dL/dIm O): dL/dQ into `out`, dL/dK over V, dL/dV over g."""
    cq, ck, cv, cg = (torch.view_as_complex(t) for t in (q, k, v, g))
    torch.mul(ck, cv.conj(), out=torch.view_as_complex(out)).mul_(cg)  # dL/dQ = g * conj(conj(K) * V)
    cv.mul_(cq).mul_(cg.conj())  # dL/dK = conj(g) * Q * V
    cg.mul_(cq.conj()).mul_(ck)  # dL/dV = g * conj(Q * conj(K))


def _signal_view(c: torch.Tensor, n: int) -> torch.Tensor:
    """A (B, 3, H, Dh, n) real view of c's memory (c: (B, 3, H, Dh, S, P)): sequence b's
    (3, H, Dh, n) block at the start of c[b]'s memory.

    Each slot c[b, i] holds at least n and at most 2n real values per signal, so part i of
    a block lies within slots i-1 and i of its own sequence: it may be written once those
    slots are no longer needed."""
    batch = c.shape[0]
    flat = c.view(batch, -1)
    return flat[:, : 3 * c[0, 0, ..., 0, 0].numel() * n].view(batch, 3, *c.shape[2:-2], n)


def _projection_backward(ctx: Any, d_qkv: torch.Tensor):
    """From dL/d(weighted s * q, k, v) (B, 3, H, Dh, L) to the Function's input gradients."""
    x, w_q, w_k, w_v, b_q, perm, inv_perm, in_weight, channels, scale = ctx.saved_tensors  # b_q: for dL/dscale
    if in_weight is not None:
        d_qkv.mul_(_weight_view(in_weight))
    ctx.basis.sign_inputs_(d_qkv)
    batch = x.shape[0]
    d_qkv = d_qkv.view(batch, -1, ctx.n)  # (B, 3G, L)
    s_rows = _scale_rows(scale, ctx.heads)
    need = ctx.needs_input_grad
    d_x, d_w, d_b, d_scale = None, [None] * 3, [None] * 3, None
    if need[0]:
        weight, _ = _effective(w_q, w_k, w_v, None, None, None, s_rows, channels)
        d_x = torch.bmm(d_qkv.transpose(1, 2), batched(weight.to(ctx.dtype), batch))  # (B, L, D)
        d_x = (d_x if inv_perm is None else gather_tokens(d_x, inv_perm)).to(x.dtype)
    if any(need[1:7]) or need[10]:
        d_weff = sum_of_products(d_qkv, _tokens(x, perm).to(ctx.dtype)).chunk(3)  # (G, D) each
        d_beff = d_qkv.sum((0, 2)).chunk(3) if ctx.has_bias else (None,) * 3
        if need[10]:  # d(s * w_q)/ds and d(s * b_q)/ds
            d_s = (d_weff[0] * _select(channels, w_q).to(ctx.dtype)).sum(1)
            if ctx.has_bias:
                d_s = d_s + d_beff[0] * _select(channels, b_q).to(ctx.dtype)
            d_scale = d_s.view(ctx.heads, -1).sum(0, keepdim=True) if scale.shape[0] == 1 else d_s.view(scale.shape)
            d_scale = d_scale.to(scale.dtype)
        d_w = [_full(d_weff[0] * s_rows.unsqueeze(-1), channels, w_q), _full(d_weff[1], channels, w_k),
               _full(d_weff[2], channels, w_v)]
        if ctx.has_bias:  # b_k and b_v have b_q's shape
            d_b = [_full(d_beff[0] * s_rows, channels, b_q), _full(d_beff[1], channels, b_q),
                   _full(d_beff[2], channels, b_q)]
    return (d_x, *d_w, *d_b, None, None, None, d_scale, None, None, None, None)


def spectral_core(x: torch.Tensor, q: tuple, k: tuple, v: tuple, scale: torch.Tensor, mask: Optional[torch.Tensor],
                  basis: Any, perms: Optional[tuple] = None, normalize: bool = True, eps: float = 1e-6,
                  channels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Project tokens x (B, L, D) with q, k, v = (weight, bias or None) -- restricted to
    rows `channels` when given -- onto H heads of Dh channels and mix them: (B, H * Dh, L),
    float32 (float64 for float64 inputs).

    perms = (perm, inverse) reorders the tokens first (Makhoul order, when
    `basis.makhoul_order`); `mask` (B, L) bool, True at real tokens, is given in that order.
    Padded positions are zeroed before the transform (and the basis's input signs, for DST
    heads, applied), so padding never reaches real positions; outputs at padded positions
    are left for the caller to zero. Transforms run in float32 under any autocast.
    """
    n = x.shape[1]
    in_weight = None if mask is None else mask.to(torch.float32).view(-1, 1, 1, n)  # (B, 1, 1, L)
    perm, inv_perm = perms if perms is not None else (None, None)
    return SpectralCore.apply(x, q[0], k[0], v[0], q[1], k[1], v[1], perm, inv_perm, in_weight, scale, channels,
                              basis, normalize, eps)
