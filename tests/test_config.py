"""The real conf/ composes for every group file, and bad configs fail in one clear line."""
from __future__ import annotations

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate

from lra_bench.config import validate
from lra_bench.errors import ConfigError
from tests.conftest import CONF_DIR

GROUP_FILES = sorted((p.parent.name, p.stem) for group in ("task", "attn", "model", "trainer", "logger", "experiment")
                     for p in (CONF_DIR / group).glob("*.yaml"))


def test_every_group_has_files():
    assert {g for g, _ in GROUP_FILES} == {"task", "attn", "model", "trainer", "logger", "experiment"}


@pytest.mark.parametrize("group,name", GROUP_FILES, ids=[f"{g}={n}" for g, n in GROUP_FILES])
def test_every_config_file_composes_and_validates(compose_cfg, group, name):
    cfg = compose_cfg(f"{group}={name}", tiny=False)
    validate(cfg)
    if group == "attn":
        mixer = instantiate(cfg.attn, hidden_dim=cfg.model.hidden_dim, num_heads=cfg.model.num_heads)
        x = torch.randn(2, 5, cfg.model.hidden_dim)
        assert mixer(x).shape == x.shape


# LRA's released configs per task (model size, pooling, batch, steps, lr, schedule).
LRA_SETTINGS = {
    "listops": ((512, 8, 4, 1024, "cls"), (32, 5000, 0.05, "rsqrt", 1000)),
    "text": ((256, 4, 4, 1024, "cls"), (32, 20000, 0.05, "rsqrt", 8000)),
    "retrieval": ((128, 4, 4, 512, "cls"), (32, 5000, 0.05, "rsqrt", 8000)),
    "image": ((128, 8, 1, 128, "cls"), (256, 35000, 0.0005, "cosine", 175)),
    "pathfinder": ((32, 4, 4, 32, "mean"), (512, 62400, 0.001, "cosine", 312)),
    "pathx": ((32, 2, 1, 32, "mean"), (64, 500000, 0.001, "cosine", 2500)),
}


@pytest.mark.parametrize("task", sorted(LRA_SETTINGS))
def test_task_alone_gives_lras_setting(compose_cfg, task):
    cfg = compose_cfg(f"task={task}", tiny=False)
    m, t = cfg.model, cfg.trainer
    assert cfg.task.name == task
    assert (m.hidden_dim, m.num_heads, m.num_layers, m.mlp_dim, m.pooling) == LRA_SETTINGS[task][0]
    assert (t.batch_size, t.max_steps, t.lr, t.schedule, t.warmup_steps) == LRA_SETTINGS[task][1]
    validate(cfg)


@pytest.mark.parametrize("task", sorted(LRA_SETTINGS))
def test_quick_and_small_keep_the_tasks_pooling(compose_cfg, task):
    for overlay in ("trainer=quick", "model=small"):
        cfg = compose_cfg(f"task={task}", overlay, tiny=False)
        assert cfg.model.pooling == LRA_SETTINGS[task][0][4] and cfg.model.hidden_dim <= 64
        validate(cfg)


def test_quick_shrinks_each_tasks_data(compose_cfg):
    assert compose_cfg("trainer=quick", tiny=False).task.max_length == 64
    assert compose_cfg("task=text", "trainer=quick", tiny=False).task.max_length == 256
    assert compose_cfg("task=text", tiny=False).task.max_length == 1000
    assert compose_cfg("task=pathfinder", "trainer=quick", tiny=False).task.generate.num_samples == 2000


def test_defaults_are_lra_listops(compose_cfg):
    cfg = compose_cfg(tiny=False)
    assert cfg.task.name == "listops" and cfg.task.max_length == 2000
    assert (cfg.model.hidden_dim, cfg.model.num_heads, cfg.model.num_layers, cfg.model.mlp_dim) == (512, 8, 4, 1024)
    assert cfg.model.pooling == "cls"
    g = cfg.task.generate
    assert (g.num_train, g.num_val, g.num_test, g.min_length, g.max_length, g.max_depth, g.max_args) == \
        (96000, 2000, 2000, 500, 2000, 10, 10)
    assert cfg.logger.mode == "offline"


@pytest.mark.parametrize("overrides,fragment", [
    (["model.hidden_dim=100", "model.num_heads=3"], "not divisible by model.num_heads=3"),
    (["model.pooling=max"], "model.pooling='max' is not one of cls, mean"),
    (["model.norm=sandwich"], "model.norm"),
    (["model.dropout=1.5"], "model.dropout=1.5 must be in [0, 1)"),
    (["trainer.schedule=linear"], "trainer.schedule='linear'"),
    (["trainer.lr=-1"], "trainer.lr=-1.0 must be > 0"),
    (["trainer.batch_size=0"], "trainer.batch_size=0 must be > 0"),
    (["trainer.betas=[0.9]"], "trainer.betas"),
    (["trainer.device=tpu"], "trainer.device='tpu'"),
    (["logger.mode=sometimes"], "logger.mode='sometimes'"),
    (["+attn.heads=3"], "unknown key(s) attn.heads"),
    (["+attn.hidden_dim=3"], "attn.hidden_dim is set by the harness"),
    (["+task.lenght=3"], "unknown key(s) task.lenght"),
    (["task._target_=lra_bench.data.nothing.build"], "cannot be imported"),
    (["task.max_length=0"], "task.max_length=0 must be > 0"),
    (["+model.extra=1"], "unknown key(s) model.extra"),
    (["attn=dct_attention", "attn.dct_type=7"], "dct_type=7 is not an orthonormal DCT type"),
    (["attn=dct", "attn.transform_type=wavelet"], "transform_type='wavelet' is not one of"),
    (["attn=mixed_spectral", "attn.use_fft=false", "attn.use_dct=false", "attn.use_hadamard=false"],
     "needs at least one of use_fft"),
    (["attn=mixed_spectral", "attn.use_fft=no"], "attn.use_fft='no' must be bool; e.g. attn.use_fft=true"),
    (["attn=dct_attention", "attn.dct_type=true"], "attn.dct_type=True must be int; e.g. attn.dct_type=2"),
    (["attn=dct", "attn.normalize=maybe"], "attn.normalize='maybe' must be bool"),
    (["+trainer.epochs=3"], "unknown key(s) trainer.epochs"),
    (["+sed=3"], "unknown top-level key(s) sed"),
    (["model.interaction=sum"], "model.interaction='sum' is not one of concat, nli"),
    (["+task.data_root=/data"], "task.data_root is set by the harness (from paths.cache / paths.data_root)"),
])
def test_bad_config_fails_in_one_line(compose_cfg, overrides, fragment):
    cfg = compose_cfg(*overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override,exc", [
    ("attn=nonexistent", MissingConfigException),
    ("task=nonexistent", MissingConfigException),
    ("model.hiden_dim=64", ConfigCompositionException),
    ("trainer.max_steps=many", ConfigCompositionException),
])
def test_schema_rejects_at_composition(compose_cfg, override, exc):
    with pytest.raises(exc):
        compose_cfg(override)
