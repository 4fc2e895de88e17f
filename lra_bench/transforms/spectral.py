"""Spectral bases for the LST attention core. Each acts along the last axis and returns
coefficients with a trailing component axis (size 1, or 2 for packed spectra), so the
core's elementwise algebra and its sums over channels (axis -3) are the same for all.

`FastDCT2` (and, with `sine=True`, DST-II) works on inputs already in Makhoul order
(even samples, then odd samples reversed: see `makhoul_perm`; the layer reorders its
tokens once, before the projections) and returns DCT-II coefficients *packed*: the real
view of the twiddled rFFT half spectrum z, where X[k] = Re z_k and X[n-k] = -Im z_k
(Makhoul, IEEE TASSP 1980). Elementwise products of coefficients are elementwise
products of packed entries, and the inverse needs no unpacking, so a transform costs
one rFFT plus one twiddle pass. Two slots are special: Im z_0 is always 0 and, for even
n, the Nyquist coefficient appears twice (Re and -Im of z_{n/2}); `grad_coeffs` and
`grad_signal` account for both, so the adjoints are exact. DST-II coefficients are the
DCT-II coefficients of the sign-alternated input read in reverse; elementwise products
do not see the order, so the reversal is dropped and only the signs remain.

On CPU (float32/float64, n = 2^a 3^b 5^c) the cosine transforms run in the compiled kernel
behind `cosine_tokens.dct2_rows`/`dct3_rows`, which reads and writes the packed form
directly (Nyquist factors included) and leaves its input as it was; elsewhere, torch's rFFT
and a twiddle product.

`Orthonormal` wraps any orthonormal pair (T, T^-1) along the last axis (Hadamard, DCT
types I, III, IV): its adjoints are T^-1 and T.

`Fourier` gives the unitary DFT's half spectrum as (re, im) pairs in the same slots as the
packed DCT, and says through `complex_runs` that its heads mix as complex numbers.
`MixedBasis` runs DCT-II, DST-II, Hadamard and Fourier heads in one group, all in Makhoul
order.
"""
from __future__ import annotations

import functools
import itertools
from typing import Callable, Optional, Sequence

import torch

from lra_bench.transforms import cosine_tokens
from lra_bench.transforms.cosine import _complex, _makhoul, cached, dct, dst, idct, idst
from lra_bench.transforms.hadamard import hadamard, is_pow2, next_pow2


# Without the compiled kernel (off CPU, say), MixedBasis transforms its cosine heads' rows
# with one FFT call per sequence (and slot) and run of cosine heads, skipping the other
# heads' rows, up to this many calls; above,
# one call for every row is cheaper: with many calls each is small and MKL runs them less
# well (`mixed`, hidden 256, n = 2048: at batch 2 per-run calls gain 0.03x the projections'
# time, at batch 8 they lose 0.09x).
PER_RUN_CALLS = 16


