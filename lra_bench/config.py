"""The structured-config schema Hydra validates every composed config against.

`conf/config.yaml` starts its defaults list with `base_config` (registered here), so
Hydra merges every YAML file and command-line override into these dataclasses: an
unknown key or a value of the wrong type fails at composition, before any work.
`task` and `attn` are `_target_` nodes whose keys are the keyword arguments of the
target; `validate()` checks them against the target's signature.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch
from hydra.core.config_store import ConfigStore
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from lra_bench.errors import ConfigError
from lra_bench.models.classifier import INTERACTIONS

POOLINGS = ("cls", "mean")
NORMS = ("pre", "post")
HARNESS_TASK_KWARGS = ("cache_dir", "data_root")  # passed to every task builder from paths.*
SCHEDULES = ("rsqrt", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NONFINITE = ("stop", "skip")
LOGGER_BACKENDS = ("wandb", "none")
WANDB_MODES = ("offline", "online", "disabled")


@dataclass
class ModelConfig:
    hidden_dim: int = 512
    num_heads: int = 8
    num_layers: int = 4
    mlp_dim: int = 1024
    dropout: float = 0.1
    attention_dropout: float = 0.1
    pooling: str = "cls"
    norm: str = "pre"
    interaction: str = "concat"  # dual-input tasks (retrieval): concat [a, b] or nli [a, b, a*b, a-b]


@dataclass
class TrainerConfig:
    batch_size: int = 32
    eval_batch_size: Optional[int] = None
    max_steps: int = 5000
    lr: float = 0.05
    schedule: str = "rsqrt"
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.1
    betas: List[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-9
    grad_clip: float = 0.0
    eval_every: int = 500
    eval_max_batches: Optional[int] = None
    checkpoint_every: int = 500
    log_every: int = 50
    device: str = "auto"
    threads: Optional[int] = None
    progress: bool = True
    resume: bool = True
    resume_from: Optional[str] = None  # a checkpoint folder (or a file in it) of another run to continue from
    force_resume: bool = False  # resume even when that checkpoint was written with a different config
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16 (CUDA only)
    compile: bool = False  # torch.compile the model
    on_nonfinite: str = "stop"  # a NaN/inf loss: stop (record `diverged`) or skip the step
    max_nonfinite_skips: int = 10  # with skip: this many non-finite steps in a row stop the run


@dataclass
class LoggerConfig:
    backend: str = "wandb"
    mode: str = "offline"
    project: str = "lra_bench"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)


@dataclass
class PathsConfig:
    root: str = "outputs"
    records: str = "${paths.root}/records"
    checkpoints: str = "${paths.root}/checkpoints"
    wandb: str = "${paths.root}"
    cache: Optional[str] = None
    data_root: Optional[str] = None


@dataclass
class RunConfig:
    task: Any = None
    attn: Any = None
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0


def register_configs() -> None:
    """Make `base_config` (the schema) available to Hydra; safe to call more than once."""
    ConfigStore.instance().store(name="base_config", node=RunConfig)


def _choice(value: str, allowed: tuple, key: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}; set {key}=<one of those>")


def _positive(value: Optional[float], key: str, allow_zero: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key}={value} must be {bound}; pass e.g. {key}=1")


def resolve_target(node: Any, group: str) -> Callable:
    """Import the `_target_` of a task/attn node, failing in one line if it is absent or wrong."""
    if not isinstance(node, (dict, DictConfig)) or "_target_" not in node:
        raise ConfigError(f"`{group}` has no _target_; choose one with {group}=<name> (see conf/{group}/)")
    try:
        return get_method(node["_target_"])
    except Exception as exc:  # hydra wraps import errors in several types
        raise ConfigError(f"{group}._target_={node['_target_']!r} cannot be imported ({exc.__class__.__name__}); "
                          f"fix the path in conf/{group}/") from None


_SIMPLE_TYPES = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,)}


def _check_type(name: str, value: Any, param: inspect.Parameter) -> None:
    """A value of the wrong simple type (bool, int, float, str annotations) fails in one line."""
    ann = param.annotation if isinstance(param.annotation, str) else getattr(param.annotation, "__name__", "")
    expected = _SIMPLE_TYPES.get(ann)
    if expected and (not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected)):
        example = param.default if param.default is not inspect.Parameter.empty else {"bool": "true"}.get(ann, 1)
        example = str(example).lower() if isinstance(example, bool) else example
        raise ConfigError(f"{name}={value!r} must be {'a number' if ann == 'float' else ann}; e.g. {name}={example}")


def check_kwargs(fn: Callable, kwargs: Dict[str, Any], group: str, provided: tuple = ()) -> None:
    """Fail in one line when `kwargs` (plus harness-provided names) do not fit `fn`'s
    signature: unknown names, names the harness sets, or values of the wrong simple type."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        accepted = sorted(set(params) - set(provided) - {"self"})
        raise ConfigError(f"unknown key(s) {', '.join(f'{group}.{k}' for k in unknown)} for {fn.__qualname__}; "
                          f"accepted: {', '.join(accepted)}")
    clash = sorted(set(kwargs) & set(provided))
    if clash:
        via = "paths.cache / paths.data_root" if group == "task" else "model.*"
        raise ConfigError(f"{', '.join(f'{group}.{k}' for k in clash)} is set by the harness (from {via}); "
                          f"remove it from {group} and set {via} instead")
    for key, value in kwargs.items():
        _check_type(f"{group}.{key}", value, params[key])


