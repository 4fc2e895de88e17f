"""The Pathfinder loader reads LRA's release layout exactly (text metadata named .npy, 8-bit
grayscale PNGs), splits 80/10/10 as LRA, skips unreadable images, caches, and fails in one line."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lra_bench.data import pathfinder
from lra_bench.data.pathfinder import build_pathfinder, split_bounds, task_name
from lra_bench.errors import ConfigError, DataError
from tests.data.cache_checks import assert_corrupt_cache_is_rebuilt

DIFF = "curv_contour_length_14"
PER_FILE = 10


def write_tree(release: Path, resolution: int = 32, difficulty: str = DIFF, keys=(10, 2),
               empty=("imgs/2/sample_3.png",), missing=("imgs/10/sample_6.png",)) -> tuple[Path, list]:
    """LRA's `pathfinder<res>/<difficulty>/` under `release`; returns (its path, the samples
    [(rel, pixels, label)] in LRA's order: metadata files by number, lines in file order)."""
    root = release / f"pathfinder{resolution}" / difficulty
    (root / "metadata").mkdir(parents=True)
    rng = np.random.default_rng(0)
    samples = {}
    for k in keys:
        (root / "imgs" / str(k)).mkdir(parents=True)
        lines = []
        for n in range(PER_FILE):
            label = int(rng.integers(0, 2))
            rel = f"imgs/{k}/sample_{n}.png"
            pixels = rng.integers(0, 256, size=(resolution, resolution), dtype=np.uint8)
            if rel in empty:
                (root / rel).write_bytes(b"")
            elif rel not in missing:
                Image.fromarray(pixels, mode="L").save(root / rel)
            # the release's lines: subdir, filename, index, label, then generator parameters
            lines.append(f"imgs/{k} sample_{n}.png {n} {label} 1.0 14 2 2 0.5 1 1")
            samples.setdefault(k, []).append((rel, pixels, label))
        (root / "metadata" / f"{k}.npy").write_text("\n".join(lines) + "\n")
    ordered = [s for k in sorted(keys) for s in samples[k]]
    return root, ordered


def expected_splits(samples, skipped):
    """LRA: split the lines 80/10/10 first, then drop the unreadable images."""
    out = {}
    for split, (lo, hi) in split_bounds(len(samples)).items():
        kept = [s for s in samples[lo:hi] if s[0] not in skipped]
        out[split] = (np.stack([p.reshape(-1) for _, p, _ in kept]), [y for _, _, y in kept])
    return out


def test_split_bounds_are_tfds_percent_slices():
    assert split_bounds(20) == {"train": (0, 16), "val": (16, 18), "test": (18, 20)}
    assert split_bounds(200000) == {"train": (0, 160000), "val": (160000, 180000), "test": (180000, 200000)}
    assert split_bounds(7) == {"train": (0, 6), "val": (6, 6), "test": (6, 7)}  # round(5.6), round(6.3)


def test_task_names():
    assert (task_name(32), task_name(128), task_name(64)) == ("pathfinder", "pathx", "pathfinder64")


def test_round_trip_order_splits_and_skips(tmp_path, caplog):
    root, samples = write_tree(tmp_path / "lra_release")
    with caplog.at_level(logging.WARNING, logger="lra_bench.data.pathfinder"):
        data = build_pathfinder(data_dir=str(root), workers=1)
    expected = expected_splits(samples, {"imgs/2/sample_3.png", "imgs/10/sample_6.png"})
    assert (len(data.train), len(data.val), len(data.test)) == (15, 1, 2)  # the missing image was in val
    for split in ("train", "val", "test"):
        got = getattr(data, split)
        assert got.inputs.dtype == np.uint8 and got.inputs.shape[1] == 1024 and got.labels.dtype == np.int64
        assert np.array_equal(got.inputs, expected[split][0]) and got.labels.tolist() == expected[split][1]
    assert data.spec.name == "pathfinder" and data.spec.vocab_size == 256 and data.spec.max_length == 1024
    assert data.spec.num_classes == 2 and data.spec.pad_id is None
    assert data.info["source"]["samples"] == 20 and data.info["source"]["generated"] is False
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped 2 of 20" in warning and "sample_" in warning


