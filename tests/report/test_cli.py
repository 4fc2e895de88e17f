"""`python -m lra_bench.report`: files written, exit codes, one-line errors, W&B, plots."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import types
from pathlib import Path

import pytest

from lra_bench.report import cli, render
from tests.report import speed_sweep, sweep, write_records

TABLE_FILES = {f"{n}.{ext}" for n in ("accuracy", "efficiency", "params") for ext in ("md", "tex", "csv")}


@pytest.fixture(autouse=True)
def _no_figures(monkeypatch):
    """Figures take a second each; only the tests that look at them draw them."""
    monkeypatch.setitem(sys.modules, "lra_bench.report.plots", None)  # importing it raises ImportError


@pytest.fixture
def runs(tmp_path):
    folder = tmp_path / "runs"
    write_records(folder / "train", sweep())
    write_records(folder / "speed", speed_sweep())
    (folder / "train" / "corrupt.json").write_text("{ not json")
    (folder / "wandb" / "files").mkdir(parents=True)
    (folder / "wandb" / "files" / "wandb-summary.json").write_text(json.dumps({"status": "ok", "test_accuracy": 1}))
    return folder


def test_writes_every_table_the_figures_and_report_md(runs, tmp_path, caplog, monkeypatch):
    monkeypatch.delitem(sys.modules, "lra_bench.report.plots")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        assert cli.main([str(runs), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert TABLE_FILES | {"report.md"} <= names
    assert {"accuracy_per_task.png", "bubble.png", "scaling.png"} <= names
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("### Test accuracy", "### Training speed", "### Parameter budget", "## Figures", "## Warnings"):
        assert heading in report
    assert "](scaling.png)" in report
    assert "corrupt.json" in caplog.text and "wandb-summary" not in caplog.text


def test_csv_files_round_trip(runs, tmp_path):
    out = tmp_path / "out"
    cli.main([str(runs), "--out", str(out)])
    data, notes = render.read_csv(out / "accuracy.csv")
    row = data[(data["model"] == "softmax") & (data["task"] == "listops")].iloc[0]
    assert (row["mean"], row["std"], row["n"], row["runs"]) == pytest.approx((37.0, 1.0, 3, 3))
    assert notes[-5].startswith("Provenance: training runs: 25")
    eff, _ = render.read_csv(out / "efficiency.csv")
    dct = eff[(eff["model"] == "dct") & (eff["length"] == 1000)].iloc[0]
    assert (dct["steps_per_s"], dct["steps_rel"], dct["memory_rel"]) == (16.0, 2.0, 0.5)


def test_task_filter(runs, tmp_path):
    out = tmp_path / "out"
    assert cli.main([str(runs), "--out", str(out), "--tasks", "text"]) == 0
    assert "| Model | Text | Source |" in (out / "accuracy.md").read_text(encoding="utf-8")
    assert cli.main([str(runs), "--out", str(out), "--tasks", "text,listops", "image"]) == 0
    assert "| Model | ListOps | Text | Image | Source |" in (out / "accuracy.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("make_args, message", [
    (lambda d: [str(d / "missing")], "no such file or folder"),
    (lambda d: [str(d)], "no run records"),                                   # only non-record JSON
    (lambda d: [str(d), "--tasks", "nope"], "unknown task(s) nope"),
])
def test_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, make_args, message):
    (tmp_path / "wandb-summary.json").write_text(json.dumps({"status": "ok"}))
    out = tmp_path / "out"
    assert cli.main(make_args(tmp_path) + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not out.exists()


def test_records_of_other_tasks_only_is_an_error(runs, tmp_path, capsys):
    write_records(tmp_path / "only_text", [r for r in sweep() if r["task"] == "text"])
    assert cli.main([str(tmp_path / "only_text"), "--tasks", "image", "--out", str(tmp_path / "out")]) == 2
    assert "no run records for tasks image" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_module_entry_point_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lra_bench.report", str(tmp_path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "no run records" in proc.stderr


class FakeWandb(types.ModuleType):
    """Records what the report asks of W&B."""

    def __init__(self, fail: bool = False):
        super().__init__("wandb")
        self.fail, self.init_kwargs, self.logged, self.finished = fail, None, {}, False
        self.Table = lambda dataframe: ("Table", dataframe)

    def init(self, **kwargs):
        if self.fail:
            raise RuntimeError("no W&B service")
        self.init_kwargs = kwargs
        return types.SimpleNamespace(log=self.logged.update, finish=lambda: setattr(self, "finished", True))


def test_wandb_logs_every_table_in_one_report_run(runs, tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert cli.main([str(runs), "--out", str(tmp_path / "out"), "--wandb"]) == 0
    assert fake.init_kwargs["job_type"] == "report" and fake.init_kwargs["mode"] == "offline" and fake.finished
    assert set(fake.logged) == {"accuracy", "efficiency", "params", "accuracy_data", "efficiency_data", "params_data"}
    kind, frame = fake.logged["accuracy"]
    assert kind == "Table" and list(frame.columns)[:2] == ["Model", "ListOps"]


def test_wandb_mode_follows_the_environment(runs, tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cli.main([str(runs), "--out", str(tmp_path / "out"), "--wandb"])
    assert fake.init_kwargs["mode"] == "disabled"


def test_wandb_failure_does_not_fail_the_report(runs, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "wandb", FakeWandb(fail=True))
    with caplog.at_level(logging.WARNING):
        assert cli.main([str(runs), "--out", str(tmp_path / "out"), "--wandb"]) == 0
    assert "W&B logging failed" in caplog.text and (tmp_path / "out" / "report.md").exists()


def test_missing_plots_module_skips_the_figures(runs, tmp_path, caplog):  # see _no_figures
    with caplog.at_level(logging.INFO):
        assert cli.main([str(runs), "--out", str(tmp_path / "out")]) == 0
    assert "plots skipped" in caplog.text
    assert {p.name for p in (tmp_path / "out").iterdir()} == TABLE_FILES | {"report.md"}
