"""Every recipe in experiments/ runs commands that work: each script is run with `python`
replaced by a recorder, then every recorded command is checked as its program would check it
-- every value of every sweep composes and validates, the speed mode plans every configuration,
and the attention benchmark's and the report's options parse."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from lra_bench.cli import check_overrides, check_syntax
from lra_bench.config import register_configs, validate

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "experiments").glob("*.sh"))
RECORDER = """import json, os, sys
with open(os.environ["RECIPE_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
"""
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the recipes are bash scripts")


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def recorded_commands(script: Path, tmp_path: Path, **settings: str) -> list[list[str]]:
    """The argv of every `python ...` the recipe runs, with its default settings unless given."""
    bin_dir, log = tmp_path / "bin", tmp_path / "commands.jsonl"
    bin_dir.mkdir()
    (bin_dir / "recorder.py").write_text(RECORDER)
    for name in ("python", "python3"):  # whichever the recipe calls: never the real one
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" "{bin_dir / "recorder.py"}" "$@"\n')
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("ATTN", "SEEDS", "EXPS", "OUT", "PARTITION")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}", RECIPE_LOG=str(log),
               LRA_DATA=str(tmp_path / "lra"), **settings)
    res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    commands = [json.loads(line) for line in log.read_text().splitlines()]
    # every program the script names was recorded (a call that bypassed the recorder would not be)
    named = set(re.findall(r"^\s*python3? -m ([\w.]+)", script.read_text(), flags=re.M))
    assert named == {argv[1] for argv in commands}, (named, commands)
    return commands


def sweep_variants(overrides: list[str]) -> list[list[str]]:
    """One override list per value of each sweep (the other sweeps at their first value):
    every value is composed once, without the whole product."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    values = [list(o.sweep_string_iterator()) if o.is_sweep_override() else None for o in parsed]
    first = [f"{o.get_key_element()}={v[0]}" if v else arg for o, v, arg in zip(parsed, values, overrides)]
    variants = [first]
    for i, (o, v) in enumerate(zip(parsed, values)):
        for value in (v or [])[1:]:
            variants.append(first[:i] + [f"{o.get_key_element()}={value}"] + first[i + 1:])
    return variants


def check_sweep(args: list[str]) -> int:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    assert "-m" in args or "--multirun" in args, f"a recipe's training command is a sweep: {args}"
    assert check_syntax(args) is None
    overrides = [a for a in args if not a.startswith("-")]
    assert check_overrides(overrides) is None, check_overrides(overrides)
    for arg in overrides:  # a launcher's config needs its plugin (pip install -e '.[sweep]', also in [test])
        if arg.startswith("hydra/launcher="):
            plugin = "submitit" if arg.endswith("=slurm") else "joblib"
            pytest.importorskip(f"hydra_plugins.hydra_{plugin}_launcher")
    register_configs()
    variants = sweep_variants(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            for variant in variants:
                cfg = compose("config", overrides=variant, return_hydra_config=True)
                with open_dict(cfg):
                    hydra = cfg.pop("hydra")  # the run's own config is what the app validates
                validate(cfg)
                if any(a.startswith("hydra/launcher=") for a in variant):
                    assert hydra.launcher._target_.endswith("Launcher"), variant
    finally:
        GlobalHydra.instance().clear()
    return len(variants)


def check_bench(args: list[str], tmp_path: Path) -> None:
    from lra_bench.bench.__main__ import _parser, _split
    from lra_bench.bench.mixers import mixer_names
    from lra_bench.bench.steps import plan

    parsed, extra = _parser().parse_known_args(args)
    names = _split(parsed.attn) if parsed.attn is not None else mixer_names()
    lengths = [int(n) for n in _split(parsed.lengths)]
    if parsed.command == "attention":
        assert not extra and set(names) <= set(mixer_names()) and parsed.out
        return
    device = "cpu" if parsed.device.startswith("cuda") else parsed.device  # a GPU recipe, checked here on CPU
    planned = plan(parsed.task, names, lengths, parsed.batch, steps=parsed.steps, warmup=parsed.warmup,
                   device=device, threads=parsed.threads, out=tmp_path / "speed",
                   overrides=list(parsed.overrides) + extra, size=parsed.size)
    assert len(planned) == len(names) * len(lengths)
    if parsed.device.startswith("cuda"):  # a GPU recipe times LRA's Table 2 setting, whatever machine checks it
        (lra,) = plan(parsed.task, names[:1], lengths[:1], steps=1, warmup=0, device="cpu", out=tmp_path / "speed",
                      size="lra")
        assert all(p.size == "lra" and p.cfg.trainer.batch_size == 32 and p.cfg.model == lra.cfg.model
                   for p in planned)


def check_report(args: list[str]) -> None:
    from lra_bench.report.cli import parse_args
    from lra_bench.report.records import TASKS

    parsed = parse_args(args)
    assert set(parsed.tasks) <= set(TASKS) and parsed.out.parts[0] == "results", parsed.out


@pytest.mark.parametrize("script", RECIPES, ids=[p.name for p in RECIPES])
def test_every_recipe_command_works(script, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the recipes run from the repository root
    commands = recorded_commands(script, tmp_path)
    programs = []
    for argv in commands:
        assert argv[0] == "-m", argv
        programs.append(argv[1] if argv[1] != "lra_bench.bench" else f"bench {argv[2]}")
        if argv[1] == "lra_bench":
            assert check_sweep(argv[2:]) >= 1
        elif argv[1] == "lra_bench.bench":
            check_bench(argv[2:], tmp_path)
        elif argv[1] == "lra_bench.report":
            check_report(argv[2:])
        else:
            raise AssertionError(f"{script.name} runs an unknown program: {argv}")
    assert programs[-1] in ("lra_bench.report", "bench attention"), "a recipe ends with what writes its table"


def test_cpu_grid_runs_both_presets_then_the_speed_mode_and_the_report(tmp_path):
    commands = recorded_commands(ROOT / "experiments" / "cpu_grid.sh", tmp_path)
    presets = [a for argv in commands for a in argv if a.startswith("experiment=")]
    assert presets == ["experiment=listops_cpu", "experiment=pathfinder_cpu"]
    assert [argv[1:3] for argv in commands[2:]] == [["lra_bench.bench", "steps"], ["lra_bench.report", "outputs/cpu_grid"]]


@pytest.mark.parametrize("script", ["listops_quick.sh", "cpu_grid.sh", "lra_grid.sh"])
def test_recipe_settings_narrow_and_move_a_run(tmp_path, script):
    commands = recorded_commands(ROOT / "experiments" / script, tmp_path, ATTN="dct", SEEDS="1", OUT="elsewhere")
    sweeps = [argv for argv in commands if argv[1] == "lra_bench"]
    assert sweeps and all({"attn=dct", "seed=1", "paths.root=elsewhere"} <= set(argv) for argv in sweeps)
    (steps,) = [argv for argv in commands if argv[1:3] == ["lra_bench.bench", "steps"]]
    assert steps[steps.index("--attn") + 1] == "dct" and steps[steps.index("--out") + 1] == "elsewhere/speed"
    assert commands[-1][2] == "elsewhere"  # the report reads what the sweeps wrote


def test_every_recipe_is_listed_in_the_experiments_readme():
    text = (ROOT / "experiments" / "README.md").read_text()
    assert RECIPES and all(f"`{p.name}`" in text for p in RECIPES)
