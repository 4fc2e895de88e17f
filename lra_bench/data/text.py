"""IMDB sentiment at the byte level: the Text task of Long Range Arena (Tay et al., 2021).

Reviews come from one of three equivalent sources (`source`):

* `tfds` -- tensorflow-datasets' `imdb_reviews`, as LRA loads it, only if the package is
  installed and the dataset is already prepared on disk (this module never downloads);
* `aclimdb` -- the original `aclImdb/{train,test}/{neg,pos}/*.txt` tree, or the
  `aclImdb_v1.tar.gz` archive itself (read in place, no extraction);
* `auto` -- with `data_dir` set, that folder (or archive); otherwise tfds when it is
  prepared, else `aclImdb/`, else `aclImdb_v1.tar.gz` under `data_root`.

Every source yields the same documents: each review's bytes with surrounding ASCII
whitespace stripped (as the tfds builder does), label neg=0 / pos=1, `train/unsup`
ignored. Each split is put in a canonical order -- sorted by (label, text) -- so the
arrays do not depend on the source, file names or archive order.

Splits: `test` is the 25k IMDB test set. LRA has no validation set (it evaluates on the
test set during training); here `val` is a seeded `val_fraction` of the IMDB train set
and `train` the rest, so the test set is never used for model selection.

Tokens: LRA's byte encoding (byte + 1, 0 = padding, 257 ids), truncated/padded to
`max_length` (LRA: 1000), cached as uint16 arrays.
"""
from __future__ import annotations

import logging
import os
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from lra_bench.data import byte_tokens
from lra_bench.data.cache import digest, file_digest, load_or_build, resolve_cache_dir, stat_digest
from lra_bench.data.sources import candidates, first, not_found, tfds_builder
from lra_bench.data.spec import Split, TaskData, TaskSpec
from lra_bench.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SOURCE_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
ARCHIVE = "aclImdb_v1.tar.gz"
TREE = "aclImdb"
TFDS_NAME = "imdb_reviews"
SOURCES = ("auto", "tfds", "aclimdb")
LABELS = {"neg": 0, "pos": 1}
IMDB_SPLITS = ("train", "test")
NUM_CLASSES = 2
MAX_LENGTH = 1000  # LRA's
HOW = (f"download {SOURCE_URL} and set task.data_dir=<folder with aclImdb/ or the .tar.gz> "
       f"(or paths.data_root)")
_MEMBER = re.compile(r"(?:^|/)(train|test)/(neg|pos)/[^/]+\.txt$")

Docs = Tuple[List[bytes], List[int]]  # texts, labels of one IMDB split


@dataclass(frozen=True)
class TextSource:
    """Where the reviews come from: `kind` is tfds, aclimdb_dir or aclimdb_tar; the
    fingerprint changes whenever the data does; `read()` returns {train, test: Docs}."""

    kind: str
    location: str
    fingerprint: str
    read: Callable[[], Dict[str, Docs]]


# ---------------------------------------------------------------- options

def _validate(max_length: Any, val_fraction: Any, val_seed: Any, source: Any) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ConfigError(f"task.max_length={max_length!r} must be an integer >= 1; LRA uses task.max_length=1000")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ConfigError(f"task.val_fraction={val_fraction!r} must be a number strictly between 0 and 1, "
                          f"e.g. task.val_fraction=0.1")
    if isinstance(val_seed, bool) or not isinstance(val_seed, int):
        raise ConfigError(f"task.val_seed={val_seed!r} must be an integer, e.g. task.val_seed=0")
    if source not in SOURCES:
        raise ConfigError(f"task.source={source!r} is not one of {', '.join(SOURCES)}; "
                          f"use task.source=auto unless you need a specific one")


# ---------------------------------------------------------------- aclImdb tree

def _is_imdb(path: Path) -> bool:
    """An aclImdb folder (holding train/ or test/) or a file (taken to be the archive)."""
    if path.is_dir():
        return (path / "train").is_dir() or (path / "test").is_dir()
    return path.is_file()


def _tree_files(root: Path) -> Dict[Tuple[str, str], List[os.DirEntry]]:
    """The review files of each (split, label) folder of an aclImdb tree, sorted by name."""
    groups = {}
    for split in IMDB_SPLITS:
        for label in LABELS:
            folder = root / split / label
            if not folder.is_dir():
                raise DataError(f"{folder} is missing, so the aclImdb tree at {root} is incomplete; "
                                f"re-extract {ARCHIVE} or set task.data_dir to the .tar.gz itself")
            with os.scandir(folder) as it:
                files = sorted((e for e in it if e.name.endswith(".txt") and e.is_file()), key=lambda e: e.name)
            if not files:
                raise DataError(f"{folder} holds no .txt reviews, so the aclImdb tree at {root} is incomplete; "
                                f"re-extract {ARCHIVE} or set task.data_dir to the .tar.gz itself")
            groups[split, label] = files
    return groups