def split_task(task_cfg: Any) -> tuple[str, Callable, Dict[str, Any]]:
    """(task name, builder, builder kwargs) from the `task` node."""
    node = OmegaConf.to_container(task_cfg, resolve=True) if isinstance(task_cfg, DictConfig) else dict(task_cfg or {})
    builder = resolve_target(node, "task")
    node.pop("_target_")
    name = node.pop("name", None) or builder.__name__
    return name, builder, node


def attn_kwargs(attn_cfg: Any) -> tuple[Callable, Dict[str, Any]]:
    node = OmegaConf.to_container(attn_cfg, resolve=True) if isinstance(attn_cfg, DictConfig) else dict(attn_cfg or {})
    cls = resolve_target(node, "attn")
    node.pop("_target_")
    return cls, node


def _check_resolves(cfg: DictConfig) -> None:
    """Every ${...} interpolation of the run's sections resolves (a typo in one fails here, in one line)."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        for key in RunConfig.__dataclass_fields__:
            node = cfg.get(key)
            if isinstance(node, DictConfig):
                OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as exc:
        where = f"{exc.full_key}: " if getattr(exc, "full_key", None) else ""
        msg = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ConfigError(f"{where}{msg}; fix that ${{...}} reference (on the command line or in conf/)") from None


def _module_function(fn: Callable, name: str) -> Optional[Callable]:
    module = inspect.getmodule(fn)
    return getattr(module, name, None) if module is not None else None


def _check_task_length(builder: Callable, kwargs: Dict[str, Any]) -> None:
    """`task.max_length` given to a task whose length is fixed (image, pathfinder): the task
    module's `task_spec` names the length and the fix in one line."""
    if "max_length" not in kwargs or "max_length" in inspect.signature(builder).parameters:
        return
    spec_fn = _module_function(builder, "task_spec")
    if spec_fn is None:
        return
    try:
        spec_fn(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError):  # other odd options: check_kwargs and the builder report them
        return


