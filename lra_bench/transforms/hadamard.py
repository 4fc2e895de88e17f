"""Orthonormal Walsh-Hadamard transform (Sylvester/natural order) along the last axis.

H_n = H_2 (x) H_2 (x) ... (n = 2^k), so for n = a * b, H_n = H_a (x) H_b and, viewing
x as an (a, b) matrix, H_n x = H_a X H_b. Matrix products with cached +-1 blocks (two
of ~sqrt(n) up to n = 256, three of ~cbrt(n) above: 48 multiply-adds per value at
n = 4096 instead of 128) do the work in a few passes, which on CPUs beats log2(n)
add/subtract passes over memory by about 5x. On CPUs, signals are processed in chunks of
about 2 MiB, so the products run on data still in cache (3x faster at n = 4096 on 2
cores than unchunked two-factor products); GPUs get one set of large products.
Lengths that are not powers of two are rejected here; the attention layers zero-pad
them to `next_pow2(n)` as padding tokens.
The transform is symmetric and orthonormal, hence its own inverse. Matches
`scipy.linalg.hadamard(n) / sqrt(n)`.
"""
from __future__ import annotations

import math

import torch

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


def hadamard(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal Walsh-Hadamard transform along the last axis; its length must be 2^k."""
    n = x.shape[-1]
    if not is_pow2(n):
        raise ValueError(f"the Hadamard transform needs a power-of-two length, got {n}; zero-pad to {next_pow2(n)}")
    sizes = factors(n)
    rows = x.reshape(-1, n)
    step = max(1, CHUNK_ELEMENTS // n)
    if rows.shape[0] <= step or x.device.type != "cpu" or torch.is_grad_enabled() and x.requires_grad:
        return _kron_apply(rows, sizes).reshape(x.shape)
    out = torch.empty_like(rows)
    for i in range(0, rows.shape[0], step):
        out[i:i + step] = _kron_apply(rows[i:i + step], sizes)
    return out.reshape(x.shape)