def _tree_fingerprint(groups: Dict[Tuple[str, str], List[os.DirEntry]]) -> str:
    """Hash of every review's relative path, size and mtime: changes when any file does."""
    return stat_digest((f"{split}/{label}/{e.name}", Path(e.path))
                       for (split, label), files in sorted(groups.items()) for e in files)


def _read_tree(groups: Dict[Tuple[str, str], List[os.DirEntry]]) -> Dict[str, Docs]:
    docs: Dict[str, Docs] = {s: ([], []) for s in IMDB_SPLITS}
    for (split, label), files in groups.items():
        texts, labels = docs[split]
        for e in files:
            with open(e.path, "rb") as f:
                texts.append(f.read().strip())
            labels.append(LABELS[label])
    return docs


def _tree_source(root: Path) -> TextSource:
    groups = _tree_files(root)
    return TextSource("aclimdb_dir", str(root.resolve()), _tree_fingerprint(groups), lambda: _read_tree(groups))


# ---------------------------------------------------------------- aclImdb archive

def _read_archive(path: Path) -> Dict[str, Docs]:
    """Reviews of `aclImdb_v1.tar.gz`, streamed from the archive (train/unsup skipped)."""
    docs: Dict[str, Docs] = {s: ([], []) for s in IMDB_SPLITS}
    seen = set()
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                match = _MEMBER.search(member.name)
                if match is None or not member.isfile():
                    continue
                split, label = match.groups()
                f = tar.extractfile(member)
                docs[split][0].append(f.read().strip())
                docs[split][1].append(LABELS[label])
                seen.add((split, label))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path} cannot be read as a .tar.gz archive ({reason}); it is truncated or corrupt, "
                        f"re-download {SOURCE_URL}") from None
    for split in IMDB_SPLITS:
        for label in LABELS:
            if (split, label) not in seen:
                raise DataError(f"{path} holds no aclImdb/{split}/{label}/*.txt reviews; it is not the complete "
                                f"IMDB archive, re-download {SOURCE_URL}")
    return docs


def _archive_source(path: Path) -> TextSource:
    return TextSource("aclimdb_tar", str(path.resolve()), file_digest(path), lambda: _read_archive(path))


def _aclimdb_source(data_dir: Optional[str], data_root: Optional[str]) -> TextSource:
    if data_dir is not None:
        looked = candidates(data_dir, None, (), own=("", TREE, ARCHIVE))
    else:
        looked = candidates(None, data_root, (TREE, ARCHIVE))
    found = first(looked, _is_imdb)
    if found is None:
        raise not_found("text", looked, HOW)
    return _tree_source(found) if found.is_dir() else _archive_source(found)


# ---------------------------------------------------------------- tensorflow-datasets

def _tfds_source(data_dir: Optional[str]) -> Tuple[Optional[TextSource], str]:
    """tfds' prepared `imdb_reviews` as a source, or (None, why it cannot be used).

    Nothing is downloaded: a dataset counts as prepared when tfds' versioned data folder
    holds its `dataset_info.json`. `data_dir`, if set, is tfds' data directory.
    """
    builder, why = tfds_builder(TFDS_NAME, data_dir)
    if builder is None:
        return None, why
    import tensorflow_datasets as tfds  # importable: tfds_builder made a builder with it

    prepared_dir = Path(str(builder.data_dir))
    prepared = sorted(p for p in prepared_dir.rglob("*") if p.is_file())
    fingerprint = stat_digest((str(p.relative_to(prepared_dir)), p) for p in prepared)

    def read() -> Dict[str, Docs]:
        docs: Dict[str, Docs] = {}
        for split in IMDB_SPLITS:
            texts, labels = [], []
            for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
                texts.append(bytes(ex["text"]))
                labels.append(int(ex["label"]))
            docs[split] = (texts, labels)
        return docs

    return TextSource("tfds", str(prepared_dir), fingerprint, read), ""


