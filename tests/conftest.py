"""Shared fixtures: compose the real conf/ with hydra.compose, shrunk to run in seconds."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from lra_bench.config import register_configs

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# Overrides that turn any config into a seconds-long CPU run on tiny generated ListOps.
TINY = [
    "task.max_length=48", "task.generate.num_train=256", "task.generate.num_val=64", "task.generate.num_test=64",
    "task.generate.min_length=10", "task.generate.max_length=40",
    "task.workers=1", "model.hidden_dim=16", "model.num_heads=2", "model.num_layers=1", "model.mlp_dim=32",
    "trainer.batch_size=16", "trainer.max_steps=12", "trainer.warmup_steps=2", "trainer.eval_every=6",
    "trainer.checkpoint_every=6", "trainer.progress=false", "trainer.lr=0.001", "trainer.schedule=cosine",
    "logger=none",
]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No test touches the user's cache, W&B account or the network."""
    monkeypatch.setenv("LRA_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


@pytest.fixture
def compose_cfg(tmp_path):
    """compose_cfg(*overrides, tiny=True) -> DictConfig writing only under tmp_path."""
    register_configs()

    def _compose(*overrides: str, tiny: bool = True, config_name: str = "config"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            paths = [f"paths.root={tmp_path / 'out'}", f"paths.cache={tmp_path / 'cache'}"]
            cfg = compose(config_name, overrides=(TINY if tiny else []) + paths + list(overrides),
                          return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)  # as @hydra.main does: runtime choices name the run
        with open_dict(cfg):
            del cfg.hydra
        return cfg

    yield _compose
    GlobalHydra.instance().clear()
