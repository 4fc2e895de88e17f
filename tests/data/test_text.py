"""The IMDB (LRA Text) loader reads the aclImdb tree, its tar.gz or tfds alike, byte-tokenizes
as LRA, carves a seeded validation set from train only, caches, and fails in one line."""
from __future__ import annotations

import io
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest

from lra_bench.data import text
from lra_bench.data.byte_tokens import decode, encode_batch
from lra_bench.data.text import build_text
from lra_bench.errors import ConfigError, DataError
from tests.data.cache_checks import assert_corrupt_cache_is_rebuilt

E = "\u00e9"  # reviews carry non-ASCII UTF-8, as the real ones do
REVIEWS = {
    ("train", "neg"): {"0_3.txt": b"Dull.<br /><br />Really dull.", "1_1.txt": f"Clich{E}s everywhere.".encode(),
                       "10_2.txt": b"  I left early.\n", "2_4.txt": b"Meh", "3_1.txt": b"Awful acting",
                       "4_2.txt": b"Too long, too loud"},
    ("train", "pos"): {"0_9.txt": f"Am{E}lie is a na\u00efve joy \u263a".encode(), "1_7.txt": b"Loved it",
                       "10_8.txt": b"Great cast", "2_10.txt": b"A classic.\n\n", "3_8.txt": b"Fun",
                       "4_9.txt": b"Would watch again"},
    ("test", "neg"): {"0_2.txt": b"Not good", "1_4.txt": b"Boring plot, flat characters and a very long ending"},
    ("test", "pos"): {"0_10.txt": f"Superb d{E}but".encode(), "1_7.txt": b"\tSolid thriller "},
}
UNSUP = {"0_0.txt": b"UNSUP-ONLY review", "1_0.txt": b"another UNSUP-ONLY"}
LABEL = {"neg": 0, "pos": 1}


def expected(split):
    """(label, stripped bytes) of a split, in the loader's canonical (label, text) order."""
    return sorted((LABEL[lab], body.strip()) for (s, lab), files in REVIEWS.items() if s == split
                  for body in files.values())


def write_tree(base: Path) -> Path:
    """An aclImdb/ folder as the archive unpacks it, with the files a real one has beside the reviews."""
    root = base / "aclImdb"
    for (split, label), files in REVIEWS.items():
        (root / split / label).mkdir(parents=True, exist_ok=True)
        for name, body in files.items():
            (root / split / label / name).write_bytes(body)
    (root / "train" / "unsup").mkdir()
    for name, body in UNSUP.items():
        (root / "train" / "unsup" / name).write_bytes(body)
    (root / "imdb.vocab").write_text("the\nand\n")
    (root / "train" / "urls_pos.txt").write_text("http://www.imdb.com/title/tt0453418/usercomments\n")
    (root / "train" / "labeledBow.feat").write_text("9 0:9 1:1\n")
    return root


