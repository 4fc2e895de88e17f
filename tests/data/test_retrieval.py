"""The AAN (LRA Retrieval) loader reads LRA's TSVs as LRA does (no header, no quoting, float
labels), byte-tokenizes both documents, caches, and fails in one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lra_bench.data import retrieval
from lra_bench.data.byte_tokens import decode, encode_batch
from lra_bench.data.retrieval import FILES, build_retrieval
from lra_bench.errors import ConfigError, DataError
from tests.data.cache_checks import assert_corrupt_cache_is_rebuilt

LONG = "b'" + "Statistical machine translation with long documents. " * 8 + "'"
ROWS = {  # (label as written, id1, id2, text1, text2), texts as they stand in LRA's files
    "train": [("1.0", "W06-1615", "P05-1044", "b'Learning to parse. We present a parser.'", LONG),
              ("0.0", "C10-2001", "N09-1003", "b\"It's a caf\\xc3\\xa9 study\"", "\"quoted\" text, caf\u00e9 na\u00efve"),
              ("1.0", "J93-2004", "P02-1040", "b'BLEU'", "b''")],
    "val": [("0.0", "E06-1002", "D07-1031", "b'Dependency parsing'", "b'Word alignment'")],
    "test": [("1", "P04-1035", "W04-3252", "b'Sentiment analysis'", LONG), ("0", "A00-1001", "A00-1002", "x", "y")],
}


def write_tsv_dir(root: Path, rows=ROWS, newline="\n") -> Path:
    """LRA's tsv_data/ folder: three headerless tab-separated files."""
    root.mkdir(parents=True, exist_ok=True)
    for split, samples in rows.items():
        body = "".join("\t".join(r) + newline for r in samples)
        (root / FILES[split]).write_bytes(body.encode("utf-8"))
    return root


def expected(split, max_length):
    samples = ROWS[split]
    pairs = np.stack([encode_batch([r[3].encode() for r in samples], max_length),
                      encode_batch([r[4].encode() for r in samples], max_length)], axis=1)
    return pairs, [int(float(r[0])) for r in samples]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_round_trip(tmp_path, newline):
    root = write_tsv_dir(tmp_path / "lra_release" / "tsv_data", newline=newline)
    data = build_retrieval(data_dir=str(root), max_length=48)
    spec = data.spec
    assert (spec.name, spec.vocab_size, spec.max_length, spec.num_classes, spec.pad_id, spec.dual_input) == \
        ("retrieval", 257, 48, 2, 0, True)
    assert data.info["counts"] == {"train": 3, "val": 1, "test": 2}
    for split in ("train", "val", "test"):
        got = getattr(data, split)
        inputs, labels = expected(split, 48)
        assert got.inputs.dtype == np.uint16 and got.inputs.shape == (len(labels), 2, 48)
        assert np.array_equal(got.inputs, inputs) and got.labels.tolist() == labels
    first = data.train.inputs[0, 0]
    text = b"b'Learning to parse. We present a parser.'"
    assert first[: len(text)].tolist() == [b + 1 for b in text] and not first[len(text):].any()
    assert data.train.inputs[0, 1].tolist() == [b + 1 for b in LONG.encode()[:48]]  # truncated
    assert decode(data.train.inputs[1, 1]) == "\"quoted\" text, caf\u00e9 na\u00efve".encode()  # quotes are literal
    assert decode(data.train.inputs[2, 1]) == b"b''"
    x, y = data.test.batch(np.array([1, 0]))
    assert tuple(x.shape) == (2, 2, 48) and y.tolist() == [0, 1]


def test_data_root_finds_tsv_data(tmp_path):
    write_tsv_dir(tmp_path / "root" / "lra_release" / "tsv_data")
    data = build_retrieval(data_root=str(tmp_path / "root"), max_length=16)
    assert data.info["sources"]["val"]["path"].endswith("lra_release/tsv_data/new_aan_pairs.eval.tsv")


