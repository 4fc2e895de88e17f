"""Time and memory of each token mixer alone, per sequence length: `bench_attention`.

This mirrors the efficiency protocol of LRA's Table 2 (Tay et al., "Long Range Arena",
ICLR 2021), which reports the speed and memory of *training steps* at growing sequence
lengths, but for the layer alone: no embeddings, MLP or task, so the numbers isolate the
token mixer. For each (mixer, length) a fresh module is built in train mode (dropout 0)
and fed a random (batch, length, hidden) input that requires grad; we record

- `fwd_ms`: median forward time under `torch.no_grad()` (inference cost);
- `fwdbwd_ms`: median time of forward + `out.float().square().mean()` + backward, with
  gradients cleared (untimed) between runs (training cost, what Table 2 times);
- `peak_mib`: peak memory of one forward+backward above what existed before it
  (`lra_bench.bench.memory`);

each median over `repeats` timed runs after `warmup` untimed ones (more runs while their
total is under `min_time` seconds), with CUDA synchronised around every timed run.
A `projections` row (the q/k/v/out linears alone, `mixers.Projections`) is always
measured: `vs_proj` = mixer fwd+bwd / projections fwd+bwd is how far a mixer is from the
floor its own projections set, and `vs_softmax` = softmax fwd+bwd / mixer fwd+bwd is its
speed-up over softmax attention at the same length. Because those medians are taken
minutes apart, `vs_proj_paired` also times the mixer and the projections alternately,
pair by pair, and reports the median ratio: on a shared machine it is the steadier number.
For the same reason `growth_paired` = t(n) / t(n/2) times each mixer's steps at n and at
n/2 alternately (2.0 for linear cost; the issue's t(8192)/t(4096) is its value at 8192),
rather than dividing medians taken minutes apart.
"""
from __future__ import annotations

import gc
import statistics
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import pandas as pd
import torch

from lra_bench.bench import memory
from lra_bench.bench.report import CSV_COLUMNS
from lra_bench.bench.mixers import PROJECTIONS, SOFTMAX, build_mixer, check_names
from lra_bench.cli import CONF_DIR
from lra_bench.errors import ConfigError
from lra_bench.train.distributed import pick_device
from lra_bench.train.metrics import environment

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
MAX_RUNS = 10_000  # cap on timed runs when --min-time asks for more than --repeats


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(run: Callable[[], None], after: Callable[[], None], device: torch.device,
              warmup: int, repeats: int, min_time: float) -> tuple[float, int]:
    """Median wall time of `run()` in ms and the number of timed runs; `after()` runs untimed after each."""
    for _ in range(warmup):
        run()
        after()
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_time and len(times) < MAX_RUNS):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - start)
        after()
    return statistics.median(times) * 1e3, len(times)


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _train_step(module: torch.nn.Module, x: torch.Tensor) -> tuple[Callable[[], None], Callable[[], None]]:
    """(one forward + loss + backward of `module` on `x`, a function clearing the gradients)."""
    params = list(module.parameters())

    def train_step() -> None:
        out = module(x)
        out = out[0] if isinstance(out, tuple) else out
        out.float().square().mean().backward()

    def clear_grads() -> None:
        for t in params + [x]:
            t.grad = None

    return train_step, clear_grads


def paired_ratio(module: torch.nn.Module, reference: torch.nn.Module, x: torch.Tensor, warmup: int,
                 repeats: int, x_reference: Optional[torch.Tensor] = None) -> float:
    """Median over `repeats` interleaved pairs of (module step time on x / reference step
    time on `x_reference`, default x).

    Timing the two alternately, pair by pair, cancels the drift of a shared or throttled
    machine that separate medians taken minutes apart do not (10-15% on small VMs)."""
    steps = [_train_step(module, x), _train_step(reference, x if x_reference is None else x_reference)]
    for _ in range(warmup):
        for step, clear in steps:
            step()
            clear()
    ratios = []
    for _ in range(repeats):
        times = []
        for step, clear in steps:
            _sync(x.device)
            start = time.perf_counter()
            step()
            _sync(x.device)
            times.append(time.perf_counter() - start)
            clear()
        ratios.append(times[0] / times[1])
    return statistics.median(ratios)


def _growth(module: torch.nn.Module, x: torch.Tensor, warmup: int, repeats: int) -> Optional[float]:
    """t(n) / t(n // 2) for `module`, its training steps on x and on a half-length input
    timed alternately (`paired_ratio`); None where the module cannot run at n // 2."""
    try:
        half = torch.randn(x.shape[0], x.shape[1] // 2, *x.shape[2:], device=x.device, dtype=x.dtype,
                           requires_grad=True)
        return paired_ratio(module, module, x, warmup, repeats, x_reference=half)
    except Exception:  # a mixer rejecting n // 2, or OOM: the row at n stands, its growth is blank
        return None


def measure(module: torch.nn.Module, x: torch.Tensor, warmup: int, repeats: int, min_time: float,
            memory_method: str) -> dict:
    """fwd_ms, fwdbwd_ms, peak_mib (and run counts) of `module` on `x` (see the module docstring)."""
    device = x.device

    def forward() -> None:
        with torch.no_grad():
            module(x)

    train_step, clear_grads = _train_step(module, x)

    fwd_ms, fwd_runs = median_ms(forward, lambda: None, device, warmup, repeats, min_time)
    fwdbwd_ms, fwdbwd_runs = median_ms(train_step, clear_grads, device, warmup, repeats, min_time)
    peak = memory.peak_step_bytes(train_step, device, memory_method)
    clear_grads()
    return {"fwd_ms": fwd_ms, "fwdbwd_ms": fwdbwd_ms, "peak_mib": peak / 2**20,
            "fwd_runs": fwd_runs, "fwdbwd_runs": fwdbwd_runs}


