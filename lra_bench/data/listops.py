"""ListOps (Nangia & Bowman 2018) as in Long Range Arena (Tay et al., ICLR 2021).

Reads LRA's `basic_{train,val,test}.tsv` files (header `Source\tTarget`) from
`data_dir` -- e.g. the official `lra_release/listops-1000/` -- or, when `data_dir` is
unset, generates them offline with LRA's distribution into the cache directory.

Tokenization follows LRA's input pipeline: `]` becomes `X`, parentheses are dropped,
the rest is split on whitespace; ids are a fixed vocabulary with 0 = padding; sequences
are truncated/padded to `max_length`. (LRA builds its vocabulary from a set, so its ids
vary between runs; ours are fixed, which changes nothing a model can learn.)
"""
from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from lra_bench.data.cache import SPLITS, digest, file_digest, load_or_build, resolve_cache_dir
from lra_bench.data.listops_generator import GENERATOR_VERSION, ListOpsGenConfig, write_listops_tsv
from lra_bench.data.sources import RELEASE_URL, candidates, first, not_found
from lra_bench.data.spec import Split, TaskData, TaskSpec
from lra_bench.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PAD = "<pad>"
OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
VOCAB = (PAD,) + tuple(str(v) for v in range(10)) + OPERATORS + ("X",)
NUM_CLASSES = 10
MAX_LENGTH = 2000  # LRA's
TOKENIZER_VERSION = 1
FILES = {split: f"basic_{split}.tsv" for split in SPLITS}

# Every token is one character once each operator is replaced by a stand-in letter, so a
# whole string is tokenized by C-level str methods and one table lookup in numpy.
_OP_CHARS = {op: chr(ord("a") + i) for i, op in enumerate(OPERATORS)}
_LOOKUP = np.full(256, -1, dtype=np.int16)
for _id, _tok in enumerate(VOCAB[1:], start=1):
    _LOOKUP[ord(_OP_CHARS.get(_tok, _tok))] = _id
_DROP = str.maketrans("", "", "() \t")


def tokenize(source: str) -> list[str]:
    """LRA's ListOps tokenization of one string, as tokens."""
    return source.replace("]", "X").replace("(", "").replace(")", "").split()


