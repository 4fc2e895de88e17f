"""`python -m lra_bench.bench attention [options]`: time every token mixer alone (see `attention.py`)."""
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="{attention}")
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
    p.add_argument("--out", default=None, help="CSV path (default results/bench/attention_<cpu|cuda>.csv)")
    return parser


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
    args = _parser().parse_args(argv)
    if args.threads < 1:
        print(f"error: --threads must be at least 1, got {args.threads}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from lra_bench.bench.attention import bench_attention, resolve_device
    from lra_bench.bench.mixers import mixer_names
    from lra_bench.bench.report import header, table, write_csv

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
        out = Path(args.out or f"results/bench/attention_{resolve_device(args.device).type}.csv")
        _check_writable(out)
        df = bench_attention(names, lengths, args.batch, args.hidden, args.heads, dtype=args.dtype,
                             device=args.device, threads=args.threads, warmup=args.warmup, repeats=args.repeats,
                             min_time=args.min_time, memory_method=args.memory, seed=args.seed, progress=progress)
    except LRABenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(header(df))
    print(table(df))
    write_csv(df, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
