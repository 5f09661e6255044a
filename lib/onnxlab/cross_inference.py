"""Cross inference between a float model and its int8 QDQ version (paper R's CROSS inference), and which layer
loses the accuracy.

`QdqParameters` reads what a QDQ model (from `onnxlab.quantize`) does to each tensor: the scale and zero point
of every activation it quantizes and the dequantized value of every weight. `CrossInference` then steps through
the *float* model node by node (`onnxlab.inspect.Stepper`) and runs a chosen set of nodes "in int8": their
activation inputs and outputs fake-quantized with the QDQ model's parameters, their weights replaced by the
dequantized int8 weights. So

- ``run(int8={k})`` is float up to node k, node k in int8, float again;
- ``run(int8=all_but(k))`` is int8 everywhere but k;
- ``run(int8=ALL)`` is the whole QDQ model evaluated in float (fake quantization), which ONNX Runtime runs with
  its optimisations off; with them on it runs real integer kernels (`QLinearConv`…), so the difference between
  those two runs is what the kernels add (saturation, requantization rounding) on top of quantization noise.

`layer_table` ranks the quantizable layers by what they cost at the end (accuracy and logit error when quantized
alone, accuracy recovered when kept alone in float) beside their local error (SQNR, cosine, max abs at the
layer's output); `choose_float_layers` picks the fewest layers to keep in float for an accuracy budget.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from onnxlab.errors import InvalidArgument, OnnxlabError
from onnxlab.inspect import NodeRecord, Stepper, node_names
from onnxlab.quantize import along_axis, dequantize

#: Op types that carry weights and multiply-adds: the "layers" the ranking is about.
LAYER_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
#: ``int8=ALL``: every node in int8.
ALL = "all"
_INT_RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127), np.dtype(np.int16): (-32768, 32767),
               np.dtype(np.uint16): (0, 65535)}


# --------------------------------------------------------------------------- metrics

def sqnr_db(reference: np.ndarray, actual: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(Σ ref² / Σ (ref − actual)²); inf when equal."""
    ref = np.asarray(reference, np.float64)
    noise = float(np.sum((ref - np.asarray(actual, np.float64)) ** 2))
    signal = float(np.sum(ref ** 2))
    if noise == 0:
        return float("inf")
    return 10 * np.log10(signal / noise) if signal > 0 else float("-inf")


def cosine(reference: np.ndarray, actual: np.ndarray) -> float:
    """Cosine similarity of the flattened tensors (1 for equal directions)."""
    a, b = np.asarray(reference, np.float64).ravel(), np.asarray(actual, np.float64).ravel()
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm else float(np.array_equal(a, b))