def write_archive(path: Path, tree: Path) -> Path:
    """aclImdb_v1.tar.gz: gzip'd tar whose top-level folder is aclImdb/."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree, arcname="aclImdb")
    return path


@pytest.fixture(autouse=True)
def no_tfds(monkeypatch):
    """Tests run as if tensorflow-datasets were absent unless they install a fake."""
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)


@pytest.fixture
def tree(tmp_path):
    return write_tree(tmp_path / "data")


def rows(split):
    """(label, bytes) of every row of a Split."""
    return [(int(y), decode(x)) for x, y in zip(np.asarray(split.inputs), split.labels)]


def test_tokens_labels_and_splits(tree, tmp_path):
    data = build_text(data_dir=str(tree.parent), max_length=64, val_fraction=0.25)
    assert data.spec.name == "text" and data.spec.vocab_size == 257 and data.spec.num_classes == 2
    assert data.spec.pad_id == 0 and data.spec.max_length == 64 and not data.spec.dual_input
    assert data.info["counts"] == {"train": 9, "val": 3, "test": 4}
    assert data.info["sources"]["kind"] == "aclimdb_dir" and data.info["sources"]["path"] == str(tree.resolve())
    test = expected("test")
    assert data.test.inputs.dtype == np.uint16 and data.test.inputs.shape == (4, 64)
    assert data.test.labels.tolist() == [lab for lab, _ in test]
    assert np.array_equal(data.test.inputs, encode_batch([t for _, t in test], 64))
    first = list(f"Superb d{E}but".encode())
    row = data.test.inputs[[t for _, t in test].index(f"Superb d{E}but".encode())]
    assert row[: len(first)].tolist() == [b + 1 for b in first] and not row[len(first):].any()
    assert (1, b"Solid thriller") in rows(data.test)  # surrounding whitespace stripped, as tfds does
    # val is drawn from train only, and train + val is all of it; unsup never appears
    assert sorted(rows(data.train) + rows(data.val)) == expected("train")
    assert not {t for _, t in rows(data.val)} & {t for _, t in test}
    assert not any(b"UNSUP" in t for split in (data.train, data.val, data.test) for _, t in rows(split))
    x, y = data.val.batch(np.array([0, 2]))
    assert tuple(x.shape) == (2, 64) and y.tolist() == data.val.labels[[0, 2]].tolist()


def test_truncation_and_padding(tree):
    data = build_text(data_dir=str(tree), max_length=8)
    long = b"Boring plot, flat characters and a very long ending"
    short = b"Not good"
    test = [t for _, t in expected("test")]
    assert data.test.inputs[test.index(long)].tolist() == [b + 1 for b in long[:8]]
    assert data.test.inputs[test.index(short)].tolist() == [b + 1 for b in short]
    assert build_text(data_dir=str(tree), max_length=10).test.inputs[test.index(short)].tolist()[-2:] == [0, 0]


def test_val_split_is_seeded(tree):
    def val(seed):
        return sorted(rows(build_text(data_dir=str(tree), max_length=32, val_fraction=0.25, val_seed=seed).val))

    assert val(0) == val(0)
    assert val(0) != val(1)
    assert len(build_text(data_dir=str(tree), max_length=32, val_fraction=0.5).val) == 6


def test_archive_and_tree_agree(tree, tmp_path):
    archive = write_archive(tmp_path / "dl" / "aclImdb_v1.tar.gz", tree)
    with tarfile.open(archive) as tar:
        assert tar.getnames()[0] == "aclImdb" and "aclImdb/train/unsup/0_0.txt" in tar.getnames()
    from_tree = build_text(data_dir=str(tree.parent), max_length=32)
    for where in (archive.parent, archive):  # the folder holding the .tar.gz, or the file itself
        from_tar = build_text(data_dir=str(where), max_length=32)
        assert from_tar.info["sources"]["kind"] == "aclimdb_tar"
        for split in ("train", "val", "test"):
            assert np.array_equal(getattr(from_tar, split).inputs, getattr(from_tree, split).inputs)
            assert np.array_equal(getattr(from_tar, split).labels, getattr(from_tree, split).labels)


def test_data_root_prefers_tree_then_archive(tree, tmp_path):
    root = tmp_path / "root"
    write_archive(root / "lra_release" / "aclImdb_v1.tar.gz", tree)
    assert build_text(data_root=str(root), max_length=16).info["sources"]["kind"] == "aclimdb_tar"
    write_tree(root)
    assert build_text(data_root=str(root), max_length=16).info["sources"]["kind"] == "aclimdb_dir"


def test_cache_is_reused_and_keyed(tree, monkeypatch):
    first = build_text(data_dir=str(tree), max_length=16)
    expect = np.array(first.train.inputs)

    def no_read(*args):
        raise AssertionError("reviews re-read despite a valid token cache")

    with monkeypatch.context() as m:
        m.setattr(text, "_read_tree", no_read)
        again = build_text(data_dir=str(tree), max_length=16)
    assert again.info["token_cache"] == first.info["token_cache"]
    assert np.array_equal(np.asarray(again.train.inputs), expect)
    keys = {first.info["token_cache"]}
    for kwargs in ({"max_length": 17}, {"max_length": 16, "val_seed": 1}, {"max_length": 16, "val_fraction": 0.2}):
        keys.add(build_text(data_dir=str(tree), **kwargs).info["token_cache"])
    assert len(keys) == 4
    (tree / "test" / "pos" / "0_10.txt").write_bytes(b"Changed review")
    changed = build_text(data_dir=str(tree), max_length=16)
    assert changed.info["token_cache"] not in keys
    assert (1, b"Changed review") in rows(changed.test)


def test_corrupt_cache_is_rebuilt(tree, tmp_path):
    cache = tmp_path / "cache2"
    assert_corrupt_cache_is_rebuilt(lambda: build_text(data_dir=str(tree), max_length=16, cache_dir=str(cache)), "val")
    assert next(cache.rglob("meta.json"))  # the entry lives in the cache directory given


def test_missing_data_names_paths_and_fix(tmp_path):
    with pytest.raises(DataError) as err:
        build_text(data_dir=str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "aclImdb") in msg and str(tmp_path / "nowhere" / "aclImdb_v1.tar.gz") in msg
    assert "aclImdb_v1.tar.gz" in msg and "task.data_dir=" in msg and "\n" not in msg
    with pytest.raises(DataError, match="paths.data_root are unset"):
        build_text()
    (tmp_path / "root").mkdir()
    with pytest.raises(DataError) as err:
        build_text(data_root=str(tmp_path / "root"))
    assert str(tmp_path / "root" / "lra_release" / "aclImdb_v1.tar.gz") in str(err.value)


def test_incomplete_tree(tree):
    for f in (tree / "test" / "neg").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="holds no .txt reviews"):
        build_text(data_dir=str(tree))
    (tree / "test" / "neg").rmdir()
    with pytest.raises(DataError) as err:
        build_text(data_dir=str(tree))
    assert str(tree / "test" / "neg") in str(err.value) and "re-extract" in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_archives(tree, tmp_path):
    good = write_archive(tmp_path / "good" / "aclImdb_v1.tar.gz", tree).read_bytes()
    bad = tmp_path / "bad" / "aclImdb_v1.tar.gz"
    bad.parent.mkdir()
    for content in (b"<html>404 Not Found</html>", good[: len(good) // 2]):
        bad.write_bytes(content)
        with pytest.raises(DataError) as err:
            build_text(data_dir=str(bad.parent))
        msg = str(err.value)
        assert str(bad) in msg and "re-download" in msg and "\n" not in msg
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tree / "train", arcname="aclImdb/train")
    bad.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="no aclImdb/test/neg"):
        build_text(data_dir=str(bad))
    assert not list((tmp_path / "cache").rglob("*.npy"))  # nothing cached from bad input


@pytest.mark.parametrize("kwargs,fragment", [
    ({"max_length": 0}, "task.max_length=0"),
    ({"max_length": 1.5}, "task.max_length=1.5"),
    ({"val_fraction": 0.0}, "task.val_fraction=0.0"),
    ({"val_fraction": 1}, "task.val_fraction=1"),
    ({"val_seed": "a"}, "task.val_seed='a'"),
    ({"source": "huggingface"}, "task.source='huggingface'"),
])
def test_bad_options_fail_first(tmp_path, kwargs, fragment):
    with pytest.raises(ConfigError) as err:
        build_text(data_dir=str(tmp_path / "nowhere"), **kwargs)  # checked before looking for data
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_tfds_absent(tree):
    with pytest.raises(DataError) as err:
        build_text(data_dir=str(tree), source="tfds")
    msg = str(err.value)
    assert "not installed" in msg and "pip install tensorflow-datasets" in msg and "task.source=aclimdb" in msg
    assert "\n" not in msg
    assert build_text(data_root=str(tree.parent), source="auto").info["sources"]["kind"] == "aclimdb_dir"


def fake_tfds(monkeypatch, root: Path, prepared: bool = True) -> list:
    """A stand-in tensorflow_datasets serving REVIEWS as tfds' imdb_reviews does (stripped bytes)."""
    data_dir = root / "imdb_reviews" / "plain_text" / "1.0.0"
    data_dir.mkdir(parents=True)
    if prepared:
        (data_dir / "dataset_info.json").write_text("{}")
        (data_dir / "imdb_reviews-train.tfrecord-00000-of-00001").write_bytes(b"records")
    calls = []

    class Builder:
        def __init__(self, name, data_dir_arg):
            calls.append((name, data_dir_arg))
            self.data_dir = str(data_dir)

        def as_dataset(self, split, shuffle_files):
            examples = [{"text": np.bytes_(body.strip()), "label": np.int64(LABEL[label])}
                        for (s, label), files in REVIEWS.items() if s == split for body in files.values()]
            return examples[::-1]  # tfds' own order differs from the tree's

    monkeypatch.setenv("TFDS_DATA_DIR", str(root))  # where tfds looks when no data_dir is given
    module = types.ModuleType("tensorflow_datasets")
    module.builder = lambda name, data_dir=None: Builder(name, data_dir)
    module.as_numpy = iter
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    return calls


