"""Orthonormal Walsh-Hadamard transform (Sylvester/natural order) along the last axis.

On CPU (float32 and float64), a compiled fast transform (lra_bench/kernels/hadamard.c)
runs the log2(n) butterfly stages of each row inside the cache, vectorised: n log2(n)
additions and about one pass over memory. At n = 4096 on 2 cores, 1536 rows take about
3 ms where the matrix products below take 12-14 ms. Where it is not built (no C
compiler, or LRA_BENCH_KERNELS=0) and on GPUs, matrix products do the work:
H_n = H_2 (x) H_2 (x) ... (n = 2^k), so for n = a * b, H_n = H_a (x) H_b and, viewing
x as an (a, b) matrix, H_n x = H_a X H_b. Products with cached +-1 blocks (two of
~sqrt(n) up to n = 256, three of ~cbrt(n) above: 48 multiply-adds per value at n = 4096
instead of 128) do the work in a few passes, which beats log2(n) add/subtract passes of
torch operations by about 5x. On CPUs, signals are processed in chunks of about 2 MiB,
so the products run on data still in cache (3x faster at n = 4096 on 2 cores than
unchunked two-factor products); GPUs get one set of large products.
Lengths that are not powers of two are rejected here; the attention layers zero-pad
them to `next_pow2(n)` as padding tokens.
The transform is symmetric and orthonormal, hence its own inverse. Matches
`scipy.linalg.hadamard(n) / sqrt(n)`.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch

from lra_bench import kernels
from lra_bench.transforms.cosine import cached


def next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


CHUNK_ELEMENTS = 1 << 19  # values per chunk (2 MiB of float32): a core's L2 cache


@cached
def _sylvester(n: int, device: torch.device, dtype: torch.dtype, scale: float = 1.0) -> torch.Tensor:
    """The n x n Sylvester Hadamard matrix (+-1 entries) times `scale`."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return (h * scale).to(device, dtype)


