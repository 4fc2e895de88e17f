"""Markdown, LaTeX (booktabs) and CSV renderings of a report table."""
from __future__ import annotations

import pandas as pd
import pytest

from lra_bench.report import render


@pytest.fixture
def table():
    data = pd.DataFrame({"model": ["dct_v2", "Transformer"], "mean": [41.5, 36.37], "std": [0.5, None],
                         "published": [False, True], "source": ["ours", "lra_t1"]})
    return render.Table(name="demo", title="Accuracy (%) & more", header=["Model", "ListOps", "Source"],
                        rows=[["dct_v2", "41.50 ± 0.50 (2)", "ours"], ["Transformer", "36.37†", "Tay et al."]],
                        data=data, align="lrl", bold={(0, 1)}, first_published=1,
                        notes=["Provenance: training runs: 2 (2 ok)", "hardware: 50% of a GPU"])


def test_markdown(table):
    lines = render.markdown(table).splitlines()
    assert lines[0] == "### Accuracy (%) & more"
    assert lines[2:5] == ["| Model | ListOps | Source |", "|:---|---:|:---|",
                          "| dct_v2 | **41.50 ± 0.50 (2)** | ours |"]
    assert lines[5] == "| *Published* |  |  |" and lines[6] == "| Transformer | 36.37† | Tay et al. |"
    assert lines[-2:] == ["- Provenance: training runs: 2 (2 ok)", "- hardware: 50% of a GPU"]


def test_latex_is_booktabs_and_escaped(table):
    tex = render.latex(table)
    for needle in (r"\begin{tabular}{lrl}", r"\toprule", r"\midrule", r"\bottomrule",
                   r"\caption{Accuracy (\%) \& more}",
                   r"\label{tab:demo}", r"dct\_v2 & \textbf{41.50 $\pm$ 0.50 (2)} & ours \\",
                   r"\multicolumn{3}{l}{\emph{Published}} \\", r"36.37$^\dagger$", r"hardware: 50\% of a GPU\par"):
        assert needle in tex
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")


def test_csv_round_trip(table, tmp_path):
    paths = render.write(table, tmp_path)
    assert [p.name for p in paths] == ["demo.md", "demo.tex", "demo.csv"]
    data, notes = render.read_csv(tmp_path / "demo.csv")
    pd.testing.assert_frame_equal(data, table.data)
    assert notes == table.notes
    assert (tmp_path / "demo.md").read_text(encoding="utf-8") == render.markdown(table)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files left


def test_pipes_in_cells_do_not_break_markdown_rows(table):
    table.rows[0][2] = "a|b"
    assert "| a\\|b |" in render.markdown(table)
