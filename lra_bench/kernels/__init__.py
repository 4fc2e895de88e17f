"""Compiled CPU kernels, built on first use.

Each kernel is one C file here (plain C with OpenMP, or POSIX threads or one thread where
the compiler has no OpenMP; no torch headers, so it builds in about a second), compiled
with the system's C compiler ($CC, else `cc`, `gcc` or `clang`) for this CPU (`-O3
-march=native`, else `-O3` where the compiler refuses) into `<cache>/kernels/` (the cache
directory of README.md, "Caches"), under a name that keys the source, compiler, flags and
CPU, so machines sharing a home directory do not share builds. A build is written aside and
renamed into place whole: concurrent runs are safe.

- `hadamard.c`: the Walsh-Hadamard transform of contiguous rows (`transforms.hadamard`).
- `dct_tokens.c`: DCT-II and its inverse along the token axis of token-major activations
  (`transforms.cosine_tokens`), and `mix_tokens.c`, the elementwise mixing on those
  spectra: the LST layers' token-major path for DCT and DST heads (`attention.lst_tokens`).
  The same file transforms contiguous rows into the general core's packed DCT-II
  coefficients or half spectra and back (`cosine_tokens.dct2_rows`, `rfft_rows` and their
  inverses, used by `spectral.FastDCT2`, `spectral.Fourier` and `spectral.MixedBasis`).
- `mix_channels.c`: the same mixing in the general LST core's layout (`attention.lst_core`),
  with complex products for Fourier heads.

In a torch process OpenMP's runtime is torch's own libgomp (already loaded under the same
soname), so the kernels run on torch's worker threads, still spinning from its last
operation, rather than on new threads competing with them for the cores.

Where a kernel cannot be built (no compiler, say), callers fall back to torch operations,
which give the same results more slowly, and one warning says so (one per cause, not per
kernel). `LRA_BENCH_KERNELS=0` turns the kernels off; `status()` says which path runs, and
benchmark records log it.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Optional

import torch

ENV_SWITCH = "LRA_BENCH_KERNELS"
FLAG_SETS = (("-O3", "-march=native"), ("-O3",))  # tried in turn
COMMON_FLAGS = ("-fPIC", "-shared", "-pthread")
KERNELS = ("hadamard", "dct_tokens", "mix_tokens", "mix_channels")  # every kernel, as `status()` reports them
# Per kernel, flags tried with each flag set first, then without (the kernel still builds,
# with POSIX threads or on one thread, where the compiler has no OpenMP).
EXTRA_FLAGS = {name: ("-fopenmp",) for name in KERNELS}
HERE = Path(__file__).parent

_lock = threading.Lock()
_loaded: dict[str, Optional[ctypes.CDLL]] = {}
_why: dict[str, str] = {}


def enabled() -> bool:
    """False when $LRA_BENCH_KERNELS is 0, false, no or off."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def kernel_dir() -> Path:
    from lra_bench.data.cache import default_cache_dir

    return default_cache_dir() / "kernels"


