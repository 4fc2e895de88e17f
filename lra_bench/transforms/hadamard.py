"""Orthonormal Walsh-Hadamard transform (Sylvester/natural order) along the last axis.

H_n = H_2 (x) H_2 (x) ... (n = 2^k), so for n = a * b, H_n = H_a (x) H_b and, viewing
x as an (a, b) matrix, H_n x = H_a X H_b. Two matrix products with cached +-1 blocks of
about sqrt(n) each do the O(n^1.5)-flop but memory-friendly work in two passes over
the data, which on CPUs beats log2(n) add/subtract passes (see the attention benchmark).
Lengths that are not powers of two are zero-padded to the next one by `pad_to_pow2`.
The transform is symmetric and orthonormal, hence its own inverse. Matches
`scipy.linalg.hadamard(n) / sqrt(n)`.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch


def next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


@lru_cache(maxsize=None)
def _sylvester(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The unnormalized n x n Sylvester Hadamard matrix (+-1 entries)."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h.to(device, dtype)


def hadamard(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal Walsh-Hadamard transform along the last axis; its length must be 2^k."""
    n = x.shape[-1]
    if not is_pow2(n):
        raise ValueError(f"the Hadamard transform needs a power-of-two length, got {n}; zero-pad to {next_pow2(n)}")
    a = 1 << (n.bit_length() - 1) // 2  # a * b = n with a <= b
    b = n // a
    lead = x.shape[:-1]
    y = x.reshape(-1, b) @ (_sylvester(b, x.device, x.dtype) / math.sqrt(n))  # (M * a, b): X H_b / sqrt(n)
    if a > 1:
        y = _sylvester(a, x.device, x.dtype) @ y.view(-1, a, b)  # (M, a, b): H_a X H_b / sqrt(n)
    return y.reshape(*lead, n)
