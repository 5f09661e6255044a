"""onnxlab.debugger_study: a feature that fails on a model is a ✘ with its reason, never a crashed table."""
import numpy as np

from onnxlab import debugger_study as ds


def test_a_failing_feature_is_marked_and_explained(monkeypatch, tmp_path):
    def works(subject):
        return None

    def breaks(subject):
        raise ValueError("no kernel for this op")

    monkeypatch.setattr(ds, "FEATURES", {"works": works, "breaks": breaks})
    subject = ds.DebugSubject("M", tmp_path / "m.onnx", np.zeros((1, 2)), None, np.zeros((1, 2)), tmp_path)
    matrix, failures = ds.feature_matrix([subject])
    assert matrix == {"works": {"M": ds.SUPPORTED}, "breaks": {"M": ds.FAILED}}
    assert failures == ["breaks on M: ValueError: no kernel for this op"]
