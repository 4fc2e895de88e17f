"""The ListOps loader reads LRA's TSV format exactly, tokenizes as LRA, caches, and fails clearly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lra_bench.data.listops import VOCAB, build_listops, encode, tokenize
from lra_bench.errors import ConfigError, DataError
from tests.data.cache_checks import assert_corrupt_cache_is_rebuilt

ROWS = {
    "train": [("( ( ( [MAX 2 ) 9 ) ] )", 9), ("( ( ( ( [SM 3 ) 8 ) 4 ) ] )", 5), ("( ( ( [MIN 7 ) 1 ) ] )", 1)],
    "val": [("( ( ( ( [MED 1 ) ( ( ( [MAX 3 ) 6 ) ] ) ) 8 ) ] )", 6)],
    "test": [("( ( ( [MIN 4 ) 5 ) ] )", 4), ("( ( ( [MAX 0 ) 2 ) ] )", 2)],
}


def write_lra_dir(root: Path, rows=ROWS, newline="\r\n") -> Path:
    """LRA's files as its generator writes them (csv module: tab-separated, CRLF lines)."""
    root.mkdir(parents=True, exist_ok=True)
    for split, samples in rows.items():
        lines = ["Source\tTarget"] + [f"{s}\t{t}" for s, t in samples]
        (root / f"basic_{split}.tsv").write_text(newline.join(lines) + newline)
    return root


def ids(tokens):
    return [VOCAB.index(t) for t in tokens]


def test_tokenize_is_lras():
    assert tokenize("( ( ( [MAX 2 ) 9 ) ] )") == ["[MAX", "2", "9", "X"]
    assert encode("( ( ( [MAX 2 ) 9 ) ] )", 6).tolist() == ids(["[MAX", "2", "9", "X"]) + [0, 0]
    assert encode("( ( ( [MAX 2 ) 9 ) ] )", 3).tolist() == ids(["[MAX", "2", "9"])
    assert VOCAB[0] == "<pad>" and len(set(VOCAB)) == len(VOCAB) == 16


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_loader_round_trip(tmp_path, newline):
    root = write_lra_dir(tmp_path / "listops-1000", newline=newline)
    data = build_listops(data_dir=str(root), max_length=10, cache_dir=str(tmp_path / "cache"))
    assert (len(data.train), len(data.val), len(data.test)) == (3, 1, 2)
    assert data.spec.num_classes == 10 and data.spec.pad_id == 0 and data.spec.max_length == 10
    assert data.val.inputs.shape == (1, 10)
    assert data.val.inputs[0].tolist() == ids(["[MED", "1", "[MAX", "3", "6", "X", "8", "X"]) + [0, 0]
    assert data.train.labels.tolist() == [9, 5, 1] and data.test.labels.tolist() == [4, 2]
    x, y = data.train.batch(np.array([1]))
    assert x.tolist()[0][:5] == ids(["[SM", "3", "8", "4", "X"]) and y.tolist() == [5]


def test_token_cache_is_reused_and_keyed(tmp_path):
    root = write_lra_dir(tmp_path / "d")
    cache = tmp_path / "cache"
    first = build_listops(data_dir=str(root), max_length=10, cache_dir=str(cache))
    again = build_listops(data_dir=str(root), max_length=10, cache_dir=str(cache))
    assert first.info["token_cache"] == again.info["token_cache"]
    other = build_listops(data_dir=str(root), max_length=12, cache_dir=str(cache))
    assert other.info["token_cache"] != first.info["token_cache"]
    (root / "basic_test.tsv").write_text("Source\tTarget\n( ( ( [MIN 4 ) 5 ) ] )\t4\n")
    changed = build_listops(data_dir=str(root), max_length=10, cache_dir=str(cache))
    assert changed.info["token_cache"] != first.info["token_cache"] and len(changed.test) == 1


def test_corrupt_cache_is_rebuilt(tmp_path):
    root = write_lra_dir(tmp_path / "d")
    assert_corrupt_cache_is_rebuilt(
        lambda: build_listops(data_dir=str(root), max_length=10, cache_dir=str(tmp_path / "cache")), "train")


def test_generated_when_no_data_dir(tmp_path):
    gen = dict(num_train=40, num_val=8, num_test=8, min_length=5, max_length=30)
    a = build_listops(max_length=32, generate=gen, workers=1, cache_dir=str(tmp_path / "cache"))
    b = build_listops(max_length=32, generate=gen, workers=1, cache_dir=str(tmp_path / "cache"))
    assert (len(a.train), len(a.val), len(a.test)) == (40, 8, 8)
    assert a.info["sources"] == b.info["sources"]  # second run reuses the generated files
    files = {Path(v["path"]).name for v in a.info["sources"].values()}
    assert files == {"basic_train.tsv", "basic_val.tsv", "basic_test.tsv"}


@pytest.mark.parametrize("content,fragment", [
    ("", "is empty"),
    ("Src\tTgt\n( ( ( [MAX 2 ) 9 ) ] )\t9\n", "lacks Source and Target"),
    ("Source\tTarget\n", "no samples"),
    ("Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\n", "1 columns, header has 2"),
    ("Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\tnine\n", "is not an integer"),
    ("Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\t12\n", "outside 0-9"),
    ("Source\tTarget\n( ( ( [MAX 2 ) 19 ) ] )\t9\n", "token '19' is not ListOps"),
    ("Source\tTarget\n( ( ( [AVG 2 ) 9 ) ] )\t9\n", "token '[AVG' is not ListOps"),
])
def test_bad_files_fail_in_one_line(tmp_path, content, fragment):
    root = write_lra_dir(tmp_path / "d")
    (root / "basic_val.tsv").write_text(content)
    with pytest.raises(DataError) as err:
        build_listops(data_dir=str(root), max_length=10, cache_dir=str(tmp_path / "cache"))
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert not list((tmp_path / "cache").rglob("*.npy"))  # nothing cached from a bad file


def test_missing_files_name_paths_and_fix(tmp_path):
    with pytest.raises(DataError) as err:
        build_listops(data_dir=str(tmp_path / "nowhere"), cache_dir=str(tmp_path / "cache"))
    msg = str(err.value)
    assert "basic_train.tsv" in msg and "lra_release" in msg and "task.data_dir=null" in msg and "\n" not in msg


def test_bad_generate_keys(tmp_path):
    with pytest.raises(ConfigError, match="task.generate"):
        build_listops(generate={"num_trian": 5}, cache_dir=str(tmp_path))
    with pytest.raises(ConfigError):
        build_listops(generate={"min_length": 50, "max_length": 40}, cache_dir=str(tmp_path))
