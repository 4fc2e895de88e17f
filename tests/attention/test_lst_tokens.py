"""The LST layers' token-major path (attention.lst_tokens): the same outputs and gradients
as the general core, exact gradients, masks honoured, and taken only where it applies."""
from __future__ import annotations

import copy
import itertools

import pytest
import torch

from lra_bench import kernels
from lra_bench.attention import DCTAttention, LSTAttention
from lra_bench.attention import lst_tokens
from lra_bench.attention.lst_core import retain_spectra

pytestmark = pytest.mark.skipif(kernels.compiler() is None, reason="no C compiler on this machine")


@pytest.fixture
def general_core(monkeypatch):
    """A function running f(*args) with the token-major path turned off."""
    def run(f, *args):
        with monkeypatch.context() as m:
            m.setattr(lst_tokens, "applies", lambda layer, x: False)
            return f(*args)
    return run


def make(kind, d=34, heads=2, bias=True, normalize=True, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    layer = LSTAttention(d, heads, kind, normalize=normalize, use_bias=bias).to(dtype)
    with torch.no_grad():
        layer.scale.uniform_(0.5, 1.5)
    return layer


def step(layer, x, mask):
    """Output and every gradient of a loss that weights positions unevenly."""
    x = x.clone().requires_grad_(True)
    y = layer(x, mask)
    (y.square().mean() + (y * torch.linspace(-1, 1, y.shape[1], dtype=y.dtype).view(1, -1, 1)).sum()).backward()
    grads = [x.grad] + [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad(set_to_none=True)
    return [y.detach()] + grads


def padding(batch, n):
    mask = torch.ones(batch, n, dtype=torch.bool)
    mask[1, n // 2:] = False
    mask[-1, n - 2:] = False
    return mask


CASES = list(itertools.product(["dct", "dst"], [True, False], [True, False]))


def relative_error(got, want):
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


@pytest.mark.parametrize("n", [5, 12, 64, 100])
@pytest.mark.parametrize("kind,bias,normalize", CASES)
def test_token_path_equals_the_general_core(kind, bias, normalize, n, general_core):
    """In float64 the two paths agree to rounding; in float32 the token path is as close to the
    float64 result as the general core is (within a factor 4: both sum in other orders)."""
    layer = make(kind, bias=bias, normalize=normalize)
    exact = copy.deepcopy(layer).double()
    x = torch.randn(3, n, 34)
    assert lst_tokens.applies(layer, x) and lst_tokens.applies(exact, x.double())
    for mask in (None, padding(3, n)):
        truth = step(exact, x.double(), mask)
        for got, want in zip(truth, general_core(step, exact, x.double(), mask)):
            assert relative_error(got, want) < 1e-10
        for got, other, want in zip(step(layer, x, mask), general_core(step, layer, x, mask), truth):
            assert relative_error(got, want) <= max(4 * relative_error(other, want), 2e-6)


@pytest.mark.parametrize("kind", ["dct", "dst"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
def test_token_path_gradients_are_exact(kind, masked, normalize):
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    d, heads, n = 6, 3, 5
    x = rand(2, n, d)
    weights = [rand(d, d) for _ in range(3)]
    biases = [rand(d) for _ in range(3)]
    w_o, b_o, scale = rand(d, d), rand(d), rand(heads, d // heads)
    weight = None if not masked else padding(2, n).double()

    def layer(x, *params):
        return lst_tokens.TokenSpectralLayer.apply(x, *params, weight, kind == "dst", normalize, 1e-6)

    with retain_spectra():  # gradcheck backpropagates the same graph several times
        assert torch.autograd.gradcheck(layer, (x, *weights, *biases, w_o, b_o, scale))


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_compiled_mixing_equals_the_formula_and_its_autograd(normalize, with_bias):
    """kernels/mix_tokens.c: O = A V (/ (sum |A| + eps)) with A = Q K, per head, the rows'
    bias tm[row] * bias added on the fly; the backward's gradients in place and the bias's."""
    g = torch.Generator().manual_seed(1)
    rows, heads, dh = 37, 3, 5

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    qkv, tm, grad = rand(rows, 3 * heads * dh), rand(rows), rand(rows, heads * dh)
    tm[::4] = 0  # rows without a bias term take the fast way
    bias = rand(3 * heads * dh).requires_grad_(True) if with_bias else None
    spectra = qkv.clone().requires_grad_(True)
    full = spectra + (tm.unsqueeze(-1) * bias if with_bias else 0)
    q, k, v = full.view(rows, 3, heads, dh).unbind(1)
    a = q * k
    want = a * v / (a.abs().sum(-1, keepdim=True) + 1e-6) if normalize else a * v
    want.reshape(rows, -1).backward(grad)
    got, norm = lst_tokens._mix_forward(qkv, heads, dh, tm, None if bias is None else bias.detach(), normalize, 1e-6)
    torch.testing.assert_close(got, want.reshape(rows, -1).detach(), rtol=1e-12, atol=1e-12)
    d_bias = lst_tokens._mix_backward(qkv, grad, norm, heads, dh, tm, None if bias is None else bias.detach())
    torch.testing.assert_close(qkv, spectra.grad, rtol=1e-12, atol=1e-12)
    if with_bias:
        torch.testing.assert_close(d_bias, bias.grad, rtol=1e-12, atol=1e-12)
    else:
        assert d_bias is None


def test_padded_positions_are_zero_and_padding_content_is_ignored():
    layer = make("dst", d=16)
    x = torch.randn(3, 20, 16)
    mask = padding(3, 20)
    noisy = torch.where(mask.unsqueeze(-1), x, torch.randn_like(x) * 100)
    y = layer(x, mask)
    assert lst_tokens.applies(layer, x)
    assert torch.equal(y[~mask], torch.zeros_like(y[~mask]))
    torch.testing.assert_close(layer(noisy, mask), y, rtol=0, atol=1e-5)


def test_the_graph_is_single_use_unless_retained():
    layer = make("dct")
    x = torch.randn(2, 12, 34, requires_grad=True)
    y = layer(x).sum()
    y.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="retain_spectra"):
        y.backward()
    x.grad = None
    with retain_spectra():
        y = layer(x).sum()
        y.backward(retain_graph=True)
        first = x.grad.clone()
        y.backward()
    torch.testing.assert_close(x.grad, 2 * first)


def test_the_path_is_taken_only_where_it_applies(monkeypatch):
    x = torch.randn(2, 12, 34)
    assert lst_tokens.applies(make("dct"), x) and lst_tokens.applies(make("dst"), x)
    assert lst_tokens.applies(DCTAttention(34, 2), x)
    assert not lst_tokens.applies(DCTAttention(34, 2, dct_type=3), x)  # not DCT-II
    assert not lst_tokens.applies(make("mixed", heads=2), x)  # heads of several transforms
    assert not lst_tokens.applies(make("hadamard"), x)
    assert not lst_tokens.applies(make("dct"), torch.randn(2, 14, 34))  # 14 = 2 * 7: the kernel's FFT has no radix 7
    assert not lst_tokens.applies(make("dct", d=6, heads=1).double(), torch.randn(2, 12, 6))  # dtypes differ
    frozen = LSTAttention(34, 2, "dct", learnable_scale=False)
    frozen.scale = frozen.scale.double()  # a buffer of another dtype
    assert not lst_tokens.applies(frozen, x)
    assert not lst_tokens.applies(LSTAttention(9, 3, "dct"), torch.randn(2, 12, 9))  # odd width
    with monkeypatch.context() as m:  # the mixing kernel's per-thread stack bound: 3 * 34 + 3 * 17 values here
        m.setattr(lst_tokens, "MAX_STACK_VALUES", 3 * 34 + 3 * 17 - 1)
        assert not lst_tokens.applies(make("dct"), x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not lst_tokens.applies(make("dct"), x)
    monkeypatch.setenv(kernels.ENV_SWITCH, "0")
    assert not lst_tokens.applies(make("dct"), x)


@pytest.mark.parametrize("n", [14, 12])
def test_layers_off_the_path_give_the_same_results(n, general_core):
    """Where the path does not apply (n = 14), the general core runs; where it does, the two agree."""
    layer = DCTAttention(34, 2)
    x = torch.randn(2, n, 34)
    mask = padding(2, n)
    torch.testing.assert_close(layer(x, mask), general_core(layer, x, mask), rtol=1e-5, atol=1e-6)
