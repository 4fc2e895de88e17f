"""Tests for the offline Pathfinder / Path-X generator (lra_bench.data.pathfinder_generator)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from lra_bench.data import pathfinder_generator as pg
from lra_bench.data.pathfinder_generator import (DIFFICULTY_LENGTHS, GENERATOR_VERSION, PathfinderGenConfig,
                                                 balanced_labels, render_sample, write_pathfinder)
from lra_bench.errors import ConfigError


def _samples(resolution: int, contour_length: int, n: int, seed: int = 0, **knobs):
    gen = PathfinderGenConfig(resolution=resolution, contour_length=contour_length, **knobs)
    gen.validate()
    rng = np.random.default_rng(seed)
    return gen, [(label, *render_sample(rng, gen, label)) for label in [1, 0] * (n // 2)]


def test_constants():
    assert isinstance(GENERATOR_VERSION, int)
    assert DIFFICULTY_LENGTHS == {"curv_baseline": 6, "curv_contour_length_9": 9, "curv_contour_length_14": 14}
    PathfinderGenConfig().validate()
    assert (PathfinderGenConfig().num_samples, PathfinderGenConfig().resolution) == (20000, 32)


@pytest.mark.parametrize("resolution", [16, 32, 128])
def test_images_have_shape_dtype_and_ink(resolution):
    _, samples = _samples(resolution, 14, 6, seed=resolution)
    for _, image, geo in samples:
        assert image.shape == (resolution, resolution) and image.dtype == np.uint8
        assert image.max() >= 200
        assert 0.03 < (image > 64).mean() < 0.6  # dashed contours: neither blank nor filled
        assert geo["num_distractors"] >= 1


@pytest.mark.parametrize("resolution,contour_length", [(32, 6), (32, 14), (128, 9), (16, 14)])
def test_markers_sit_on_contour_ends(resolution, contour_length):
    gen, samples = _samples(resolution, contour_length, 24, seed=7)
    p = pg._params(gen)
    for label, image, geo in samples:
        contours, markers = geo["contours"], geo["markers"]
        i, j = geo["marker_contours"]
        assert markers.shape == (2, 2) and geo["label"] == label
        assert len(contours) == 2 + geo["num_distractors"]
        for c in contours[:2]:
            assert c.shape == (contour_length + 1, 2)
        for c in contours:  # unit-length steps (one paddle + gap each)
            np.testing.assert_allclose(np.linalg.norm(np.diff(c, axis=0), axis=1), p.pitch, rtol=1e-9)
            assert (c >= 0).all() and (c <= resolution).all()
        if label == 1:
            assert i == j
            ends = {tuple(contours[i][0]), tuple(contours[i][-1])}
            assert {tuple(m) for m in markers} == ends  # the two markers are the two distinct ends
        else:
            assert i != j
        for m, c in zip(markers, (i, j)):
            d = min(np.linalg.norm(m - contours[c][0]), np.linalg.norm(m - contours[c][-1]))
            assert d < 1e-9
            for k, other in enumerate(contours):  # no marker on an end of any other contour
                if k != c and geo["relaxed"] == 0:
                    assert np.linalg.norm(other - m, axis=1).min() > p.marker_radius
        # markers are drawn: bright at their centres
        for x, y in markers:
            assert image[int(y), int(x)] >= 200


def _paddle_points(contour: np.ndarray, p) -> np.ndarray:
    pts = []
    for a, b in zip(contour[:-1], contour[1:]):
        d = (b - a) / p.pitch
        s, e = a + d * p.gap / 2, b - d * p.gap / 2
        pts.append(s + (e - s) * np.linspace(0, 1, 21)[:, None])
    return np.concatenate(pts)


@pytest.mark.parametrize("resolution", [32, 128])
def test_contours_keep_apart(resolution):
    gen, samples = _samples(resolution, 14, 16, seed=3)
    p = pg._params(gen)
    slack = 1.5 * p.cell  # the occupancy grid is exact to about a cell
    for _, _, geo in samples:
        assert geo["relaxed"] == 0
        pts = [_paddle_points(c, p) for c in geo["contours"]]
        for a in range(len(pts)):
            for b in range(a + 1, len(pts)):
                gap = np.sqrt(((pts[a][:, None] - pts[b][None]) ** 2).sum(-1)).min()
                assert gap >= p.thickness + p.clearance - slack


def test_marker_distance_does_not_tell_the_label():
    _, samples = _samples(32, 14, 200, seed=11)
    dist = {0: [], 1: []}
    for label, _, geo in samples:
        dist[label].append(np.linalg.norm(geo["markers"][0] - geo["markers"][1]))
    pos, neg = np.array(dist[1]), np.array(dist[0])
    auc = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert 0.4 < auc < 0.6


def test_render_is_deterministic_and_label_checked():
    gen = PathfinderGenConfig(resolution=32, contour_length=9)
    a = render_sample(np.random.default_rng(5), gen, 1)
    b = render_sample(np.random.default_rng(5), gen, 1)
    assert np.array_equal(a[0], b[0])
    with pytest.raises(ValueError):
        render_sample(np.random.default_rng(5), gen, 2)


@pytest.mark.parametrize("knobs", [
    dict(resolution=16, contour_length=64),  # cannot fit: spacing, then the turn bound are relaxed
    dict(resolution=32, contour_length=40, max_turn_deg=0),
    dict(resolution=32, contour_length=6, max_turn_deg=180, num_distractors=0),
])
def test_extreme_settings_terminate(knobs):
    _, samples = _samples(n=2, **knobs)
    for _, image, geo in samples:
        assert image.max() >= 200 and geo["relaxed"] in (0, 1, 2)


def test_balanced_labels():
    gen = PathfinderGenConfig(num_samples=1000, seed=3)
    labels = balanced_labels(gen)
    assert labels.sum() == 500 and set(labels.tolist()) == {0, 1}
    assert not (labels[:500] == 1).all()  # shuffled
    assert np.array_equal(labels, balanced_labels(gen))
    assert not np.array_equal(labels, balanced_labels(dataclasses.replace(gen, seed=4)))


def _read_set(root):
    """Parse a written set as LRA's input pipeline does; return {(k, n): (label, pixels)}."""
    out = {}
    metas = sorted((root / "metadata").iterdir(), key=lambda f: int(f.stem))
    assert [f.name for f in metas] == [f"{k}.npy" for k in range(len(metas))]
    for meta in metas:
        text = meta.read_text()
        assert text.endswith("\n")
        for line in text.split("\n")[:-1]:
            subdir, name, index, label = line.split(" ")
            assert subdir == f"imgs/{meta.stem}" and name == f"sample_{index}.png" and label in ("0", "1")
            with Image.open(root / subdir / name) as im:
                assert im.mode == "L" and im.format == "PNG"
                out[(int(meta.stem), int(index))] = (int(label), np.asarray(im))
    return out


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(pg, "CHUNK_SIZE", 16)
    monkeypatch.setattr(pg, "IMAGES_PER_DIR", 25)


