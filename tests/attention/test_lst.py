"""LST attention family: equal to a hand-written dense reference of spectrans' formula,
spectrans-compatible state dicts and options, exact gradients of the fused core."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import scipy.fft as sf
import scipy.linalg as sl
import torch

from lra_bench import kernels
from lra_bench.attention import DCTAttention, HadamardAttention, LSTAttention, MixedSpectralAttention
from lra_bench.attention import lst_core
from lra_bench.attention.lst_core import gather_tokens, retain_spectra, spectral_core
from lra_bench.transforms.hadamard import hadamard
from lra_bench.transforms import spectral
from lra_bench.transforms.spectral import MixedBasis, basis, makhoul_perm

B, D, H = 2, 24, 6


def dense(kind: str, n: int, dct_type: int = 2) -> np.ndarray:
    """The orthonormal transform matrix M (T(x) = M @ x along the sequence) from scipy."""
    eye = np.eye(n)
    if kind == "dct":
        return sf.dct(eye, type=dct_type, norm="ortho", axis=0)
    if kind == "dst":
        return sf.dst(eye, type=2, norm="ortho", axis=0)
    if kind == "hadamard":
        return sl.hadamard(n) / math.sqrt(n)
    if kind == "fft":
        return sl.dft(n, scale="sqrtn")
    raise ValueError(kind)


def proj(lin, x):
    return x @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()


def reference(layer, x: np.ndarray, kinds: list, scales: list, normalize: bool, dct_type: int = 2) -> np.ndarray:
    """spectrans' formula, head by head, with dense scipy matrices, in float64."""
    n, dh = x.shape[1], layer.head_dim
    q, k, v = (proj(p, x).reshape(B, n, layer.num_heads, dh) for p in (layer.q_proj, layer.k_proj, layer.v_proj))
    heads = []
    for h, kind in enumerate(kinds):
        m = dense(kind, n, dct_type)
        tq, tk, tv = (np.einsum("ij,bjd->bid", m, t[:, :, h]) for t in (q, k, v))
        if kind == "fft":
            a = tq * np.conj(tk) * scales[h]
        else:
            a = tq * tk * scales[h]
        o = a * tv
        if normalize:
            o = o / (np.abs(a).sum(-1, keepdims=True) + 1e-6)
        heads.append(np.real(np.einsum("ij,bjd->bid", np.conj(m).T, o)))
    return proj(layer.out_proj, np.concatenate(heads, axis=-1))


def randomize(layer):
    torch.manual_seed(3)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * (0.3 if p.ndim == 2 else 1.0) + (0.5 if p.ndim == 3 else 0.0))
    return layer.eval()


def run(layer, n, seed=0):
    x = np.random.default_rng(seed).standard_normal((B, n, D))
    return layer(torch.from_numpy(x).float()).detach().double().numpy(), x