def factors(n: int) -> list[int]:
    """Split n = 2^k into Kronecker factors: two of ~sqrt(n) up to 256, else three of ~cbrt(n)."""
    k = n.bit_length() - 1
    parts = [k // 2, k - k // 2] if k <= 8 else [k // 3, (k - k // 3) // 2, k - k // 3 - (k - k // 3) // 2]
    return [1 << p for p in parts if p > 0] or [1]


def _kron_apply(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """(M, n) -> (H_f1 (x) ... (x) H_fk) x / sqrt(n) per row, n = f1 * ... * fk: one matmul per
    factor, the innermost on the rows, the others on the leading axis of each block."""
    n = x.shape[-1]
    y = x.reshape(-1, sizes[-1]) @ _sylvester(sizes[-1], x.device, x.dtype, 1.0 / math.sqrt(n))
    inner = sizes[-1]
    for size in reversed(sizes[:-1]):
        y = _sylvester(size, x.device, x.dtype) @ y.view(-1, size, inner)  # (., size, inner)
        inner *= size
    return y.reshape(x.shape)


def _kernel(x: torch.Tensor) -> Optional[Any]:
    """The compiled transform for x's dtype, if x is on CPU and the kernel is built."""
    if x.device.type != "cpu":
        return None
    p, i, long = kernels.P, kernels.INT, kernels.LONG
    return kernels.typed_function("hadamard", "wht", x.dtype, (p, p) + (long,) * 7 + (i,))


def row_layout(t: torch.Tensor) -> Optional[tuple[int, int, int, int]]:
    """(outer, inner, outer stride, row stride) when row o * inner + i of t (along its last
    axis, which must be contiguous) starts at element o * outer stride + i * row stride from
    t's first element, rows not overlapping -- a contiguous tensor, one slot of a (B, 3, ...)
    buffer, the first n values of longer rows -- else None."""
    n = t.shape[-1]
    if n > 1 and t.stride(-1) != 1:
        return None
    groups: list[list[int]] = []  # [total size, stride of its innermost dim, span], innermost group first
    for size, stride in reversed([(z, s) for z, s in zip(t.shape[:-1], t.stride()[:-1]) if z != 1]):
        if groups and stride == groups[-1][2]:
            groups[-1][0] *= size
            groups[-1][2] = stride * size
        else:
            groups.append([size, stride, stride * size])
    if not groups:
        return 1, 1, 0, n
    if len(groups) > 2:
        return None
    inner, row = groups[0][0], groups[0][1]
    outer, outer_stride = (groups[1][0], groups[1][1]) if len(groups) == 2 else (1, 0)
    if row < n or (outer > 1 and outer_stride < inner * row):
        return None  # overlapping rows
    return outer, inner, outer_stride, row


def common_layout(a: tuple, b: tuple) -> Optional[tuple[tuple, tuple]]:
    """Layouts a and b (of tensors with the same rows) with one (outer, inner) split, or None."""
    if a[:2] == b[:2]:
        return a, b
    if a[0] == 1:  # one level: rows at a fixed stride, split like b
        return (b[0], b[1], b[1] * a[3], a[3]), b
    if b[0] == 1:
        return a, (a[0], a[1], a[1] * b[3], b[3])
    return None


def spans_overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the memory spans of a and b (first to last element) intersect."""
    def span(t: torch.Tensor) -> tuple[int, int]:
        start = t.data_ptr()
        return start, start + t.element_size() * (1 + sum((z - 1) * st for z, st in zip(t.shape, t.stride())))
    (a0, a1), (b0, b1) = span(a), span(b)
    return a0 < b1 and b0 < a1


def _compiled(fn: Any, x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The compiled transform of x into `out` (a layout of `row_layout`, or x itself) or a new tensor."""
    src, src_layout = x, row_layout(x)
    dst, dst_layout = out, None if out is None else row_layout(out)
    if dst_layout is None:
        dst = torch.empty(x.shape, dtype=x.dtype)
        dst_layout = row_layout(dst)
    if x.numel():
        layouts = None if src_layout is None else common_layout(src_layout, dst_layout)
        same = src.data_ptr() == dst.data_ptr() and src.stride() == dst.stride()
        if layouts is None or (not same and spans_overlap(src, dst)):
            # a layout the kernel cannot take, layouts split differently, or memory shared
            # other than row for row: read a contiguous copy
            src = src.clone(memory_format=torch.contiguous_format)
            layouts = common_layout(row_layout(src), dst_layout)
        (outer, inner, s_outer, s_row), (_, _, d_outer, d_row) = layouts
        fn(src.data_ptr(), dst.data_ptr(), outer, inner, x.shape[-1], s_outer, s_row, d_outer, d_row,
           torch.get_num_threads())
    return dst if out is None or dst is out else out.copy_(dst)


class _CompiledHadamard(torch.autograd.Function):
    """The compiled transform under autograd: H is symmetric and orthonormal, its own adjoint."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return _compiled(_kernel(x), x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return hadamard(grad)


def hadamard(x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Orthonormal Walsh-Hadamard transform along the last axis; its length must be 2^k.
    With `out` (x's shape and dtype; may be x itself), the result is written there, outside
    autograd."""
    n = x.shape[-1]
    if not is_pow2(n):
        raise ValueError(f"the Hadamard transform needs a power-of-two length, got {n}; zero-pad to {next_pow2(n)}")
    if out is not None and (out.shape != x.shape or out.dtype != x.dtype or out.device != x.device):
        raise ValueError(f"out must match x: {tuple(x.shape)} {x.dtype} on {x.device}")
    grad = torch.is_grad_enabled() and (x.requires_grad or out is not None and out.requires_grad)
    fn = _kernel(x)
    if fn is not None:
        if grad:
            y = _CompiledHadamard.apply(x)
            return y if out is None else out.copy_(y)
        return _compiled(fn, x, out)
    y = _factored(x)
    return y if out is None else out.copy_(y)


def _factored(x: torch.Tensor) -> torch.Tensor:
    """The transform by products with Hadamard blocks (torch operations only)."""
    n = x.shape[-1]
    sizes = factors(n)
    rows = x.reshape(-1, n)
    step = max(1, CHUNK_ELEMENTS // n)
    if rows.shape[0] <= step or x.device.type != "cpu" or torch.is_grad_enabled() and x.requires_grad:
        return _kron_apply(rows, sizes).reshape(x.shape)
    out = torch.empty_like(rows)
    for i in range(0, rows.shape[0], step):
        out[i:i + step] = _kron_apply(rows[i:i + step], sizes)
    return out.reshape(x.shape)
