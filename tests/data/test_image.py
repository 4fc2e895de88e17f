"""The Image (CIFAR-10) loader reads the official python pickles and tar.gz exactly, converts
to grayscale with TF's arithmetic, splits as LRA, caches, and fails in one line."""
from __future__ import annotations

import importlib.machinery
import io
import pickle
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest

from lra_bench.data import image
from lra_bench.data.image import build_image, rgb_to_grayscale
from lra_bench.errors import ConfigError, DataError
from tests.data.cache_checks import assert_corrupt_cache_is_rebuilt

PER_BATCH = 20  # the loader must not assume CIFAR's 10000 per batch

# RGB -> gray by hand with TF's formula: trunc((0.2989 R + 0.5870 G + 0.1140 B) / 255 * 255.5).
PALETTE = {
    (0, 0, 0): 0,
    (255, 255, 255): 255,   # 0.9999 * 255.5 = 255.47
    (255, 0, 0): 76,        # 0.2989 * 255.5 = 76.37
    (0, 255, 0): 149,       # 0.5870 * 255.5 = 149.98 (rounding would give 150)
    (0, 0, 255): 29,        # 0.1140 * 255.5 = 29.13
    (100, 150, 200): 141,   # 140.74 / 255 * 255.5 = 141.02
    (10, 20, 30): 18,       # 18.149 / 255 * 255.5 = 18.18
    (200, 100, 50): 124,    # 124.18 / 255 * 255.5 = 124.42
}
COLORS = np.array(list(PALETTE), dtype=np.uint8)
GRAYS = np.array(list(PALETTE.values()), dtype=np.uint8)


def make_batch(seed: int, n: int = PER_BATCH) -> tuple[np.ndarray, list[int], np.ndarray]:
    """(CIFAR rows (n, 3072): R, G, B planes of 32x32 row-major, labels, expected gray (n, 1024))."""
    idx = np.random.default_rng(seed).integers(0, len(COLORS), size=(n, 32, 32))
    rgb = COLORS[idx]                                   # (n, 32, 32, 3)
    rows = rgb.transpose(0, 3, 1, 2).reshape(n, 3072)   # planes, each row-major
    labels = [(seed + i) % 10 for i in range(n)]
    return np.ascontiguousarray(rows), labels, GRAYS[idx].reshape(n, 1024)


def batch_bytes(rows: np.ndarray, labels: list[int], name: str, protocol: int = 2) -> bytes:
    """A batch pickled as the official files are: a dict with bytes keys. Protocol 2 ones name
    numpy.core (as files pickled by numpy 1.x do, the official ones included)."""
    data = pickle.dumps({b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                         b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}, protocol=protocol)
    return data.replace(b"numpy._core.", b"numpy.core.") if protocol == 2 else data


def write_cifar(root: Path, archive: bool = False) -> dict:
    """Write cifar-10-batches-py/ (or cifar-10-python.tar.gz) under root; return the expected data."""
    files, expected = {}, {"train": [], "test": None}
    for i, name in enumerate(image.TRAIN_FILES + (image.TEST_FILE,)):
        rows, labels, gray = make_batch(seed=i)
        if i == 0:  # pixel (row 0, col 1) red, (row 1, col 0) green: fixes plane and row-major order
            rows[0, [1, 1024 + 1, 2048 + 1]] = (255, 0, 0)
            rows[0, [32, 1024 + 32, 2048 + 32]] = (0, 255, 0)
            gray[0, 1], gray[0, 32] = 76, 149
        files[name] = batch_bytes(rows, labels, name, protocol=2 if i % 2 else pickle.HIGHEST_PROTOCOL)
        if name == image.TEST_FILE:
            expected["test"] = (gray, labels)
        else:
            expected["train"].append((gray, labels))
    files["batches.meta"] = pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2)
    root.mkdir(parents=True, exist_ok=True)
    if archive:
        with tarfile.open(root / image.ARCHIVE, "w:gz") as tar:
            for name in ("test_batch", "data_batch_3", "batches.meta", "data_batch_1", "data_batch_5",
                         "data_batch_2", "data_batch_4"):  # the real archive is not in order either
                info = tarfile.TarInfo(f"{image.FOLDER}/{name}")
                info.size = len(files[name])
                tar.addfile(info, io.BytesIO(files[name]))
    else:
        folder = root / image.FOLDER
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
    gray = np.concatenate([g for g, _ in expected["train"]])
    labels = sum((y for _, y in expected["train"]), [])
    return {"train": (gray, labels), "test": expected["test"]}


