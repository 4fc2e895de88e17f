"""The encoder classifier: pooling, padding and shape facts."""
from __future__ import annotations

from functools import partial

import pytest
import torch

from lra_bench.attention import FNetMixer, SoftmaxAttention
from lra_bench.data.spec import TaskSpec
from lra_bench.models import Classifier, DualClassifier, build_model

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


class _MaskSpy(SoftmaxAttention):
    """Softmax attention that remembers the masks it was given."""

    seen: list = []

    def forward(self, x, mask=None, **kw):
        _MaskSpy.seen.append(mask)
        return super().forward(x, mask=mask, **kw)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_no_pad_id_means_no_mask_and_zero_is_a_token(pooling):
    """Images/Pathfinder (pad_id=None): pixel 0 is a value; nothing is masked or left out of pooling."""
    spec = TaskSpec(name="img", vocab_size=20, max_length=12, num_classes=5, pad_id=None)
    torch.manual_seed(0)
    m = Classifier(spec, partial(_MaskSpy, hidden_dim=16, num_heads=2), hidden_dim=16, num_layers=1, mlp_dim=24,
                   dropout=0.0, pooling=pooling).eval()
    _MaskSpy.seen.clear()
    x = torch.randint(1, 20, (2, 7))
    with_zeros = torch.cat([x, torch.zeros(2, 5, dtype=torch.long)], dim=1)
    out = m(with_zeros)
    assert _MaskSpy.seen == [None]
    assert not torch.allclose(m(x), out, atol=1e-4)  # trailing zeros are content, not padding
    h = m.encoder(with_zeros, None, prefix=m.cls)
    pooled = h[:, 0] if pooling == "cls" else h.mean(1)
    torch.testing.assert_close(out, m.head(pooled))


def dual(interaction="concat", pooling="cls"):
    spec = TaskSpec(name="pairs", vocab_size=20, max_length=12, num_classes=2, dual_input=True)
    torch.manual_seed(0)
    return DualClassifier(spec, partial(SoftmaxAttention, hidden_dim=16, num_heads=2), hidden_dim=16, num_layers=1,
                          mlp_dim=24, dropout=0.0, pooling=pooling, interaction=interaction).eval()


@pytest.mark.parametrize("interaction", ["concat", "nli"])
def test_dual_classifier_is_lras_dual_head_on_one_shared_encoder(interaction):
    m = dual(interaction)
    x = torch.randint(1, 20, (3, 2, 12))
    a, b = m.body(x[:, 0]), m.body(x[:, 1])
    parts = [a, b, a * b, a - b] if interaction == "nli" else [a, b]
    torch.testing.assert_close(m(x), m.head(torch.cat(parts, -1)), atol=1e-5, rtol=1e-5)
    widths = [layer.out_features for layer in m.head if isinstance(layer, torch.nn.Linear)]
    assert m.head[0].in_features == 16 * len(parts) and widths == [24, 12, 2]


def test_dual_classifier_ignores_each_documents_padding():
    m = dual(pooling="mean")
    x = torch.randint(1, 20, (2, 2, 7))
    x[0, 1, 4:] = 0  # a shorter second document
    padded = torch.cat([x, torch.zeros(2, 2, 5, dtype=torch.long)], dim=2)
    torch.testing.assert_close(m(x), m(padded), atol=1e-5, rtol=1e-5)


def test_dual_classifier_rejects_single_sequences():
    with pytest.raises(ValueError, match=r"\(batch, 2, length\)"):
        dual()(torch.randint(1, 20, (3, 12)))
    with pytest.raises(ValueError, match="interaction"):
        dual(interaction="sum")


def test_build_model_picks_the_dual_classifier_for_dual_tasks():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(dict(hidden_dim=16, num_heads=2, num_layers=1, mlp_dim=24, dropout=0.0,
                                attention_dropout=0.0, pooling="cls", norm="pre", interaction="nli"))
    dual_spec = TaskSpec(name="pairs", vocab_size=20, max_length=12, num_classes=2, dual_input=True)
    m = build_model(dual_spec, cfg, SoftmaxAttention, {})
    assert isinstance(m, DualClassifier) and m.interaction == "nli"
    assert type(build_model(SPEC, cfg, SoftmaxAttention, {})) is Classifier