def encode(source: str, max_length: int, where: str = "input") -> np.ndarray:
    """Token ids of one LRA ListOps string, truncated and zero-padded to `max_length`."""
    s = source.replace("]", "X")
    for op, ch in _OP_CHARS.items():
        s = s.replace(op, ch)
    n_tokens = len(s.replace("(", " ").replace(")", " ").split())
    compact = s.translate(_DROP)
    ids = _LOOKUP[np.frombuffer(compact.encode("ascii", errors="replace"), dtype=np.uint8)]
    if len(compact) != n_tokens or (ids < 0).any():
        bad = next(t for t in tokenize(source) if t not in VOCAB)
        raise DataError(f"{where}: token {bad!r} is not ListOps (expected 0-9, [MIN, [MAX, [MED, [SM, ]); "
                        f"regenerate or re-download the file")
    out = np.zeros(max_length, dtype=np.uint8)
    out[: min(len(ids), max_length)] = ids[:max_length]
    return out


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    """Sources and integer targets of an LRA ListOps TSV file (columns found by header)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        return _read_rows(path)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not an LRA ListOps TSV file ({type(exc).__name__}: {' '.join(str(exc).split())}); "
                        f"regenerate it (leave task.data_dir unset) or re-download {RELEASE_URL}") from None


def _read_rows(path: Path) -> tuple[list[str], list[int]]:
    sources, targets = [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path} is empty; regenerate it (leave task.data_dir unset) or re-download {RELEASE_URL}")
        if "Source" not in header or "Target" not in header:
            raise DataError(f"{path}: header {header} lacks Source and Target columns; make the first line "
                            f"'Source<tab>Target' (LRA's format) or re-download {RELEASE_URL}")
        si, ti = header.index("Source"), header.index("Target")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{path}:{line}: {len(row)} columns, header has {len(header)}; the file is "
                                f"truncated or corrupt, regenerate or re-download it")
            try:
                target = int(row[ti])
            except ValueError:
                raise DataError(f"{path}:{line}: Target {row[ti]!r} is not an integer; fix or regenerate the file") from None
            if not 0 <= target < NUM_CLASSES:
                raise DataError(f"{path}:{line}: Target {target} is outside 0-9; fix or regenerate the file")
            sources.append(row[si])
            targets.append(target)
    if not sources:
        raise DataError(f"{path} has a header but no samples; regenerate it or re-download {RELEASE_URL}")
    return sources, targets


def _tokenize_file(path: Path, max_length: int) -> Split:
    sources, targets = read_tsv(path)
    inputs = np.stack([encode(s, max_length, where=f"{path}:{i + 2}") for i, s in enumerate(sources)])
    return Split(inputs, np.asarray(targets, dtype=np.int64))


def _has_files(folder: Path) -> bool:
    return all((folder / f).is_file() for f in FILES.values())


def generation_config(generate: Optional[Dict[str, Any]], max_length: int) -> ListOpsGenConfig:
    """The checked ListOpsGenConfig of `task.generate`: a ConfigError (one line) for unknown keys,
    impossible values, an empty split, or expressions longer than `max_length` tokens (they
    would be cut) -- before anything is generated."""
    try:
        gen = ListOpsGenConfig(**dict(generate or {}))
    except TypeError as exc:
        raise ConfigError(f"task.generate: {exc}; accepted keys: {', '.join(ListOpsGenConfig.__dataclass_fields__)}") from None
    gen.validate()
    empty = [split for split in SPLITS if getattr(gen, f"num_{split}") == 0]
    if empty:
        raise ConfigError(f"task.generate.num_{empty[0]}=0 leaves the {empty[0]} split empty; set "
                          f"task.generate.num_{empty[0]}>=1 (LRA: 96000/2000/2000)")
    longest = gen.max_length - 1  # lengths lie strictly between min_length and max_length
    if longest > max_length:
        raise ConfigError(f"task.generate.max_length={gen.max_length} generates expressions of up to {longest} tokens, "
                          f"more than task.max_length={max_length}, so they would be cut; set task.max_length>="
                          f"{longest} or task.generate.max_length<={max_length + 1}")
    return gen


def planned_sizes(data_dir: Optional[str] = None, data_root: Optional[str] = None,
                  generate: Optional[Dict[str, Any]] = None,
                  **options: Any) -> Optional[tuple[Dict[str, int], Dict[str, str]]]:
    """({split: examples}, {split: the key that sets it}) of the set `build_listops` would
    generate, or None when it reads files (their sizes are known only once read) or
    `generate` is not a valid ListOpsGenConfig (the builder reports that)."""
    if data_dir is not None or data_root is not None:
        return None
    try:
        gen = ListOpsGenConfig(**dict(generate or {}))
    except TypeError:
        return None
    return ({"train": gen.num_train, "val": gen.num_val, "test": gen.num_test},
            {split: f"task.generate.num_{split}" for split in SPLITS})


def _locate(data_dir: Optional[str], data_root: Optional[str], generate: Dict[str, Any], workers: Optional[int],
            cache: Path, max_length: int) -> Dict[str, Path]:
    if data_dir is not None or data_root is not None:
        folders = candidates(data_dir, data_root, ["listops-1000"])
        found = first(folders, _has_files)
        if found is None:
            looked = [folder / f for folder in folders for f in FILES.values()]
            raise not_found("ListOps", [p for p in looked if not p.is_file()],
                            f"unpack {RELEASE_URL} and set task.data_dir=<lra_release>/listops-1000 (or "
                            f"paths.data_root=<lra_release>), or task.data_dir=null and paths.data_root=null to generate the data")
        return {s: found / f for s, f in FILES.items()}
    gen = generation_config(generate, max_length)
    out = cache / "listops" / "generated" / digest({"version": GENERATOR_VERSION, **gen.__dict__})
    paths = {s: out / f for s, f in FILES.items()}
    if not all(p.is_file() for p in paths.values()):
        from filelock import FileLock

        out.mkdir(parents=True, exist_ok=True)
        with FileLock(str(out) + ".lock"):
            if not all(p.is_file() for p in paths.values()):
                log.info("generating ListOps (%d/%d/%d samples, lengths %d-%d) into %s",
                         gen.num_train, gen.num_val, gen.num_test, gen.min_length, gen.max_length, out)
                write_listops_tsv(gen, out, workers=workers, progress=sys.stderr.isatty())  # no bar in logs
    else:
        log.info("using generated ListOps in %s", out)
    return paths


def task_spec(max_length: Optional[int] = None, **options: Any) -> TaskSpec:
    """The TaskSpec `build_listops(max_length=..., **options)` gives, without reading data
    (None: the builder's default length); options other than max_length do not change it."""
    return TaskSpec(name="listops", vocab_size=len(VOCAB), max_length=MAX_LENGTH if max_length is None else max_length,
                    num_classes=NUM_CLASSES, pad_id=0)


def build_listops(data_dir: Optional[str] = None, max_length: int = MAX_LENGTH,
                  generate: Optional[Dict[str, Any]] = None, workers: Optional[int] = None,
                  cache_dir: Optional[str] = None, data_root: Optional[str] = None) -> TaskData:
    """ListOps TaskData from LRA-format files in `data_dir` (or `data_root`/listops-1000),
    or, when neither is set, from generated ones.

    `generate` holds ListOpsGenConfig fields (sizes, lengths, depth, args, seed). Its seed
    is the data seed, independent of the run seed, so every run of a sweep shares one set.
    """
    if max_length < 1:
        raise ConfigError(f"task.max_length={max_length} must be >= 1; LRA uses task.max_length=2000")
    cache = resolve_cache_dir(cache_dir)
    paths = _locate(data_dir, data_root, dict(generate or {}), workers, cache, max_length)
    sources = {s: {"path": str(p.resolve()), "digest": file_digest(p)} for s, p in paths.items()}
    key = {"task": "listops", "tokenizer": TOKENIZER_VERSION, "max_length": max_length,
           "sources": {s: v["digest"] for s, v in sources.items()}}
    entry = cache / "listops" / "tokens" / digest(key)
    splits = load_or_build(entry, lambda: {s: _tokenize_file(p, max_length) for s, p in paths.items()}, key)
    spec = task_spec(max_length)
    return TaskData(splits["train"], splits["val"], splits["test"], spec,
                    info={"sources": sources, "token_cache": str(entry)})
