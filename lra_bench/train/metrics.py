"""Measurements reported per eval and per run: peak memory and throughput."""
from __future__ import annotations

import ctypes
import gc
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch

from lra_bench import kernels


def reset_process_peak() -> bool:
    """Reset the process's peak resident set size (Linux: write 5 to /proc/self/clear_refs);
    False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def proc_status_bytes(field: str) -> int:
    """A size field of /proc/self/status (VmRSS, VmHWM, ...) in bytes; OSError if absent."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise OSError(f"{field} not in /proc/self/status")


def reset_peak_memory(device: torch.device) -> str:
    """Start a new peak-memory window, so data preparation does not count as training memory.
    Returns what `peak_memory_bytes` will then measure (the record's `peak_memory_kind`)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_max_allocated"
    return "process_peak_rss_since_training_start" if reset_process_peak() else "process_peak_rss_lifetime"


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA: max_memory_allocated on `device`. CPU: the process's peak resident set size
    since the last `reset_peak_memory` (Linux), else over the process lifetime."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        return proc_status_bytes("VmHWM")
    except OSError:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


def malloc_setting() -> str:
    """How this process's C allocator was tuned from its environment: the glibc.malloc.*
    entries of GLIBC_TUNABLES, glibc's older MALLOC_* variables and a preloaded allocator
    (LD_PRELOAD's file names), or 'default'. It moves CPU timings (README.md, "CPU runs and
    malloc"), so records name it."""
    tunables = [t for t in os.environ.get("GLIBC_TUNABLES", "").split(":") if t.startswith("glibc.malloc.")]
    preload = [Path(p).name for p in os.environ.get("LD_PRELOAD", "").replace(":", " ").split() if p]
    parts = ([f"GLIBC_TUNABLES={':'.join(tunables)}"] if tunables else []) + sorted(
        f"{k}={v}" for k, v in os.environ.items() if k.startswith("MALLOC_")) + (
        [f"LD_PRELOAD={' '.join(preload)}"] if preload else [])
    return " ".join(parts) or "default"


def environment(device: torch.device) -> dict:
    """What timings depend on besides the config, as records and benchmark rows name it:
    `hardware`, `malloc` (the allocator's tuning) and `kernels` (whether the compiled
    CPU kernels run, `lra_bench.kernels.status`)."""
    return {"hardware": hardware(device), "malloc": malloc_setting(), "kernels": kernels.status(device=device)}


def hardware(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (Linux) / architecture, with the thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name}, {torch.get_num_threads()} threads"


class Throughput:
    """Counts examples and tokens over timed training spans (evaluation excluded)."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.examples, self.tokens, self.steps = device, 0.0, 0, 0, 0
        self._start = None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self) -> None:
        self._sync()
        self._start = time.perf_counter()

    def stop(self, examples: int, tokens: int) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._start
        self.examples, self.tokens, self.steps = self.examples + examples, self.tokens + tokens, self.steps + 1

    def state(self) -> dict:
        """The counts so far, for a checkpoint: a resumed run reports rates over all its training."""
        return {"seconds": self.seconds, "examples": self.examples, "tokens": self.tokens, "steps": self.steps}

    def load(self, state: dict) -> None:
        self.seconds, self.examples, self.tokens, self.steps = (state[k] for k in ("seconds", "examples", "tokens",
                                                                                   "steps"))

    def rates(self) -> dict:
        s = max(self.seconds, 1e-9)
        return {"examples_per_s": self.examples / s, "tokens_per_s": self.tokens / s, "steps_per_s": self.steps / s}


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or an allocator RuntimeError saying so (CPU, MPS)."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def free_memory(device: torch.device) -> None:
    """Drop unreachable tensors and hand cached memory back: CUDA's cache, glibc's free heap pages."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
    else:
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: RSS may include memory freed by earlier configurations
            pass
