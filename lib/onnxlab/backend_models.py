"""The onnx package's own backend test models: over a thousand files nobody here wrote.

Each ``onnx/backend/test/data/<group>/<test>/model.onnx`` comes with
``test_data_set_0/input_*.pb`` and ``output_*.pb`` (reference inputs and outputs). Their expected
kind does not come from the classifier: tests of ONNX-ML operators are named ``test_ai_onnx_ml_*``
(``ML``); every other one is ``DL``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

#: Name fragment of the backend tests of ONNX-ML operators.
ML_TEST_MARK = "ai_onnx_ml"


def backend_data_dir() -> Path:
    """``onnx/backend/test/data`` of the installed onnx package."""
    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def backend_models(every: int = 1) -> list[Path]:
    """Every backend test ``model.onnx`` (sorted), or every ``every``-th one for a quick run."""
    return sorted(backend_data_dir().glob("**/model.onnx"))[::every]


def expected_kind(path: Path) -> str:
    """``ML`` for tests of ONNX-ML operators (by test name), else ``DL``."""
    return "ML" if ML_TEST_MARK in path.parent.name else "DL"


@dataclass
class TestCase:
    """Reference inputs (None where an input is not a plain tensor) and outputs of one backend test."""

    inputs: list[np.ndarray | None]
    outputs: list[np.ndarray | None]


def _read(path: Path) -> np.ndarray | None:
    tensor = onnx.TensorProto()
    try:
        tensor.ParseFromString(path.read_bytes())
        if not tensor.data_type:
            return None  # a SequenceProto / OptionalProto / MapProto
        return numpy_helper.to_array(tensor)
    except Exception:
        return None


def load_test_case(model_path: Path) -> TestCase | None:
    """The first test data set next to ``model_path``; None if there is none."""
    folder = model_path.parent / "test_data_set_0"
    if not folder.is_dir():
        return None

    def files(prefix: str) -> list[Path]:
        return sorted(folder.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[1]))

    return TestCase([_read(p) for p in files("input")], [_read(p) for p in files("output")])


def outputs_match(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-3, atol: float = 1e-4) -> bool:
    """Reference comparison as onnx's backend tests make it (numbers within tolerance, the rest equal)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return False
    if expected.dtype.kind in "fc":
        return bool(np.allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True))
    return bool(np.array_equal(actual, expected))


def evaluate(path: Path) -> dict:
    """Classify one backend model and run its first test case through `onnxlab.inference.run`.

    Returns
    -------
    dict
        ``model`` (group/test), ``expected``, ``kind`` (or None), ``paper_rule_kind`` (what the
        paper's model-domain rule says, or None), ``engine``, ``ran``,
        ``outputs_match`` (against the reference outputs), ``stage`` and ``reason`` of a failure.
    """
    from onnxlab.classify import classify
    from onnxlab.formats import read_model
    from onnxlab.errors import OnnxlabError
    from onnxlab.inference import declared_inputs, run

    row = dict(model=f"{path.parent.parent.name}/{path.parent.name}", expected=expected_kind(path), kind=None,
               paper_rule_kind=None,
               engine=None, ran=False, outputs_match=None, stage=None, reason=None)
    try:
        proto = read_model(path)
        evidence = classify(proto)
    except OnnxlabError as exc:
        return {**row, "stage": "classify", "reason": str(exc)}
    row["kind"], row["paper_rule_kind"] = evidence.kind, evidence.paper_rule_kind
    case = load_test_case(path)
    if case is None:
        return {**row, "stage": "inputs", "reason": "no test data set"}
    names = [v.name for v in declared_inputs(proto)]
    if any(x is None for x in case.inputs) or len(names) != len(case.inputs):
        return {**row, "stage": "inputs", "reason": "sequence, optional or map inputs (onnxlab.run feeds tensors)"}
    try:
        result = run(path, dict(zip(names, case.inputs)))
    except OnnxlabError as exc:
        return {**row, "stage": "run", "reason": str(exc).split(": ", 1)[-1]}
    outputs = list(result.outputs.values())
    matched = len(outputs) == len(case.outputs) and all(
        e is not None and outputs_match(a, e) for a, e in zip(outputs, case.outputs))
    return {**row, "engine": result.engine, "ran": True, "outputs_match": matched}
