"""Data-parallel training across processes started by `torchrun` (or any launcher that
sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT).

One process per device: NCCL between GPUs, gloo between CPU processes. The configured
`trainer.batch_size` stays the *global* batch: each of the N ranks takes its 1/N slice of
the same seeded batch, and DistributedDataParallel averages the gradients, so N processes
take the steps one process would (up to float summation order). Only rank 0 logs, writes
checkpoints and the run record; metrics are summed over ranks before anyone reads them.
Without those variables (a plain `python -m lra_bench`) everything here is a no-op.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist

from lra_bench.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_batch(self, batch_size: int) -> int:
        """Each rank's share of the global batch (which must split evenly)."""
        if batch_size % self.world_size:
            raise ConfigError(f"trainer.batch_size={batch_size} does not split over {self.world_size} processes; "
                              f"use a multiple of {self.world_size} (it stays the global batch size)")
        return batch_size // self.world_size

    def shard(self, indices: Any) -> Any:
        """This rank's contiguous slice of a global batch's row indices."""
        size = len(indices) // self.world_size
        return indices[self.rank * size:(self.rank + 1) * size]

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum of `values` over ranks (float64, so counts stay exact)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when `flag` is true on any rank."""
        return bool(self.sum([float(flag)], device)[0]) if self.enabled else flag

    def gather(self, obj: Any) -> Optional[list]:
        """Every rank's `obj`, as a list on rank 0 (None elsewhere)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def from_env() -> Dist:
    """The rank layout the launcher gave this process (a single process when none)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Dist(rank=int(os.environ.get("RANK", "0")), world_size=world,
                local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, option: str = "trainer.device") -> torch.device:
    """A device setting (`option`, named in errors: `trainer.device` or the benchmark's
    `--device`) as a device: auto is CUDA when there is one, else CPU; cpu and cuda[:N] as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{option}={name} is not a device this harness runs on; use cpu, cuda[:N] or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{option}={name} but no CUDA device is available; use {option}=cpu or auto")
    return device


def init(ctx: Dist, device_name: str) -> torch.device:
    """Join the process group (when there is one) and return this rank's device.

    `device_name` is `trainer.device`: auto / cuda give each rank the GPU of its local rank;
    cpu keeps every rank on CPU (gloo)."""
    device = pick_device(device_name)
    if device.type == "cuda" and ctx.enabled:
        if ctx.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"local rank {ctx.local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                              f"start at most {torch.cuda.device_count()} processes per node")
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if ctx.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ctx.rank,
                                world_size=ctx.world_size, timeout=datetime.timedelta(minutes=30))
    return device


def shutdown(ctx: Dist) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
