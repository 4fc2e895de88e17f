"""`python -m lra_bench task=<task> attn=<attn> [key=value ...]` (Hydra; `-m` for sweeps)."""
from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import hydra
from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from lra_bench.cli import check_overrides
from lra_bench.config import register_configs
from lra_bench.errors import LRABenchError

register_configs()
log = logging.getLogger("lra_bench")


class SweepJobError(CompactHydraException):
    """A sweep job stopped by a user's error. Hydra runs the rest of the sweep, then reports
    the first failed job as its overrides and this one line (no traceback) and exits 1."""


def main() -> None:
    """Entry point: quick override checks, then the Hydra app."""
    args = sys.argv[1:]
    problem = check_overrides(args)
    if not problem:  # an unparsable override or a sweep without -m, then anything else Hydra would refuse
        from lra_bench.cli import check_composition, check_syntax

        problem = check_syntax(args) or check_composition(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    hydra_app()


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _remove_hydra_output() -> None:
    """A run stopped by a user error leaves nothing behind: the files Hydra wrote for it (its
    config snapshot and log) go, then its folder and the parents it created if left empty.
    Only those: `hydra.run.dir=.` must never cost a user their working directory."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir).resolve()
    if hc.output_subdir:
        shutil.rmtree(out / str(hc.output_subdir), ignore_errors=True)
    (out / f"{hc.job.name}.log").unlink(missing_ok=True)
    for folder in (out, *out.parents):
        if folder == Path.cwd() or not folder.is_dir() or any(folder.iterdir()):
            break
        folder.rmdir()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def hydra_app(cfg: DictConfig) -> float | None:
    from lra_bench.train.run import run

    from lra_bench.train.preempt import EXIT_RESUMABLE, Preempted

    try:
        record = run(cfg)
    except Preempted as exc:  # checkpoint saved: exit "try again", so a scheduler can requeue the same command
        print(f"preempted: {exc}", file=sys.stderr)
        sys.exit(EXIT_RESUMABLE)
    except LRABenchError as exc:
        if _in_multirun():  # let Hydra record the failed job and go on with the rest of the sweep (exit 1 at the end)
            log.error("error: %s", exc)
            raise SweepJobError(f"error: {exc}") from exc
        print(f"error: {exc}", file=sys.stderr)
        _remove_hydra_output()
        sys.exit(2)
    if "record_path" not in record:  # a torchrun process other than rank 0: rank 0 reports
        if record.get("status") != "ok":
            sys.exit(1)
        return record.get("test_accuracy")
    if record["status"] != "ok":
        log.error("run %s: %s", record["status"], record["error"])
        return None
    log.info("done: test accuracy %.4f (majority class %.4f; best val %.4f at step %d), %.1f examples/s, "
             "%.0f tokens/s, peak memory %.1f MiB; record: %s", record["test_accuracy"],
             record["majority_test_accuracy"], record["best_val_accuracy"], record["best_step"],
             record["examples_per_s"], record["tokens_per_s"],
             record["peak_memory_bytes"] / 2**20, record["record_path"])
    return record["test_accuracy"]


if __name__ == "__main__":
    main()
