"""LRA's byte-level tokenization (Text and Retrieval tasks).

LRA encodes documents with `tfds.deprecated.text.ByteTextEncoder()`: every byte `b`
becomes id `b + 1`, id 0 is reserved for padding, so the vocabulary has 257 ids. Its
pipelines then cut each sequence to `max_length` and zero-pad batches to `max_length`.
Here documents are `bytes` (a `str` is UTF-8 encoded first) and results are uint16.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

PAD_ID = 0
VOCAB_SIZE = 256 + 1  # every byte value, plus padding
TOKENIZER_VERSION = 1  # bump when the ids a document maps to change (invalidates token caches)
CHUNK = 4096  # documents tokenized per numpy pass: bounds temporaries at CHUNK * max_length bytes

Document = Union[bytes, bytearray, memoryview, str]


def _as_bytes(doc: Document) -> bytes:
    return doc.encode("utf-8") if isinstance(doc, str) else bytes(doc)


def _check_length(max_length: int) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 1:
        raise ValueError(f"max_length={max_length!r} must be an integer >= 1")


def encode(doc: Document, max_length: int) -> np.ndarray:
    """Ids (max_length,) uint16 of one document: bytes + 1, truncated, zero-padded."""
    _check_length(max_length)
    data = np.frombuffer(_as_bytes(doc)[:max_length], dtype=np.uint8)
    out = np.zeros(max_length, dtype=np.uint16)
    out[: len(data)] = data
    out[: len(data)] += 1
    return out


def encode_batch(docs: Sequence[Document], max_length: int, out: Optional[np.ndarray] = None,
                 chunk: int = CHUNK) -> np.ndarray:
    """Ids (N, max_length) uint16 of N documents, as `encode` gives row by row.

    Work is done by numpy on `chunk` documents at a time (no Python loop over bytes).
    `out`, if given, is an (N, max_length) uint16 array (or view) written in place and
    returned -- e.g. one column of a (N, 2, max_length) dual-input array.
    """
    _check_length(max_length)
    n = len(docs)
    if out is None:
        out = np.empty((n, max_length), dtype=np.uint16)
    elif out.shape != (n, max_length) or out.dtype != np.uint16:
        raise ValueError(f"out has shape {out.shape} and dtype {out.dtype}; expected ({n}, {max_length}) uint16")
    positions = np.arange(max_length)
    for start in range(0, n, max(1, chunk)):
        cut = [_as_bytes(d)[:max_length] for d in docs[start:start + chunk]]
        lengths = np.fromiter(map(len, cut), dtype=np.int64, count=len(cut))
        raw = np.frombuffer(b"".join(c.ljust(max_length, b"\0") for c in cut), dtype=np.uint8)
        block = out[start:start + len(cut)]
        np.add(raw.reshape(len(cut), max_length), np.uint16(1), out=block)
        block[positions[None, :] >= lengths[:, None]] = PAD_ID  # a real NUL byte is id 1, padding is 0
    return out


def decode(ids: Sequence[int] | np.ndarray) -> bytes:
    """The bytes behind `ids`, padding dropped (for inspection and tests)."""
    arr = np.asarray(ids, dtype=np.int64)
    arr = arr[arr != PAD_ID]
    if arr.size and (arr.min() < 1 or arr.max() >= VOCAB_SIZE):
        raise ValueError(f"ids must lie in 0..{VOCAB_SIZE - 1}")
    return (arr - 1).astype(np.uint8).tobytes()
