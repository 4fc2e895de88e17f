"""Peak memory of one training step of one layer, counted from the step's own start.

Three methods, named in the benchmark's header and CSV (`memory_method`):

- `cuda_allocator` (CUDA default): `torch.cuda.max_memory_allocated` after
  `reset_peak_memory_stats`, minus `memory_allocated` before the step. Exact for what the
  caching allocator hands out, kernel workspaces included.
- `tensor_storage` (CPU default): a TorchDispatchMode sees every ATen op of the step
  (forward and the backward the autograd engine runs), counts each new tensor storage
  once (views and in-place results share their input's storage; storages that existed
  before the step, such as weights and the input, are never counted) and uncounts it when
  a weakref on the storage fires, i.e. when its last reference goes. The peak of those
  live bytes is exactly what PyTorch holds at once: activations saved for backward,
  gradients, outputs. It does not see scratch memory a kernel allocates and frees inside
  itself (e.g. FFT plans, the per-thread blocks of CPU flash attention), and it is
  independent of the order of measurements and of allocator caching. Checked against
  `rss_delta` in a process started with MALLOC_MMAP_THRESHOLD_=65536 (every large block
  mmapped and returned on free, so RSS follows live memory): hidden 256, batch 2, the two
  agree within 0.2 MiB for projections and FNet at n = 1024..8192 (12, 48, 96 MiB) and
  softmax reads ~2 MiB more under RSS (flash-attention scratch), 18..145 MiB.
- `rss_delta` (Linux CPU): peak resident set size (VmHWM, reset by writing 5 to
  /proc/self/clear_refs) minus the resident size before the step. It sees everything the
  process touches, but glibc keeps freed blocks for reuse, so a step that fits in memory
  freed by earlier steps reads as less than it used (after a warm-up, softmax at n=4096
  reads 0 MiB); kept for comparison, meaningful only with MALLOC_MMAP_THRESHOLD_ set.
"""
from __future__ import annotations

import functools
import gc
import weakref
from typing import Callable, Iterator

import torch
from torch.utils._pytree import tree_leaves
from torch.utils._python_dispatch import TorchDispatchMode

from lra_bench.train.metrics import proc_status_bytes, reset_process_peak

CUDA_ALLOCATOR, TENSOR_STORAGE, RSS_DELTA = "cuda_allocator", "tensor_storage", "rss_delta"
METHODS = (CUDA_ALLOCATOR, TENSOR_STORAGE, RSS_DELTA)


def resolve_method(method: str, device: torch.device) -> str:
    """`auto` -> the allocator's own counter on CUDA, tensor storages on CPU."""
    if method == "auto":
        return CUDA_ALLOCATOR if device.type == "cuda" else TENSOR_STORAGE
    if method == "tensors":
        return TENSOR_STORAGE
    if method == "rss":
        return RSS_DELTA
    return method


def _storages(tree) -> Iterator[torch.UntypedStorage]:
    for leaf in tree_leaves(tree):
        if isinstance(leaf, torch.Tensor) and leaf.layout == torch.strided:
            try:
                yield leaf.untyped_storage()
            except (RuntimeError, NotImplementedError):  # tensors without a plain storage
                continue


class LiveStorageBytes(TorchDispatchMode):
    """While active, tracks the bytes of tensor storages created by ATen ops and their peak."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._bytes: dict[int, int] = {}  # id(storage) -> bytes counted for it
        self._refs: dict[int, weakref.ref] = {}

    def _freed(self, key: int, _ref) -> None:
        self.live -= self._bytes.pop(key, 0)
        self._refs.pop(key, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = None
        for storage in _storages(out):
            key, size = id(storage), storage.nbytes()
            if key in self._bytes:  # ours already: an in-place op or a view; the size may have changed
                self.live += size - self._bytes[key]
                self._bytes[key] = size
            else:
                if inputs is None:
                    inputs = {id(s) for s in _storages((args, kwargs))}
                if key in inputs:  # a view of / in-place op on a storage from before the step
                    continue
                # torch keeps one Python object per live storage, so this weakref fires when
                # the storage itself is freed, not when this wrapper goes.
                self._refs[key] = weakref.ref(storage, functools.partial(self._freed, key))
                self._bytes[key] = size
                self.live += size
            self.peak = max(self.peak, self.live)
        return out


def peak_step_bytes(step: Callable[[], None], device: torch.device, method: str) -> int:
    """Peak memory of `step()` above what was allocated before it, by `method` (see module doc)."""
    gc.collect()
    if method == CUDA_ALLOCATOR:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return max(0, torch.cuda.max_memory_allocated(device) - before)
    if method == TENSOR_STORAGE:
        with LiveStorageBytes() as meter:
            step()
        return meter.peak
    if method == RSS_DELTA:
        if not reset_process_peak():
            raise OSError("--memory rss needs Linux's /proc/self/clear_refs; use --memory tensors")
        before = proc_status_bytes("VmRSS")
        step()
        return max(0, proc_status_bytes("VmHWM") - before)
    raise ValueError(f"unknown memory method {method!r}; known: {', '.join(METHODS)}")
