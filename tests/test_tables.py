import json

import numpy as np
import pandas as pd

from onnxlab.reproducibility import run_metadata
from onnxlab.tables import to_markdown, write_table


def test_write_table_writes_csv_markdown_and_provenance(tmp_path):
    df = pd.DataFrame({"model": ["A|B", "C"], "seconds": [0.0123456, np.nan], "ok": [True, False]})
    meta = run_metadata("smoke", {"number": 3})
    paths = write_table(df, "t", tmp_path, title="A table", metadata=meta, notes=["first note"])
    assert pd.read_csv(paths["csv"]).shape == (2, 3)
    md = paths["md"].read_text()
    assert "# A table" in md and "- first note" in md and "Profile `smoke`" in md
    assert "| A\\|B | 0.01235 | yes |" in md and "| C | – | no |" in md
    record = json.loads(paths["json"].read_text())
    assert record["profile"] == "smoke" and record["parameters"] == {"number": 3}
    assert record["versions"]["onnxruntime"] and record["machine"]["logical_cores"] >= 1


def test_markdown_has_one_row_per_record():
    md = to_markdown(pd.DataFrame({"a": [1, 2, 3]}))
    assert md.count("\n") == 4


def test_notebook_parameters_are_the_names_the_parameters_cell_defined():
    from onnxlab.reproducibility import notebook_parameters

    namespace = {"np": np, "existing": 1}
    before = set(namespace)
    namespace.update(profile="smoke", n_train=None, scales=[10.0, 100.0], rate=0.01, _hidden=2, existing=5,
                     helper=lambda: None)
    assert notebook_parameters(namespace, before) == {"profile": "smoke", "n_train": None, "scales": [10.0, 100.0],
                                                      "rate": 0.01}
