"""Checkpoints: written to a temporary file, then renamed over the target.

The previous `last.pt` is kept as `prev.pt`, so a checkpoint that fails to load (a
truncated file, a disk error) falls back to the one before it, with a warning that names
the bad file. The best-val weights are written as `best-<step>.pt` when found and kept as
long as a checkpoint (`last.pt` or `prev.pt`) points at them, so the best weights a
resumed run ends with are always those its checkpoint recorded, even when a kill fell
between the two writes; at the end of a run they are published as `best.pt`.
"""
from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from lra_bench.errors import ConfigError, DataError
from lra_bench.io import atomic_write
from lra_bench.train.distributed import Dist

log = logging.getLogger(__name__)


def atomic_save(obj: Any, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def restore_rng(saved: Any, dist: Dist) -> None:
    """Put back this process's RNG state from a checkpoint's `rng` entry: one state per
    process (a list, rank order) or, from older checkpoints, one state (a dict)."""
    states = saved if isinstance(saved, list) else [saved]
    if len(states) == dist.world_size:
        set_rng_state(states[dist.rank])
        return
    log.warning("the checkpoint holds the RNG state of %d process(es) and this run has %d: each process "
                "continues from rank 0's state instead (dropout will not repeat the interrupted run's)",
                len(states), dist.world_size)
    set_rng_state(states[0])
    if dist.rank:  # not rank 0's dropout masks on every process
        torch.manual_seed(int(torch.randint(2**62, ())) + dist.rank)


def save_training_state(ckpt_dir: Path, state: dict) -> None:
    last, prev = ckpt_dir / "last.pt", ckpt_dir / "prev.pt"
    if last.exists():
        os.replace(last, prev)
    atomic_save(state, last)


def load_training_state(ckpt_dir: Path) -> Optional[dict]:
    """The newest loadable training state in `ckpt_dir`; None when it holds none. Raises a
    one-line DataError when checkpoints exist but none of them loads."""
    problems = []
    for path in (ckpt_dir / "last.pt", ckpt_dir / "prev.pt"):
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            if not isinstance(state, dict) or "step" not in state:
                raise ValueError("not a training state")
            return state
        except Exception as exc:  # a corrupt file can fail in many ways inside torch.load
            problems.append(f"{path.name}: {' '.join(str(exc).split())[:120]}")
            log.warning("checkpoint %s is unreadable (%s); trying an older one", path, exc)
    if problems:
        raise DataError(f"no checkpoint in {ckpt_dir} can be read ({'; '.join(problems)}); move the folder away to "
                        "keep it, or pass trainer.resume=false to start this run afresh")
    return None


def clear(ckpt_dir: Path) -> None:
    """Remove a previous run's checkpoints and best weights (a fresh start must never fall back to them)."""
    for path in [ckpt_dir / "last.pt", ckpt_dir / "prev.pt", ckpt_dir / "best.pt", *ckpt_dir.glob("best-*.pt")]:
        path.unlink(missing_ok=True)


def best_path(ckpt_dir: Path, step: int) -> Path:
    return ckpt_dir / f"best-{step}.pt"


def save_best(ckpt_dir: Path, step: int, weights: dict) -> None:
    atomic_save({"step": step, "model": weights}, best_path(ckpt_dir, step))


def prune_best(ckpt_dir: Path, keep: set) -> None:
    """Delete best-<step>.pt files whose step no checkpoint in `keep` points at."""
    for path in ckpt_dir.glob("best-*.pt"):
        step = path.stem.split("-", 1)[1]
        if step.isdigit() and int(step) not in keep:
            path.unlink(missing_ok=True)


def _copy(source: Path, target: Path) -> None:
    with atomic_write(target, "wb") as f:
        f.write(source.read_bytes())


def publish_best(ckpt_dir: Path, step: int) -> None:
    """Copy the weights of the best val step to `best.pt`, the file users take."""
    _copy(best_path(ckpt_dir, step), ckpt_dir / "best.pt")


def copy_best(source: Path, ckpt_dir: Path, step: int) -> None:
    """Bring the best weights of the run resumed from (best-<step>.pt) into this run's folder."""
    if best_path(source, step).is_file() and source != ckpt_dir:
        _copy(best_path(source, step), best_path(ckpt_dir, step))


def load_best(ckpt_dir: Path, best_step: int, device: torch.device) -> dict:
    """The weights saved at the best val step, checked to be that step's."""
    path = best_path(ckpt_dir, best_step)
    if not path.is_file():
        raise DataError(f"{path} (the best val weights the checkpoint points at) is missing; rerun with "
                        "trainer.resume=false to train this run afresh")
    saved = torch.load(path, map_location=device, weights_only=True)
    if saved.get("step") != best_step:
        raise DataError(f"{path} holds the weights of step {saved.get('step')}, not {best_step}; rerun with "
                        "trainer.resume=false to train this run afresh")
    return saved["model"]


RUN_INFO = "run.json"


def write_run_info(ckpt_dir: Path, run_id: str, identity: dict) -> None:
    """Record which configuration writes this checkpoint folder (checked before resuming from it)."""
    with atomic_write(ckpt_dir / RUN_INFO, "w") as f:
        json.dump({"run_id": run_id, "identity": identity}, f, indent=1, sort_keys=True, default=str)


def _flat(node: Any, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out: dict = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def config_differences(saved: dict, current: dict) -> list[str]:
    """`key: saved -> current` for every leaf that differs between two config dicts."""
    a, b = _flat(saved), _flat(current)
    return [f"{k}: {a.get(k, '(absent)')} -> {b.get(k, '(absent)')}" for k in sorted(set(a) | set(b))
            if a.get(k, "(absent)") != b.get(k, "(absent)")]


def resume_source(tcfg: Any, ckpt_dir: Path, identity: dict) -> Optional[Path]:
    """The checkpoint folder this run continues from, or None for a fresh start.

    The run's own folder, when it holds a checkpoint and `trainer.resume` is on; else the
    folder `trainer.resume_from` names (another run's, to continue it under this config).
    A folder written with a different configuration is refused (one line naming the
    differences) unless `trainer.force_resume=true`. Reads only the small run.json."""
    own = tcfg.resume and any((ckpt_dir / name).is_file() for name in ("last.pt", "prev.pt"))
    explicit = bool(tcfg.resume_from) and not own  # after its first checkpoint a run continues its own
    if own and tcfg.resume_from:
        log.info("continuing this run's own checkpoint in %s (trainer.resume_from seeds a fresh run only)", ckpt_dir)
    if explicit:
        src = Path(str(tcfg.resume_from)).expanduser()
        src = src.parent if src.is_file() else src
        if not src.is_dir():
            raise ConfigError(f"trainer.resume_from={tcfg.resume_from} does not exist; give a run's folder under "
                              "paths.checkpoints (it holds last.pt)")
    elif tcfg.resume:
        src = ckpt_dir
    else:
        return None
    if not any((src / name).is_file() for name in ("last.pt", "prev.pt")):
        if explicit:
            raise ConfigError(f"trainer.resume_from={tcfg.resume_from} holds no checkpoint (last.pt or prev.pt); "
                              "give the folder of a run that saved one, or drop trainer.resume_from")
        return None
    try:
        saved = json.loads((src / RUN_INFO).read_text())["identity"]
    except (OSError, ValueError, KeyError):
        saved = None
    if saved is None:
        if explicit and not tcfg.force_resume:
            raise ConfigError(f"trainer.resume_from={tcfg.resume_from} has no readable {RUN_INFO}, so its config "
                              "cannot be checked; add trainer.force_resume=true to resume from it anyway")
        return src
    diff = config_differences(saved, identity)
    if diff:
        shown = "; ".join(diff[:3]) + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")
        if not tcfg.force_resume:
            other = "drop trainer.resume_from" if explicit else "pass trainer.resume=false to start afresh"
            raise ConfigError(f"the checkpoint in {src} was written with a different config ({shown}); add "
                              f"trainer.force_resume=true to resume from it anyway, or {other}")
        log.warning("resuming from %s although its config differs (%s), as trainer.force_resume asks", src, shown)
    return src
