"""The token-axis DCT kernel (transforms.cosine_tokens): scipy's orthonormal DCT-II along the
tokens of (B, n, D) activations, its inverse and transpose, and what it folds in (masks,
DST signs, output bias, column sums)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.fft as sf
import torch

from lra_bench import kernels
from lra_bench.transforms.cosine_tokens import available, dct2_tokens, dct3_tokens, radices, supported

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