def test_missing_files_name_each_path(tmp_path):
    with pytest.raises(DataError) as err:
        build_retrieval(data_dir=str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert all(str(tmp_path / "nowhere" / f) in msg for f in FILES.values())
    assert "lra_release" in msg and "task.data_dir=<lra_release>/tsv_data" in msg and "\n" not in msg
    root = write_tsv_dir(tmp_path / "partial")
    (root / FILES["test"]).unlink()
    with pytest.raises(DataError, match="new_aan_pairs.test.tsv"):
        build_retrieval(data_dir=str(root))
    (tmp_path / "root").mkdir()
    with pytest.raises(DataError) as err:
        build_retrieval(data_root=str(tmp_path / "root"))
    assert str(tmp_path / "root" / "lra_release" / "tsv_data" / "new_aan_pairs.train.tsv") in str(err.value)


@pytest.mark.parametrize("bad_row,fragment", [
    ("1.0\tW06-1615\tP05-1044\tonly four columns", "4 tab-separated columns, expected 5"),
    ("1.0\ta\tb\tc\td\te", "6 tab-separated columns, expected 5"),
    ("2.0\ta\tb\tc\td", "label '2.0' is not 0 or 1"),
    ("0.5\ta\tb\tc\td", "label '0.5' is not 0 or 1"),
    ("label\tid1\tid2\ttext1\ttext2", "label 'label' is not 0 or 1"),
    ("\ta\tb\tc\td", "label '' is not 0 or 1"),
])
def test_malformed_rows_name_path_and_line(tmp_path, bad_row, fragment):
    root = write_tsv_dir(tmp_path / "tsv_data")
    path = root / FILES["val"]
    path.write_text("0.0\ta\tb\tc\td\n1.0\ta\tb\tc\td\n" + bad_row + "\n")
    with pytest.raises(DataError) as err:
        build_retrieval(data_dir=str(root), max_length=16)
    msg = str(err.value)
    assert f"{path}:3:" in msg and fragment in msg and "re-download" in msg and "\n" not in msg
    assert not list((tmp_path / "cache").rglob("*.npy"))  # nothing cached from a bad file


def test_empty_file(tmp_path):
    root = write_tsv_dir(tmp_path / "tsv_data")
    (root / FILES["test"]).write_text("\n")
    with pytest.raises(DataError, match="holds no rows"):
        build_retrieval(data_dir=str(root), max_length=16)


def test_cache_is_reused_and_keyed(tmp_path, monkeypatch):
    root = write_tsv_dir(tmp_path / "tsv_data")
    first = build_retrieval(data_dir=str(root), max_length=16)

    def no_read(path):
        raise AssertionError("TSV re-read despite a valid token cache")

    with monkeypatch.context() as m:
        m.setattr(retrieval, "read_pairs", no_read)
        again = build_retrieval(data_dir=str(root), max_length=16)
    assert again.info["token_cache"] == first.info["token_cache"]
    assert np.array_equal(np.asarray(again.train.inputs), np.asarray(first.train.inputs))
    other = build_retrieval(data_dir=str(root), max_length=20)
    assert other.info["token_cache"] != first.info["token_cache"] and other.train.inputs.shape == (3, 2, 20)
    (root / FILES["test"]).write_text("1.0\ta\tb\tnew\ttext\n")
    changed = build_retrieval(data_dir=str(root), max_length=16)
    assert changed.info["token_cache"] != first.info["token_cache"] and len(changed.test) == 1


def test_corrupt_cache_is_rebuilt(tmp_path):
    root = write_tsv_dir(tmp_path / "tsv_data")
    assert_corrupt_cache_is_rebuilt(lambda: build_retrieval(data_dir=str(root), max_length=16), "train")


@pytest.mark.parametrize("max_length", [0, -5, 2.5, True])
def test_bad_max_length(tmp_path, max_length):
    with pytest.raises(ConfigError, match="task.max_length"):
        build_retrieval(data_dir=str(tmp_path / "nowhere"), max_length=max_length)
