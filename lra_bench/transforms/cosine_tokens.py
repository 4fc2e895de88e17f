"""Orthonormal DCT-II (and DST-II) along the token axis of token-major activations, by the
compiled kernel `lra_bench/kernels/dct_tokens.c`: `dct2_tokens` maps (B, n, D) tokens to
(n, B, D) coefficients and `dct3_tokens` back. The LST layers' fast path
(`lra_bench.attention.lst_tokens`) uses them to transform a layer's D input channels once
and project the spectra, rather than transform 3 x D projected channels.

Coefficients are in the usual order k = 0..n-1 and equal `scipy.fft.dct(x, axis=1,
norm="ortho")`. With `sine`, the DST-II convention of `spectral.FastDCT2(sine=True)`: the
DCT-II of the input times (-1)^t, which is the DST-II read in reverse (elementwise products
of coefficients do not see the order). `dct3_tokens` is the inverse and the transpose of
`dct2_tokens` for either.

The kernel handles lengths n = 2^a 3^b 5^c (`supported`), an even number of channels, and
float32 or float64 on CPU; callers check `available` and otherwise use the torch path.

`dct2_rows` and `dct3_rows` run the same kernel on contiguous rows in Makhoul order (the
general core's layout) and read and write its packed coefficients (`spectral.FastDCT2`), so
the core's transforms need no twiddle pass and no copy; `spectral` uses them where
`rows_available` says so.
"""
from __future__ import annotations

import ctypes
import math
from typing import Any, Optional

import torch

from lra_bench import kernels
from lra_bench.transforms.cosine import _makhoul, cached
from lra_bench.transforms.hadamard import common_layout, row_layout, spans_overlap

RADICES = (4, 2, 3, 5)  # the kernel's FFT radices, in the order its stages use them


def radices(n: int) -> Optional[list[int]]:
    """The FFT stages' radices for length n (4s first), or None when n has another prime factor."""
    if n < 1:
        return None
    stages = []
    for r in RADICES:
        while n % r == 0:
            stages.append(r)
            n //= r
    return stages if n == 1 else None


def supported(n: int) -> bool:
    return radices(n) is not None


def _kernel(dtype: torch.dtype) -> Optional[Any]:
    p, i, long = kernels.P, kernels.INT, kernels.LONG
    return kernels.typed_function("dct_tokens", "dct_tokens", dtype,
                                  (long, i, p, p, p, p, long, long, p, long, long, long, long, p, p, p, p, i, i, i))


def available(x: torch.Tensor) -> bool:
    """Whether `dct2_tokens(x)` can run: x (B, n, D) on CPU in float32 or float64, D even, n
    supported, and the kernel built."""
    return (x.device.type == "cpu" and x.dim() == 3 and x.shape[2] % 2 == 0 and supported(x.shape[1])
            and _kernel(x.dtype) is not None)


