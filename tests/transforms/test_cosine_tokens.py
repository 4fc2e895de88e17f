"""The token-axis DCT kernel (transforms.cosine_tokens): scipy's orthonormal DCT-II along the
tokens of (B, n, D) activations, its inverse and transpose, and what it folds in (masks,
DST signs, output bias, column sums); and the same kernel on contiguous rows in the general
core's packed form (`dct2_rows`, `dct3_rows`)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.fft as sf
import torch

from lra_bench import kernels
from lra_bench.transforms.cosine import _makhoul
from lra_bench.transforms.cosine_tokens import (available, dct2_rows, dct2_tokens, dct3_rows, dct3_tokens, irfft_rows,
                                                radices, rfft_rows, rows_available, supported)

pytestmark = pytest.mark.skipif(kernels.compiler() is None, reason="no C compiler on this machine")

LENGTHS = [1, 2, 3, 4, 5, 6, 12, 100, 250, 1000, 2000, 4000, 4096]
WIDTHS = [2, 34, 64]  # 34: 17 channel pairs, one vector tile and a scalar tail


def tol(dtype):
    return 2e-6 if dtype == torch.float32 else 1e-13


def signs(n, dtype):
    return torch.tensor([(-1.0) ** t for t in range(n)], dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", WIDTHS)
@pytest.mark.parametrize("n", LENGTHS)
def test_dct2_tokens_equals_scipy_with_weights_signs_and_sums(n, d, dtype):
    g = torch.Generator().manual_seed(n * 100 + d)
    x = torch.randn(3, n, d, generator=g, dtype=dtype)
    w = (torch.rand(3, n, generator=g) > 0.3).to(dtype)
    wx = (x * w.unsqueeze(-1)).double().numpy()
    got, sums = dct2_tokens(x, w, column_sums=True)
    assert got.shape == (n, 3, d)
    scale = tol(dtype) * np.sqrt(np.abs(wx).max() * n + 1)
    np.testing.assert_allclose(got.double().numpy(), sf.dct(wx, axis=1, norm="ortho").transpose(1, 0, 2), atol=scale)
    np.testing.assert_allclose(sums.double().numpy(), wx.sum(1), atol=scale * np.sqrt(n))
    # DST-II in FastDCT2's convention: the DCT-II of the input times (-1)^t
    sx = (x * signs(n, dtype).unsqueeze(-1)).double().numpy()
    np.testing.assert_allclose(dct2_tokens(x, sine=True).double().numpy(),
                               sf.dct(sx, axis=1, norm="ortho").transpose(1, 0, 2), atol=scale)


@pytest.mark.parametrize("sine", [False, True])
@pytest.mark.parametrize("n", [1, 6, 100, 2000])
def test_dct3_tokens_is_the_inverse_and_the_transpose(n, sine):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(2, n, 34, generator=g, dtype=torch.float64)
    c = torch.randn(n, 2, 34, generator=g, dtype=torch.float64)
    torch.testing.assert_close(dct3_tokens(dct2_tokens(x, sine=sine), sine=sine), x, rtol=0, atol=1e-12)
    # <T x, c> = <x, T^T c>: the inverse is the adjoint (orthonormal), signs included
    lhs = (dct2_tokens(x, sine=sine) * c).sum()
    rhs = (x * dct3_tokens(c, sine=sine)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    if not sine:
        np.testing.assert_allclose(dct3_tokens(c).numpy(), sf.idct(c.numpy(), axis=0, norm="ortho").transpose(1, 0, 2),
                                   atol=1e-12)


def test_dct3_tokens_adds_the_bias_then_weights():
    g = torch.Generator().manual_seed(0)
    c = torch.randn(12, 3, 8, generator=g)
    w = (torch.rand(3, 12, generator=g) > 0.5).float()
    b = torch.randn(8, generator=g)
    want = (dct3_tokens(c) + b) * w.unsqueeze(-1)
    torch.testing.assert_close(dct3_tokens(c, w, b), want, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"bias has shape \(7,\), expected \(8,\)"):
        dct3_tokens(c, bias=torch.zeros(7))


def test_views_with_other_strides_are_read_in_place_of_copies():
    base = torch.randn(12, 5, 40)
    x = base[:, 1:4, :16].transpose(0, 1)  # (3, 12, 16): rows 5 * 40 apart, sequences 40 apart
    torch.testing.assert_close(dct2_tokens(x), dct2_tokens(x.contiguous()), rtol=0, atol=0)
    c = torch.randn(6, 8, 3).permute(0, 2, 1)  # channels not contiguous: copied first
    torch.testing.assert_close(dct3_tokens(c), dct3_tokens(c.contiguous()), rtol=0, atol=0)


def test_results_do_not_depend_on_the_thread_count():
    x = torch.randn(4, 2000, 96)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = dct2_tokens(x), dct3_tokens(x.transpose(0, 1).contiguous())
        torch.set_num_threads(max(2, previous))
        two = dct2_tokens(x), dct3_tokens(x.transpose(0, 1).contiguous())
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(one, two):
        assert torch.equal(a, b)


def test_supported_lengths_and_inputs():
    assert radices(4096) == [4] * 6 and radices(2000) == [4, 4, 5, 5, 5] and radices(1) == []
    assert [n for n in range(1, 16) if not supported(n)] == [7, 11, 13, 14]
    assert not supported(0)
    assert available(torch.zeros(2, 10, 4)) and available(torch.zeros(2, 10, 4, dtype=torch.float64))
    assert not available(torch.zeros(2, 10, 5))  # odd width: no channel pairs
    assert not available(torch.zeros(2, 7, 4))  # length with a factor 7
    assert not available(torch.zeros(2, 10, 4, dtype=torch.float16))
    assert not available(torch.zeros(10, 4))


def test_empty_batches_and_widths():
    assert dct2_tokens(torch.zeros(0, 12, 4)).shape == (12, 0, 4)
    assert dct3_tokens(torch.zeros(12, 0, 4)).shape == (0, 12, 4)
    assert dct2_tokens(torch.zeros(2, 12, 0)).shape == (12, 2, 0)


def packed_reference(x: torch.Tensor) -> torch.Tensor:
    """The packed coefficients (n // 2 + 1, 2) of Makhoul-ordered rows x (..., n), from scipy:
    pair k = (X[k], -X[n-k]), pair 0 = (X[0], 0), the Nyquist pair (X[n/2], -X[n/2])."""
    n = x.shape[-1]
    _, inv_perm, _, _ = _makhoul(n, torch.device("cpu"), torch.float64)
    big = torch.from_numpy(sf.dct(x.double()[..., inv_perm].numpy(), axis=-1, norm="ortho"))
    h = n // 2
    re = big[..., : h + 1]
    im = torch.zeros_like(re)
    k = torch.arange(1, h + 1)
    im[..., 1:] = -big[..., n - k]
    return torch.stack([re, im], -1).to(x.dtype)


ROWS = [1, 31, 32, 33, 70]  # one row, a partial tile, one tile, a tile and one row, several


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("n", [1, 2, 3, 6, 8, 30, 1000, 4096])
def test_dct2_rows_equals_scipy_packed_and_dct3_rows_inverts_it(n, rows, dtype):
    torch.manual_seed(n + rows)
    x = torch.randn(2, rows, n, dtype=dtype)
    out = torch.full((2, rows, n // 2 + 1, 2), float("nan"), dtype=dtype)
    dct2_rows(x, out)
    want = packed_reference(x)
    torch.testing.assert_close(out, want, rtol=0, atol=tol(dtype) * (1 + n ** 0.5))
    back = torch.full_like(x, float("nan"))
    torch.testing.assert_close(dct3_rows(out, back), x, rtol=0, atol=tol(dtype) * (1 + n ** 0.5))
    if n % 2 == 0 and n > 1:  # the Nyquist factor scales that pair alone
        half = dct2_rows(x, torch.empty_like(out), nyquist=0.5)
        want[..., -1, :] *= 0.5
        torch.testing.assert_close(half, want, rtol=0, atol=tol(dtype) * (1 + n ** 0.5))


@pytest.mark.parametrize("n", [2, 5, 16, 2000])
def test_rows_with_nyquist_factors_are_the_adjoints_the_core_needs(n):
    """grad_coeffs = signal^T is dct2_rows(., 0.5) against dct3_rows(., 1); grad_signal =
    coeffs^T is dct3_rows(., 2) against dct2_rows(., 1)."""
    torch.manual_seed(n)
    x, g = torch.randn(3, 5, n, dtype=torch.float64), torch.randn(3, 5, n, dtype=torch.float64)
    y, gy = (torch.randn(3, 5, n // 2 + 1, 2, dtype=torch.float64) for _ in range(2))
    signal = dct3_rows(y, torch.empty_like(x))
    grad_coeffs = dct2_rows(g, torch.empty_like(y), nyquist=0.5)
    coeffs = dct2_rows(x, torch.empty_like(y))
    grad_signal = dct3_rows(gy, torch.empty_like(x), nyquist=2.0)
    # Im of pair 0 is never read, so the adjoint pairs only the parts that are
    y_read, gy_read = y.clone(), gy.clone()
    y_read[..., 0, 1] = 0
    gy_read[..., 0, 1] = 0
    torch.testing.assert_close((signal * g).sum(), (y_read * grad_coeffs).sum(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close((coeffs * gy_read).sum(), (x * grad_signal).sum(), rtol=1e-12, atol=1e-12)


def test_rows_read_and_write_views_with_an_outer_stride():
    base = torch.randn(2, 3, 4, 8, 64)  # (B, slot, heads, channels, n): heads 1..2 of every (B, slot)
    rows = base.narrow(2, 1, 2).view(6, 16, 64)
    out_base = torch.zeros(2, 3, 4, 8, 33, 2)
    out = out_base.narrow(2, 1, 2).view(6, 16, 33, 2)
    dct2_rows(rows, out)
    torch.testing.assert_close(out, packed_reference(rows.contiguous()), rtol=0, atol=1e-5)
    assert out_base[:, :, 0].abs().sum() == 0 and out_base[:, :, 3].abs().sum() == 0  # other heads untouched
    back_base = torch.zeros(2, 3, 4, 8, 64)
    dct3_rows(out, back_base.narrow(2, 1, 2).view(6, 16, 64))
    torch.testing.assert_close(back_base.narrow(2, 1, 2), base.narrow(2, 1, 2), rtol=0, atol=1e-5)
    assert back_base[:, :, 0].abs().sum() == 0 and back_base[:, :, 3].abs().sum() == 0


def test_rows_take_any_leading_axes_and_decline_layouts_they_cannot_address():
    base = torch.randn(2, 3, 4, 8, 64)
    heads = base.narrow(2, 1, 2)  # (2, 3, 2, 8, 64): rows in blocks of 16, blocks 4 * 8 rows apart
    out = torch.full((2, 3, 2, 8, 33, 2), float("nan"))
    assert dct2_rows(heads, out) is out
    torch.testing.assert_close(out, packed_reference(heads.contiguous()), rtol=0, atol=1e-5)
    scattered = base.permute(2, 0, 1, 3, 4)  # rows at three unrelated strides: no (outer, inner) split
    declined = torch.full((4, 2, 3, 8, 33, 2), float("nan"))
    assert dct2_rows(scattered, declined) is None and declined.isnan().all()
    pairs = torch.randn(2, 3, 4, 8, 33, 2)
    signal = torch.full((4, 2, 3, 8, 64), float("nan"))
    assert dct3_rows(pairs.permute(2, 0, 1, 3, 4, 5), signal) is None and signal.isnan().all()


def test_rows_results_do_not_depend_on_the_thread_count():
    x = torch.randn(3, 100, 1000)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, max(2, previous)):
            torch.set_num_threads(threads)
            c = dct2_rows(x, torch.empty(3, 100, 501, 2))
            results.append((c, dct3_rows(c, torch.empty_like(x))))
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_rows_check_their_shapes():
    assert rows_available(4096, torch.float32) and rows_available(2000, torch.float64)
    assert not rows_available(7, torch.float32) and not rows_available(8, torch.float16)
    with pytest.raises(ValueError, match="expected"):
        dct2_rows(torch.zeros(2, 3, 8), torch.zeros(2, 3, 4, 2))
    with pytest.raises(ValueError, match="expected"):
        dct3_rows(torch.zeros(2, 3, 2, 5).transpose(-1, -2), torch.zeros(2, 3, 8))  # pairs not contiguous


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows", [1, 33])
@pytest.mark.parametrize("n", [1, 2, 3, 8, 30, 2000, 4096])
def test_fourier_rows_equal_torch_rfft_and_irfft_with_interior_weights(n, rows, dtype):
    torch.manual_seed(n)
    x = torch.randn(2, rows, n, dtype=dtype)
    weight = torch.full((n // 2 + 1, 1), 2.0, dtype=dtype)  # the Hermitian weight the adjoints use
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    want = torch.view_as_real(torch.fft.rfft(x, norm="ortho"))
    atol = tol(dtype) * (1 + n ** 0.5)
    out = torch.full((2, rows, n // 2 + 1, 2), float("nan"), dtype=dtype)
    torch.testing.assert_close(rfft_rows(x, out), want, rtol=0, atol=atol)
    torch.testing.assert_close(rfft_rows(x, out, 2.0), want * weight, rtol=0, atol=2 * atol)
    y = torch.randn(2, rows, n // 2 + 1, 2, dtype=dtype)  # DC's and Nyquist's imaginary parts: ignored
    back = torch.full_like(x, float("nan"))
    torch.testing.assert_close(irfft_rows(y, back), torch.fft.irfft(torch.view_as_complex(y), n, norm="ortho"),
                               rtol=0, atol=atol)
    torch.testing.assert_close(irfft_rows(y, back, 0.5),
                               torch.fft.irfft(torch.view_as_complex(y / weight), n, norm="ortho"), rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows", [1, 33])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 30, 2000, 4096])
def test_fourier_rows_of_makhoul_ordered_signals(n, rows, dtype):
    """With `makhoul`, the rows are read in Makhoul order and written back in it: the half
    spectrum is that of the signal in natural order (what the mixed basis's Fourier heads
    need, their tokens being in the cosine heads' order)."""
    torch.manual_seed(n + rows)
    x = torch.randn(2, rows, n, dtype=dtype)
    perm, _, _, _ = _makhoul(n, torch.device("cpu"), dtype)
    atol = tol(dtype) * (1 + n ** 0.5)
    out = torch.full((2, rows, n // 2 + 1, 2), float("nan"), dtype=dtype)
    want = torch.view_as_real(torch.fft.rfft(x, norm="ortho"))
    torch.testing.assert_close(rfft_rows(x[..., perm], out, makhoul=True), want, rtol=0, atol=atol)
    y = torch.randn(2, rows, n // 2 + 1, 2, dtype=dtype)
    back = torch.full_like(x, float("nan"))
    natural = torch.fft.irfft(torch.view_as_complex(y), n, norm="ortho")
    torch.testing.assert_close(irfft_rows(y, back, makhoul=True), natural[..., perm], rtol=0, atol=atol)
