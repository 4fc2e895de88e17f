"""The compiled kernels: built and used where a compiler exists, equal to the torch path,
and a clean fallback (one warning, nothing half-written) where they cannot be built."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import scipy.linalg as sl
import torch

from lra_bench import kernels
from lra_bench.attention import LSTAttention, MixedSpectralAttention
from lra_bench.transforms import hadamard as had
from lra_bench.transforms.hadamard import hadamard, row_layout

needs_compiler = pytest.mark.skipif(kernels.compiler() is None, reason="no C compiler on this machine")


@pytest.fixture
def fresh_kernels():
    """Forget loaded kernels before and after, so a test sees its own build (or failure)."""
    kernels._reset()
    yield
    kernels._reset()


def torch_path(fn, *args):
    """fn(*args) with the kernels switched off."""
    previous = os.environ.get(kernels.ENV_SWITCH)
    os.environ[kernels.ENV_SWITCH] = "0"
    try:
        return fn(*args)
    finally:
        if previous is None:
            del os.environ[kernels.ENV_SWITCH]
        else:
            os.environ[kernels.ENV_SWITCH] = previous


@needs_compiler
def test_the_kernel_builds_into_the_cache_and_is_used(fresh_kernels, tmp_path):
    assert kernels.status() == "compiled"
    built = list((tmp_path / "cache" / "kernels").glob("hadamard-*.so"))
    assert len(built) == 1 and not list((tmp_path / "cache" / "kernels").glob(".*"))  # no leftovers
    assert had._kernel(torch.zeros(4)) is not None and had._kernel(torch.zeros(4, dtype=torch.float16)) is None
    kernels._reset()  # a second process finds the build and does not compile again
    mtime = built[0].stat().st_mtime_ns
    assert kernels.load("hadamard") is not None and built[0].stat().st_mtime_ns == mtime


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32, 64, 512, 4096, 8192])
def test_compiled_hadamard_matches_scipy(n, dtype):
    x = torch.from_numpy(np.random.default_rng(n).standard_normal((3, 5, n))).to(dtype)
    expected = x.double().numpy() @ sl.hadamard(n) / np.sqrt(n)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    np.testing.assert_allclose(hadamard(x).double().numpy(), expected, atol=tol * np.sqrt(n), rtol=0)
    np.testing.assert_allclose(torch_path(hadamard, x).double().numpy(), expected, atol=tol * np.sqrt(n), rtol=0)


@needs_compiler
def test_compiled_hadamard_reads_and_writes_views_in_place_and_strided():
    buffer = torch.randn(2, 3, 4, 64)
    slot = buffer[:, 1]  # one slot of a (B, 3, ...) buffer: rows in two levels
    assert row_layout(slot) == (2, 4, 3 * 4 * 64, 64) and row_layout(slot.transpose(0, 1)) is None
    expected = torch_path(hadamard, slot.clone())
    others = buffer[:, [0, 2]].clone()
    torch.testing.assert_close(hadamard(slot), expected)
    out = torch.zeros(4, 2, 64).transpose(0, 1)  # a layout the kernel cannot take: written via a copy
    hadamard(slot, out=out)
    torch.testing.assert_close(out, expected)
    contiguous = torch.zeros(2, 4, 64)
    hadamard(slot, out=contiguous)  # strided source, contiguous destination
    torch.testing.assert_close(contiguous, expected)
    target = torch.zeros(2, 3, 4, 64)
    hadamard(contiguous.clone(), out=target[:, 2])  # contiguous source, strided destination
    torch.testing.assert_close(target[:, 2], torch_path(hadamard, contiguous))
    assert target[:, :2].abs().sum() == 0  # nothing written outside the view
    hadamard(slot, out=slot)  # in place
    torch.testing.assert_close(slot, expected)
    torch.testing.assert_close(buffer[:, [0, 2]], others)
    padded = torch.zeros(2, 3, 4, 66)  # the first 64 values of longer rows, both ways
    assert row_layout(padded[:, 1, :, :64]) == (2, 4, 3 * 4 * 66, 66)
    hadamard(slot, out=padded[:, 1, :, :64])
    torch.testing.assert_close(padded[:, 1, :, :64], torch_path(hadamard, slot))
    assert padded[..., 64:].abs().sum() == 0 and padded[:, [0, 2]].abs().sum() == 0
    torch.testing.assert_close(hadamard(padded[:, 1, :, :64]), slot)
    shifted = torch.randn(5, 64)  # rows 1..4 written from rows 0..3: read before overwritten
    expected = torch_path(hadamard, shifted[:4].clone())
    hadamard(shifted[:4], out=shifted[1:])
    torch.testing.assert_close(shifted[1:], expected)
    permuted = torch.randn(4, 2, 64).transpose(0, 1)
    torch.testing.assert_close(hadamard(permuted), torch_path(hadamard, permuted.contiguous()))


@needs_compiler
def test_compiled_hadamard_gradients():
    x = torch.randn(3, 16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(hadamard, (x,))
    assert torch.autograd.gradgradcheck(hadamard, (x,))
    with pytest.raises(ValueError, match="out must match"):
        hadamard(torch.randn(2, 8), out=torch.empty(2, 4))


def test_without_a_compiler_the_torch_path_runs_after_one_warning(fresh_kernels, tmp_path, monkeypatch):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    x = torch.randn(2, 3, 16)
    with pytest.warns(RuntimeWarning, match="compiled hadamard kernel is unavailable.*LRA_BENCH_KERNELS=0"):
        y = hadamard(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        torch.testing.assert_close(hadamard(x), y)
    torch.testing.assert_close(y, torch_path(had._factored, x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the other kernels fail for the same cause: no second warning
        assert kernels.status().startswith("torch (")
    assert not (tmp_path / "cache" / "kernels").exists() or not any((tmp_path / "cache" / "kernels").iterdir())


def test_a_failing_build_leaves_nothing_behind(fresh_kernels, tmp_path, monkeypatch):
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\necho 'error: broken compiler' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    with pytest.warns(RuntimeWarning, match="broken compiler"):
        assert kernels.load("hadamard") is None
    assert not any((tmp_path / "cache" / "kernels").iterdir())


def test_the_switch_turns_the_kernels_off(fresh_kernels, monkeypatch):
    monkeypatch.setenv(kernels.ENV_SWITCH, "0")
    assert kernels.load("hadamard") is None and had._kernel(torch.zeros(8)) is None
    assert kernels.status() == "torch (LRA_BENCH_KERNELS=0)"


def _dct_tokens(x):
    from lra_bench.transforms.cosine_tokens import dct2_tokens

    return dct2_tokens(x)


def _mix_tokens(x):
    from lra_bench.attention.lst_tokens import _mix_forward

    return _mix_forward(x.reshape(-1, 48), 4, 4, torch.ones(x.numel() // 48), torch.ones(48), True, 1e-6)[0]


def _mix_channels(x):
    from lra_bench.attention.lst_core import _compiled_mix_forward

    return _compiled_mix_forward(x.reshape(1, 3, 4, 4, -1), True, 1e-6)[0]


@needs_compiler
@pytest.mark.parametrize("name,transform", [("hadamard", hadamard), ("dct_tokens", _dct_tokens),
                                            ("mix_tokens", _mix_tokens), ("mix_channels", _mix_channels)])
def test_a_kernel_whose_extra_flags_fail_builds_without_them(name, transform, fresh_kernels, tmp_path, monkeypatch):
    """The kernels ask for OpenMP; a compiler without it still builds them (POSIX threads, or one thread)."""
    x = torch.randn(3, 16, 32)
    want = transform(x)
    kernels._reset()
    monkeypatch.setitem(kernels.EXTRA_FLAGS, name, ("-fno-such-option-anywhere",))
    assert kernels.flag_sets(name)[-1] == kernels.FLAG_SETS[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: the build succeeded
        assert kernels.status(name) == "compiled"
    assert torch.equal(transform(x), want)
    assert len(list((tmp_path / "cache" / "kernels").glob(f"{name}-*.so"))) == 2  # its own key


def test_status_names_each_kernel_that_is_missing(fresh_kernels, tmp_path, monkeypatch):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.warns(RuntimeWarning) as caught:
        status = kernels.status()
    assert len(caught) == 1  # one cause, one warning
    assert status.startswith("torch (hadamard: FileNotFoundError") and "; dct_tokens: FileNotFoundError" in status
    assert "; mix_tokens: FileNotFoundError" in status and "; mix_channels: FileNotFoundError" in status


def _step(module, x, mask):
    x = x.clone().requires_grad_()
    module(x, mask=mask).square().sum().backward()
    grads = [x.grad] + [p.grad.clone() for p in module.parameters()]
    module.zero_grad(set_to_none=True)
    return grads


@needs_compiler
@pytest.mark.parametrize("n", [7, 16])
@pytest.mark.parametrize("make", [lambda: LSTAttention(32, 4, "hadamard"), lambda: LSTAttention(32, 4, "mixed"),
                                  lambda: MixedSpectralAttention(48, 3)], ids=["hadamard", "mixed", "mixed_spectral"])
def test_layers_give_the_same_outputs_and_gradients_on_both_paths(make, n):
    torch.manual_seed(0)
    module = make()
    x = torch.randn(3, n, module.q_proj.in_features)
    mask = torch.rand(3, n) > 0.3
    mask[:, 0] = True
    for m in (None, mask):
        with torch.no_grad():
            torch.testing.assert_close(module(x, mask=m), torch_path(module, x, m), rtol=1e-5, atol=1e-6)
        for got, want in zip(_step(module, x, m), torch_path(_step, module, x, m)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