def test_grayscale_is_tfs_formula():
    assert rgb_to_grayscale(COLORS).tolist() == GRAYS.tolist()
    assert rgb_to_grayscale(np.array([[[1, 1, 1]]], dtype=np.uint8)).tolist() == [[1]]


def test_pickle_folder_round_trip(tmp_path):
    expected = write_cifar(tmp_path / "d")
    data = build_image(data_dir=str(tmp_path / "d"), source="pickle")
    gray, labels = expected["train"]
    assert (len(data.train), len(data.val), len(data.test)) == (90, 10, 20)
    assert data.train.inputs.shape == (90, 1024) and data.train.inputs.dtype == np.uint8
    assert data.train.labels.dtype == np.int64
    assert np.array_equal(data.train.inputs, gray[:90]) and np.array_equal(data.val.inputs, gray[90:])
    assert data.train.labels.tolist() == labels[:90] and data.val.labels.tolist() == labels[90:]
    assert np.array_equal(data.test.inputs, expected["test"][0]) and data.test.labels.tolist() == expected["test"][1]
    assert data.train.inputs[0, 1] == 76 and data.train.inputs[0, 32] == 149
    assert data.spec.name == "image" and data.spec.vocab_size == 256 and data.spec.max_length == 1024
    assert data.spec.num_classes == 10 and data.spec.pad_id is None
    x, y = data.val.batch(np.array([0, 9]))
    assert x.shape == (2, 1024) and y.tolist() == [labels[90], labels[99]]


def test_tar_gz_equals_folder(tmp_path):
    write_cifar(tmp_path / "folder")
    write_cifar(tmp_path / "archive", archive=True)
    a = build_image(data_dir=str(tmp_path / "folder" / image.FOLDER))
    for where in (tmp_path / "archive", tmp_path / "archive" / image.ARCHIVE):
        b = build_image(data_dir=str(where))
        assert b.info["source"]["path"].endswith(image.ARCHIVE)
        for s in ("train", "val", "test"):
            assert np.array_equal(getattr(a, s).inputs, getattr(b, s).inputs)
            assert np.array_equal(getattr(a, s).labels, getattr(b, s).labels)


def test_data_root_and_folder_preferred_over_archive(tmp_path):
    write_cifar(tmp_path / "root" / "lra_release")
    write_cifar(tmp_path / "root" / "lra_release", archive=True)
    data = build_image(data_root=str(tmp_path / "root"))
    assert data.info["source"]["path"].endswith(image.FOLDER) and len(data.test) == 20


def test_val_fraction_and_cache(tmp_path):
    write_cifar(tmp_path / "d")
    first = build_image(data_dir=str(tmp_path / "d"))
    again = build_image(data_dir=str(tmp_path / "d"))
    assert first.info["token_cache"] == again.info["token_cache"]
    other = build_image(data_dir=str(tmp_path / "d"), val_fraction=0.25)
    assert other.info["token_cache"] != first.info["token_cache"] and (len(other.train), len(other.val)) == (75, 25)


def test_corrupt_cache_is_rebuilt(tmp_path):
    write_cifar(tmp_path / "d")
    assert_corrupt_cache_is_rebuilt(lambda: build_image(data_dir=str(tmp_path / "d")), "val")


