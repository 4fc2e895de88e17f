"""Fast transforms against scipy's dense definitions: values, inverses, gradients."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.fft as sf
import scipy.linalg as sl
import torch

from lra_bench.transforms.cosine import dct, dst, idct, idst
from lra_bench.transforms.hadamard import hadamard, next_pow2
from lra_bench.transforms.spectral import FastDCT2, basis, makhoul_perm

LENGTHS = [1, 2, 3, 7, 100, 1000, 2000, 4096]


def rand(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape))


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("type", [1, 2, 3, 4])
def test_dct_matches_scipy_and_inverts(n, type):
    if type == 1 and n < 2:
        with pytest.raises(ValueError, match="at least 2"):
            dct(rand(2, n), type)
        return
    x = rand(3, n)
    np.testing.assert_allclose(dct(x, type).numpy(), sf.dct(x.numpy(), type=type, norm="ortho"), atol=1e-10)
    np.testing.assert_allclose(idct(x, type).numpy(), sf.idct(x.numpy(), type=type, norm="ortho"), atol=1e-10)
    torch.testing.assert_close(idct(dct(x, type), type), x, atol=1e-10, rtol=0)


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("type", [2, 3])
def test_dst_matches_scipy_and_inverts(n, type):
    x = rand(3, n)
    np.testing.assert_allclose(dst(x, type).numpy(), sf.dst(x.numpy(), type=type, norm="ortho"), atol=1e-10)
    np.testing.assert_allclose(idst(x, type).numpy(), sf.idst(x.numpy(), type=type, norm="ortho"), atol=1e-10)
    torch.testing.assert_close(idst(dst(x, type), type), x, atol=1e-10, rtol=0)


@pytest.mark.parametrize("n", [1, 2, 4, 8, 64, 128, 1024, 2048, 4096])
def test_hadamard_matches_scipy_and_is_an_involution(n):
    x = rand(2, 3, n)
    np.testing.assert_allclose(hadamard(x).numpy(), x.numpy() @ sl.hadamard(n) / np.sqrt(n), atol=1e-10)
    torch.testing.assert_close(hadamard(hadamard(x)), x, atol=1e-10, rtol=0)


def test_unsupported_types_and_lengths_are_rejected():
    with pytest.raises(ValueError, match="type 7"):
        dct(rand(4), 7)
    with pytest.raises(ValueError, match="type 1"):
        dst(rand(4), 1)
    with pytest.raises(ValueError, match="power-of-two"):
        hadamard(rand(6))
    assert [next_pow2(n) for n in (1, 2, 3, 1000, 2000, 4096)] == [1, 2, 4, 1024, 2048, 4096]


@pytest.mark.parametrize("fn", [lambda x: dct(x, 1), lambda x: dct(x, 2), lambda x: dct(x, 3), lambda x: dct(x, 4),
                                lambda x: dst(x, 2), lambda x: dst(x, 3), hadamard],
                         ids=["dct1", "dct2", "dct3", "dct4", "dst2", "dst3", "hadamard"])
@pytest.mark.parametrize("n", [2, 7, 8])
def test_gradcheck_float64(fn, n):
    if fn is hadamard and n == 7:
        n = 16
    x = rand(2, n).requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (x,))


@pytest.mark.parametrize("n", [1, 2, 5, 8, 33])
@pytest.mark.parametrize("sine", [False, True])
def test_packed_basis_is_dct_and_its_adjoints_are_exact(n, sine):
    """FastDCT2 packs DCT-II (DST-II, read backwards) coefficients of Makhoul-ordered,
    sign-weighted input. Check the values by unpacking, the inverse (which restores the
    signs), and that grad_signal / grad_coeffs are the adjoints of coeffs / signal."""
    b = FastDCT2(sine=sine)
    perm, _ = makhoul_perm(n, torch.device("cpu"))
    x = rand(4, n)
    sign = b.sign_inputs_(torch.ones(n, dtype=torch.float64))
    xm = x[:, perm] * sign  # what the core feeds to coeffs()
    z = torch.view_as_complex(b.coeffs(xm).contiguous())
    h = n // 2 + 1
    unpacked = torch.cat([z.real, -z.imag[:, 1:n - h + 1].flip(-1)], dim=-1)  # X[k] = Re z_k, X[n-k] = -Im z_k
    torch.testing.assert_close(unpacked, dst(x, 2).flip(-1) if sine else dct(x, 2), atol=1e-10, rtol=0)
    torch.testing.assert_close(b.signal(b.coeffs(xm), n), x[:, perm], atol=1e-10, rtol=0)

    r = rand(*b.coeffs(xm).shape, seed=2)
    assert torch.allclose((b.coeffs(xm) * r).sum(), (xm * b.grad_signal(r.clone(), n)).sum(), atol=1e-10)
    signal = b.signal(r.clone(), n)  # includes the output signs
    assert torch.allclose((signal * x).sum(), (r * b.grad_coeffs(x)).sum(), atol=1e-10)


def test_cached_constants_survive_inference_mode_and_bases_pickle():
    """Twiddles first built under inference_mode must still be usable in training, and
    layers holding bases (e.g. DCT type 3) must pickle for torch.save."""
    import pickle

    with torch.inference_mode():
        dct(torch.randn(2, 37), 2), dct(torch.randn(2, 37), 4), hadamard(torch.randn(2, 64))
    x = torch.randn(2, 37, requires_grad=True)
    (dct(x, 2).sum() + dct(x, 4).sum()).backward()
    assert x.grad is not None
    pickle.dumps(basis("dct", 3))


def test_bases_by_kind():
    assert isinstance(basis("dct"), FastDCT2) and basis("dst").sine and basis("hadamard").pad_pow2
    assert basis("hadamard").length(2000) == 2048 and basis("dct").length(2000) == 2000
    with pytest.raises(ValueError, match="unknown transform kind"):
        basis("wavelet")
