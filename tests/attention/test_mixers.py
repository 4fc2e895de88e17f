"""Every registered token mixer honours the contract; each matches a plain reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from functools import partial

from hydra.utils import get_class
from omegaconf import OmegaConf

import lra_bench.attention as attention
from lra_bench.attention import FNetMixer, SoftmaxAttention
from tests.conftest import CONF_DIR

B, L, D, H = 3, 11, 16, 4  # L = 11: not a power of two, so Hadamard heads pad


def _from_conf(path):
    node = OmegaConf.to_container(OmegaConf.load(path))
    cls = get_class(node.pop("_target_"))
    factory = partial(cls, **node)
    factory.__name__ = path.stem
    factory.supports_mask = cls.supports_mask
    return factory


# Every registered mechanism with its defaults, and every conf/attn file with its options.
MIXERS = [getattr(attention, name) for name in attention.__all__] + \
    [_from_conf(p) for p in sorted((CONF_DIR / "attn").glob("*.yaml"))]


def make(cls, **kw):
    torch.manual_seed(0)
    return cls(hidden_dim=D, num_heads=H, **kw).eval()


def padded_batch(length=L):
    torch.manual_seed(1)
    x = torch.randn(B, length, D)
    mask = torch.ones(B, length, dtype=torch.bool)
    mask[1, 7:] = False
    mask[2, 3:] = False
    return x, mask


@pytest.mark.parametrize("cls", MIXERS, ids=lambda c: c.__name__)
def test_shape_and_return_attention(cls):
    m = make(cls)
    x, mask = padded_batch()
    out = m(x, mask=mask)
    assert out.shape == (B, L, D) and torch.isfinite(out).all()
    out2, weights = m(x, mask=mask, return_attention=True)
    assert weights is None and torch.equal(out, out2)


# 16: a power of two, where Hadamard heads need no padding
@pytest.mark.parametrize("length", [L, 16])
@pytest.mark.parametrize("cls", MIXERS, ids=lambda c: c.__name__)
def test_padding_content_never_reaches_real_positions(cls, length):
    assert cls.supports_mask
    m = make(cls)
    x, mask = padded_batch(length)
    out = m(x, mask=mask)
    garbage = torch.where(mask[..., None], x, 100 * torch.randn_like(x))
    out_g = m(garbage, mask=mask)
    torch.testing.assert_close(out_g[mask], out[mask])
    assert (out[~mask] == 0).all()


@pytest.mark.parametrize("length", [L, 16])
@pytest.mark.parametrize("cls", MIXERS, ids=lambda c: c.__name__)
def test_every_parameter_gets_a_gradient(cls, length):
    m = make(cls).train()
    x, mask = padded_batch(length)
    x.requires_grad_(True)
    m(x, mask=mask).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_softmax_matches_plain_attention():
    m = make(SoftmaxAttention)
    x, mask = padded_batch()
    out = m(x, mask=mask)
    q, k, v = m.qkv_proj(x).split(D, dim=-1)
    heads = lambda t: t.view(B, L, H, D // H).transpose(1, 2)  # (B, H, L, Dh)
    scores = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(D // H)
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    ref = (scores.softmax(-1) @ heads(v)).transpose(1, 2).reshape(B, L, D)
    ref = m.out_proj(ref) * mask[..., None]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_fnet_is_real_part_of_2d_dft():
    m = make(FNetMixer)
    x, _ = padded_batch()
    ref = np.fft.fft2(x.double().numpy(), axes=(-2, -1)).real
    torch.testing.assert_close(m(x), torch.from_numpy(ref).float(), atol=1e-4, rtol=1e-4)