def test_write_layout_balance_and_determinism(tmp_path, small_chunks):
    gen = PathfinderGenConfig(num_samples=60, resolution=32, contour_length=6, seed=2)
    root = write_pathfinder(gen, tmp_path / "a", "curv_baseline", workers=1)
    assert root == tmp_path / "a" / "pathfinder32" / "curv_baseline"
    assert sorted(p.name for p in (tmp_path / "a" / "pathfinder32").iterdir()) == ["curv_baseline"]  # no temp
    assert sorted(p.name for p in root.iterdir()) == ["imgs", "metadata"]
    data = _read_set(root)
    assert sorted(data) == [(k, n) for k in range(3) for n in range(25 if k < 2 else 10)]
    labels = [data[k, n][0] for k, n in sorted(data)]
    assert labels == balanced_labels(gen).tolist() and sum(labels) == 30
    assert all(img.shape == (32, 32) and img.max() >= 200 for _, img in data.values())
    assert len({img.tobytes() for _, img in data.values()}) == 60

    root2 = write_pathfinder(gen, tmp_path / "b", "curv_baseline", workers=2)
    files = sorted(f.relative_to(root) for f in root.rglob("*") if f.is_file())
    assert files == sorted(f.relative_to(root2) for f in root2.rglob("*") if f.is_file())
    for f in files:
        assert (root / f).read_bytes() == (root2 / f).read_bytes(), f

    # rewriting in place replaces the set; another seed or difficulty gives other images
    write_pathfinder(dataclasses.replace(gen, seed=3), tmp_path / "a", "curv_baseline", workers=1)
    assert (root / "imgs/0/sample_0.png").read_bytes() != (root2 / "imgs/0/sample_0.png").read_bytes()
    assert sorted(p.name for p in (tmp_path / "a" / "pathfinder32").iterdir()) == ["curv_baseline"]