def error_row(reference: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """SQNR (dB), cosine similarity and max absolute error of ``actual`` against ``reference``."""
    diff = np.abs(np.asarray(reference, np.float64) - np.asarray(actual, np.float64))
    return {"sqnr_db": sqnr_db(reference, actual), "cosine": cosine(reference, actual),
            "max_abs_error": float(diff.max()) if diff.size else 0.0}


# --------------------------------------------------------------------------- the QDQ model's parameters

@dataclass(frozen=True)
class FakeQuant:
    """Quantize-dequantize with one scale and zero point (per tensor, or per channel along ``axis``)."""

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        low, high = _INT_RANGES[self.zero_point.dtype]
        scale = along_axis(self.scale.astype(np.float32), x.ndim, self.axis)
        zp = along_axis(self.zero_point.astype(np.float32), x.ndim, self.axis)
        q = np.clip(np.round(x / scale) + zp, low, high)  # np.round: half to even, as QuantizeLinear
        return ((q - zp) * scale).astype(np.float32)


@dataclass
class QdqParameters:
    """What a QDQ model does: `FakeQuant` per activation tensor it quantizes, dequantized value per weight.

    Weights are keyed by the float model's initializer name (the QDQ model's ``<name>_DequantizeLinear_Output``
    or the DequantizeLinear output that kept the name).
    """

    activations: dict[str, FakeQuant]
    weights: dict[str, np.ndarray]

    @classmethod
    def of(cls, qdq: onnx.ModelProto) -> "QdqParameters":
        inits = {t.name: numpy_helper.to_array(t) for t in qdq.graph.initializer}
        activations, weights = {}, {}
        for node in qdq.graph.node:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if node.op_type == "QuantizeLinear" and node.input[0] not in inits:
                zero = inits.get(node.input[2]) if len(node.input) > 2 else np.array(0, np.uint8)
                activations[node.input[0]] = FakeQuant(inits[node.input[1]], zero, axis)
            elif node.op_type == "DequantizeLinear" and node.input[0] in inits:
                zero = inits[node.input[2]] if len(node.input) > 2 else None
                name = node.output[0].removesuffix("_DequantizeLinear_Output")
                weights[name] = dequantize(inits[node.input[0]], inits[node.input[1]], zero, axis).astype(np.float32)
        if not activations and not weights:
            raise OnnxlabError("the model has no QuantizeLinear/DequantizeLinear nodes: not a QDQ model")
        # a graph output is quantized under a new name (``<out>_QuantizeLinear_Input``) and dequantized back into
        # ``<out>``: register its parameters under the output's own name, which the float model uses
        outputs = {o.name for o in qdq.graph.output}
        quantized_by = {n.output[0]: n.input[0] for n in qdq.graph.node if n.op_type == "QuantizeLinear"}
        for node in qdq.graph.node:
            if node.op_type == "DequantizeLinear" and node.output[0] in outputs and node.input[0] in quantized_by:
                source = quantized_by[node.input[0]]
                if source in activations:
                    activations[node.output[0]] = activations[source]
        return cls(activations, weights)


# --------------------------------------------------------------------------- cross inference

class CrossInference:
    """Step a float model with chosen nodes in int8 (see the module docstring).

    Parameters
    ----------
    float_model
        The float model the QDQ model was quantized from *without* pre-processing, so node and tensor names
        agree (`quantization_pair` makes such a pair).
    qdq_model
        Its static QDQ quantization.
    inputs
        The input batch (N, ...) every run uses.
    """

    def __init__(self, float_model: onnx.ModelProto | str | os.PathLike,
                 qdq_model: onnx.ModelProto | str | os.PathLike, inputs: np.ndarray):
        from onnxlab.formats import as_model

        self.float_model = as_model(float_model)
        self.qdq_model = as_model(qdq_model)
        self.inputs = inputs
        self.parameters = QdqParameters.of(self.qdq_model)
        self.names = node_names(self.float_model)
        self._sessions: dict = {}
        self.layers = [name for name, node in zip(self.names, self.float_model.graph.node)
                       if node.op_type in LAYER_OPS and any(i in self.parameters.weights for i in node.input)]
        if not self.layers:
            raise OnnxlabError("no layer of the float model has an int8 weight in the QDQ model: were they "
                               "quantized from each other (without pre-processing)?")

    def all_but(self, *layers: str) -> set[str]:
        """Every node name except ``layers``."""
        unknown = [n for n in layers if n not in self.names]
        if unknown:
            raise InvalidArgument(f"no node {unknown[0]!r} in the float model")
        return set(self.names) - set(layers)

    def run(self, int8: Iterable[str] | str = ()) -> "dict[str, NodeRecord]":
        """Step the float model with the nodes named in ``int8`` (or `ALL`) run in int8; every node's record."""
        chosen = set(self.names) if int8 == ALL else set(int8)
        unknown = chosen - set(self.names)
        if unknown:
            raise InvalidArgument(f"no node {sorted(unknown)[0]!r} in the float model")
        activations, weights = self.parameters.activations, self.parameters.weights
        stepper = Stepper(self.float_model, self.inputs, sessions=self._sessions)

        def quantize_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
            return {t: activations[t](v) if t in activations else v for t, v in outputs.items()}

        for name, node in zip(self.names, self.float_model.graph.node):
            if name not in chosen:
                stepper.step()
                continue
            # weights fed as inputs (the dequantized int8 values), activations fake-quantized on the way in and out
            substitutes = {t: weights[t] if t in weights else activations[t](stepper.values[t])
                           for t in node.input if t in weights or (t in activations and t in stepper.values)}
            stepper.step(substitutes, quantize_outputs)
        return stepper.records

    def outputs(self, records: Mapping[str, NodeRecord]) -> np.ndarray:
        """The model's first graph output from a run's records."""
        name = self.float_model.graph.output[0].name
        for record in records.values():
            if name in record.outputs:
                return np.asarray(record.outputs[name])
        raise OnnxlabError(f"the run did not produce the output {name!r}")

    def layer_output(self, records: Mapping[str, NodeRecord], layer: str) -> np.ndarray:
        """The first output of ``layer`` in a run."""
        return np.asarray(records[layer].output)


def quantization_pair(float_path: str | os.PathLike, calibration: np.ndarray, folder: str | os.PathLike,
                      **settings: Any) -> tuple["os.PathLike", "os.PathLike"]:
    """The pre-processed float model and its static QDQ model, written to ``folder`` (``float.onnx``,
    ``qdq.onnx``): the pair `CrossInference` needs (the QDQ model is quantized without further pre-processing,
    so names agree). Models with local functions (ONNX-SNN) are not pre-processed (`quantize.FUNCTIONS_NOT_PREPROCESSED`)."""
    import shutil
    from pathlib import Path

    from onnxruntime.quantization import quant_pre_process

    from onnxlab.quantize import quantize

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    float_out, qdq_out = folder / "float.onnx", folder / "qdq.onnx"
    if onnx.load(str(float_path), load_external_data=False).functions:  # ONNX-SNN: see quantize's note
        shutil.copyfile(float_path, float_out)
    else:
        quant_pre_process(str(float_path), str(float_out))
    quantize(float_out, qdq_out, calibration, mode="static", preprocess=False, **settings)
    return float_out, qdq_out


# --------------------------------------------------------------------------- which layer loses the accuracy

def _accuracy(scores: np.ndarray, labels: np.ndarray | None) -> float:
    return float(np.mean(scores.argmax(-1) == labels)) if labels is not None and len(labels) else float("nan")


def layer_table(cross: CrossInference, labels: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per quantizable layer, in graph order.

    Columns: the layer's local error when it alone runs in int8 (SQNR, cosine, max abs at its output against
    the float run); the final output's error (SQNR) and top-1 accuracy with that layer alone in int8; the
    accuracy with every node in int8 but that layer (``accuracy_all_but``), and ``recovered_points`` — how much
    keeping the layer in float recovers of the all-int8 loss.
    """
    reference = cross.run()
    float_out = cross.outputs(reference)
    everything = cross.run(ALL)
    all_int8_accuracy = _accuracy(cross.outputs(everything), labels)
    float_accuracy = _accuracy(float_out, labels)
    rows = []
    for layer in cross.layers:
        alone = cross.run({layer})
        all_but = cross.run(cross.all_but(layer))
        local = error_row(cross.layer_output(reference, layer), cross.layer_output(alone, layer))
        final = error_row(float_out, cross.outputs(alone))
        accuracy_all_but = _accuracy(cross.outputs(all_but), labels)
        rows.append({"layer": layer, "op_type": next(n.op_type for name, n in zip(cross.names, cross.float_model.graph.node)
                                                      if name == layer),
                     "local_sqnr_db": local["sqnr_db"], "local_cosine": local["cosine"],
                     "local_max_abs_error": local["max_abs_error"], "output_sqnr_db": final["sqnr_db"],
                     "accuracy_alone_int8": _accuracy(cross.outputs(alone), labels),
                     "accuracy_change_alone_points": 100 * (_accuracy(cross.outputs(alone), labels) - float_accuracy),
                     "accuracy_all_but": accuracy_all_but,
                     "recovered_points": 100 * (accuracy_all_but - all_int8_accuracy)})
    return rows


def choose_float_layers(cross: CrossInference, labels: np.ndarray, budget_points: float,
                        rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The fewest layers to keep in float so the fake-quantized accuracy is at most ``budget_points`` below float.

    Layers are added greedily in the order of `layer_table`'s ``recovered_points`` (then lowest output SQNR when
    quantized alone), each candidate set checked by a run. Returns ``{"float_layers", "accuracy", "float_accuracy",
    "all_int8_accuracy", "met"}``.
    """
    if budget_points < 0:
        raise InvalidArgument(f"the accuracy budget must be >= 0 points, got {budget_points}")
    rows = rows if rows is not None else layer_table(cross, labels)
    float_accuracy = _accuracy(cross.outputs(cross.run()), labels)
    all_int8 = _accuracy(cross.outputs(cross.run(ALL)), labels)
    ranked = [r["layer"] for r in sorted(rows, key=lambda r: (-r["recovered_points"], r["output_sqnr_db"]))]
    kept: list[str] = []
    accuracy = all_int8
    for layer in [None, *ranked]:
        if layer is not None:
            kept.append(layer)
            accuracy = _accuracy(cross.outputs(cross.run(cross.all_but(*kept))), labels)
        if 100 * (float_accuracy - accuracy) <= budget_points:
            return {"float_layers": list(kept), "accuracy": accuracy, "float_accuracy": float_accuracy,
                    "all_int8_accuracy": all_int8, "met": True}
    return {"float_layers": kept, "accuracy": accuracy, "float_accuracy": float_accuracy,
            "all_int8_accuracy": all_int8, "met": False}
