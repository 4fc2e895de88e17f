"""Table 1 (accuracy), Table 2 (efficiency) and the parameter check, cell by cell."""
from __future__ import annotations

import pytest

from lra_bench.report import records
from lra_bench.report.cli import TRAIN_BASIS, build_tables
from lra_bench.report.efficiency import num
from lra_bench.report.render import Table
from lra_bench.report.tables import FAIL, averages
from tests.report import make_record, speed_sweep, sweep, write_records


def build(tmp_path, recs, tasks=records.TASKS) -> tuple[dict[str, Table], list[str]]:
    write_records(tmp_path / "runs", recs)
    tables, warnings = build_tables(records.load([tmp_path / "runs"]), tasks)
    return {t.name: t for t in tables}, warnings


def cell(table: Table, row: str, column: str) -> str:
    [hit] = [r for r in table.rows if r[0] == row]
    return hit[table.header.index(column)]


def position(table: Table, row: str, column: str) -> tuple[int, int]:
    return [r[0] for r in table.rows].index(row), table.header.index(column)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return build(tmp_path_factory.mktemp("sweep"), sweep() + speed_sweep())[0]


AVG5, AVG6 = "Avg (5, no Path-X)", "Avg (6, FAIL=50)"


@pytest.mark.parametrize("row, column, text", [
    ("softmax", "ListOps", "37.00 ± 1.00 (3)"),      # three seeds: mean ± sample std (n)
    ("softmax", "Text", "64.00 (1)"),                 # one seed: no ±
    ("softmax", "Retrieval", "57.00 ± 1.41 (2)"),
    ("softmax", "Path-X", FAIL),                      # failed + oom
    ("softmax", AVG5, "54.40"),                       # (37 + 64 + 57 + 43 + 71) / 5
    ("softmax", AVG6, "53.67"),                       # (272 + 50 for FAIL) / 6
    ("dct", "ListOps", "41.00 ± 1.41 (2)"),          # the diverged seed is not averaged in
    ("dct", "Image", FAIL),                           # diverged only
    ("dct", "Pathfinder", ""),                        # no runs
    ("dct", AVG5, ""), ("dct", AVG6, ""),             # a task is FAIL / missing
    ("dct (model.hidden_dim=64)", "ListOps", "30.00 (1)"),  # the other config: its own row
    ("dct (model.hidden_dim=64)", "Text", ""),
    ("fnet", AVG5, "55.40"), ("fnet", AVG6, "56.33"),
    ("fnet", "Source", "ours"),
])
def test_accuracy_cells(tables, row, column, text):
    assert cell(tables["accuracy"], row, column) == text


def test_accuracy_layout_bold_and_published(tables):
    t = tables["accuracy"]
    assert t.header == ["Model", "ListOps", "Text", "Retrieval", "Image", "Pathfinder", "Path-X", AVG5, AVG6, "Source"]
    assert [r[0] for r in t.rows[:t.first_published]] == ["softmax", "dct", "dct (model.hidden_dim=64)", "fnet"]
    assert t.bold == {position(t, "dct", "ListOps"), position(t, "fnet", "Text"), position(t, "fnet", "Retrieval"),
                      position(t, "softmax", "Image"), position(t, "fnet", "Pathfinder"), position(t, "fnet", AVG5),
                      position(t, "fnet", AVG6)}  # not Path-X: only fnet has a number there
    published = t.rows[t.first_published:]
    assert [r[0] for r in published][:2] == ["Transformer", "Local Attention"] and published[-1][0] == "FNet"
    assert cell(t, "Transformer", "ListOps") == "36.37" and cell(t, "Transformer", "Path-X") == FAIL
    assert cell(t, "Transformer", AVG5) == "54.39" and cell(t, "Transformer", AVG6) == "53.66†"  # computed, marked
    assert cell(t, "FNet", AVG5) == "55.30" and cell(t, "FNet", AVG6) == "54.42"  # both as printed
    assert cell(t, "Transformer", "Source") == "Tay et al. 2021, LRA Table 1"
    assert "S4 Table 10" in cell(t, "FNet", "Source")
    assert any(n.startswith("Tay et al. 2021, LRA Table 1: Tay et al., \"Long Range Arena") for n in t.notes)
    assert any("computed here" in n for n in t.notes)


