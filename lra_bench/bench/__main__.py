"""`python -m lra_bench.bench attention [options]`: time every token mixer alone (see `attention.py`).
`python -m lra_bench.bench steps [options] [overrides]`: training steps/s and memory of whole models (`steps.py`)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from lra_bench.errors import LRABenchError

DEFAULT_LENGTHS = "256,512,1024,2048,4096,8192"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lra_bench.bench",
                                     description="Micro-benchmarks of single layers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{attention,steps}")
    p = sub.add_parser("attention", help="time and memory of each token mixer alone, per sequence length",
                       description="Forward, forward+backward time (median) and peak memory of each conf/attn "
                                   "mixer alone, plus the q/k/v/out projections alone, at each length.")
    p.add_argument("--attn", default=None, help="comma-separated conf/attn names (default: all of them)")
    p.add_argument("--lengths", default=DEFAULT_LENGTHS, help=f"comma-separated sequence lengths ({DEFAULT_LENGTHS})")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--dtype", default="float32", help="float32, float16, bfloat16 or float64")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    p.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported")
    p.add_argument("--min-time", type=float, default=0.0,
                   help="keep timing past --repeats until the timed runs total this many seconds")
    p.add_argument("--memory", default="auto", choices=["auto", "tensors", "rss"],
                   help="peak-memory method: auto = CUDA allocator on GPU, live tensor storage on CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="CSV path (default results/bench/attention_<cpu|cuda>.csv); the "
                                               "printed table goes beside it (.csv -> .txt, else + .txt)")
    _steps_parser(sub)
    return parser


def _steps_parser(sub) -> None:
    from lra_bench.bench.steps import CPU_BATCH, DEFAULT_LENGTHS, DEFAULT_OUT

    lengths = ",".join(map(str, DEFAULT_LENGTHS))
    p = sub.add_parser("steps", help="training steps/s and peak memory of whole models (LRA Table 2)",
                       description="LRA Table 2's speed/memory protocol: training steps/s and peak memory of the "
                                   "real model, optimizer and loss of a run (conf/ composed with the overrides) "
                                   "on synthetic full-length batches, per --attn and --lengths; one run record "
                                   "(kind speed) per configuration.")
    p.add_argument("--task", default="text", help="conf/task name (default text, LRA's choice)")
    p.add_argument("--attn", default=None, help="comma-separated conf/attn names (default: all of them)")
    p.add_argument("--lengths", default=lengths, help=f"comma-separated sequence lengths ({lengths})")
    p.add_argument("--size", default="auto", choices=["auto", "lra", "cpu"],
                   help="lra: LRA's sizes (batch 32, the task's LRA model); cpu: a size that fits a CPU (batch "
                        f"{CPU_BATCH}, model=small); auto (default): lra on CUDA, cpu on CPU. --batch and a model= "
                        "override take precedence")
    p.add_argument("--batch", type=int, default=None, help="trainer.batch_size (default: that of --size)")
    p.add_argument("--steps", type=int, default=10, help="timed training steps (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps before them (default 3)")
    p.add_argument("--device", default="auto", help="trainer.device: cpu, cuda[:N] or auto")
    p.add_argument("--threads", type=int, default=None, help="trainer.threads (torch.set_num_threads)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"paths.root: records go to <out>/records ({DEFAULT_OUT})")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=small trainer.lr=0.001")

    def one_line_error(message: str) -> None:  # argparse's usage + error, as one line
        print(f"error: {message} (see python -m lra_bench.bench steps --help)", file=sys.stderr)
        sys.exit(2)

    p.error = one_line_error


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _check_writable(path: Path) -> None:
    """Fail before any timing when the CSV could not be written."""
    if path.is_dir():
        raise LRABenchError(f"--out {path} is a directory; give a file name such as {path / 'attention.csv'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LRABenchError(f"--out {path}: cannot create {path.parent} ({exc.strerror}); choose another path") from None
    if not os.access(path.parent, os.W_OK):
        raise LRABenchError(f"--out {path}: {path.parent} is not writable; choose another path")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "steps":
        return _steps(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.threads < 1:
        print(f"error: --threads must be at least 1, got {args.threads}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from lra_bench.bench.attention import bench_attention
    from lra_bench.train.distributed import pick_device
    from lra_bench.bench.mixers import mixer_names
    from lra_bench.bench.report import header, table, write_csv, write_table

    def progress(row: dict, index: int, total: int) -> None:
        done = (f"fwd {row['fwd_ms']:.2f} ms, fwd+bwd {row['fwdbwd_ms']:.2f} ms, peak {row['peak_mib']:.1f} MiB"
                if row["status"] == "ok" else row["status"])
        print(f"[{index}/{total}] {row['attn']} n={row['n']}: {done}", file=sys.stderr, flush=True)

    try:
        try:
            lengths = [int(n) for n in _split(args.lengths)]
        except ValueError:
            raise LRABenchError(f"--lengths {args.lengths}: expected comma-separated integers") from None
        names = _split(args.attn) if args.attn is not None else mixer_names()
        out = Path(args.out or f"results/bench/attention_{pick_device(args.device, option='--device').type}.csv")
        txt = out.with_suffix(".txt") if out.suffix == ".csv" else out.with_name(out.name + ".txt")
        _check_writable(out)
        _check_writable(txt)
        df = bench_attention(names, lengths, args.batch, args.hidden, args.heads, dtype=args.dtype,
                             device=args.device, threads=args.threads, warmup=args.warmup, repeats=args.repeats,
                             min_time=args.min_time, memory_method=args.memory, seed=args.seed, progress=progress)
    except LRABenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_csv(df, out)  # before printing: a closed stdout (`| head`) must not cost the measurements
    write_table(df, txt)
    print(header(df))
    print(table(df))
    print(f"wrote {out} and {txt} (the table above)")
    return 0


def _steps(args: argparse.Namespace, extra: list[str]) -> int:
    """The `steps` command: plan (every user error exits 2 here), then measure and print row by row."""
    from lra_bench.bench import steps

    overrides = list(args.overrides) + extra
    try:
        unknown = [a for a in overrides if a.startswith("-")]
        if unknown:
            raise LRABenchError(f"unrecognized arguments: {' '.join(unknown)}")
        try:
            lengths = [int(n) for n in _split(args.lengths)]
        except ValueError:
            raise LRABenchError(f"--lengths {args.lengths}: expected comma-separated integers") from None
        planned = steps.plan(args.task, _split(args.attn) if args.attn is not None else None, lengths, args.batch,
                             steps=args.steps, warmup=args.warmup, device=args.device, threads=args.threads,
                             out=args.out, overrides=overrides, size=args.size)
        device = planned[0].device
    except LRABenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(steps.header_line(args.task, planned, device, args.steps, args.warmup))
    print(steps.table_header(), flush=True)
    commit, records = steps.git_commit(), []
    steps.free_memory(device)
    for p in planned:
        records.append(steps.run_one(p, device, args.steps, args.warmup, commit))
        print(steps.row(records[-1], records), flush=True)
    print(f"records: {planned[0].cfg.paths.records} ({len(records)} written)")
    return 1 if any(r["status"] == "failed" for r in records) else 0


if __name__ == "__main__":
    from lra_bench.io import run_command

    sys.exit(run_command(main))
