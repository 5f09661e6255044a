"""The layer debugger's evidence (notebook ``layer_debugger``): paper R's feature-support matrix, filled by running
each feature on each model, and the mixed-precision result measured on real int8 files.

`FEATURES` maps paper R's features (Table 1) to functions that exercise them on a `DebugSubject`; a cell of
`feature_matrix` is ✔ only if the function ran without error (its error is kept for the notes otherwise).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

#: Marks in the feature matrix.
SUPPORTED, FAILED = "✔", "✘"


@dataclass
class DebugSubject:
    """A model under the debugger: its float file, test images and labels, calibration images, a work folder."""

    name: str
    float_path: Path
    x: np.ndarray
    y: np.ndarray | None
    calibration: np.ndarray
    folder: Path
    cache: dict[str, Any] = field(default_factory=dict)

    def pair(self) -> tuple[Path, Path]:
        """The name-matched float / QDQ pair (`cross_inference.quantization_pair`), made once."""
        from onnxlab.cross_inference import quantization_pair

        if "pair" not in self.cache:
            self.cache["pair"] = quantization_pair(self.float_path, self.calibration, self.folder / "pair")
        return self.cache["pair"]


def _float_inference(s: DebugSubject) -> None:
    from onnxlab.engines import load

    load("onnxruntime", s.float_path).run(s.x[:4])


def _quantized(s: DebugSubject, **settings: Any) -> None:
    from onnxlab.engines import load
    from onnxlab.quantize import quantize

    label = "-".join(str(v) for v in settings.values())
    result = quantize(s.float_path, s.folder / f"feature-{label}.onnx", s.calibration, **settings)
    load("onnxruntime", result.path).run(s.x[:4])


def _step(s: DebugSubject) -> None:
    from onnxlab.inspect import Stepper

    stepper = Stepper(s.float_path, s.x[:4])
    stepper.step()
    stepper.run()


def _cross(s: DebugSubject) -> None:
    from onnxlab.cross_inference import CrossInference

    cross = CrossInference(*s.pair(), s.x[:4])
    cross.run({cross.layers[0]})


def _edit(s: DebugSubject) -> None:
    from onnxlab.inspect import diff_traces, edit_weight, save_edited, trace

    import onnx

    model = onnx.load(str(s.float_path))
    tensor = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims))).name
    edited = edit_weight(model, tensor, "scale", factor=0.5)
    diff_traces(trace(model, s.x[:2]), trace(edited, s.x[:2]))
    with tempfile.TemporaryDirectory() as tmp:
        save_edited(edited, Path(tmp) / "edited.onnx", source=s.float_path)


def _augment(s: DebugSubject) -> None:
    from onnxlab.inspect import augmentation_probe

    augmentation_probe(s.float_path, s.x[0])


def _statistics(s: DebugSubject) -> None:
    from onnxlab.inspect import TensorStats, trace

    for record in trace(s.float_path, s.x[:4]).values():
        TensorStats.of(record.output)


#: Paper R's features (Table 1) -> what exercises each one here.
FEATURES: dict[str, Callable[[DebugSubject], None]] = {
    "FLOAT inference": _float_inference,
    "HYBRID inference (dynamic int8)": lambda s: _quantized(s, mode="dynamic"),
    "INT inference (static int8)": lambda s: _quantized(s, mode="static"),
    "STEP inference": _step,
    "CROSS inference": _cross,
    "per-layer statistics": _statistics,
    "weight editing": _edit,
    "quantization by KL divergence": lambda s: _quantized(s, mode="static", calibration="entropy"),
    "quantization by log2 (power-of-two)": lambda s: _quantized(s, mode="static", calibration="power_of_two"),
    "data augmentation (5 images)": _augment,
}


def feature_matrix(subjects: list[DebugSubject]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Run every feature on every subject: ``{feature: {model: ✔|✘}}`` and one note per failure."""
    matrix: dict[str, dict[str, str]] = {}
    failures = []
    for feature, run in FEATURES.items():
        matrix[feature] = {}
        for subject in subjects:
            try:
                run(subject)
                matrix[feature][subject.name] = SUPPORTED
            except Exception as exc:  # a feature that fails on a model is a ✘ with its reason, not a crashed table
                matrix[feature][subject.name] = FAILED
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                failures.append(f"{feature} on {subject.name}: {type(exc).__name__}: {message[:200]}")
    return matrix, failures


def mixed_precision_files(float_path: os.PathLike, calibration: np.ndarray, float_layers: list[str],
                          folder: os.PathLike) -> dict[str, Path]:
    """Real files for the mixed-precision comparison: ``{"all float", "all int8", "mixed"}`` (static QDQ; the mixed
    one keeps ``float_layers`` in float through ``nodes_to_exclude``), quantized without pre-processing so the
    layer names of `cross_inference.quantization_pair`'s float model apply."""
    from onnxlab.quantize import quantize

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"all float": Path(float_path)}
    paths["all int8"] = quantize(float_path, folder / "all-int8.onnx", calibration, preprocess=False).path
    if float_layers:
        paths["mixed"] = quantize(float_path, folder / "mixed.onnx", calibration, preprocess=False,
                                  nodes_to_exclude=tuple(float_layers)).path
    else:
        paths["mixed"] = paths["all int8"]
    return paths
