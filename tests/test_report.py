"""onnxlab.report: every table and figure a run wrote is in results/README.md, grouped by the notebook that wrote it."""
import json

import pandas as pd
import pytest

from onnxlab import report
from onnxlab.errors import OnnxlabError
from onnxlab.reproducibility import run_metadata
from onnxlab.tables import figure_path, write_table


def _notebook(path, code):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": code}]}))


def test_the_report_groups_tables_and_figures_and_leaves_nothing_out(tmp_path):
    metadata = run_metadata("smoke", {"n": 1})
    write_table(pd.DataFrame({"model": ["A"], "paper_x": [1.0], "x": [2.0]}), "alpha", tmp_path, title="Table A",
                metadata=metadata, notes=["a substitution, said"])
    write_table(pd.DataFrame({"y": [3]}), "orphan", tmp_path, title="Table O", metadata=metadata)
    figure_path(tmp_path, "alpha_plot").write_bytes(b"png")
    figure_path(tmp_path, "stray").write_bytes(b"png")
    _notebook(tmp_path / "notebooks" / "alpha.ipynb",
              'write_table(table, "alpha", results_dir, title="x")\nfig.savefig(figure_path(results_dir, "alpha_plot"))')
    groups = report.collect(tmp_path)
    assert [(g.name, g.tables, g.figures) for g in groups] == [("alpha", ["alpha"], ["alpha_plot"]),
                                                               ("Other", ["orphan"], ["stray"])]
    text = report.render(tmp_path)
    assert "### Table A" in text and "| A | 1 | 2 |" in text and "- a substitution, said" in text
    assert "![alpha_plot](figures/alpha_plot.png)" in text and "![stray](figures/stray.png)" in text
    assert "### Table O" in text and "notebooks/alpha.ipynb" in text
    assert report.write_report(tmp_path).read_text() == text


def test_the_committed_results_are_all_in_the_report(tmp_path):
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "results"
    text = report.render(results)
    for table in (results / "tables").glob("*.json"):
        assert f"`tables/{table.stem}.csv`" in text, table.stem
    for figure in (results / "figures").rglob("*.png"):
        name = figure.relative_to(results / "figures").as_posix()
        assert f"(figures/{name})" in text, name


def test_a_notebook_claims_a_figure_folder_it_writes_by_pattern(tmp_path):
    write_table(pd.DataFrame({"figure": ["a"]}), "graphs_index", tmp_path, title="Graphs",
                metadata=run_metadata("smoke", {}))
    for name in ("graphs/lenet1", "graphs/lenet4"):
        figure_path(tmp_path, name).write_bytes(b"png")
    figure_path(tmp_path, "unrelated").write_bytes(b"png")
    _notebook(tmp_path / "notebooks" / "graphs_index.ipynb",
              'write_table(t, "graphs_index", results_dir)\nstem = figure_path(results_dir, f"graphs/{figure.name}")')
    groups = report.collect(tmp_path)
    assert [(g.name, g.figures) for g in groups] == [("graphs_index", ["graphs/lenet1", "graphs/lenet4"]),
                                                      ("Other", ["unrelated"])]
    assert "![graphs/lenet4](figures/graphs/lenet4.png)" in report.render(tmp_path)


def test_a_folder_without_tables_is_refused(tmp_path):
    with pytest.raises(OnnxlabError, match="no tables"):
        report.render(tmp_path)