@pytest.mark.parametrize("where", ["difficulty", "pathfinder32", "release", "data_root", "data_root_above"])
def test_located_from_data_dir_or_data_root(tmp_path, where):
    root, _ = write_tree(tmp_path / "top" / "lra_release")
    kwargs = {"difficulty": {"data_dir": root}, "pathfinder32": {"data_dir": root.parent},
              "release": {"data_dir": tmp_path / "top" / "lra_release"},
              "data_root": {"data_root": tmp_path / "top" / "lra_release"},
              "data_root_above": {"data_root": tmp_path / "top"}}[where]
    data = build_pathfinder(workers=1, **{k: str(v) for k, v in kwargs.items()})
    assert Path(data.info["source"]["path"]) == root.resolve() and len(data.test) == 2


def test_cache_reused_and_keyed(tmp_path, monkeypatch):
    root, _ = write_tree(tmp_path / "r")
    first = build_pathfinder(data_dir=str(root), workers=1)
    expected = np.array(first.train.inputs)

    def fail(*args, **kwargs):
        raise AssertionError("images decoded again despite a valid cache")

    with monkeypatch.context() as m:
        m.setattr(pathfinder, "read_images", fail)
        again = build_pathfinder(data_dir=str(root), workers=1)
    assert again.info["token_cache"] == first.info["token_cache"]
    assert np.array_equal(again.train.inputs, expected)
    img = root / "imgs" / "2" / "sample_0.png"
    Image.fromarray(np.zeros((32, 32), np.uint8), mode="L").save(img)
    os.utime(img, ns=(1, 1))
    changed = build_pathfinder(data_dir=str(root), workers=1)
    assert changed.info["token_cache"] != first.info["token_cache"]
    assert not changed.train.inputs[0].any()


def test_corrupt_cache_is_rebuilt(tmp_path):
    root, _ = write_tree(tmp_path / "r")
    assert_corrupt_cache_is_rebuilt(lambda: build_pathfinder(data_dir=str(root), workers=1), "test")


def test_process_pool_matches_in_process(tmp_path, monkeypatch):
    root, _ = write_tree(tmp_path / "r")
    one = build_pathfinder(data_dir=str(root), workers=1, cache_dir=str(tmp_path / "c1"))
    monkeypatch.setattr(pathfinder, "CHUNK", 3)
    pooled = build_pathfinder(data_dir=str(root), workers=2, cache_dir=str(tmp_path / "c2"))
    for split in ("train", "val", "test"):
        assert np.array_equal(getattr(one, split).inputs, getattr(pooled, split).inputs)
        assert np.array_equal(getattr(one, split).labels, getattr(pooled, split).labels)


def test_resolution_64_tree(tmp_path):
    root, samples = write_tree(tmp_path / "r", resolution=64, difficulty="curv_baseline", empty=(), missing=())
    data = build_pathfinder(resolution=64, difficulty="curv_baseline", data_root=str(tmp_path / "r"), workers=1)
    assert data.spec.name == "pathfinder64" and data.spec.max_length == 4096 and data.train.inputs.shape == (16, 4096)
    assert np.array_equal(data.val.inputs[1], samples[17][1].reshape(-1))


def test_wrong_size_or_mode_fails_naming_the_image(tmp_path):
    root, _ = write_tree(tmp_path / "r")
    bad = root / "imgs" / "10" / "sample_1.png"
    Image.fromarray(np.zeros((64, 64), np.uint8), mode="L").save(bad)
    with pytest.raises(DataError) as err:
        build_pathfinder(data_dir=str(root), workers=1)
    assert str(bad) in str(err.value) and "64x64, expected 32x32" in str(err.value) and "\n" not in str(err.value)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8), mode="RGB").save(bad)
    with pytest.raises(DataError, match="RGB PNG, expected 8-bit grayscale"):
        build_pathfinder(data_dir=str(root), workers=1)
    assert not list((tmp_path / "cache").rglob("*.npy"))