def test_tfds_source_matches_aclimdb(tree, tmp_path, monkeypatch):
    reference = build_text(data_dir=str(tree), max_length=32)
    calls = fake_tfds(monkeypatch, tmp_path / "tfds")
    from_tfds = build_text(max_length=32, source="tfds")
    assert calls == [("imdb_reviews", None)] and from_tfds.info["sources"]["kind"] == "tfds"
    for split in ("train", "val", "test"):
        assert np.array_equal(getattr(from_tfds, split).inputs, getattr(reference, split).inputs)
        assert np.array_equal(getattr(from_tfds, split).labels, getattr(reference, split).labels)
    assert build_text(max_length=32).info["sources"]["kind"] == "tfds"  # auto prefers prepared tfds
    assert build_text(data_dir=str(tree), max_length=32).info["sources"]["kind"] == "aclimdb_dir"  # explicit dir wins


def test_tfds_not_prepared_never_downloads(tree, tmp_path, monkeypatch):
    calls = fake_tfds(monkeypatch, tmp_path / "tfds", prepared=False)
    with pytest.raises(DataError) as err:
        build_text(source="tfds")
    msg = str(err.value)
    assert "not prepared" in msg and "tfds build imdb_reviews" in msg and "\n" not in msg
    assert build_text(data_root=str(tree.parent)).info["sources"]["kind"] == "aclimdb_dir"  # auto falls back
    assert calls == []  # tfds.builder (which fetches metadata online for unprepared sets) was never called
