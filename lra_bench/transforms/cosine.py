"""Orthonormal DCT (types I-IV) and DST (types II-III) along the last axis, by FFT.

DCT-II is one real FFT of length n (Makhoul, "A fast cosine transform in one and two
dimensions", IEEE TASSP 1980): reorder the input (even samples, then odd samples
reversed), rFFT, rotate the half spectrum by a twiddle and read the real parts forwards
and the negated imaginary parts backwards. DCT-III, its inverse and transpose, runs the
same steps backwards through an irFFT. DST-II/III are DCT-II/III with alternating input
signs and a reversed output (resp. input). DCT-I uses an rFFT of the even extension
(length 2n - 2) and DCT-IV a complex FFT of length 2n. Reorder indices, twiddles and
sign vectors are cached per (n, device, dtype): nothing is rebuilt per call.

Results equal `scipy.fft.dct/dst(x, type, norm="ortho")` and `idct/idst` of the same.
Everything is differentiable through torch's FFT autograd.
"""
from __future__ import annotations

import functools
import math

import torch

DCT_TYPES = (1, 2, 3, 4)


def cached(fn):
    """Memoise a constant-tensor builder per (length, device, dtype): bounded, and built
    outside inference mode so the tensors can be saved for backward later."""
    @functools.lru_cache(maxsize=64)
    @functools.wraps(fn)
    def build(*args):
        with torch.inference_mode(False), torch.no_grad():
            return fn(*args)
    return build


def _complex(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


@cached
def _makhoul(n: int, device: torch.device, dtype: torch.dtype):
    """(perm, inverse perm, ortho DCT-II twiddle, its inverse) for length n."""
    perm = torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2).flip(0)])
    inv_perm = torch.empty_like(perm)
    inv_perm[perm] = torch.arange(n)
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    scale = torch.full_like(k, math.sqrt(2.0 / n))
    scale[0] = math.sqrt(1.0 / n)
    angle = -math.pi * k / (2 * n)
    cdt = _complex(dtype)
    return (perm.to(device), inv_perm.to(device), torch.polar(scale, angle).to(device, cdt),
            torch.polar(1.0 / scale, -angle).to(device, cdt))


@cached
def _alternating(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return (1.0 - 2.0 * (torch.arange(n) % 2)).to(device, dtype)  # +1, -1, +1, ...


def dct2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DCT-II along the last axis."""
    n = x.shape[-1]
    perm, _, twiddle, _ = _makhoul(n, x.device, x.dtype)
    z = torch.fft.rfft(x.index_select(-1, perm)) * twiddle  # (..., n//2 + 1)
    tail = n - z.shape[-1]  # X[n - k] = -Im z[k] for k = 1..tail
    return torch.cat([z.real, z.imag[..., 1:tail + 1].flip(-1).neg()], dim=-1)


def dct3(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DCT-III along the last axis: the inverse and transpose of `dct2`."""
    n = x.shape[-1]
    _, inv_perm, _, inv_twiddle = _makhoul(n, x.device, x.dtype)
    h = n // 2 + 1
    # spectrum[k] = (X[k] - i X[n-k]) * inv_twiddle[k], with X[n] = 0 for k = 0
    imag = torch.cat([x.new_zeros(x.shape[:-1] + (1,)), x[..., n - h + 1:].flip(-1).neg()], dim=-1)
    v = torch.fft.irfft(torch.complex(x[..., :h], imag) * inv_twiddle, n=n)
    return v.index_select(-1, inv_perm)


def dst2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DST-II along the last axis."""
    return dct2(x * _alternating(x.shape[-1], x.device, x.dtype)).flip(-1)


def dst3(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DST-III along the last axis: the inverse and transpose of `dst2`."""
    return dct3(x.flip(-1)) * _alternating(x.shape[-1], x.device, x.dtype)


@cached
def _dct1_weights(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    w = torch.ones(n, dtype=torch.float64)
    w[0] = w[-1] = math.sqrt(2.0)
    return w.to(device, dtype)


def dct1(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DCT-I along the last axis (self-inverse); needs n >= 2."""
    n = x.shape[-1]
    if n < 2:
        raise ValueError("DCT-I needs a length of at least 2")
    w = _dct1_weights(n, x.device, x.dtype)
    xw = x * w
    even = torch.cat([xw, xw[..., 1:n - 1].flip(-1)], dim=-1)  # even extension, length 2n - 2
    return torch.fft.rfft(even).real / (w * math.sqrt(2.0 * (n - 1)))


@cached
def _dct4_twiddles(n: int, device: torch.device, dtype: torch.dtype):
    k = torch.arange(n, dtype=torch.float64)
    pre = torch.polar(torch.ones(n, dtype=torch.float64), -math.pi * k / (2 * n))
    post = torch.polar(torch.full((n,), math.sqrt(2.0 / n), dtype=torch.float64), -math.pi * (2 * k + 1) / (4 * n))
    cdt = _complex(dtype)
    return pre.to(device, cdt), post.to(device, cdt)


def dct4(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DCT-IV along the last axis (self-inverse)."""
    n = x.shape[-1]
    pre, post = _dct4_twiddles(n, x.device, x.dtype)
    return (torch.fft.fft(x * pre, n=2 * n)[..., :n] * post).real


_DCT = {1: (dct1, dct1), 2: (dct2, dct3), 3: (dct3, dct2), 4: (dct4, dct4)}
_DST = {2: (dst2, dst3), 3: (dst3, dst2)}


def _pick(table: dict, kind: str, type: int):
    if type not in table:
        raise ValueError(f"orthonormal {kind} type {type} is not supported; use one of {sorted(table)}")
    return table[type]


def dct(x: torch.Tensor, type: int = 2) -> torch.Tensor:
    """Orthonormal DCT of `type` (1-4) along the last axis (= scipy.fft.dct(norm='ortho'))."""
    return _pick(_DCT, "DCT", type)[0](x)


def idct(x: torch.Tensor, type: int = 2) -> torch.Tensor:
    """Inverse of `dct(x, type)` (= scipy.fft.idct(norm='ortho'))."""
    return _pick(_DCT, "DCT", type)[1](x)


def dst(x: torch.Tensor, type: int = 2) -> torch.Tensor:
    """Orthonormal DST of `type` (2-3) along the last axis (= scipy.fft.dst(norm='ortho'))."""
    return _pick(_DST, "DST", type)[0](x)


def idst(x: torch.Tensor, type: int = 2) -> torch.Tensor:
    """Inverse of `dst(x, type)` (= scipy.fft.idst(norm='ortho'))."""
    return _pick(_DST, "DST", type)[1](x)
