"""The encoder classifier: pooling, padding and shape facts."""
from __future__ import annotations

from functools import partial

import pytest
import torch

from lra_bench.attention import FNetMixer, SoftmaxAttention
from lra_bench.data.spec import TaskSpec
from lra_bench.models import Classifier

SPEC = TaskSpec(name="t", vocab_size=20, max_length=12, num_classes=5)


def model(mixer=SoftmaxAttention, pooling="cls", norm="pre"):
    torch.manual_seed(0)
    return Classifier(SPEC, partial(mixer, hidden_dim=16, num_heads=2), hidden_dim=16, num_layers=2, mlp_dim=24,
                      dropout=0.0, pooling=pooling, norm=norm).eval()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("mixer", [SoftmaxAttention, FNetMixer])
def test_logits_shape(pooling, norm, mixer):
    x = torch.randint(1, 20, (4, 12))
    assert model(mixer, pooling, norm)(x).shape == (4, 5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_softmax_classifier_ignores_extra_padding(pooling):
    """With masked softmax attention, appending pad tokens does not change the logits."""
    m = model(SoftmaxAttention, pooling)
    x = torch.randint(1, 20, (2, 7))
    padded = torch.cat([x, torch.zeros(2, 5, dtype=torch.long)], dim=1)
    torch.testing.assert_close(m(x), m(padded), atol=1e-5, rtol=1e-5)


def test_cls_pooling_uses_one_extra_position():
    m = model(pooling="cls")
    assert m.encoder.pos.num_embeddings == SPEC.max_length + 1
    assert model(pooling="mean").encoder.pos.num_embeddings == SPEC.max_length
    with pytest.raises(ValueError, match="exceeds"):
        m(torch.ones(1, SPEC.max_length + 1, dtype=torch.long))
