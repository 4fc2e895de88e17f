"""Experiment tracking: Weights & Biases (offline unless asked) or nothing.

W&B trouble never stops a run: if an online `wandb.init` fails (no network, a bad key,
a service error) the run logs offline instead, to sync later; if that fails too, or a log
call fails, the run goes on without W&B and says so; the local run record is written
regardless.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)


class NullLogger:
    run_dir: Optional[str] = None

    def log(self, metrics: dict, step: int) -> None:
        pass

    def summary(self, values: dict) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class WandbLogger(NullLogger):
    def __init__(self, *, mode: str, project: str, entity: Optional[str], group: Optional[str], tags: list,
                 name: str, config: dict, directory: str):
        self.run = None
        try:
            import wandb
        except Exception as exc:  # not installed, or broken on import
            log.warning("W&B cannot be imported (%s: %s); continuing without it (pip install wandb)",
                        type(exc).__name__, exc)
            return
        Path(directory).mkdir(parents=True, exist_ok=True)
        kwargs = dict(project=project, entity=entity, group=group, tags=list(tags), name=name, config=config,
                      dir=directory, reinit="finish_previous")
        for attempt in ((mode, "offline") if mode == "online" else (mode,)):
            try:
                self.run = wandb.init(mode=attempt, **kwargs)
                self.run_dir = getattr(self.run, "dir", None)
                if attempt != mode:
                    log.warning("W&B is logging offline instead; upload later with `wandb sync %s`",
                                self.run_dir or directory)
                return
            except Exception as exc:  # no network, a bad key, a service error: never stop the run for it
                log.warning("W&B %s failed (%s: %s)%s", attempt, type(exc).__name__, " ".join(str(exc).split())[:200],
                            "; trying offline" if attempt != "offline" and mode == "online" else
                            "; continuing without W&B (the run record is written regardless)")

    def _safe(self, fn, *args) -> None:
        if self.run is None:
            return
        try:
            fn(*args)
        except Exception as exc:
            log.warning("W&B call failed (%s); continuing without it", exc)
            self.run = None

    def log(self, metrics: dict, step: int) -> None:
        self._safe(lambda: self.run.log(metrics, step=step))

    def summary(self, values: dict) -> None:
        self._safe(lambda: self.run.summary.update(values))

    def finish(self, exit_code: int = 0) -> None:
        self._safe(lambda: self.run.finish(exit_code=exit_code))


def make_logger(cfg: Any, name: str, config: dict) -> NullLogger:
    lg = cfg.logger
    if lg.backend == "none" or lg.mode == "disabled":
        return NullLogger()
    return WandbLogger(mode=lg.mode, project=lg.project, entity=lg.entity, group=lg.group, tags=lg.tags,
                       name=name, config=config, directory=cfg.paths.wandb)