@pytest.mark.parametrize("content,fragment", [
    (b"not a pickle", "is not a readable CIFAR-10 batch"),
    (pickle.dumps({b"data": np.zeros((20, 100), np.uint8), b"labels": [0] * 20}), "expected (N, 3072) uint8"),
    (pickle.dumps({b"data": np.zeros((20, 3072), np.uint8), b"labels": [0] * 19}), "19 labels for 20 images"),
    (pickle.dumps({b"data": np.zeros((20, 3072), np.uint8), b"labels": [10] * 20}), "labels outside 0-9"),
    (pickle.dumps({b"labels": [0]}), "lacks the b'data' and b'labels'"),
    (pickle.dumps(print), "refusing to load builtins.print"),
])
def test_bad_batch_fails_in_one_line_naming_the_file(tmp_path, content, fragment):
    write_cifar(tmp_path / "d")
    (tmp_path / "d" / image.FOLDER / "data_batch_3").write_bytes(content)
    with pytest.raises(DataError) as err:
        build_image(data_dir=str(tmp_path / "d"))
    msg = str(err.value)
    assert fragment in msg and "data_batch_3" in msg and "\n" not in msg
    assert not list((tmp_path / "cache").rglob("*.npy"))


def test_bad_archive_and_missing_batch(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / image.ARCHIVE).write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="is not a readable tar.gz"):
        build_image(data_dir=str(tmp_path / "a"))
    write_cifar(tmp_path / "d")
    (tmp_path / "d" / image.FOLDER / "test_batch").unlink()
    with pytest.raises(DataError, match="lacks test_batch"):
        build_image(data_dir=str(tmp_path / "d"))


def test_missing_data_names_paths_and_fix(tmp_path):
    with pytest.raises(DataError) as err:
        build_image(data_dir=str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / image.FOLDER) in msg and str(tmp_path / "nowhere" / image.ARCHIVE) in msg
    assert image.DOWNLOAD_URL in msg and "task.data_dir" in msg and "\n" not in msg
    with pytest.raises(DataError, match="task.data_dir and paths.data_root are unset"):
        build_image()


def test_bad_options(tmp_path):
    with pytest.raises(ConfigError, match="task.source"):
        build_image(source="torchvision")
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ConfigError, match="task.val_fraction"):
            build_image(val_fraction=bad)


def _fake_tfds(monkeypatch, data_dir: Path, train, test) -> None:
    """A stand-in tensorflow_datasets exposing just what the loader uses."""
    class Builder:
        version = "3.0.2"

        def __init__(self, name, data_dir=None):
            assert name == "cifar10"
            self.data_dir = str(data_dir_default if data_dir is None else data_dir)

        def as_dataset(self, split, batch_size, shuffle_files):
            assert batch_size == -1 and shuffle_files is False
            images, labels = {"train": train, "test": test}[split]
            return {"image": images, "label": labels}

    data_dir_default = data_dir
    mod = types.ModuleType("tensorflow_datasets")
    mod.__spec__ = importlib.machinery.ModuleSpec("tensorflow_datasets", None)
    mod.builder = Builder
    mod.as_numpy = lambda ds: ds
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", mod)


def test_tfds_source_when_prepared(tmp_path, monkeypatch):
    rows, labels, gray = make_batch(seed=7, n=30)
    rgb = rows.reshape(30, 3, 32, 32).transpose(0, 2, 3, 1)
    tfds_dir = tmp_path / "tfds" / "cifar10" / "3.0.2"
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    _fake_tfds(monkeypatch, tfds_dir, (rgb, np.array(labels)), (rgb[:5], np.array(labels[:5])))
    write_cifar(tmp_path / "d")
    # not prepared: auto falls back to the pickles, tfds fails in one line
    assert build_image(data_dir=str(tmp_path / "d")).info["source"]["kind"] == "pickle"
    with pytest.raises(DataError, match="task.source=tfds but tfds cifar10 is not prepared"):
        build_image(source="tfds")
    tfds_dir.mkdir(parents=True)
    (tfds_dir / "dataset_info.json").write_text("{}")
    assert build_image(data_dir=str(tmp_path / "d")).info["source"]["kind"] == "pickle"  # a named folder wins
    data = build_image()
    assert data.info["source"]["kind"] == "tfds"
    assert (len(data.train), len(data.val), len(data.test)) == (27, 3, 5)
    assert np.array_equal(data.val.inputs, gray[27:]) and data.val.labels.tolist() == labels[27:]


def test_tfds_not_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # `import tensorflow_datasets` fails
    with pytest.raises(DataError, match="tensorflow-datasets is not installed"):
        build_image(source="tfds")
