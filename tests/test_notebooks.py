"""Notebooks: committed clean, parameterised by every profile, and runnable end to end with the smoke profile."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PROFILES = ("smoke", "default", "paper")
#: Columns every profile's table must have, by notebook (the issue's contract).
REQUIRED_COLUMNS = {
    "ml_inference_time": {"model", "baseline_s", "onnxruntime_s", "speedup", "paper_baseline_s",
                          "paper_onnxruntime_s", "outputs_match"},
    "dl_inference_time": {"model", "baseline_s", "keras_call_s", "onnxruntime_s", "speedup", "paper_baseline_s",
                          "paper_onnxruntime_s", "outputs_match"},
}
ids = [p.stem for p in NOTEBOOKS]


def _kernel() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return "onnxlab" if "onnxlab" in KernelSpecManager().find_kernel_specs() else "python3"


def test_every_notebook_has_a_contract():
    assert {p.stem for p in NOTEBOOKS} == set(REQUIRED_COLUMNS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: cell {cell.id} has outputs"
    assert "papermill" not in nb.metadata, f"{path.name} is an executed copy"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_profile_sets_only_declared_parameters(path, profile):
    declared = set(papermill.inspect_notebook(str(path)))
    config = ROOT / "experiments" / profile / f"{path.stem}.yaml"
    assert config.is_file(), f"missing {config}"
    given = set(yaml.safe_load(config.read_text()) or {})
    assert given <= declared, f"{config.name} sets unknown parameters {given - declared}"


def _tree_state(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_smoke_run_writes_its_table(path, tmp_path):
    before = _tree_state(ROOT / "results")
    params = yaml.safe_load((ROOT / "experiments" / "smoke" / f"{path.stem}.yaml").read_text()) or {}
    params.update(profile="smoke", results_dir=str(tmp_path))
    if "models_dir" in papermill.inspect_notebook(str(path)):
        params["models_dir"] = str(tmp_path / "models")
    papermill.execute_notebook(str(path), str(tmp_path / path.name), parameters=params, kernel_name=_kernel(),
                               cwd=str(ROOT / "notebooks"), progress_bar=False)
    table = pd.read_csv(tmp_path / "tables" / f"{path.stem}.csv")
    assert REQUIRED_COLUMNS[path.stem] <= set(table.columns)
    assert table.outputs_match.all(), table[["model", "outputs_match"]]
    assert (table.speedup > 0).all()
    for ext in ("md", "json"):
        assert (tmp_path / "tables" / f"{path.stem}.{ext}").is_file()
    assert (tmp_path / "figures" / f"{path.stem}.png").is_file()
    assert _tree_state(ROOT / "results") == before, "a smoke run must not write into results/"
    committed = ROOT / "results" / "tables" / f"{path.stem}.csv"
    if committed.is_file():  # same columns in every profile, so runs can be compared
        assert list(pd.read_csv(committed).columns) == list(table.columns)
