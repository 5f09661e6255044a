"""The onnx package's backend test models: expected kinds from test names, evaluation with reference outputs."""
import numpy as np

from onnxlab.backend_models import backend_data_dir, backend_models, evaluate, expected_kind, outputs_match


def test_there_are_over_a_thousand_and_every_nth_subsets():
    every = backend_models()
    assert len(every) > 1000 and backend_models(100) == every[::100]


def test_expected_kind_comes_from_the_test_name():
    assert expected_kind(backend_data_dir() / "node" / "test_ai_onnx_ml_binarizer" / "model.onnx") == "ML"
    assert expected_kind(backend_data_dir() / "node" / "test_add" / "model.onnx") == "DL"


def test_evaluate_classifies_runs_and_compares():
    ml = evaluate(backend_data_dir() / "node" / "test_ai_onnx_ml_binarizer" / "model.onnx")
    assert (ml["kind"], ml["engine"], ml["ran"], ml["outputs_match"]) == ("ML", "onnxruntime", True, True)
    dl = evaluate(backend_data_dir() / "node" / "test_add" / "model.onnx")
    assert (dl["kind"], dl["ran"], dl["outputs_match"]) == ("DL", True, True)
    sequence = evaluate(backend_data_dir() / "node" / "test_sequence_insert_at_back" / "model.onnx")
    assert sequence["stage"] == "inputs" and not sequence["ran"]


def test_outputs_match_tolerances():
    a = np.array([1.0, 2.0], np.float32)
    assert outputs_match(a, a + 1e-5) and not outputs_match(a, a + 0.1) and not outputs_match(a, a[:1])
    assert outputs_match(np.array(["x"]), np.array(["x"])) and not outputs_match(np.array([1]), np.array([2]))