def test_accuracy_data_and_notes(tables):
    t = tables["accuracy"]
    d = t.data.set_index(["model", "task"])
    assert d.loc[("dct", "listops"), ["n", "runs", "failures"]].tolist() == [2, 3, "diverged"]
    assert d.loc[("softmax", "pathx"), "status"] == FAIL and d.loc[("softmax", "pathx"), "failures"] == "failed,oom"
    assert d.loc[("softmax", "avg6"), "mean"] == pytest.approx(322 / 6)
    assert d.loc[("Transformer", "avg6"), "computed"] and not d.loc[("FNet", "avg6"), "computed"]
    assert "Provenance: training runs: 25 (21 ok, 2 diverged, 1 failed, 1 oom)" in t.notes
    assert any(n.startswith("Configs: listops/dct: 2 configs") for n in t.notes)


def test_task_subset_drops_columns_and_the_averages_it_cannot_make(tmp_path):
    t = build(tmp_path, sweep(), tasks=["text", "listops"])[0]["accuracy"]
    assert t.header == ["Model", "ListOps", "Text", "Source"]
    assert "Provenance: training runs: 11 (10 ok, 1 diverged)" in t.notes


def test_averages_rules():
    five = {"listops": 30.0, "text": 60.0, "retrieval": 50.0, "image": 40.0, "pathfinder": 70.0}
    assert averages(five) == {"avg5": 50.0, "avg6": None}                 # Path-X missing
    assert averages({**five, "pathx": FAIL}) == {"avg5": 50.0, "avg6": (250 + 50) / 6}
    assert averages({**five, "listops": FAIL, "pathx": 80.0}) == {"avg5": None, "avg6": (220 + 50 + 80) / 6}


@pytest.mark.parametrize("row, column, text", [
    ("softmax", "Steps/s 1000", "8.0 (1.0x)"), ("softmax", "Steps/s 4000", "OOM"),
    ("dct", "Steps/s 1000", "16.0 (2.0x)"), ("dct", "Steps/s 2000", "12.0 (3.0x)"),
    ("dct", "Steps/s 4000", "6.0"),                   # softmax ran out of memory: absolute only
    ("dct", "Mem GB 1000", "0.50 (0.50x)"), ("dct", "Mem GB 2000", "1.00 (0.25x)"), ("dct", "Mem GB 3000", ""),
    ("dct", "Task", "text"), ("dct", "Batch", "32"),
    ("Transformer", "Steps/s 1000", "8.1"), ("Local Attention", "Steps/s 4000", "7.4 (5.3x)"),
    ("Reformer", "Steps/s 1000", "4.4 (0.5x)"), ("BigBird", "Steps/s 2000", "3.9 (0.8x)"),  # LRA's factors as printed
    ("Transformer", "Mem GB 4000", "9.48"),
])
def test_efficiency_cells(tables, row, column, text):
    assert cell(tables["efficiency"], row, column) == text


@pytest.mark.parametrize("value, decimals, text", [
    (0.9965, 1, "1.0"), (0.95, 1, "0.95"), (0.5, 1, "0.50"), (0.8, 1, "0.80"), (0.25, 1, "0.25"), (2.04, 1, "2.0"), (0.0, 1, "0.0"),
    (4, 0, "4"), (4.0, 0, "4"), (32, 0, "32"), (4000.0, 0, "4000"), (0.0996, 2, "0.10"), (0.0042, 2, "0.0042"), (9.48, 2, "9.48"), (float("nan"), 1, ""),
])
def test_number_format_keeps_places_when_two_digits_round_up(value, decimals, text):
    assert num(value, decimals) == text


def test_published_numbers_show_as_printed():
    assert num(0.5, 1, printed=True) == "0.5" and num(0.85, 2, printed=True) == "0.85"


