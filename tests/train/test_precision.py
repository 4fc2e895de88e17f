"""trainer.precision and trainer.compile: off by default on CPU, working when asked."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lra_bench.errors import ConfigError
from lra_bench.train import precision
from lra_bench.train.run import run


def test_auto_precision_is_fp32_on_cpu_and_fp16_needs_cuda():
    cpu = torch.device("cpu")
    assert precision.resolve("auto", cpu) == "fp32" and precision.resolve("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="trainer.precision=fp16 needs a CUDA device"):
        precision.resolve("fp16", cpu)
    assert precision.grad_scaler("bf16", cpu) is None


def test_bf16_autocast_on_cpu_trains_and_is_recorded(compose_cfg):
    record = run(compose_cfg("trainer.resume=false", "trainer.precision=bf16", "attn=dct"))
    assert record["status"] == "ok" and record["precision"] == "bf16"
    assert run(compose_cfg("trainer.resume=false"))["precision"] == "fp32"  # auto on CPU


def test_compiled_model_trains_and_checkpoints_plain_weights(compose_cfg):
    try:
        record = run(compose_cfg("trainer.resume=false", "trainer.compile=true", "attn=dct", "trainer.max_steps=6",
                                 "trainer.eval_every=6"))
    finally:
        torch._dynamo.reset()
    assert record["status"] == "ok"
    best = torch.load(Path(record["config"]["paths"]["checkpoints"]) / record["run_id"] / "best.pt", weights_only=True)
    assert not any(key.startswith("_orig_mod") for key in best["model"])
