"""AAN document matching at the byte level: the Retrieval task of Long Range Arena.

Reads LRA's `new_aan_pairs.{train,eval,test}.tsv` (train/val/test) from the release's
`tsv_data/` folder. As LRA's input pipeline reads them: tab-separated, no header, no
quoting (quote characters are literal text), five columns `label id1 id2 text1 text2`,
the label written as a float ("1.0"/"0.0"). Each text field is encoded byte for byte as
it stands in the file (LRA's ByteTextEncoder: byte + 1, 0 = padding, 257 ids) and cut
to `max_length` (LRA: 4000). LRA also cuts every text to its first 10000 bytes before
encoding, which changes nothing while max_length <= 10000.

Inputs are (N, 2, max_length) uint16: [:, 0] the first document, [:, 1] the second.
"""
from __future__ import annotations

import csv
import logging
import math
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np

from lra_bench.data import byte_tokens
from lra_bench.data.cache import digest, file_digest, load_or_build, resolve_cache_dir
from lra_bench.data.sources import RELEASE_URL, candidates, first, not_found
from lra_bench.data.spec import Split, TaskData, TaskSpec
from lra_bench.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FILES = {"train": "new_aan_pairs.train.tsv", "val": "new_aan_pairs.eval.tsv", "test": "new_aan_pairs.test.tsv"}
COLUMNS = ("label", "id1", "id2", "text1", "text2")
NUM_CLASSES = 2
MAX_LENGTH = 4000  # LRA's
CHUNK = 2048  # rows tokenized per numpy pass
HOW = f"unpack {RELEASE_URL} and set task.data_dir=<lra_release>/tsv_data (or paths.data_root=<lra_release>)"


def _parse_label(value: str, where: str) -> int:
    """0 or 1 from LRA's label column ("0", "1", "0.0", "1.0")."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if number not in (0.0, 1.0):
        raise DataError(f"{where}: label {value!r} is not 0 or 1; the file is corrupt or not an AAN pairs file, "
                        f"re-download {RELEASE_URL}")
    return int(number)


def read_pairs(path: Path) -> Iterator[Tuple[int, bytes, bytes]]:
    """(label, text1, text2) of each row of an LRA AAN TSV file, texts as the file's bytes."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            if not row:
                continue
            where = f"{path}:{reader.line_num}"
            if len(row) != len(COLUMNS):
                raise DataError(f"{where}: {len(row)} tab-separated columns, expected {len(COLUMNS)} "
                                f"({' '.join(COLUMNS)}); the file is truncated or corrupt, re-download {RELEASE_URL}")
            yield (_parse_label(row[0], where), row[3].encode("utf-8", "surrogateescape"),
                   row[4].encode("utf-8", "surrogateescape"))


def _max_rows(path: Path) -> int:
    """An upper bound on the rows of `path`: its line count (one row per line, no quoting)."""
    lines = 1
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            lines += block.count(b"\n") + block.count(b"\r")
    return lines


def _tokenize_file(path: Path, max_length: int) -> Split:
    """Tokens (N, 2, max_length) uint16 and labels (N,) of one AAN TSV file."""
    inputs = np.zeros((_max_rows(path), 2, max_length), dtype=np.uint16)
    labels = []
    first_docs, second_docs = [], []

    def flush() -> None:
        start = len(labels) - len(first_docs)
        byte_tokens.encode_batch(first_docs, max_length, out=inputs[start:len(labels), 0])
        byte_tokens.encode_batch(second_docs, max_length, out=inputs[start:len(labels), 1])
        first_docs.clear()
        second_docs.clear()

    for label, text1, text2 in read_pairs(path):
        labels.append(label)
        first_docs.append(text1)
        second_docs.append(text2)
        if len(first_docs) == CHUNK:
            flush()
    flush()
    if not labels:
        raise DataError(f"{path} holds no rows; re-download {RELEASE_URL}")
    return Split(inputs[: len(labels)], np.asarray(labels, dtype=np.int64))


def _locate(data_dir: Optional[str], data_root: Optional[str]) -> Dict[str, Path]:
    """The three files, from the first candidate folder holding all of them."""
    folders = candidates(data_dir, data_root, ("tsv_data",), own=("",))
    found = first(folders, lambda d: all((d / f).is_file() for f in FILES.values()))
    if found is None:
        raise not_found("retrieval", [d / f for d in folders for f in FILES.values()], HOW)
    return {split: found / name for split, name in FILES.items()}


def task_spec(max_length: Optional[int] = None, **options: Any) -> TaskSpec:
    """The TaskSpec `build_retrieval(max_length=..., **options)` gives, without reading data
    (None: the builder's default length); options other than max_length do not change it."""
    return TaskSpec(name="retrieval", vocab_size=byte_tokens.VOCAB_SIZE,
                    max_length=MAX_LENGTH if max_length is None else max_length,
                    num_classes=NUM_CLASSES, pad_id=byte_tokens.PAD_ID, dual_input=True)


def build_retrieval(data_dir: Optional[str] = None, max_length: int = MAX_LENGTH, cache_dir: Optional[str] = None,
                    data_root: Optional[str] = None) -> TaskData:
    """AAN (LRA Retrieval) TaskData: inputs (N, 2, max_length) uint16, labels 0/1.

    `data_dir` is the folder holding the three `new_aan_pairs.*.tsv` files (the release's
    `tsv_data/`); `data_root`, searched when `data_dir` is unset, the unpacked release.
    """
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ConfigError(f"task.max_length={max_length!r} must be an integer >= 1; LRA uses task.max_length=4000")
    cache = resolve_cache_dir(cache_dir)
    paths = _locate(data_dir, data_root)
    sources = {s: {"path": str(p.resolve()), "digest": file_digest(p)} for s, p in paths.items()}
    key = {"task": "retrieval", "tokenizer": byte_tokens.TOKENIZER_VERSION, "max_length": max_length,
           "sources": {s: v["digest"] for s, v in sources.items()}}
    entry = cache / "retrieval" / "tokens" / digest(key)
    splits = load_or_build(entry, lambda: {s: _tokenize_file(p, max_length) for s, p in paths.items()}, key)
    spec = task_spec(max_length)
    info = {"sources": sources, "token_cache": str(entry), "counts": {s: len(v) for s, v in splits.items()}}
    return TaskData(splits["train"], splits["val"], splits["test"], spec, info=info)
