"""Byte tokens are LRA's ByteTextEncoder ids: byte + 1, 0 = padding, cut and padded to max_length."""
from __future__ import annotations

import numpy as np
import pytest

from lra_bench.data.byte_tokens import PAD_ID, VOCAB_SIZE, decode, encode, encode_batch

DOCS = [b"abc", "caf\u00e9".encode(), b"", b"\x00\xff\x00", "d\u00e9j\u00e0 vu", bytes(range(256))]


def test_encode_one_document():
    assert encode(b"abc", 5).tolist() == [98, 99, 100, 0, 0]
    assert encode("caf\u00e9", 6).tolist() == [100, 98, 103, 0xC3 + 1, 0xA9 + 1, 0]  # UTF-8 bytes
    assert encode(b"abcdef", 3).tolist() == [98, 99, 100]
    assert encode(b"\x00", 2).tolist() == [1, 0]  # a NUL byte is a token, not padding
    assert encode(b"", 2).tolist() == [0, 0]
    assert encode(b"a", 1).dtype == np.uint16 and VOCAB_SIZE == 257 and PAD_ID == 0


@pytest.mark.parametrize("chunk", [1, 2, 4096])
def test_batch_equals_rows(chunk):
    out = encode_batch(DOCS, 7, chunk=chunk)
    assert out.shape == (len(DOCS), 7) and out.dtype == np.uint16
    assert np.array_equal(out, np.stack([encode(d, 7) for d in DOCS]))
    assert encode_batch(DOCS, 300)[5].tolist() == list(range(1, 257)) + [0] * 44


def test_batch_writes_into_a_view():
    pairs = np.full((len(DOCS), 2, 4), 99, dtype=np.uint16)
    encode_batch(DOCS, 4, out=pairs[:, 1], chunk=2)
    assert np.array_equal(pairs[:, 1], encode_batch(DOCS, 4)) and (pairs[:, 0] == 99).all()
    assert encode_batch([], 4).shape == (0, 4)


def test_decode_round_trip_and_errors():
    assert decode(encode("d\u00e9j\u00e0", 20)) == "d\u00e9j\u00e0".encode()
    with pytest.raises(ValueError):
        decode([300])
    with pytest.raises(ValueError):
        encode(b"a", 0)
    with pytest.raises(ValueError):
        encode_batch([b"a"], 3, out=np.zeros((1, 4), dtype=np.uint16))