def compiler() -> Optional[str]:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _cpu() -> str:
    """What -march=native depends on: the CPU's model and feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        wanted = [line for line in lines if line.split(":")[0].strip() in ("model name", "flags", "Features")]
        return "\n".join(sorted(set(wanted)))
    except OSError:
        return platform.processor()


def flag_sets(name: str) -> list[tuple[str, ...]]:
    """The flag sets to try for kernel `name`, in order."""
    extra = EXTRA_FLAGS.get(name, ())
    return [flags + extra for flags in FLAG_SETS] + ([*FLAG_SETS] if extra else [])


def _key(name: str, cc: str) -> str:
    h = hashlib.sha256((HERE / f"{name}.c").read_bytes())
    for part in (cc, repr(flag_sets(name)), repr(COMMON_FLAGS), platform.machine(), platform.system(), _cpu()):
        h.update(part.encode())
    return h.hexdigest()[:16]


def _build(name: str) -> Path:
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler found; install gcc (or set $CC)")
    target = kernel_dir() / f"{name}-{_key(name, cc)}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".so", dir=target.parent)
    os.close(fd)
    errors = []
    try:
        for flags in flag_sets(name):
            done = subprocess.run([cc, *flags, *COMMON_FLAGS, "-o", tmp, str(HERE / f"{name}.c"), "-lm"],
                                  capture_output=True, text=True)
            if done.returncode == 0:
                os.chmod(tmp, 0o755)
                os.replace(tmp, target)
                return target
            errors.append(f"{cc} {' '.join(flags)}: " + (done.stderr.strip().splitlines() or ["failed"])[-1])
        raise RuntimeError("; ".join(errors))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(name: str) -> Optional[ctypes.CDLL]:
    """The compiled kernel `name` (lra_bench/kernels/<name>.c), built on first use; None when
    the kernels are turned off or it cannot be built (after one warning saying why)."""
    if not enabled():
        return None
    with _lock:
        if name not in _loaded:
            try:
                _loaded[name] = ctypes.CDLL(str(_build(name)))
            except Exception as exc:  # no compiler, a failed build, an unwritable cache: fall back, say so once
                _loaded[name], _why[name] = None, f"{type(exc).__name__}: {exc}"
                same = [k for k, why in _why.items() if k != name and why == _why[name]]
                if not same:  # once per cause: a missing compiler fails every kernel alike
                    warnings.warn(f"lra_bench: the compiled {name} kernel is unavailable ({_why[name]}); using torch "
                                  f"operations instead (same results, slower). Set {ENV_SWITCH}=0 to silence this.",
                                  RuntimeWarning, stacklevel=3)
        return _loaded[name]


def address(t: Optional[Any]) -> Optional[int]:
    """A tensor's data address for a kernel's pointer argument, or None (NULL) for None."""
    return None if t is None else t.data_ptr()


def function(name: str, symbol: str, argtypes: tuple) -> Optional[Any]:
    """`symbol` of kernel `name` with its ctypes argument types (it returns an int status),
    or None where the kernel is unavailable."""
    lib = load(name)
    if lib is None:
        return None
    fn = getattr(lib, symbol)
    if fn.argtypes is None:
        fn.argtypes, fn.restype = argtypes, ctypes.c_int
    return fn


# ctypes shorthands for kernel signatures; REAL stands for the C type of the dtype's values
P, INT, LONG, REAL = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, object()
# the dtypes the kernels are built for: each entry's symbol suffix and C value type
DTYPES = {torch.float32: ("f32", ctypes.c_float), torch.float64: ("f64", ctypes.c_double)}


def typed_function(name: str, prefix: str, dtype: torch.dtype, argtypes: tuple) -> Optional[Any]:
    """`function` for the entry `<prefix>_f32` or `<prefix>_f64` of kernel `name` that takes
    `dtype`'s values (REAL in argtypes becomes their C type), or None for another dtype or
    where the kernel is unavailable."""
    if dtype not in DTYPES:
        return None
    suffix, real = DTYPES[dtype]
    return function(name, f"{prefix}_{suffix}", tuple(real if a is REAL else a for a in argtypes))


def status(name: Optional[str] = None, device: Optional[object] = None) -> str:
    """'compiled' when every kernel (or kernel `name`) is built and used on CPU, else
    'torch (<why>)' (what records log; for a non-CPU `device`, 'unused on <type>')."""
    kind = getattr(device, "type", device)
    if kind is not None and str(kind) != "cpu":
        return f"unused on {kind}"
    if not enabled():
        return f"torch ({ENV_SWITCH}=0)"
    names = KERNELS if name is None else (name,)
    missing = [k for k in names if load(k) is None]
    if not missing:
        return "compiled"
    if name is not None:
        return f"torch ({_why.get(name)})"
    return "torch (" + "; ".join(f"{k}: {_why.get(k)}" for k in missing) + ")"


def _reset() -> None:
    """Forget loaded kernels and failures (tests)."""
    with _lock:
        _loaded.clear()
        _why.clear()