def _resolve_source(source: str, data_dir: Optional[str], data_root: Optional[str]) -> TextSource:
    """The source `source` names; `auto` prefers an explicit data_dir, then tfds, then data_root."""
    if source == "tfds":
        found, why = _tfds_source(data_dir)
        if found is None:
            raise DataError(f"task.source=tfds cannot be used: {why}; this loader never downloads, so "
                            f"pip install tensorflow-datasets and run `tfds build {TFDS_NAME}` first, "
                            f"or set task.source=aclimdb and {HOW}")
        return found
    if source == "auto" and data_dir is None:
        found, why = _tfds_source(None)
        if found is not None:
            return found
        log.debug("not using tfds for IMDB: %s", why)
    return _aclimdb_source(data_dir, data_root)


# ---------------------------------------------------------------- splits and tokens

def _canonical(texts: List[bytes], labels: List[int]) -> Docs:
    """Sort documents by (label, text): the order no longer depends on the source."""
    order = sorted(range(len(texts)), key=lambda i: (labels[i], texts[i]))
    return [texts[i] for i in order], [labels[i] for i in order]


def val_indices(n: int, val_fraction: float, val_seed: int) -> np.ndarray:
    """Sorted indices of the `val_fraction` of `n` training documents held out for validation."""
    n_val = min(max(1, int(round(val_fraction * n))), n - 1)
    return np.sort(np.random.default_rng(val_seed).permutation(n)[:n_val])


def _to_split(texts: List[bytes], labels: List[int], index: np.ndarray, max_length: int) -> Split:
    inputs = byte_tokens.encode_batch([texts[i] for i in index], max_length)
    return Split(inputs, np.asarray(labels, dtype=np.int64)[index])


def _build_splits(src: TextSource, max_length: int, val_fraction: float, val_seed: int) -> Dict[str, Split]:
    log.info("reading IMDB reviews from %s (%s)", src.location, src.kind)
    raw = src.read()
    docs = {s: _canonical(*raw[s]) for s in IMDB_SPLITS}
    for split, (texts, _) in docs.items():
        if len(texts) < (2 if split == "train" else 1):
            raise DataError(f"{src.location} holds {len(texts)} IMDB {split} reviews, too few to use; "
                            f"re-download {SOURCE_URL}")
    train_texts, train_labels = docs["train"]
    n = len(train_texts)
    val = val_indices(n, val_fraction, val_seed)
    train = np.setdiff1d(np.arange(n), val)
    test_texts, test_labels = docs["test"]
    return {"train": _to_split(train_texts, train_labels, train, max_length),
            "val": _to_split(train_texts, train_labels, val, max_length),
            "test": _to_split(test_texts, test_labels, np.arange(len(test_texts)), max_length)}


def task_spec(max_length: Optional[int] = None, **options: Any) -> TaskSpec:
    """The TaskSpec `build_text(max_length=..., **options)` gives, without reading data
    (None: the builder's default length); options other than max_length do not change it."""
    return TaskSpec(name="text", vocab_size=byte_tokens.VOCAB_SIZE,
                    max_length=MAX_LENGTH if max_length is None else max_length,
                    num_classes=NUM_CLASSES, pad_id=byte_tokens.PAD_ID)


def build_text(data_dir: Optional[str] = None, max_length: int = MAX_LENGTH, val_fraction: float = 0.1,
               val_seed: int = 0, source: str = "auto", cache_dir: Optional[str] = None,
               data_root: Optional[str] = None) -> TaskData:
    """IMDB (LRA Text) TaskData: byte tokens (N, max_length) uint16, labels neg=0/pos=1.

    `data_dir` is the folder holding `aclImdb/` or `aclImdb_v1.tar.gz`, the `aclImdb`
    folder itself, or the archive file (for `source=tfds`: tfds' data directory);
    `data_root` is searched when `data_dir` is unset. `val_seed` picks the validation
    reviews and is independent of the run seed, so every run of a sweep shares one split.
    """
    _validate(max_length, val_fraction, val_seed, source)
    cache = resolve_cache_dir(cache_dir)
    src = _resolve_source(source, data_dir, data_root)
    key = {"task": "text", "tokenizer": byte_tokens.TOKENIZER_VERSION, "max_length": max_length,
           "val_fraction": float(val_fraction), "val_seed": val_seed, "source": src.kind,
           "fingerprint": src.fingerprint}
    entry = cache / "text" / "tokens" / digest(key)
    splits = load_or_build(entry, lambda: _build_splits(src, max_length, val_fraction, val_seed), key)
    spec = task_spec(max_length)
    info = {"sources": {"kind": src.kind, "path": src.location, "fingerprint": src.fingerprint},
            "token_cache": str(entry), "counts": {s: len(v) for s, v in splits.items()}}
    return TaskData(splits["train"], splits["val"], splits["test"], spec, info=info)
