"""lra_bench.report.plots: PNGs written atomically and deterministically, without pyplot."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

from lra_bench.report import plots  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _summary() -> pd.DataFrame:
    return pd.DataFrame({
        "attn": ["softmax", "lst", "performer", "linformer"],
        "steps_per_s": [3.1, 9.5, 8.0, 7.2],
        "avg_accuracy": [54.4, 55.1, 51.4, 51.1],
        "peak_memory_bytes": [9.5e9, 1.2e9, 1.4e9, 1.5e9],
    })


def _acc() -> pd.DataFrame:
    rows = []
    for i, attn in enumerate(["softmax", "lst"]):
        for j, task in enumerate(["pathfinder", "listops", "text"]):  # deliberately not LRA order
            rows.append((attn, task, 40.0 + 10 * j + i, 1.5 if i == 0 else np.nan, 3 if i == 0 else 1))
    return pd.DataFrame(rows, columns=["attn", "task", "mean", "std", "n"])


def _speed() -> pd.DataFrame:
    rows = []
    for attn, p in (("softmax", 2.0), ("lst", 1.0)):
        for length in (256, 512, 1024):
            rows.append((attn, length, 100.0 / (length / 256) ** p, 1e6 * (length / 256) ** p))
    return pd.DataFrame(rows, columns=["attn", "length", "steps_per_s", "peak_memory_bytes"])


CASES = [
    (plots.bubble_chart, _summary, (8.0, 6.0)),
    (plots.accuracy_per_task, _acc, (8.0, 5.0)),  # 2 attns x 3 tasks: the minimum width
    (plots.scaling, _speed, (12.0, 5.0)),
]
IDS = ["bubble_chart", "accuracy_per_task", "scaling"]


def _png(path: Path) -> Image.Image:
    assert path.is_file() and path.stat().st_size > 0
    img = Image.open(path)
    img.load()
    assert img.format == "PNG"
    return img


@pytest.mark.parametrize("fn,make,figsize", CASES, ids=IDS)
def test_writes_png_of_expected_shape(tmp_path, fn, make, figsize):
    out = tmp_path / "sub" / "fig.png"  # parent created on demand
    assert fn(make(), out) == out
    img = _png(out)
    w, h = img.size
    assert w / h == pytest.approx(figsize[0] / figsize[1], rel=0.01)
    assert (w, h) == (round(figsize[0] * plots.DPI), round(figsize[1] * plots.DPI))
    assert sorted(p.name for p in out.parent.iterdir()) == ["fig.png"]  # no temp file left


@pytest.mark.parametrize("fn,make,figsize", CASES, ids=IDS)
def test_deterministic_and_no_software_stamp(tmp_path, fn, make, figsize):
    a, b = fn(make(), tmp_path / "a.png"), fn(make(), tmp_path / "b.png")
    assert a.read_bytes() == b.read_bytes()
    assert "Software" not in _png(a).info


@pytest.mark.parametrize("fn,make,figsize", CASES, ids=IDS)
def test_overwrites_existing_file(tmp_path, fn, make, figsize):
    out = tmp_path / "fig.png"
    out.write_bytes(b"old")
    fn(make(), out)
    _png(out)


def test_bubble_chart_skips_nan_rows(tmp_path):
    clean = plots.bubble_chart(_summary(), tmp_path / "clean.png")
    dirty = pd.concat([_summary(), pd.DataFrame({
        "attn": ["nospeed", "noacc", "nomem"],
        "steps_per_s": [np.nan, 5.0, 5.0],
        "avg_accuracy": [50.0, np.nan, 50.0],
        "peak_memory_bytes": [1e9, 1e9, np.nan],
    })], ignore_index=True)
    assert plots.bubble_chart(dirty, tmp_path / "dirty.png").read_bytes() == clean.read_bytes()


def test_accuracy_per_task_skips_nan_rows(tmp_path):
    clean = plots.accuracy_per_task(_acc(), tmp_path / "clean.png")
    extra = pd.DataFrame([("broken", "listops", np.nan, np.nan, 0), ("lst", None, 50.0, 1.0, 2)],
                         columns=["attn", "task", "mean", "std", "n"])
    dirty = pd.concat([_acc(), extra], ignore_index=True)
    assert plots.accuracy_per_task(dirty, tmp_path / "dirty.png").read_bytes() == clean.read_bytes()


def test_accuracy_per_task_order_is_lra_order_not_input_order(tmp_path):
    acc = _acc()
    shuffled = acc.iloc[::-1].reset_index(drop=True)
    a = plots.accuracy_per_task(acc, tmp_path / "a.png")
    b = plots.accuracy_per_task(shuffled, tmp_path / "b.png")
    assert a.read_bytes() == b.read_bytes()
    assert plots._task_order(["pathx", "custom", "text", "listops", "image"]) == \
        ["listops", "text", "image", "pathx", "custom"]


def test_scaling_skips_nan_rows(tmp_path):
    clean = plots.scaling(_speed(), tmp_path / "clean.png")
    extra = pd.DataFrame([("broken", 256, np.nan, np.nan), ("lst", np.nan, 5.0, 1e6), ("lst", 4096, 0.0, np.nan)],
                         columns=["attn", "length", "steps_per_s", "peak_memory_bytes"])
    dirty = pd.concat([_speed(), extra], ignore_index=True)
    assert plots.scaling(dirty, tmp_path / "dirty.png").read_bytes() == clean.read_bytes()


def test_scaling_without_memory_figures(tmp_path):
    """CPU runs may have no memory number: the memory panel says so, the figure is still drawn."""
    speed = _speed().assign(peak_memory_bytes=np.nan)
    _png(plots.scaling(speed, tmp_path / "fig.png"))


def _empty(columns) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c in ("attn", "task") else float) for c in columns})


BAD = {
    "bubble_chart": (plots.bubble_chart, ["attn", "steps_per_s", "avg_accuracy", "peak_memory_bytes"]),
    "accuracy_per_task": (plots.accuracy_per_task, ["attn", "task", "mean", "std", "n"]),
    "scaling": (plots.scaling, ["attn", "length", "steps_per_s", "peak_memory_bytes"]),
}


@pytest.mark.parametrize("name", list(BAD))
@pytest.mark.parametrize("frame", ["empty", "no_columns", "all_nan", "missing_column"])
def test_unplottable_frame_raises_one_line_and_writes_nothing(tmp_path, name, frame):
    fn, cols = BAD[name]
    if frame == "empty":
        df = _empty(cols)
    elif frame == "no_columns":
        df = pd.DataFrame()
    elif frame == "all_nan":
        df = pd.DataFrame({c: ["softmax"] if c == "attn" else ["listops"] if c == "task" else [np.nan]
                           for c in cols})
    else:
        df = pd.DataFrame({c: ["softmax"] if c == "attn" else ["listops"] if c == "task" else [1.0]
                           for c in cols[:-1]})
    with pytest.raises(ValueError) as info:
        fn(df, tmp_path / "fig.png")
    msg = str(info.value)
    assert msg and "\n" not in msg and name in msg
    assert list(tmp_path.iterdir()) == []


def test_duplicates_raise(tmp_path):
    with pytest.raises(ValueError, match="one row per attn"):
        plots.bubble_chart(pd.concat([_summary(), _summary().iloc[:1]]), tmp_path / "b.png")
    with pytest.raises(ValueError, match=r"one row per \(attn, task\)"):
        plots.accuracy_per_task(pd.concat([_acc(), _acc().iloc[:1]]), tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


def test_scaling_averages_repeated_points(tmp_path):
    """Repeated (attn, length) rows are merged (geometric mean), not drawn as zig-zags."""
    once = plots.scaling(_speed(), tmp_path / "once.png")
    twice = plots.scaling(pd.concat([_speed(), _speed()]), tmp_path / "twice.png")
    assert once.read_bytes() == twice.read_bytes()


@pytest.mark.parametrize("fn,make,figsize", CASES, ids=IDS)
def test_failure_while_saving_leaves_destination_alone(tmp_path, monkeypatch, fn, make, figsize):
    from matplotlib.figure import Figure

    def boom(self, *args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Figure, "savefig", boom)
    out = tmp_path / "fig.png"
    with pytest.raises(RuntimeError, match="disk on fire"):
        fn(make(), out)
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        fn(make(), out)
    assert out.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [out]


def test_styles_baseline_distinct_and_stable():
    names = ["softmax", "lst", "performer", "linformer", "nystrom", "local", "bigbird", "reformer", "sinkhorn",
             "longformer", "synthesizer"]
    styles = plots._styles(names)
    assert styles["softmax"] == {"color": "black", "marker": "*"}
    assert list(styles)[0] == "softmax"
    others = [styles[n] for n in names[1:]]
    first = others[:len(plots._PALETTE)]
    assert len({s["color"] for s in first}) == len(first)  # distinct colours while the palette lasts
    assert len({(s["color"], s["marker"]) for s in others}) == len(others)  # then distinct pairs
    assert all(s["color"] != "black" for s in others)
    # Same set in a different order (and via a different figure): same styles.
    assert plots._styles(list(reversed(names))) == styles


def test_pyplot_never_imported(tmp_path):
    code = (
        "import sys, matplotlib\n"
        "backend = dict.__getitem__(matplotlib.rcParams, 'backend')\n"
        "from pathlib import Path\n"
        "import pandas as pd\n"
        "from lra_bench.report import plots\n"
        f"d = Path({str(tmp_path)!r})\n"
        "plots.bubble_chart(pd.DataFrame({'attn': ['softmax', 'lst'], 'steps_per_s': [1.0, 2.0],"
        " 'avg_accuracy': [50.0, 55.0], 'peak_memory_bytes': [2e9, 1e9]}), d / 'b.png')\n"
        "plots.accuracy_per_task(pd.DataFrame({'attn': ['softmax'], 'task': ['text'], 'mean': [60.0],"
        " 'std': [1.0], 'n': [2]}), d / 'a.png')\n"
        "plots.scaling(pd.DataFrame({'attn': ['lst', 'lst'], 'length': [256, 512], 'steps_per_s': [2.0, 1.0],"
        " 'peak_memory_bytes': [1e6, 2e6]}), d / 's.png')\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "assert dict.__getitem__(matplotlib.rcParams, 'backend') == backend, 'backend changed'\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "s.png"]


def test_bubble_labels_do_not_overlap():
    # dct and dct_attention at one spot: one label a line (11 pt) above the other, both above their bubbles
    off = plots._label_offsets([(100.0, 100.0), (101.0, 100.0), (300.0, 90.0)], [20.0, 20.0, 20.0], [40.0] * 3)
    assert sorted(off[:2]) == [22.0, 33.0] and off[2] == 22.0
    # a wide label next to a lower point: it moves up until clear of the label placed before it
    off = plots._label_offsets([(100.0, 100.0), (150.0, 95.0)], [5.0, 5.0], [40.0, 80.0])
    assert off[1] == 7.0 and off[0] == 7.0 + 11.0 * 1  # boxes x 110-190 and 80-120 overlap; y 102-113 vs 107-...
    # labels far apart stay at their bubbles
    assert plots._label_offsets([(0.0, 0.0), (500.0, 0.0)], [3.0, 8.0], [30.0, 30.0]) == [5.0, 10.0]
    # three at one spot stack three high
    assert sorted(plots._label_offsets([(5.0, 5.0)] * 3, [3.0] * 3, [20.0] * 3)) == [5.0, 16.0, 27.0]