def validate(cfg: DictConfig) -> None:
    """Every check that needs no data and no model: run before any expensive work."""
    for section, schema in (("model", ModelConfig), ("trainer", TrainerConfig), ("logger", LoggerConfig),
                            ("paths", PathsConfig)):
        extra = sorted(set(cfg[section]) - set(schema.__dataclass_fields__))
        if extra:
            raise ConfigError(f"unknown key(s) {', '.join(f'{section}.{k}' for k in extra)}; "
                              f"{section} accepts: {', '.join(schema.__dataclass_fields__)}")
    extra = sorted(set(cfg) - set(RunConfig.__dataclass_fields__))
    if extra:
        raise ConfigError(f"unknown top-level key(s) {', '.join(extra)}; accepted: "
                          f"{', '.join(RunConfig.__dataclass_fields__)}")
    _check_resolves(cfg)
    m, t, lg = cfg.model, cfg.trainer, cfg.logger
    for key in ("hidden_dim", "num_heads", "num_layers", "mlp_dim"):
        _positive(m[key], f"model.{key}")
    if m.hidden_dim % m.num_heads:
        raise ConfigError(f"model.hidden_dim={m.hidden_dim} is not divisible by model.num_heads={m.num_heads}; "
                          f"choose num_heads dividing hidden_dim (e.g. model.num_heads="
                          f"{max(h for h in range(1, m.num_heads + 1) if m.hidden_dim % h == 0)})")
    for key in ("dropout", "attention_dropout"):
        if not 0.0 <= m[key] < 1.0:
            raise ConfigError(f"model.{key}={m[key]} must be in [0, 1); e.g. model.{key}=0.1")
    _choice(m.pooling, POOLINGS, "model.pooling")
    _choice(m.norm, NORMS, "model.norm")
    _choice(m.interaction, INTERACTIONS, "model.interaction")
    for key in ("batch_size", "max_steps", "eval_every", "checkpoint_every", "log_every"):
        _positive(t[key], f"trainer.{key}")
    _positive(t.eval_batch_size, "trainer.eval_batch_size", allow_none=True)
    _positive(t.eval_max_batches, "trainer.eval_max_batches", allow_none=True)
    _positive(t.threads, "trainer.threads", allow_none=True)
    if t.lr <= 0:
        raise ConfigError(f"trainer.lr={t.lr} must be > 0; e.g. trainer.lr=0.001 (LRA's tasks use 0.05 with the rsqrt "
                          f"schedule, 0.001 or 0.0005 with cosine)")
    for key in ("warmup_steps", "weight_decay", "grad_clip", "min_lr_ratio"):
        _positive(t[key], f"trainer.{key}", allow_zero=True)
    _choice(t.schedule, SCHEDULES, "trainer.schedule")
    _choice(t.precision, PRECISIONS, "trainer.precision")
    _choice(t.on_nonfinite, NONFINITE, "trainer.on_nonfinite")
    _positive(t.max_nonfinite_skips, "trainer.max_nonfinite_skips")
    if t.precision == "fp16" and t.device == "cpu":
        raise ConfigError("trainer.precision=fp16 needs a CUDA device (CPU autocast has no loss scaling); "
                          "use trainer.precision=bf16 or fp32 on CPU")
    if t.device not in ("auto", "cpu") and not t.device.startswith("cuda"):
        raise ConfigError(f"trainer.device={t.device!r} is not auto, cpu or cuda[:N]; set trainer.device=auto")
    if len(t.betas) != 2 or not all(0.0 <= b < 1.0 for b in t.betas):
        raise ConfigError(f"trainer.betas={list(t.betas)} must be two numbers in [0, 1); e.g. trainer.betas=[0.9,0.98]")
    _choice(lg.backend, LOGGER_BACKENDS, "logger.backend")
    _choice(lg.mode, WANDB_MODES, "logger.mode")
    _, builder, task_kwargs = split_task(cfg.task)
    _check_task_length(builder, task_kwargs)
    check_kwargs(builder, task_kwargs, "task", provided=HARNESS_TASK_KWARGS)
    cls, kwargs = attn_kwargs(cfg.attn)
    check_kwargs(cls.__init__, kwargs, "attn", provided=("hidden_dim", "num_heads", "dropout"))
    try:  # the mixer's own checks (e.g. dct_type=7), on the meta device: no memory, no data yet
        with torch.device("meta"):
            cls(hidden_dim=m.hidden_dim, num_heads=m.num_heads, dropout=m.attention_dropout, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"attn ({cls.__name__}): {exc}; fix it in conf/attn/ or on the command line") from None
    if "max_length" in cfg.task and cfg.task.max_length is not None:
        _positive(cfg.task.max_length, "task.max_length")
