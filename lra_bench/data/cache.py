"""Token caches: npy arrays under a user cache directory, keyed by what changes them.

A cache entry is a directory holding `<split>_inputs.npy`, `<split>_labels.npy` and a
`meta.json` written last. It is built in a temporary sibling directory and renamed into
place under a file lock, so concurrent runs share one build and a crash never leaves a
half-written entry. An entry whose files do not match its meta is rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Tuple

import numpy as np
from filelock import FileLock

from lra_bench.data.spec import Split
from lra_bench.errors import LRABenchError

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def default_cache_dir() -> Path:
    """$LRA_BENCH_CACHE, else $XDG_CACHE_HOME/lra_bench, else ~/.cache/lra_bench."""
    if os.environ.get("LRA_BENCH_CACHE"):
        return Path(os.environ["LRA_BENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "lra_bench"


def resolve_cache_dir(cache_dir: Optional[str | Path]) -> Path:
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def digest(obj) -> str:
    """Short stable hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _valid_entry(entry: Path) -> bool:
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
        for split in SPLITS:
            x = np.load(entry / f"{split}_inputs.npy", mmap_mode="r")
            y = np.load(entry / f"{split}_labels.npy", mmap_mode="r")
            if list(x.shape) != meta["shapes"][split] or len(y) != x.shape[0]:
                return False
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return False
    return True


def stat_digest(files: Iterable[Tuple[str, Path]]) -> str:
    """Hash of each (name, path)'s name, size and modification time (or "missing"): a cheap
    fingerprint of a folder of many files that changes when any of them does."""
    h = hashlib.blake2b(digest_size=16)
    for name, path in files:
        try:
            st = os.stat(path)
            h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{name}\0missing\n".encode())
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_or_build(entry: Path, build: Callable[[], Dict[str, Split]], meta: dict) -> Dict[str, Split]:
    """Return the splits cached at `entry`, building them with `build()` if absent or corrupt.

    When `build()` raises a user's error (LRABenchError: malformed data, ...), the cache is
    left as it was found: the lock file and the folders made for this entry are removed."""
    created = [d for d in (entry.parent, *entry.parent.parents) if not d.exists()]  # deepest first
    entry.parent.mkdir(parents=True, exist_ok=True)
    lock = Path(str(entry) + ".lock")
    lock_existed = lock.exists()
    try:
        return _load_or_build(entry, lock, build, meta)
    except LRABenchError:
        if not lock_existed:
            lock.unlink(missing_ok=True)
        for folder in created:
            try:
                folder.rmdir()
            except OSError:  # not empty: another run's entries are there
                break
        raise


def _load_or_build(entry: Path, lock: Path, build: Callable[[], Dict[str, Split]], meta: dict) -> Dict[str, Split]:
    with FileLock(str(lock)):
        if entry.exists() and not _valid_entry(entry):
            log.warning("token cache %s is incomplete or corrupt; rebuilding it", entry)
            shutil.rmtree(entry)
        if not entry.exists():
            splits = build()
            tmp = Path(tempfile.mkdtemp(prefix=entry.name + ".tmp", dir=entry.parent))
            try:
                os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; a shared cache must be readable
                for name, split in splits.items():
                    np.save(tmp / f"{name}_inputs.npy", split.inputs)
                    np.save(tmp / f"{name}_labels.npy", split.labels)
                full = dict(meta, shapes={k: list(v.inputs.shape) for k, v in splits.items()})
                (tmp / "meta.json").write_text(json.dumps(full, indent=1, sort_keys=True))
                os.replace(tmp, entry)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            log.info("cached tokens in %s", entry)
        else:
            log.info("using cached tokens from %s", entry)
    return {s: Split(np.load(entry / f"{s}_inputs.npy", mmap_mode="r"), np.load(entry / f"{s}_labels.npy"))
            for s in SPLITS}