def test_write_128(tmp_path, small_chunks):
    gen = PathfinderGenConfig(num_samples=4, resolution=128, contour_length=14)
    root = write_pathfinder(gen, tmp_path, "curv_contour_length_14", workers=1, progress=True)
    assert root == tmp_path / "pathfinder128" / "curv_contour_length_14"
    data = _read_set(root)
    assert len(data) == 4 and all(img.shape == (128, 128) for _, img in data.values())


def test_crash_leaves_nothing_behind(tmp_path, small_chunks, monkeypatch):
    gen = PathfinderGenConfig(num_samples=40, contour_length=6)
    calls = []

    def flaky(rng, g, label):
        calls.append(label)
        if len(calls) > 20:
            raise RuntimeError("boom")
        return render_sample(rng, g, label)

    monkeypatch.setattr(pg, "render_sample", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        write_pathfinder(gen, tmp_path, "curv_baseline", workers=1)
    assert list((tmp_path / "pathfinder32").iterdir()) == []


@pytest.mark.parametrize("changes,match", [
    (dict(num_samples=0), "task.generate.num_samples=0"),
    (dict(num_samples=7), "task.generate.num_samples=7"),
    (dict(num_samples=2.0), "task.generate.num_samples"),
    (dict(resolution=8), "task.resolution=8"),
    (dict(resolution=True), "task.resolution"),
    (dict(contour_length=1), "task.difficulty"),
    (dict(contour_length=1000), "task.difficulty"),
    (dict(seed=-1), "task.generate.seed"),
    (dict(num_distractors=-1), "task.generate.num_distractors"),
    (dict(distractor_length=0), "task.generate.distractor_length"),
    (dict(paddle_length=0.0), "task.generate.paddle_length"),
    (dict(paddle_thickness=-1.0), "task.generate.paddle_thickness"),
    (dict(marker_radius=float("nan")), "task.generate.marker_radius"),
    (dict(clearance=-0.5), "task.generate.clearance"),
    (dict(max_turn_deg=200), "task.generate.max_turn_deg"),
    (dict(supersample=0), "task.generate.supersample"),
    (dict(paddle_length=16.0), "too long"),
])
def test_validate_errors(changes, match):
    gen = dataclasses.replace(PathfinderGenConfig(), **changes)
    with pytest.raises(ConfigError, match=match) as info:
        gen.validate()
    assert "\n" not in str(info.value)


def test_write_rejects_bad_arguments(tmp_path):
    gen = PathfinderGenConfig(num_samples=2, contour_length=14)
    with pytest.raises(ConfigError, match="task.difficulty=curv_baseline"):
        write_pathfinder(gen, tmp_path, "curv_baseline")
    with pytest.raises(ConfigError, match="task.difficulty"):
        write_pathfinder(gen, tmp_path, "../x")
    with pytest.raises(ConfigError, match="workers"):
        write_pathfinder(gen, tmp_path, "curv_contour_length_14", workers=0)
    with pytest.raises(ConfigError, match="num_samples"):
        write_pathfinder(dataclasses.replace(gen, num_samples=3), tmp_path, "curv_contour_length_14")