@cached
def _plan(n: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """(radices int32, stage twiddles, DCT twiddles, Makhoul order int64) for length n."""
    stages = radices(n)
    tw, ns = [], 1
    for r in stages:
        j = torch.arange(ns, dtype=torch.float64).unsqueeze(1)
        angle = -2 * math.pi * j * torch.arange(1, r, dtype=torch.float64) / (ns * r)  # (ns, r - 1)
        tw.append(torch.stack([angle.cos(), angle.sin()], -1).reshape(-1))
        ns *= r
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    s = torch.full_like(k, math.sqrt(2.0 / n))
    s[0] = math.sqrt(1.0 / n)
    angle = math.pi * k / (2 * n)
    dct_tw = torch.cat([torch.stack([s * angle.cos() / 2, s * angle.sin() / 2], -1).reshape(-1),
                        torch.stack([angle.cos() / (s * n), angle.sin() / (s * n)], -1).reshape(-1)])
    perm = _makhoul(n, torch.device("cpu"), torch.float32)[0].contiguous()
    twiddles = torch.cat(tw) if tw else torch.zeros(1, dtype=torch.float64)
    return torch.tensor(stages or [1], dtype=torch.int32), twiddles.to(dtype), dct_tw.to(dtype), perm


def _call(x: torch.Tensor, out: torch.Tensor, n: int, batch: int, src: tuple, dst: tuple, weight, bias, colsum,
          sine: bool, inverse: bool) -> None:
    fn = _kernel(x.dtype)
    if fn is None:
        raise RuntimeError("the compiled dct_tokens kernel is unavailable; check dct_tokens.available() first")
    radix, tw, dct_tw, perm = _plan(n, x.device, x.dtype)
    stages = 0 if n == 1 else radix.numel()
    rc = fn(n, stages, radix.data_ptr(), tw.data_ptr(), dct_tw.data_ptr(), x.data_ptr(), *src, out.data_ptr(), *dst,
            batch, x.shape[-1], perm.data_ptr(), kernels.address(weight), kernels.address(bias),
            kernels.address(colsum), int(sine), int(inverse),
            torch.get_num_threads())
    if rc != 0:
        raise RuntimeError(f"dct_tokens kernel failed (code {rc}: 1 = out of memory, 2 = bad shape)")


def _checked(t: Optional[torch.Tensor], like: torch.Tensor, shape: tuple, what: str) -> Optional[torch.Tensor]:
    if t is None:
        return None
    if tuple(t.shape) != shape:
        raise ValueError(f"{what} has shape {tuple(t.shape)}, expected {shape}")
    return t.to(like.dtype).contiguous()


def dct2_tokens(x: torch.Tensor, weight: Optional[torch.Tensor] = None, sine: bool = False,
                column_sums: bool = False):
    """x (B, n, D), channels contiguous -> orthonormal DCT-II along n, (n, B, D), of
    weight * x (weight: (B, n) or None). With `column_sums`, also sum_t weight * x, (B, D)."""
    batch, n, d = x.shape
    if x.stride(2) != 1:
        x = x.contiguous()
    out = x.new_empty((n, batch, d))
    w = _checked(weight, x, (batch, n), "weight")
    sums = x.new_empty((batch, d)) if column_sums else None
    _call(x, out, n, batch, (x.stride(0), x.stride(1)), (out.stride(0), out.stride(1)), w, None, sums, sine, False)
    return (out, sums) if column_sums else out


def dct3_tokens(c: torch.Tensor, weight: Optional[torch.Tensor] = None, bias: Optional[torch.Tensor] = None,
                sine: bool = False) -> torch.Tensor:
    """c (n, B, D) coefficients -> weight * (DCT-III along n + bias), (B, n, D): the inverse
    (and transpose) of `dct2_tokens` (weight (B, n), bias (D,), each optional)."""
    n, batch, d = c.shape
    if c.stride(2) != 1:
        c = c.contiguous()
    out = c.new_empty((batch, n, d))
    w = _checked(weight, c, (batch, n), "weight")
    b = _checked(bias, c, (d,), "bias")
    _call(c, out, n, batch, (c.stride(0), c.stride(1)), (out.stride(0), out.stride(1)), w, b, None, sine, True)
    return out


# -- the rows layout: the general LST core's packed DCT-II of contiguous, Makhoul-ordered rows

def _rows_kernel(dtype: torch.dtype) -> Optional[Any]:
    p, i, long, f64 = kernels.P, kernels.INT, kernels.LONG, ctypes.c_double
    return kernels.typed_function("dct_tokens", "dct_rows", dtype,
                                  (long, i, p, p, p, p, long, long, p, long, long, long, long, f64, i, i, i))


def rows_available(n: int, dtype: torch.dtype) -> bool:
    """Whether `dct2_rows`/`dct3_rows` run for length n and dtype (the kernel built)."""
    return supported(n) and _rows_kernel(dtype) is not None


def _rows_call(signal: torch.Tensor, pairs: torch.Tensor, factor: float, inverse: bool,
               fourier: int) -> Optional[torch.Tensor]:
    """The rows kernel between signal (..., n) and its coefficients `pairs` (..., n // 2 + 1, 2),
    pairs -> signal when `inverse`; fourier: 0 packed DCT-II, 1 unitary half spectrum, 2 the
    same of a signal in Makhoul order. Returns the output, or None (nothing written) where the
    kernel cannot address both as rows of one (outer, inner) split (`hadamard.row_layout`) or
    their memory overlaps."""
    lead, n = signal.shape[:-1], signal.shape[-1]
    if tuple(pairs.shape) != tuple(lead) + (n // 2 + 1, 2) or pairs.stride(-1) != 1 or pairs.stride(-2) != 2:
        what = "y" if inverse else "out"
        raise ValueError(f"{what} has shape {tuple(pairs.shape)} and strides {pairs.stride()}; expected "
                         f"{tuple(lead) + (n // 2 + 1, 2)} with its pairs contiguous")
    fn = _rows_kernel(signal.dtype)
    if fn is None or pairs.dtype != signal.dtype:
        raise RuntimeError("the compiled dct_rows kernel is unavailable for these tensors; check rows_available()")
    layouts = row_layout(signal), row_layout(pairs.view(tuple(lead) + (-1,)))  # a pair row: 2 (n // 2 + 1) values
    layouts = None if None in layouts else common_layout(*layouts)
    if layouts is None or spans_overlap(signal, pairs):
        return None
    (signal_rows, pair_rows) = layouts
    src, dst = (pairs, signal) if inverse else (signal, pairs)
    (outer, inner, s0, s1), (_, _, d0, d1) = (pair_rows, signal_rows) if inverse else (signal_rows, pair_rows)
    radix, tw, dct_tw, _ = _plan(n, signal.device, signal.dtype)
    stages = 0 if n == 1 else radix.numel()
    rc = fn(n, stages, radix.data_ptr(), tw.data_ptr(), dct_tw.data_ptr(), src.data_ptr(), s0, s1, dst.data_ptr(),
            d0, d1, outer, inner, factor, fourier, int(inverse), torch.get_num_threads())
    if rc != 0:
        raise RuntimeError(f"dct_rows kernel failed (code {rc}: 1 = out of memory, 2 = bad shape)")
    return dst


def dct2_rows(x: torch.Tensor, out: torch.Tensor, nyquist: float = 1.0) -> Optional[torch.Tensor]:
    """Packed orthonormal DCT-II (`spectral.FastDCT2.coeffs`, Nyquist pair times `nyquist`)
    of x (..., n), rows in Makhoul order, into out (..., n // 2 + 1, 2); returns out, or None
    (nothing written) where the kernel cannot address them (see `_rows_call`)."""
    return _rows_call(x, out, nyquist, inverse=False, fourier=0)


def dct3_rows(y: torch.Tensor, out: torch.Tensor, nyquist: float = 1.0) -> Optional[torch.Tensor]:
    """The inverse of `dct2_rows` (`spectral.FastDCT2.signal`, which reads the Nyquist pair as
    `nyquist` times its average): y (..., n // 2 + 1, 2) -> out (..., n), Makhoul order; out,
    or None as `dct2_rows`."""
    return _rows_call(out, y, nyquist, inverse=True, fourier=0)


def rfft_rows(x: torch.Tensor, out: torch.Tensor, interior: float = 1.0,
              makhoul: bool = False) -> Optional[torch.Tensor]:
    """`torch.fft.rfft(x, norm="ortho")` of x (..., n) as (re, im) pairs in out (...,
    n // 2 + 1, 2), the bins 0 < k < n/2 times `interior`; with `makhoul`, x's rows are in
    Makhoul order (x[..., makhoul_perm] of the signal transformed). out, or None as
    `dct2_rows`."""
    return _rows_call(x, out, interior, inverse=False, fourier=2 if makhoul else 1)


def irfft_rows(y: torch.Tensor, out: torch.Tensor, interior: float = 1.0,
               makhoul: bool = False) -> Optional[torch.Tensor]:
    """`torch.fft.irfft(y, n, norm="ortho")` of the (re, im) pairs y (..., n // 2 + 1, 2)
    into out (..., n), the bins 0 < k < n/2 read times `interior` (DC's and Nyquist's
    imaginary parts are ignored, as torch does), written in Makhoul order with `makhoul`;
    out, or None as `dct2_rows`."""
    return _rows_call(out, y, interior, inverse=True, fourier=2 if makhoul else 1)
