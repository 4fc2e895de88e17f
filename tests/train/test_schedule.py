"""Learning-rate schedules against LRA's formulas."""
from __future__ import annotations

import math

import pytest

from lra_bench.train.schedule import lr_factor


def test_rsqrt_is_lras_constant_linear_warmup_rsqrt_decay():
    f = lr_factor("rsqrt", warmup_steps=1000, max_steps=5000)
    for t in (1, 10, 500, 1000, 1001, 4000):
        expected = min(1.0, t / 1000) / math.sqrt(max(t, 1000))
        assert f(t - 1) == pytest.approx(expected)
    assert 0.05 * f(999) == pytest.approx(0.05 / math.sqrt(1000))  # LRA's peak lr


def test_cosine_warms_up_then_decays_to_floor():
    f = lr_factor("cosine", warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(59) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(109) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 109))


def test_constant_and_unknown():
    assert lr_factor("constant", 0, 10)(5) == 1.0
    with pytest.raises(ValueError):
        lr_factor("step", 0, 10)