@pytest.mark.parametrize("line,fragment", [
    ("imgs/2 sample_0.png 0", "is not '<subdir> <filename> <index> <label 0/1>'"),
    ("imgs/2 sample_0.png 0 2", "is not '<subdir> <filename> <index> <label 0/1>'"),
])
def test_bad_metadata_line(tmp_path, line, fragment):
    root, _ = write_tree(tmp_path / "r")
    meta = root / "metadata" / "2.npy"
    meta.write_text(meta.read_text() + line + "\n")
    with pytest.raises(DataError) as err:
        build_pathfinder(data_dir=str(root), workers=1)
    assert fragment in str(err.value) and f"{meta}:{PER_FILE + 1}" in str(err.value)


def test_no_metadata_files_and_unreadable_everything(tmp_path):
    root, _ = write_tree(tmp_path / "r")
    for f in (root / "metadata").iterdir():
        f.rename(f.with_suffix(".txt"))
    with pytest.raises(DataError, match="holds no <k>.npy files"):
        build_pathfinder(data_dir=str(root))
    root2, _ = write_tree(tmp_path / "s", empty=(), missing=tuple(f"imgs/10/sample_{n}.png" for n in range(10)))
    with pytest.raises(DataError, match="no readable image in the val/test split"):
        build_pathfinder(data_dir=str(root2), workers=1)


def test_missing_data_names_paths_and_fix(tmp_path):
    with pytest.raises(DataError) as err:
        build_pathfinder(data_dir=str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "pathfinder32" / DIFF) in msg and "lra_release" in msg
    assert "leave both unset to generate" in msg and "\n" not in msg
    with pytest.raises(DataError, match="pathx data not found"):
        build_pathfinder(resolution=128, data_root=str(tmp_path))


@pytest.mark.parametrize("kwargs,fragment", [
    ({"resolution": 48, "data_dir": "/nonexistent"}, "task.resolution=48 has no LRA release data"),
    ({"resolution": 30}, "positive multiple of 4"),
    ({"resolution": 0}, "positive multiple of 4"),
    ({"resolution": "32"}, "must be an integer"),
    ({"difficulty": "curv_contour_length_20", "data_dir": "/nonexistent"}, "task.difficulty"),
    ({"workers": 0, "data_dir": "/nonexistent"}, "task.workers=0"),
])
def test_bad_options_fail_before_any_file(kwargs, fragment):
    with pytest.raises(ConfigError) as err:
        build_pathfinder(**kwargs)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_generated_when_no_data_given(tmp_path):
    pg = pytest.importorskip("lra_bench.data.pathfinder_generator")
    gen = {"num_samples": 20, "seed": 3}
    a = build_pathfinder(generate=gen, workers=1)
    b = build_pathfinder(generate=gen, workers=1)
    assert a.info["source"]["generated"] is True and a.info["source"]["path"] == b.info["source"]["path"]
    assert a.info["token_cache"] == b.info["token_cache"]
    assert len(a.train) + len(a.val) + len(a.test) <= 20 and len(a.train) >= 14
    assert a.train.inputs.shape[1] == 1024 and set(np.unique(a.train.labels)) <= {0, 1}
    path = Path(a.info["source"]["path"])
    assert path.parts[-2:] == ("pathfinder32", DIFF) and "generated" in path.parts
    with pytest.raises(ConfigError, match="task.generate"):
        build_pathfinder(generate={"num_samples": 20, "seeed": 1})
    with pytest.raises(ConfigError, match="task.generate.contour_length"):
        build_pathfinder(generate={"num_samples": 20, "contour_length": pg.DIFFICULTY_LENGTHS[DIFF] + 1})
