"""`lra_bench.train.metrics.malloc_setting`, and the page faults that make it worth recording."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from lra_bench.train.metrics import malloc_setting


def test_malloc_setting_names_the_allocator_tuning_of_the_environment(monkeypatch):
    for name in [k for k in os.environ if k.startswith("MALLOC_")] + ["GLIBC_TUNABLES", "LD_PRELOAD"]:
        monkeypatch.delenv(name, raising=False)
    assert malloc_setting() == "default"
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX:glibc.cpu.x86_ibt=0")  # not malloc's
    assert malloc_setting() == "default"
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0:glibc.cpu.x86_ibt=0:glibc.malloc.trim_threshold=9")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert malloc_setting() == "GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=9 " \
                               "MALLOC_ARENA_MAX=2 LD_PRELOAD=libjemalloc.so.2"


def _glibc() -> bool:
    try:
        ctypes.CDLL("libc.so.6").gnu_get_libc_version
        return sys.platform.startswith("linux")
    except (OSError, AttributeError):
        return False


# Page faults per training step of a DCT attention layer at n = 4096 (after 3 warm-up steps).
STEP_FAULTS = """
import resource, torch
from lra_bench.attention import DCTAttention
torch.set_num_threads(2)
layer, x = DCTAttention(256, 4), torch.randn(2, 4096, 256, requires_grad=True)
def step():
    layer(x).square().mean().backward()
    x.grad = None
    layer.zero_grad(set_to_none=True)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5)
"""
KEEP = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967296"


@pytest.mark.skipif(not _glibc(), reason="GLIBC_TUNABLES is glibc's")
def test_with_the_recommended_tunables_a_training_step_reuses_its_memory():
    """README.md's "CPU runs and malloc": with these tunables a layer's training step faults
    in at most a few MiB of fresh pages (0-1300 pages measured); glibc's default
    varies from run to run between that and 5000-10000 pages (20-40 MiB) per step."""
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["GLIBC_TUNABLES"] = KEEP
    out = subprocess.run([sys.executable, "-c", STEP_FAULTS], env=env, capture_output=True, text=True, check=True,
                         timeout=300).stdout
    assert int(out) < 2500
