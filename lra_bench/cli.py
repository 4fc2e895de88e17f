"""Command-line checks made before Hydra starts, so the commonest mistakes cost one line.

Hydra reports an unknown config choice or key, a value of the wrong type or a sweep
without `-m` with a multi-line message (and suggests `+key=` for a typo); these checks
catch `group=missing`, `section.typo=...` and `section.key=<wrong type>` for the
schema-typed sections first and name the accepted values (`check_overrides`), then an
unparsable override or a sweep without `-m` (`check_syntax`), and finally compose the
config once as Hydra will, turning whatever else Hydra would refuse into one line
(`check_composition`; it also refuses a batch larger than the training split of data the
task would generate, before generating them).
"""
from __future__ import annotations

import difflib
import importlib
import json
import re
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from lra_bench.config import LoggerConfig, ModelConfig, PathsConfig, RunConfig, TrainerConfig, register_configs

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("task", "attn", "model", "trainer", "logger", "experiment")
SECTIONS = {"model": ModelConfig, "trainer": TrainerConfig, "logger": LoggerConfig, "paths": PathsConfig}
_SWEEP_SYNTAX = re.compile(r"[\[\]()*$]|^(range|choice|glob|interval|tag|sort|shuffle)\(")


def available(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def _did_you_mean(name: str, options: Iterable[str], prefix: str = "") -> str:
    """'; did you mean <prefix><closest>?' for a near miss among `options`, else ''."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def _task_node(task: str, conf_dir: Path) -> Optional[dict]:
    file = conf_dir / "task" / f"{task}.yaml"
    if not file.is_file():
        return None
    return yaml.safe_load(file.read_text()).get("task") or {}


def _task_keys(task: str, path: list[str], conf_dir: Path) -> Optional[list[str]]:
    """The keys conf/task/<task>.yaml lists at task.<path>, or None when that is not a node of it."""
    node = _task_node(task, conf_dir)
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return sorted(node) if isinstance(node, dict) else None


def _fixed_length(task: str, conf_dir: Path) -> str:
    """Why task.max_length cannot be set for a task whose file does not list it (its length is fixed)."""
    node = _task_node(task, conf_dir) or {}
    try:
        module = importlib.import_module(str(node["_target_"]).rsplit(".", 1)[0])
        options = {k: v for k, v in node.items() if k not in ("_target_", "name")}
        length = f" of {module.task_spec(**options).max_length}"
    except Exception:  # no task_spec, or an odd file: say it without the number
        length = ""
    if "resolution" in node:
        return (f"{task} has a fixed length{length} (task.resolution squared, one token per pixel): remove "
                f"task.max_length, or change task.resolution for another length")
    return f"{task} has a fixed length{length} (one token per pixel): remove task.max_length"


def _check_task_key(key: str, tasks: list[str], conf_dir: Path) -> Optional[str]:
    """`task.a.b=...` must name a key that conf/task/<t>.yaml lists (Hydra's own error is 7 lines)."""
    *parents, leaf = key.split(".")[1:]
    for task in tasks:
        keys = _task_keys(task, parents, conf_dir)
        if keys is not None and leaf not in keys:
            where = ".".join(["task", *parents])
            listed = f"unknown key {key} for task={task}; {where} lists: {', '.join(keys)}"
            if key == "task.max_length":
                return f"{listed}; {_fixed_length(task, conf_dir)}"
            return (f"{listed}{_did_you_mean(leaf, keys, where + '.')} "
                    f"(an option the file does not list is added with +{key}=...)")
    return None


def _describe(tp: Any) -> tuple[str, Optional[str]]:
    """(what a value of type `tp` is, in words; an example of one, or None)."""
    if tp is bool:
        return "true or false", "true"
    if tp is int:
        return "an integer", "1"
    if tp is float:
        return "a number", "0.1"
    if tp is str:
        return "a string", None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union and type(None) in args:
        inner = next(a for a in args if a is not type(None))
        what, example = _describe(inner)
        return f"{what} or null", example
    if origin in (list, typing.List) and args:
        what, example = _describe(args[0])
        return f"a list of {what.split(' ', 1)[-1]}s in brackets", f"[{example},{example}]" if example else None
    return "a value of another type", None


def _as_override(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (bool, list)) or value is None else str(value)


def _check_type(key: str, schema: type, name: str, text: str) -> Optional[str]:
    """`key=text` must fit the schema's type for field `name` (Hydra's own error is 6 lines)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep
    from hydra.errors import OverrideParseException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        override = OverridesParser.create().parse_overrides([f"{key}={text}"])[0]
    except OverrideParseException:
        return None  # left to check_composition
    value = override.value()
    if isinstance(value, ChoiceSweep):
        values = list(value.list)
    elif override.is_sweep_override():
        return None  # range(), interval(), glob(): Hydra checks each value
    else:
        values = [value]
    node = OmegaConf.structured(schema)
    for item in values:
        try:
            OmegaConf.update(node, name, item, merge=True)
        except OmegaConfBaseException:
            field = next(f for f in fields(schema) if f.name == name)
            default = field.default_factory() if field.default_factory is not MISSING else field.default
            what, example = _describe(typing.get_type_hints(schema)[name])
            if default is not None and default is not MISSING:
                example = _as_override(default)
            shown = text if len(values) == 1 else _as_override(item)
            return f"{key}={shown} is not {what}; set e.g. {key}={example}" if example else \
                f"{key}={shown} is not {what}"
    return None


def _experiment_task(name: str, conf_dir: Path) -> Optional[str]:
    """The task conf/experiment/<name>.yaml selects (`override /task: <t>` in its defaults), if any."""
    file = conf_dir / "experiment" / f"{name}.yaml"
    if not file.is_file():
        return None
    for entry in (yaml.safe_load(file.read_text()) or {}).get("defaults") or []:
        if isinstance(entry, dict) and "override /task" in entry:
            return str(entry["override /task"])
    return None


def check_overrides(args: Iterable[str], conf_dir: Path = CONF_DIR) -> Optional[str]:
    """A one-line error for the first bad override in `args`, or None."""
    args = list(args)
    tasks = ["listops"]  # conf/config.yaml's default
    for arg in args:
        if arg.startswith("experiment=") and not _SWEEP_SYNTAX.search(arg[11:]):
            tasks = [_experiment_task(name, conf_dir) or tasks[0] for name in arg[11:].split(",")]
    for arg in args:
        if arg.startswith("task=") and not _SWEEP_SYNTAX.search(arg[5:]):
            tasks = arg[5:].split(",")
    for arg in args:
        if arg.startswith("-") or "=" not in arg or arg[0] in "+~":
            continue
        key, value = arg.split("=", 1)
        if key in GROUPS:
            if _SWEEP_SYNTAX.search(value) or value == "null":
                continue
            choices = available(key, conf_dir)
            for choice in value.split(","):
                if choice not in choices:
                    return f"{key}={choice} is not a config in conf/{key}/; available: {', '.join(choices)}"
        elif key.startswith("task."):
            problem = _check_task_key(key, tasks, conf_dir)
            if problem:
                return problem
        elif "." in key:
            section, _, field = key.partition(".")
            schema = SECTIONS.get(section)
            if schema is not None and field.split(".")[0] not in schema.__dataclass_fields__:
                return (f"unknown key {key}; {section} accepts: {', '.join(schema.__dataclass_fields__)}"
                        f"{_did_you_mean(field, schema.__dataclass_fields__, section + '.')}")
            if schema is not None and "." not in field:
                problem = _check_type(key, schema, field, value)
                if problem:
                    return problem
        elif key not in RunConfig.__dataclass_fields__ and not key.startswith("hydra"):
            return (f"unknown key {key}; top-level keys are: {', '.join(RunConfig.__dataclass_fields__)}"
                    f"{_did_you_mean(key, RunConfig.__dataclass_fields__)}")
        elif key in RunConfig.__dataclass_fields__ and key not in SECTIONS:
            problem = _check_type(key, RunConfig, key, value)
            if problem:
                return problem
    return None


def _multirun(args: list[str]) -> bool:
    return "-m" in args or "--multirun" in args


def check_syntax(args: Iterable[str]) -> Optional[str]:
    """A one-line error for an override Hydra cannot parse, or for a sweep (`key=a,b`,
    `range(...)`, ...) given without -m; else None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    args = list(args)
    parser = OverridesParser.create()
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            override = parser.parse_overrides([arg])[0]
        except OverrideParseException as exc:
            return (f"cannot parse {arg} ({_one_line(exc)}); fix its brackets or quotes, or quote the value "
                    f"(key='...')")
        if override.is_sweep_override() and not _multirun(args):
            key = arg.split("=", 1)[0].lstrip("+~")
            other = ("or choose one" if key in GROUPS or "/" in key else
                     f"or write {key}=[...] for a list, or quote the value for a string")
            return f"{arg} gives several values without -m; add -m (--multirun) to run one job per value, {other}"
    return None


def _one_line(exc: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages (and their causes) as one line."""
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for line in str(exc).splitlines():
            line = line.strip()
            if line and line != "None" and not line.startswith(
                    ("full_key:", "object_type=", "reference_type=", "See https://hydra.cc")):
                parts.append(line.rstrip("."))
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return "; ".join(dict.fromkeys(parts))


def check_composition(args: Iterable[str], conf_dir: Path = CONF_DIR) -> Optional[str]:
    """Compose the config of a single run as Hydra's main will; a one-line error for
    anything Hydra would refuse with a multi-line message, else None.

    Skipped for runs with command-line flags (-m, --cfg, -cn, ...) and when a Hydra
    instance is already initialised in this process: Hydra reports those itself."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args = list(args)
    if any(arg.startswith("-") for arg in args) or GlobalHydra.instance().is_initialized():
        return None
    register_configs()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose("config", overrides=args, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as exc:
        return f"{_one_line(exc)}; fix that override (python -m lra_bench --help lists the config groups)"
    except Exception:  # not a configuration problem: Hydra's main reports it
        return None
    finally:
        GlobalHydra.instance().clear()
    return _batch_above_generated(cfg)


def _batch_above_generated(cfg: Any) -> Optional[str]:
    """A training batch larger than the training split of the data the task would generate
    (sizes known from the config: the task module's `planned_sizes`), caught before the data
    are generated. Here rather than in `validate`, which the speed benchmark shares: it never
    reads the data."""
    try:
        from lra_bench.config import split_task

        _, builder, kwargs = split_task(cfg.task)
        sizes_fn = getattr(importlib.import_module(builder.__module__), "planned_sizes", None)
        planned = sizes_fn(**kwargs, data_root=cfg.paths.data_root) if sizes_fn is not None else None
        batch = cfg.trainer.batch_size
        sizes, keys = planned if planned is not None else ({}, {})  # examples per split, the key setting each
        train = sizes.get("train")
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (batch, train)) or batch <= train:
            return None
    except Exception:  # a config error: validate() or the builder reports it
        return None
    return (f"trainer.batch_size={batch} exceeds the {train} training examples the task generates; "
            f"set trainer.batch_size<={train}, or raise {keys['train']}")

