"""Command-line checks made before Hydra starts, so the commonest mistakes cost one line.

Hydra reports an unknown config choice or key with a multi-line message (and suggests
`+key=` for a typo); these checks catch `group=missing` and `section.typo=...` for the
schema-typed sections first and name the accepted values. Anything they do not
recognise is left to Hydra.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Optional

import yaml

from lra_bench.config import LoggerConfig, ModelConfig, PathsConfig, RunConfig, TrainerConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("task", "attn", "model", "trainer", "logger", "experiment")
SECTIONS = {"model": ModelConfig, "trainer": TrainerConfig, "logger": LoggerConfig, "paths": PathsConfig}
_SWEEP_SYNTAX = re.compile(r"[\[\]()*$]|^(range|choice|glob|interval|tag|sort|shuffle)\(")


def available(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def _task_keys(task: str, path: list[str], conf_dir: Path) -> Optional[list[str]]:
    """The keys conf/task/<task>.yaml lists at task.<path>, or None when that is not a node of it."""
    file = conf_dir / "task" / f"{task}.yaml"
    if not file.is_file():
        return None
    node = yaml.safe_load(file.read_text()).get("task") or {}
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return sorted(node) if isinstance(node, dict) else None


def _check_task_key(key: str, tasks: list[str], conf_dir: Path) -> Optional[str]:
    """`task.a.b=...` must name a key that conf/task/<t>.yaml lists (Hydra's own error is 7 lines)."""
    *parents, leaf = key.split(".")[1:]
    for task in tasks:
        keys = _task_keys(task, parents, conf_dir)
        if keys is not None and leaf not in keys:
            where = ".".join(["task", *parents])
            return (f"unknown key {key} for task={task}; {where} lists: {', '.join(keys)} "
                    f"(an option the file does not list is added with +{key}=...)")
    return None


def check_overrides(args: Iterable[str], conf_dir: Path = CONF_DIR) -> Optional[str]:
    """A one-line error for the first bad override in `args`, or None."""
    args = list(args)
    tasks = ["listops"]  # conf/config.yaml's default
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
                return (f"unknown key {key}; {section} accepts: {', '.join(schema.__dataclass_fields__)}")
        elif key not in RunConfig.__dataclass_fields__ and not key.startswith("hydra"):
            return f"unknown key {key}; top-level keys are: {', '.join(RunConfig.__dataclass_fields__)}"
    return None