def makhoul_perm(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(perm, inverse perm): x[perm] is x in Makhoul order."""
    perm, inv_perm, _, _ = _makhoul(n, device, torch.float32)
    return perm, inv_perm


class Orthonormal:
    """A real orthonormal transform T (last axis) with inverse T^-1 = T^T."""

    makhoul_order = False

    def __init__(self, forward: Callable, inverse: Callable, pad_pow2: bool = False, writes_out: bool = False):
        """writes_out: forward and inverse take `out=` (a view, or the input itself)."""
        self._fwd, self._inv, self.pad_pow2, self.writes_out = forward, inverse, pad_pow2, writes_out

    def length(self, n: int) -> int:
        return next_pow2(n) if self.pad_pow2 else n

    def sign_inputs_(self, x: torch.Tensor) -> torch.Tensor:
        """The signs the input takes before `coeffs`, in place: none."""
        return x

    def coeffs(self, x: torch.Tensor, overwrite: bool = False) -> torch.Tensor:
        """T x with a trailing component axis; with `overwrite`, in x's memory where the
        transform allows."""
        y = self._fwd(x, out=x) if overwrite and self.writes_out else self._fwd(x)
        return y.unsqueeze(-1)

    def signal(self, y: torch.Tensor, n: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Inverse of `coeffs`, cropped to the first n positions (into `out` if given; may
        overwrite `y`). Without `out` the result is a new tensor."""
        y = y.squeeze(-1)
        if out is None or not self.writes_out:
            x = self._inv(y)[..., :n]
            return x if out is None else out.copy_(x)
        if y.shape[-1] == n:
            return self._inv(y, out=out)
        return out.copy_(self._inv(y, out=y)[..., :n])

    def grad_coeffs(self, g: torch.Tensor) -> torch.Tensor:
        """signal^T g = T g."""
        return self.coeffs(g)

    def grad_signal(self, gy: torch.Tensor, n: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """coeffs^T gy = T^-1 gy, cropped to n (may overwrite gy)."""
        return self.signal(gy, n, out)


def _kernel_runs(n: int, x: torch.Tensor) -> bool:
    """Whether the compiled rows kernel (`cosine_tokens.dct2_rows`) transforms x's rows."""
    return x.device.type == "cpu" and cosine_tokens.rows_available(n, x.real.dtype)


def _compiled_runs(src: torch.Tensor, src_packed: bool, dst: torch.Tensor, runs: Optional[Sequence[tuple[int, int]]],
                   transform: Callable, nyquist: float) -> bool:
    """`transform` (`cosine_tokens.dct2_rows` or `dct3_rows`) of src into dst, both
    (..., H, Dh, ...), for the heads in `runs` (all of both tensors when None): False where the
    kernel cannot address a run's rows (earlier runs may then have been written; the caller
    runs torch's path, which writes them all)."""
    src_axis, dst_axis = (-4, -3) if src_packed else (-3, -4)
    pairs = [(src, dst)] if runs is None else [(src.narrow(src_axis, a, b - a), dst.narrow(dst_axis, a, b - a))
                                               for a, b in runs]
    return all(transform(s, d, nyquist) is not None for s, d in pairs)


def _compiled_coeffs(x: torch.Tensor, runs: Optional[Sequence[tuple[int, int]]],
                     nyquist: float) -> Optional[torch.Tensor]:
    """Packed DCT-II coefficients (..., n // 2 + 1, 2) of x (..., n), Nyquist pair times
    `nyquist`, by the compiled kernel, in a new tensor: of the heads in `runs` ([start, stop)
    along axis -3 of x (..., H, Dh, n); other heads' rows unwritten), or of every row when
    None. None where the kernel does not apply (nothing returned)."""
    n = x.shape[-1]
    if not _kernel_runs(n, x):
        return None
    c = x.new_empty(x.shape[:-1] + (n // 2 + 1, 2))
    return c if _compiled_runs(x, False, c, runs, cosine_tokens.dct2_rows, nyquist) else None


def _compiled_signal(y: torch.Tensor, n: int, runs: Optional[Sequence[tuple[int, int]]], nyquist: float,
                     out: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The inverse of `_compiled_coeffs`: y (..., n // 2 + 1, 2) -> out (..., n) (a new tensor
    when None), for the heads in `runs` or every row; y is left as it is. None where the
    kernel does not apply (`out` may then hold some runs; the caller's torch path rewrites
    them)."""
    if not _kernel_runs(n, y) or y.is_complex():
        return None
    res = y.new_empty(y.shape[:-2] + (n,)) if out is None else out
    if res.dtype != y.dtype:
        return None
    y = y if y.is_contiguous() else y.contiguous()  # pairs contiguous, as the kernel reads them
    return res if _compiled_runs(y, True, res, runs, cosine_tokens.dct3_rows, nyquist) else None


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """[start, stop) of each run of consecutive True flags."""
    runs, start = [], None
    for i, flag in enumerate(list(flags) + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i))
            start = None
    return runs


class FastDCT2:
    """Orthonormal DCT-II (DST-II with `sine`) of Makhoul-ordered input, packed.

    `sine` may also be one flag per head (axis -3 of the core's signals): DCT and DST heads
    then share one set of transforms, differing only in the signs of their inputs and
    outputs (for DST, (-1)^t of the original position t; in Makhoul order that is + for
    the first ceil(n/2) positions and - for the rest).
    """

    makhoul_order = True

    def __init__(self, sine: bool | Sequence[bool] = False):
        flags = [sine] if isinstance(sine, bool) else [bool(f) for f in sine]
        self.sine = True if all(flags) else False if not any(flags) else None  # None: some heads only
        self._flags = flags
        # [start, stop) of each run of consecutive DST heads
        self._sine_runs = _runs(flags)

    def length(self, n: int) -> int:
        return n

    def sine_flags(self, heads: int) -> list[bool]:
        """Whether each of `heads` heads is a DST head."""
        return list(self._flags) if self.sine is None else [self.sine] * heads

    def _output_sign_(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., H, Dh, n) *= the output signs, in place: the DST heads' last n // 2 values
        negated (runs of DST heads at a time, not a product with a sign tensor)."""
        tail = x[..., (x.shape[-1] + 1) // 2:]
        if self.sine is True:
            tail.neg_()
        else:
            for start, stop in self._sine_runs:
                tail[..., start:stop, :, :].neg_()
        return x

    def sign_inputs_(self, x: torch.Tensor) -> torch.Tensor:
        """The signs the (Makhoul-ordered) input x (..., H, Dh, n) takes before `coeffs`, in
        place: for DST heads (-1)^t of the original position t, which is the output signs'
        pattern (+ for the first ceil(n/2) positions, - for the rest)."""
        return self._output_sign_(x) if self.sine is not False else x

    def coeffs(self, x: torch.Tensor, overwrite: bool = False) -> torch.Tensor:
        """Packed DCT-II coefficients (..., n // 2 + 1, 2) (`overwrite` is accepted for the
        bases' common interface)."""
        return self._coeffs(x, 1.0)

    def _coeffs(self, x: torch.Tensor, nyquist: float) -> torch.Tensor:
        """`coeffs` with the Nyquist pair times `nyquist`: by the compiled rows kernel on CPU,
        else an rFFT and a twiddle product."""
        n = x.shape[-1]
        c = _compiled_coeffs(x, None, nyquist)
        if c is not None:
            return c
        _, _, twiddle, _ = _makhoul(n, x.device, x.dtype)
        z = torch.fft.rfft(x)
        z.mul_(twiddle)
        c = torch.view_as_real(z)
        return self._scale_nyquist(c, n, nyquist) if nyquist != 1.0 else c

    def signal(self, y: torch.Tensor, n: int, out: Optional[torch.Tensor] = None,
               output_sign: bool = True) -> torch.Tensor:
        """Inverse of `coeffs` (into `out` if given); may overwrite `y` (callers pass buffers they own)."""
        return self._signal(y, n, out, 1.0, output_sign)

    def _signal(self, y: torch.Tensor, n: int, out: Optional[torch.Tensor], nyquist: float,
                output_sign: bool) -> torch.Tensor:
        """`signal` reading the Nyquist pair times `nyquist`."""
        x = _compiled_signal(y, n, None, nyquist, out)
        if x is None:
            if nyquist != 1.0:
                self._scale_nyquist(y, n, nyquist)
            _, _, _, inv_twiddle = _makhoul(n, y.device, y.dtype)
            z = torch.view_as_complex(y if y.is_contiguous() else y.contiguous())
            x = torch.fft.irfft(z.mul_(inv_twiddle), n=n, out=out)
        return self._output_sign_(x) if self.sine is not False and output_sign else x

    @staticmethod
    def _scale_nyquist(y: torch.Tensor, n: int, factor: float) -> torch.Tensor:
        if n % 2 == 0 and n > 1:
            y[..., -1, :].mul_(factor)
        return y

    def grad_coeffs(self, g: torch.Tensor) -> torch.Tensor:
        """signal^T g: signal() reads the Nyquist pair as its average, so each copy gets half."""
        if self.sine is not False:
            g = self._output_sign_(g.clone())
        return self._coeffs(g, 0.5)

    def grad_signal(self, gy: torch.Tensor, n: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """coeffs^T gy (may overwrite gy): coeffs() writes the Nyquist coefficient twice.
        (The DST input signs are `sign_inputs_`, applied by the core, not part of coeffs.)"""
        return self._signal(gy, n, out, 2.0, output_sign=False)


def _blocks_contiguous(t: torch.Tensor) -> bool:
    """Whether each (H, Dh, m) block of t (..., H, Dh, m) is contiguous."""
    return t[(0,) * (t.dim() - 3)].is_contiguous()


MIXED_KINDS = ("dct", "dst", "hadamard", "fft")


class MixedBasis:
    """DCT-II, DST-II, Walsh-Hadamard and Fourier heads as one group (one projection, one
    token order, one core call): the mixed layers' basis. With Hadamard heads it needs a
    power-of-two length.

    Each head is a DCT-II, DST-II, Hadamard or Fourier head (`kinds`, in any order, so the
    layer's heads keep their order and its weights need no reindexing); all take
    Makhoul-ordered input.
    - Hadamard heads: for n = 2^k the Makhoul order P maps index bits linearly over GF(2)
      (position j holds sample 2j, or 2(n-1-j)+1 when j's top bit is set: the sample's bit 0
      is j's top bit t, its bit i+1 is j's bit i XOR t), so H P = Q H for a permutation Q:
      the Hadamard coefficients of the reordered signal are the usual ones permuted, which
      elementwise products and sums over channels do not see, and the inverse gives back the
      reordered signal, which the layer reorders anyway. A Hadamard row's n coefficients sit
      in the first n of its packed slots (n + 2 for n > 1); the rest are zero.
    - Fourier heads: the half spectrum of the signal in natural order, as `Fourier` has it
      ((re, im) pairs in the same slots; `complex_runs`), read from and written back to
      Makhoul order (the compiled kernel's `makhoul` mode; torch's path gathers).
    Separate groups would project, reorder and mix once per group: at n = 4096 (batch 2,
    hidden 256) that costs about 0.04-0.05x of the projections' time per extra group.
    """

    makhoul_order = True

    def __init__(self, kinds: Sequence[str]):
        """kinds: each head's transform, 'dct', 'dst', 'hadamard' or 'fft', in the group's head order."""
        unknown = sorted(set(kinds) - set(MIXED_KINDS))
        if unknown:
            raise ValueError(f"unknown head kinds {unknown}; expected {', '.join(MIXED_KINDS)}")
        self.kinds = list(kinds)
        self.cosine = FastDCT2(sine=[k == "dst" for k in self.kinds])  # other heads: unsigned
        self._cosine_runs = _runs([k in ("dct", "dst") for k in self.kinds])
        self._hadamard_runs = _runs([k == "hadamard" for k in self.kinds])
        self._fourier_runs = _runs([k == "fft" for k in self.kinds])

    def length(self, n: int) -> int:
        if self._hadamard_runs and not is_pow2(n):
            raise ValueError(f"a mixed basis with Hadamard heads needs a power-of-two length, got {n}")
        return n

    def complex_runs(self, heads: int) -> list[tuple[int, int]]:
        return list(self._fourier_runs)

    def sign_inputs_(self, x: torch.Tensor) -> torch.Tensor:
        """The DST heads' input signs, in place (other heads take none)."""
        return self.cosine.sign_inputs_(x)

    def _per_run(self, t: torch.Tensor, *others: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """t (..., H, Dh, m) as (L, H, Dh, m), leading axes flattened, when the cosine heads'
        FFTs should run one call per leading index and run of cosine heads (each such block
        is contiguous, so torch reads it in place; it still writes `out=` through a copy; the
        other heads' rows are skipped); None to transform every row in one call instead (all
        heads cosine, or too many calls)."""
        lead = t[..., 0, 0, 0].numel()
        if self._cosine_runs == [(0, len(self.kinds))] or lead * len(self._cosine_runs) > PER_RUN_CALLS:
            return None
        if not t.is_contiguous() or any(o is not None and not _blocks_contiguous(o) for o in others):
            return None
        return t.view((lead,) + t.shape[-3:])

    def _rfft(self, x: torch.Tensor) -> torch.Tensor:
        """rFFT of (..., H, Dh, n) along n, at least of the cosine heads' rows."""
        xs = self._per_run(x)
        if xs is None:
            return torch.fft.rfft(x)
        z = torch.empty(x.shape[:-1] + (x.shape[-1] // 2 + 1,), dtype=_complex(x.dtype), device=x.device)
        zs = z.view((xs.shape[0],) + z.shape[-3:])
        for i in range(xs.shape[0]):
            for a, b in self._cosine_runs:
                torch.fft.rfft(xs[i, a:b], out=zs[i, a:b])
        return z

    def _irfft(self, z: torch.Tensor, n: int, out: Optional[torch.Tensor]) -> torch.Tensor:
        """irFFT of (..., H, Dh, S) to length n, into `out` or a new tensor, at least of the
        cosine heads' rows (the other heads' rows are the caller's to write)."""
        zs = self._per_run(z, out)
        if zs is None:
            return torch.fft.irfft(z, n=n, out=out)
        res = z.new_empty(z.shape[:-1] + (n,), dtype=z.real.dtype) if out is None else out
        for i, idx in enumerate(itertools.product(*map(range, z.shape[:-3]))):
            for a, b in self._cosine_runs:
                torch.fft.irfft(zs[i, a:b], n=n, out=res[idx][a:b])
        return res

    def _forward(self, x: torch.Tensor, adjoint: bool) -> torch.Tensor:
        """(..., H, Dh, n) -> (..., H, Dh, n // 2 + 1, 2): `coeffs`, or with `adjoint` the
        adjoint of `signal`. The cosine heads' packed coefficients (the Nyquist pair halved
        for the adjoint) by the compiled kernel, else by rFFT (see `_rfft`) and a twiddle
        product; then the Fourier heads' half spectra (interior bins doubled for the adjoint)
        and the Hadamard heads' transforms and zeros."""
        n, nyquist = x.shape[-1], 0.5 if adjoint else 1.0
        c = _compiled_coeffs(x, self._cosine_runs, nyquist)
        if c is None and not self._cosine_runs:
            c = x.new_empty(x.shape[:-1] + (n // 2 + 1, 2))
        elif c is None:
            _, _, twiddle, _ = _makhoul(n, x.device, x.dtype)
            z = self._rfft(x)
            c = torch.view_as_real(z)
            for a, b in self._cosine_runs:
                z[..., a:b, :, :].mul_(twiddle)
                if nyquist != 1.0:
                    self.cosine._scale_nyquist(c[..., a:b, :, :, :], n, nyquist)
        for a, b in self._fourier_runs:
            _fourier_coeffs(x[..., a:b, :, :], c[..., a:b, :, :, :], int(adjoint), makhoul=True)
        for a, b in self._hadamard_runs:
            rows = c[..., a:b, :, :, :].flatten(-2)  # n coefficients, then 1 or 2 zeros
            hadamard(x[..., a:b, :, :], out=rows[..., :n])
            rows[..., n:].zero_()
        return c

    def _inverse(self, y: torch.Tensor, n: int, out: Optional[torch.Tensor], adjoint: bool) -> torch.Tensor:
        """(..., H, Dh, n // 2 + 1, 2) -> (..., H, Dh, n), into `out` or a new tensor: `signal`,
        or with `adjoint` the adjoint of `coeffs`; may overwrite y. The cosine heads by the
        compiled kernel, else by irFFT (see `_irfft`); then the Fourier heads and the
        Hadamard heads (no path before touches their part of y)."""
        nyquist = 2.0 if adjoint else 1.0
        res = _compiled_signal(y, n, self._cosine_runs, nyquist, out)
        if res is None and not self._cosine_runs:
            res = y.new_empty(y.shape[:-2] + (n,)) if out is None else out
        elif res is None:
            _, _, _, inv_twiddle = _makhoul(n, y.device, y.dtype)
            y = y if y.is_contiguous() else y.contiguous()
            for a, b in self._cosine_runs:
                if nyquist != 1.0:
                    self.cosine._scale_nyquist(y[..., a:b, :, :, :], n, nyquist)
                torch.view_as_complex(y)[..., a:b, :, :].mul_(inv_twiddle)
            res = self._irfft(torch.view_as_complex(y), n, out)
        if self.cosine.sine is not False and not adjoint:  # the DST output signs (the adjoint's are the core's)
            self.cosine._output_sign_(res)
        for a, b in self._fourier_runs:
            _fourier_signal(y[..., a:b, :, :, :], n, res[..., a:b, :, :], -int(adjoint), makhoul=True)
        for a, b in self._hadamard_runs:
            hadamard(y[..., a:b, :, :, :].flatten(-2)[..., :n], out=res[..., a:b, :, :])
        return res

    def coeffs(self, x: torch.Tensor, overwrite: bool = False) -> torch.Tensor:
        return self._forward(x, adjoint=False)

    def signal(self, y: torch.Tensor, n: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Inverse of `coeffs` (into `out` if given, else a new tensor); may overwrite `y`."""
        return self._inverse(y, n, out, adjoint=False)

    def grad_coeffs(self, g: torch.Tensor) -> torch.Tensor:
        """signal^T g, as FastDCT2.grad_coeffs for the cosine heads and Fourier.grad_coeffs for
        the Fourier heads."""
        if self.cosine.sine is not False:
            g = self.cosine._output_sign_(g.clone())
        return self._forward(g, adjoint=True)

    def grad_signal(self, gy: torch.Tensor, n: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """coeffs^T gy (may overwrite gy), as FastDCT2.grad_signal for the cosine heads and
        Fourier.grad_signal for the Fourier heads."""
        return self._inverse(gy, n, out, adjoint=True)


@cached
def _hermitian_weight(n: int, device: torch.device, dtype: torch.dtype, power: int = 1) -> torch.Tensor:
    """Multiplicity of each rFFT bin in the full spectrum (1 for DC and Nyquist, else 2), to
    `power` (1 or -1), as (n // 2 + 1, 1): it scales the (re, im) pairs of `view_as_real`, a
    real product where a complex spectrum times a real tensor would be a complex one."""
    w = torch.full((n // 2 + 1, 1), 2.0 ** power, dtype=dtype)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return w.to(device)


def _fourier_coeffs(x: torch.Tensor, out: Optional[torch.Tensor], power: int, makhoul: bool) -> torch.Tensor:
    """rFFT (ortho) of x (..., n) as (re, im) pairs (..., n // 2 + 1, 2), into `out` or a new
    tensor, the interior bins times 2 ** power (the Hermitian weight; power 0 or 1); with
    `makhoul`, x's rows are in Makhoul order. By the compiled kernel on CPU
    (`cosine_tokens.rfft_rows`) where it applies, else by torch."""
    n = x.shape[-1]
    if _kernel_runs(n, x):
        res = x.new_empty(x.shape[:-1] + (n // 2 + 1, 2)) if out is None else out
        if cosine_tokens.rfft_rows(x, res, 2.0 ** power, makhoul) is not None:
            return res
    if makhoul:
        x = x.index_select(-1, makhoul_perm(n, x.device)[1])  # back to natural order
    pairs = torch.view_as_real(torch.fft.rfft(x, norm="ortho"))
    if power:
        pairs.mul_(_hermitian_weight(n, x.device, x.dtype))
    return pairs if out is None else out.copy_(pairs)


def _fourier_signal(y: torch.Tensor, n: int, out: Optional[torch.Tensor], power: int, makhoul: bool) -> torch.Tensor:
    """irFFT (ortho) of the (re, im) pairs y (..., n // 2 + 1, 2), the interior bins read times
    2 ** power (power 0 or -1), into `out` or a new tensor (in Makhoul order with `makhoul`), by
    the compiled kernel where it applies (y left as it was), else by torch (which may overwrite y)."""
    if y.stride(-1) != 1 or y.stride(-2) != 2:
        y = y.contiguous()  # pairs contiguous, as the kernel and view_as_complex read them
    if _kernel_runs(n, y):
        res = y.new_empty(y.shape[:-2] + (n,)) if out is None else out
        if res.dtype == y.dtype and cosine_tokens.irfft_rows(y, res, 2.0 ** power, makhoul) is not None:
            return res
    if power:
        y.mul_(_hermitian_weight(n, y.device, y.dtype, -1))  # halves: exact
    if not makhoul:
        return torch.fft.irfft(torch.view_as_complex(y), n=n, norm="ortho", out=out)
    x = torch.fft.irfft(torch.view_as_complex(y), n=n, norm="ortho")
    return torch.index_select(x, -1, makhoul_perm(n, x.device)[0], out=out)


class Fourier:
    """The unitary DFT as a half spectrum of (re, im) pairs (..., n // 2 + 1, 2).

    Heads using it multiply coefficients as complex numbers (Q * conj(K) * V), so the core
    mixes them apart (`complex_runs`: every head). irFFT reads each interior bin twice (as
    itself and its conjugate), so its adjoint doubles them, and rFFT's adjoint halves them.
    """

    makhoul_order = False

    def length(self, n: int) -> int:
        return n

    def complex_runs(self, heads: int) -> list[tuple[int, int]]:
        return [(0, heads)]

    def sign_inputs_(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def coeffs(self, x: torch.Tensor, overwrite: bool = False) -> torch.Tensor:
        return _fourier_coeffs(x, None, 0, makhoul=False)

    def signal(self, y: torch.Tensor, n: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        return _fourier_signal(y, n, out, 0, makhoul=False)

    def grad_coeffs(self, g: torch.Tensor) -> torch.Tensor:
        return _fourier_coeffs(g, None, 1, makhoul=False)

    def grad_signal(self, gy: torch.Tensor, n: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """May overwrite gy."""
        return _fourier_signal(gy, n, out, -1, makhoul=False)


def transform_pair(kind: str, dct_type: int = 2) -> tuple[Callable, Callable]:
    """(T, T^-1) along the last axis for 'dct' (of `dct_type`), 'dst' (type II) or 'hadamard'."""
    if kind == "dct":
        return functools.partial(dct, type=dct_type), functools.partial(idct, type=dct_type)
    if kind == "dst":
        return dst, idst
    if kind == "hadamard":
        return hadamard, hadamard
    raise ValueError(f"unknown transform kind {kind!r}; expected dct, dst or hadamard")


def basis(kind: str, dct_type: int = 2):
    """The spectral basis for a head kind: 'dct' (of `dct_type`), 'dst', 'hadamard' or 'fft'."""
    if kind == "dct" and dct_type == 2:
        return FastDCT2()
    if kind == "dst":
        return FastDCT2(sine=True)
    if kind in ("dct", "hadamard"):
        return Orthonormal(*transform_pair(kind, dct_type), pad_pow2=kind == "hadamard", writes_out=kind == "hadamard")
    if kind == "fft":
        return Fourier()
    raise ValueError(f"unknown transform kind {kind!r}; expected dct, dst, hadamard or fft")