def _ratios(rows: list[dict]) -> None:
    """Fill vs_softmax and vs_proj in place from the ok rows at the same length."""
    def fwdbwd(name, n):
        return next((r["fwdbwd_ms"] for r in rows if r["attn"] == name and r["n"] == n and r["status"] == "ok"), None)

    for r in rows:
        r["vs_softmax"] = r["vs_proj"] = None
        if r["status"] != "ok":
            continue
        softmax, proj = fwdbwd(SOFTMAX, r["n"]), fwdbwd(PROJECTIONS, r["n"])
        if softmax is not None:
            r["vs_softmax"] = softmax / r["fwdbwd_ms"]
        if proj is not None:
            r["vs_proj"] = r["fwdbwd_ms"] / proj


def bench_attention(attn_names: Iterable[str], lengths: Sequence[int], batch: int = 2, hidden: int = 256,
                    heads: int = 4, *, dtype: str | torch.dtype = "float32", device: str = "auto",
                    threads: Optional[int] = 2, warmup: int = 2, repeats: int = 5, min_time: float = 0.0,
                    memory_method: str = "auto", seed: int = 0, conf_dir: Path = CONF_DIR,
                    progress: Optional[Callable[[dict, int, int], None]] = None) -> pd.DataFrame:
    """Benchmark `attn_names` (names of `conf/attn/` files) plus `projections` at each length.

    Returns one row per (length, mixer), lengths ascending and `projections` first at each,
    with the columns of `lra_bench.bench.report.CSV_COLUMNS`. A configuration that raises
    (out of memory, a mixer rejecting a length or head count) gives a row whose status is
    `error: <message>` and empty measurements; the others go on. Bad arguments (an unknown
    name, a non-positive size) raise ConfigError before anything is timed. `progress(row,
    index, total)` is called after each row.
    """
    names = check_names(attn_names, conf_dir)
    names = [PROJECTIONS] + [n for n in names if n != PROJECTIONS]
    lengths = sorted(dict.fromkeys(int(n) for n in lengths))
    for label, value in (("--batch", batch), ("--hidden", hidden), ("--heads", heads), ("--repeats", repeats)):
        if value < 1:
            raise ConfigError(f"{label} must be at least 1, got {value}")
    if not lengths or min(lengths) < 1:
        raise ConfigError(f"--lengths must be positive integers, got {lengths}")
    if warmup < 0 or min_time < 0:
        raise ConfigError("--warmup and --min-time must not be negative")
    if hidden % heads:
        raise ConfigError(f"--hidden {hidden} is not divisible by --heads {heads}; choose heads dividing hidden")
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    dev, torch_dtype = pick_device(device, option="--device"), resolve_dtype(dtype)
    method = memory.resolve_method(memory_method, dev)
    if method not in memory.METHODS:
        raise ConfigError(f"--memory {memory_method}: choose auto, tensors, rss")
    if method == memory.RSS_DELTA and (dev.type != "cpu" or not Path("/proc/self/clear_refs").exists()):
        raise ConfigError("--memory rss needs a CPU device on Linux (/proc/self/clear_refs)")
    if method == memory.CUDA_ALLOCATOR and dev.type != "cuda":
        raise ConfigError("memory method cuda_allocator needs a CUDA device")

    meta = {"device": dev.type, **environment(dev), "torch_version": torch.__version__,
            "threads": torch.get_num_threads(), "batch": batch, "hidden": hidden, "heads": heads,
            "dtype": str(torch_dtype).removeprefix("torch."), "memory_method": method, "warmup": warmup,
            "repeats": repeats, "min_time_s": min_time, "seed": seed}
    rows, total = [], len(names) * len(lengths)
    for n in lengths:
        for name in names:
            row = {"attn": name, "n": n, "fwd_ms": None, "fwdbwd_ms": None, "peak_mib": None,
                   "vs_proj_paired": 1.0 if name == PROJECTIONS else None, "growth_paired": None,
                   "fwd_runs": 0, "fwdbwd_runs": 0,
                   "status": "ok", **meta}
            module = x = None
            try:
                torch.manual_seed(seed)
                module = build_mixer(name, hidden, heads, conf_dir).to(device=dev, dtype=torch_dtype).train()
                x = torch.randn(batch, n, hidden, device=dev, dtype=torch_dtype, requires_grad=True)
                row.update(measure(module, x, warmup, repeats, min_time, method))
                if name != PROJECTIONS:
                    proj = build_mixer(PROJECTIONS, hidden, heads, conf_dir).to(device=dev, dtype=torch_dtype).train()
                    row["vs_proj_paired"] = paired_ratio(module, proj, x, warmup, repeats)
            except Exception as exc:  # OOM, shape/head checks, a mixer rejecting n: record and go on
                row.update(fwd_ms=None, fwdbwd_ms=None, peak_mib=None, vs_proj_paired=None,
                           status=f"error: {_one_line(exc)}")
            else:
                if n >= 2:
                    row["growth_paired"] = _growth(module, x, warmup, repeats)
            finally:
                del module, x
                gc.collect()
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
            if progress is not None:
                progress(row, len(rows), total)
    _ratios(rows)
    return pd.DataFrame(rows, columns=CSV_COLUMNS)