@pytest.mark.parametrize("n", [16, 64])
@pytest.mark.parametrize("transform_type", ["dct", "dst", "hadamard", "mixed"])
@pytest.mark.parametrize("normalize", [True, False])
def test_lst_equals_reference(n, transform_type, normalize):
    layer = randomize(LSTAttention(D, H, transform_type=transform_type, normalize=normalize))
    kinds = [("dct", "dst", "hadamard")[h % 3] if transform_type == "mixed" else transform_type for h in range(H)]
    out, x = run(layer, n)
    scales = [layer.scale[h].detach().double().numpy() for h in range(H)]
    np.testing.assert_allclose(out, reference(layer, x, kinds, scales, normalize), atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("dct_type", [1, 2, 3, 4])
def test_dct_attention_honours_dct_type(dct_type):
    layer = randomize(DCTAttention(D, H, dct_type=dct_type))
    out, x = run(layer, 20)
    scales = [layer.scale[h].detach().double().numpy() for h in range(H)]
    np.testing.assert_allclose(out, reference(layer, x, ["dct"] * H, scales, True, dct_type), atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("flags", [(True, True, True), (True, False, False), (False, True, True), (False, False, True)])
def test_mixed_spectral_equals_reference(flags):
    use_fft, use_dct, use_hadamard = flags
    layer = randomize(MixedSpectralAttention(D, H, use_fft=use_fft, use_dct=use_dct, use_hadamard=use_hadamard))
    enabled = [t for t, on in zip(("fft", "dct", "hadamard"), flags) if on]
    kinds = [enabled[h % len(enabled)] for h in range(H)]
    assert layer.head_transforms == kinds
    out, x = run(layer, 32)
    scales = [layer.scales[k].detach().double().numpy()[0] for k in kinds]
    np.testing.assert_allclose(out, reference(layer, x, kinds, scales, False), atol=2e-4, rtol=2e-4)


def test_hadamard_any_length_is_zero_padding_to_pow2():
    """At a length the reference rejects, Hadamard heads equal the power-of-two run on an
    input padded with masked tokens, cropped."""
    layer = randomize(HadamardAttention(D, H))
    x = torch.randn(B, 2000 // 40, D)  # 50 tokens -> transform length 64
    padded = torch.cat([x, torch.randn(B, 14, D)], dim=1)
    mask = torch.zeros(B, 64, dtype=torch.bool)
    mask[:, :50] = True
    torch.testing.assert_close(layer(x), layer(padded, mask=mask)[:, :50], atol=1e-5, rtol=1e-5)


def test_spectrans_api_attributes_and_state_dict():
    layer = LSTAttention(64, 8, transform_type="mixed", learnable_scale=True, use_bias=False)
    assert layer.head_dim == 8 and layer.transform_type == "mixed"
    assert [t.kind for t in layer.transforms] == ["dct", "dst", "hadamard"] * 2 + ["dct", "dst"]
    assert isinstance(layer.scale, torch.nn.Parameter) and layer.scale.shape == (8, 1, 8)
    assert torch.equal(layer.scale.detach(), torch.ones(8, 1, 8)) and layer.q_proj.bias is None
    assert set(layer.state_dict()) == {"q_proj.weight", "k_proj.weight", "v_proj.weight", "out_proj.weight", "scale"}
    frozen = LSTAttention(64, 8, learnable_scale=False)
    assert "scale" in dict(frozen.named_buffers()) and "scale" not in dict(frozen.named_parameters())
    had = HadamardAttention(64, 4)
    assert torch.allclose(had.scale.detach(), torch.full((4, 1, 16), 1 / 4.0)) and had.scale_by_sqrt
    assert torch.equal(HadamardAttention(64, 4, scale_by_sqrt=False).scale.detach(), torch.ones(4, 1, 16))
    mixed = MixedSpectralAttention(72)
    assert mixed.num_heads == 9 and set(mixed.scales) == {"fft", "dct", "hadamard"}
    assert {k for k in mixed.state_dict() if k.startswith("scales")} == {"scales.fft", "scales.dct", "scales.hadamard"}
    assert mixed.scales["fft"].shape == (1, 1, 8)


def test_spectrans_format_state_dict_loads_and_gives_the_formula():
    """A state_dict written with spectrans' keys and shapes (not by our class) loads strictly
    and the layer then computes spectrans' formula with those weights."""
    g = torch.Generator().manual_seed(5)
    sd = {f"{p}_proj.{t}": torch.randn(*((D, D) if t == "weight" else (D,)), generator=g) * 0.3
          for p in ("q", "k", "v", "out") for t in ("weight", "bias")}
    sd["scale"] = torch.rand(H, 1, D // H, generator=g) + 0.5
    layer = LSTAttention(D, H, transform_type="dst")
    layer.load_state_dict(sd, strict=True)
    out, x = run(layer.eval(), 16)
    scales = [sd["scale"][h].double().numpy() for h in range(H)]
    np.testing.assert_allclose(out, reference(layer, x, ["dst"] * H, scales, True), atol=2e-4, rtol=2e-4)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="dct_type=7"):
        DCTAttention(D, H, dct_type=7)
    with pytest.raises(ValueError, match="at least one"):
        MixedSpectralAttention(D, H, use_fft=False, use_dct=False, use_hadamard=False)
    with pytest.raises(ValueError, match="transform_type"):
        LSTAttention(D, H, transform_type="wavelet")
    with pytest.raises(ValueError, match="divisible"):
        LSTAttention(25, 4)


CORE_CASES = [(kind, n, norm) for kind, n in [("dct", 8), ("dct", 7), ("dst", 6), ("dst", 5), ("hadamard", 8),
                                              ("hadamard", 6), ("fft", 8), ("fft", 7), ("fft", 15)]
              for norm in (True, False) if not (kind == "fft" and norm)]  # Fourier heads are never normalised


def assert_core_gradients_exact(b, n: int, heads: int, normalize: bool, mask_from=None) -> None:
    """gradcheck of the core with basis b at length n (float64, heads of 3 channels over 5
    inputs), sequence 1 padded from position `mask_from` when given."""
    torch.manual_seed(0)
    dh, d = 3, 5
    x = torch.randn(B, n, d, dtype=torch.float64, requires_grad=True)
    ws = [torch.randn(heads * dh, d, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    bs = [torch.randn(heads * dh, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    scale = (torch.rand(heads, dh, dtype=torch.float64) + 0.5).requires_grad_(True)
    perms = makhoul_perm(n, x.device) if b.makhoul_order else None
    mask = None
    if mask_from is not None:
        mask = torch.ones(B, n, dtype=torch.bool)
        mask[1, mask_from:] = False

    def f(x, wq, wk, wv, bq, bk, bv, s):
        return spectral_core(x, (wq, bq), (wk, bk), (wv, bv), s, mask, b, perms, normalize)

    with retain_spectra():
        assert torch.autograd.gradcheck(f, (x, *ws, *bs, scale), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind,n,normalize", CORE_CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_fused_core_gradients_are_exact(kind, n, normalize, masked):
    assert_core_gradients_exact(basis(kind), n, 2, normalize, n // 2 if masked else None)


MIXED_BASES = {"dct_had": ("dct", "hadamard"), "had_dst": ("hadamard", "dst"), "dst_had_dct": ("dst", "hadamard", "dct"),
               "fft_dct_had": ("fft", "dct", "hadamard", "fft"), "had_fft": ("hadamard", "fft"),
               "dst_fft": ("dst", "fft")}


@pytest.mark.parametrize("kinds,normalize", [(kinds, norm) for kinds in MIXED_BASES.values() for norm in (True, False)
                                              if not ("fft" in kinds and norm)],  # Fourier heads: never normalised
                         ids=[f"{name}-{norm}" for name, kinds in MIXED_BASES.items() for norm in ("norm", "plain")
                              if not ("fft" in kinds and norm == "norm")])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "torch"])
def test_mixed_basis_core_gradients_are_exact(kinds, normalize, masked, compiled, monkeypatch):
    """The merged basis of the mixed layers: DCT, DST, Hadamard and Fourier heads in any
    order, one core call, with the compiled transforms and mixing or torch's."""
    if not compiled:
        monkeypatch.setenv(kernels.ENV_SWITCH, "0")
    b = MixedBasis(kinds)
    assert_core_gradients_exact(b, 8, len(kinds), normalize, 5 if masked else None)
    if "hadamard" in kinds:
        with pytest.raises(ValueError, match="power-of-two length, got 6"):
            b.length(6)
    else:  # any length (15: odd, and one the compiled kernel transforms)
        assert_core_gradients_exact(b, 15, len(kinds), normalize, 5 if masked else None)


def test_mixed_basis_rejects_unknown_kinds_and_normalised_fourier_heads():
    with pytest.raises(ValueError, match="unknown head kinds"):
        MixedBasis(["dct", "wavelet"])
    x = torch.randn(1, 8, 4)
    w = (torch.randn(4, 4), None)
    with pytest.raises(ValueError, match="never normalised"):
        spectral_core(x, w, w, w, torch.ones(2, 2), None, MixedBasis(["fft", "dct"]), makhoul_perm(8, x.device), True)
    c = torch.randn(1, 3, 2, 2, 5, 2)
    for mix in (lst_core._compiled_mix_forward, lambda c, *a: lst_core._torch_mix_forward(*c.unbind(1), *a)):
        with pytest.raises(ValueError, match="never normalised"):
            mix(c, True, 1e-6, [(0, 1)])
        with pytest.raises(ValueError, match="pairs"):
            mix(c[..., :1], False, 1e-6, [(0, 1)])


@pytest.mark.parametrize("n", [2, 8, 64, 1024])
def test_hadamard_of_makhoul_order_is_a_permutation_of_coefficients(n):
    """H P = Q H for the Makhoul order P at n = 2^k, which lets Hadamard heads share the
    cosine heads' token order (MixedBasis)."""
    x = torch.randn(5, n, dtype=torch.float64)
    perm, _ = makhoul_perm(n, x.device)
    eye = torch.eye(n, dtype=torch.float64)
    q = hadamard(hadamard(eye)[:, perm])  # H P H^-1 (row vectors), a permutation matrix if the claim holds
    assert torch.equal(q.round(), q.round().abs()) and torch.allclose(q, q.round(), atol=1e-9)
    assert (q.round().sum(0) == 1).all() and (q.round().sum(1) == 1).all()
    torch.testing.assert_close(hadamard(x[:, perm]), hadamard(x) @ q)


MERGED_CASES = {"mixed": lambda: LSTAttention(D, H, "mixed"), "mixed_unnormalized": lambda: LSTAttention(
    D, H, "mixed", normalize=False), "mixed_spectral": lambda: MixedSpectralAttention(D, H),
    "mixed_spectral_no_fft": lambda: MixedSpectralAttention(D, 4, use_fft=False)}


@pytest.mark.parametrize("make", MERGED_CASES.values(), ids=MERGED_CASES.keys())
@pytest.mark.parametrize("n", [1, 2, 6, 16, 64, 375, 2000, 2048])
@pytest.mark.parametrize("path", ["compiled", "torch_every_row", "torch_cosine_rows"])
def test_mixed_layers_merge_head_groups(make, n, path, monkeypatch):
    """The cosine and Fourier heads run as one group, with the Hadamard heads too at
    power-of-two lengths (there: every head, in the layer's order, so no weight reindexing);
    outputs and every gradient equal those of one group per kind, masked or not: with the
    compiled transforms, and with torch's FFTs of every row or of the cosine heads' rows only."""
    if path != "compiled":
        monkeypatch.setenv(kernels.ENV_SWITCH, "0")
        monkeypatch.setattr(spectral, "PER_RUN_CALLS", 0 if path == "torch_every_row" else 10 ** 6)
    torch.manual_seed(0)
    layer = randomize(make()).double()
    assert len(layer._pow2_groups) == 1 and layer._pow2_groups[0].all_heads
    kinds = {g.kind for g in layer._kind_groups}
    assert len(layer._groups) == len(kinds) - (1 if {"fft", "dct"} <= kinds else 0)
    separate = copy.deepcopy(layer)
    separate._groups = separate._pow2_groups = separate._kind_groups
    x = torch.randn(B, n, D, dtype=torch.float64)
    mask = torch.ones(B, n, dtype=torch.bool)
    mask[1, n // 2 + 1:] = False
    for m in (None, mask):
        results = []
        for module in (layer, separate):
            xi = x.clone().requires_grad_(True)
            out = module(xi, mask=m)
            out.square().sum().backward()
            results.append([out, xi.grad] + [p.grad for p in module.parameters()])
            module.zero_grad(set_to_none=True)
        for got, want in zip(*results):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_core_graph_is_single_use_unless_retained():
    layer = LSTAttention(D, H)
    out = layer(torch.randn(B, 8, D)).sum()
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="retain_spectra"):
        out.backward()


@pytest.mark.parametrize("shape", [(1, 7, 3), (3, 8, 2, 4), (2, 5)])
def test_gather_tokens_equals_indexing(shape):
    """The flat-rows gather equals x[:, perm], for contiguous and strided inputs and for a
    permutation given as the inverse one."""
    torch.manual_seed(0)
    x = torch.randn(shape)
    perm, inv_perm = makhoul_perm(shape[1], x.device)
    assert torch.equal(gather_tokens(x, perm), x[:, perm])
    assert torch.equal(gather_tokens(gather_tokens(x, perm), inv_perm), x)
    strided = torch.randn((shape[1], shape[0]) + shape[2:]).transpose(0, 1)
    assert torch.equal(gather_tokens(strided, perm), strided[:, perm])


AUTOCAST_CASES = {f"{t}{'' if norm else '_unnormalized'}": (lambda t=t, norm=norm: LSTAttention(
    D, H, transform_type=t, normalize=norm)) for t in ("dct", "dst", "hadamard", "mixed") for norm in (True, False)}
AUTOCAST_CASES.update(mixed_spectral=lambda: MixedSpectralAttention(D, H), dct4=lambda: DCTAttention(D, H, dct_type=4))


@pytest.mark.parametrize("make", AUTOCAST_CASES.values(), ids=AUTOCAST_CASES.keys())
@pytest.mark.parametrize("n", [24, 32])  # 24: Hadamard heads pad to 32; 32: mixed layers merge their groups
def test_autocast_bf16_runs_transforms_in_float32(make, n):
    """Under bf16 autocast the projections run in bf16 and the spectral core in float32;
    forward and backward work and stay close to float32. (With normalisation the gradient
    divides by sum_d |A|, which amplifies bf16 rounding wherever that sum is small, so its
    gradient is compared only without normalisation.)"""
    layer = randomize(make()).train()
    x = torch.randn(B, n, D, requires_grad=True)
    ref = layer(x)
    ref.square().mean().backward()
    ref_grad, x.grad = x.grad.clone(), None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    out.float().square().mean().backward()
    assert (out.float() - ref).norm() / ref.norm() < 0.02
    assert torch.isfinite(x.grad).all()
    if not getattr(layer, "normalize", False):
        assert (x.grad - ref_grad).norm() / ref_grad.norm() < 0.02  # bf16 projections: ~0.5% relative error


def test_frozen_projection_weights_still_train_biases_and_scale():
    layer = randomize(LSTAttention(D, H, transform_type="mixed")).train()
    x = torch.randn(B, 10, D)
    layer(x).square().sum().backward()
    expected = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad(set_to_none=True)
    for proj in (layer.q_proj, layer.k_proj, layer.v_proj):
        proj.weight.requires_grad_(False)
    layer(x).square().sum().backward()
    for name, p in layer.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, expected[name], msg=name)


@pytest.mark.parametrize("make", [lambda: LSTAttention(8, 4, transform_type="mixed"),
                                  lambda: MixedSpectralAttention(8, 4), lambda: HadamardAttention(8, 2),
                                  lambda: LSTAttention(8, 2, transform_type="dst", use_bias=False)],
                         ids=["lst_mixed", "mixed_spectral", "hadamard", "dst_no_bias"])
@pytest.mark.parametrize("n", [6, 8])
def test_whole_layer_gradients_are_exact(make, n):
    """Head groups (mixed kinds; merged at the power-of-two length 8), the Fourier heads,
    Hadamard padding and projections without bias, through every parameter."""
    torch.manual_seed(0)
    layer = randomize(make()).double()
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in layer.parameters())
    x = torch.randn(2, n, 8, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * n, [True] * 4 + [False] * (n - 4)])

    def f(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x,), {"mask": mask})

    with retain_spectra():
        assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("normalize,cplx", [(True, []), (False, []), (False, [(0, 1), (2, 3)]), (False, [(0, 3)])],
                         ids=["normalized", "real", "complex_heads_0_2", "all_complex"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_mixing_equals_the_torch_operations(normalize, cplx, dtype):
    """kernels/mix_channels.c against the core's torch code, on spectra of 300 x 2 values per
    channel (two units of 256 and a partial one), forward and backward (written in place);
    complex heads (`cplx`) against complex arithmetic."""
    if lst_core._mix_kernel(torch.zeros(1), "forward") is None:
        pytest.skip("the compiled kernels are unavailable here")
    g = torch.Generator().manual_seed(0)
    c = torch.randn(2, 3, 3, 5, 300, 2, generator=g, dtype=dtype)
    grad = torch.randn(2, 3, 5, 300, 2, generator=g, dtype=dtype)
    q, k, v = c.unbind(1)
    a = q * k
    norm = a.abs().sum(2, keepdim=True) + 1e-6 if normalize else None
    want = a * v / norm if normalize else a * v
    for h0, h1 in cplx:
        cq, ck, cv = (torch.view_as_complex(t[:, h0:h1].contiguous()) for t in (q, k, v))
        want[:, h0:h1] = torch.view_as_real(cq * ck.conj() * cv)
    got, got_norm = lst_core._compiled_mix_forward(c, normalize, 1e-6, cplx)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, want, **tol)
    if normalize:
        torch.testing.assert_close(got_norm, norm, **tol)
    torch.testing.assert_close(lst_core._torch_mix_forward(q, k, v, normalize, 1e-6, cplx)[0], want, **tol)
    mine, theirs = c.clone(), c.clone()
    g_mine, g_theirs = grad.clone(), grad.clone()
    d_q = lst_core._compiled_mix_backward(mine, g_mine, norm, cplx)
    want_q = torch.empty_like(grad)
    tq, tk, tv = theirs.unbind(1)
    for h0, h1, is_complex in lst_core._head_runs(3, cplx):
        heads = slice(None), slice(h0, h1)
        mix = lst_core._complex_mix_backward if is_complex else lst_core._mix_backward
        mix(tq[heads], tk[heads], tv[heads], g_theirs[heads], None if norm is None else norm[heads], out=want_q[heads])
    for h0, h1 in cplx:  # the torch code against the chain rule, as complex numbers
        cq, ck, cv, cg = (torch.view_as_complex(t[:, h0:h1].contiguous()) for t in (q, k, v, grad))
        for got_h, want_h in ((want_q, cg * ck * cv.conj()), (theirs[:, 2], cg.conj() * cq * cv),
                              (g_theirs, cg * cq.conj() * ck)):
            torch.testing.assert_close(got_h[:, h0:h1], torch.view_as_real(want_h), **tol)
    torch.testing.assert_close(d_q, want_q, **tol)
    torch.testing.assert_close(mine[:, 2], theirs[:, 2], **tol)  # dL/dK, in V's slot
    torch.testing.assert_close(g_mine, g_theirs, **tol)  # dL/dV, over the incoming gradient
    torch.testing.assert_close(mine[:, :2], c[:, :2], rtol=0, atol=0)  # Q's and K's slots untouched