def test_efficiency_published_rows_and_provenance(tables):
    t = tables["efficiency"]
    assert [r[0] for r in t.rows[:t.first_published]] == ["softmax", "dct"]
    assert all("LRA Table 2, 4x4 TPU V3" in r[-1] for r in t.rows[t.first_published:])
    assert "Provenance: runs: 6 (5 ok, 1 oom)" in t.notes and "peak memory measured as: cuda_max_allocated" in t.notes
    d = t.data.set_index(["model", "length"])
    assert d.loc[("dct", 2000), ["steps_rel", "memory_rel", "peak_memory_bytes"]].tolist() == [3.0, 0.25, 1e9]


def test_efficiency_from_training_runs_when_there_are_no_speed_records(tmp_path):
    recs = [make_record("listops", "softmax", steps_per_s=4.0, peak_memory_bytes=3e9),
            make_record("listops", "dct", steps_per_s=6.0, peak_memory_bytes=1.5e9),
            make_record("listops", "dct", 1, steps_per_s=8.0, peak_memory_bytes=1.5e9)]
    t = build(tmp_path, recs)[0]["efficiency"]
    assert t.notes[0] == TRAIN_BASIS
    assert cell(t, "dct", "Steps/s 2000") == "7.0 (1.8x)" and cell(t, "dct", "Mem GB 2000") == "1.50 (0.50x)"


def test_efficiency_compares_only_on_the_same_hardware(tmp_path):
    recs = [make_record("text", "softmax", kind="speed", steps_per_s=4.0),
            make_record("text", "dct", kind="speed", steps_per_s=8.0, hardware="A100")]
    t = build(tmp_path, recs)[0]["efficiency"]
    assert "Hardware" in t.header
    assert cell(t, "dct", "Steps/s 1000") == "8.0" and cell(t, "dct", "Hardware") == "A100"


def test_parameter_budget_flags_variants_above_one_point_one(tmp_path):
    tables, warnings = build(tmp_path, sweep())
    t = tables["params"]
    assert {r[7] for r in t.rows if r[0] == "dct"} == {"yes"}
    fnet = [r for r in t.rows if r[0] == "fnet"]
    assert len(fnet) == 6 and {r[6] for r in fnet} == {"1.20x"} and {r[7] for r in fnet} == {"NO"}
    assert {(i, 7) for i, r in enumerate(t.rows) if r[0] == "fnet"} == t.bold
    budget = [w for w in warnings if w.startswith("parameter budget")]
    assert len(budget) == 6 and "fnet on listops has 1,200 parameters, 1.20x softmax's 1,000" in budget[0]


def test_parameter_budget_compares_runs_of_one_kind(tmp_path):
    recs = [make_record("text", "softmax", num_params=1000), make_record("text", "dct", num_params=1050),
            make_record("text", "softmax", kind="speed", num_params=100),  # a smaller model timed
            make_record("text", "dct", kind="speed", num_params=500)]
    rows = build(tmp_path, recs)[0]["params"].rows
    assert [r[3:] for r in rows] == [["speed", "500", "100", "5.00x", "NO"],
                                     ["train", "1,050", "1,000", "1.05x", "yes"]]


def test_speed_records_alone_make_every_table(tmp_path):
    tables, _ = build(tmp_path, speed_sweep())
    acc = tables["accuracy"]
    assert acc.first_published == 0 and "Provenance: training runs: 0 (none)" in acc.notes
    assert cell(tables["efficiency"], "dct", "Steps/s 1000") == "16.0 (2.0x)"
    assert "Provenance: training and speed runs: 6 (5 ok, 1 oom)" in tables["params"].notes


def test_tasks_without_published_rows(tmp_path):
    tables, _ = build(tmp_path, [make_record("image", "softmax"), make_record("image", "dct", num_params=1100)],
                      tasks=["image"])
    eff = tables["efficiency"]
    assert eff.first_published is None and eff.rows[0][:3] == ["softmax", "image", "32"]
    assert tables["params"].rows == [["dct", "image", "1024", "train", "1,100", "1,000", "1.10x", "yes"]]  # 1.1x: ok
