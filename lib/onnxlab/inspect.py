"""Layer-by-layer inspection of any ONNX model (paper R's STEP inference and weight editing).

- `trace`: one run that returns every node's outputs by node name, in graph order, with statistics
  (`TensorStats`: min, max, mean, std, fraction of zeros, histogram).
- `Stepper`: the same run node by node — `step()`, `run_to(node)`, `run()` — each node executed on its own
  by ONNX Runtime (a one-node model carrying the file's opsets and model-local functions, so ONNX-SNN
  neuron ops step in rate mode too). A step can be given other inputs than the ones the run produced,
  which is what cross inference builds on.
- Weight editing: `layer_weights` reads a node's constant inputs; `edit_weight` returns a copy of the model
  with one initializer changed by one of `WEIGHT_EDITS` (set an element, scale, prune, clip);
  `diff_traces` compares every tensor of two traces; `save_edited` writes the edited model atomically and
  refuses the source path, so a source file is never overwritten.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from onnxlab.errors import InvalidArgument, OnnxlabError

#: Histogram bins of `TensorStats`.
HISTOGRAM_BINS = 32


# --------------------------------------------------------------------------- statistics

@dataclass(frozen=True)
class TensorStats:
    """Summary of one tensor.

    Attributes
    ----------
    shape, dtype
        As the array has them.
    min, max, mean, std
        Over all elements (NaN for an empty tensor).
    zero_fraction
        Fraction of elements exactly 0 (dead ReLUs, pruned weights).
    counts, edges
        Histogram: ``counts`` (bins,), ``edges`` (bins + 1,).
    """

    shape: tuple[int, ...]
    dtype: str
    min: float
    max: float
    mean: float
    std: float
    zero_fraction: float
    counts: np.ndarray = field(repr=False)
    edges: np.ndarray = field(repr=False)

    @classmethod
    def of(cls, array: Any, bins: int = HISTOGRAM_BINS) -> "TensorStats | None":
        """Statistics of a numeric array; None for what is not one (an ML model's map outputs)."""
        try:
            a = np.asarray(array)
        except Exception:
            return None
        if a.dtype.kind not in "biuf":
            return None
        values = a.astype(np.float64).ravel()
        if values.size == 0:
            nan = float("nan")
            return cls(a.shape, str(a.dtype), nan, nan, nan, nan, nan, np.zeros(bins, np.int64), np.zeros(bins + 1))
        finite = values[np.isfinite(values)]
        counts, edges = np.histogram(finite if finite.size else [0.0], bins=bins)
        return cls(a.shape, str(a.dtype), float(values.min()), float(values.max()), float(values.mean()),
                   float(values.std()), float(np.mean(values == 0)), counts, edges)

    def row(self) -> dict[str, Any]:
        """The scalar fields, for a table row."""
        return {"shape": "x".join(map(str, self.shape)), "dtype": self.dtype, "min": self.min, "max": self.max,
                "mean": self.mean, "std": self.std, "zero_fraction": self.zero_fraction}


@dataclass
class NodeRecord:
    """One executed node: its position, name, op type, and its input and output values by tensor name."""

    index: int
    name: str
    op_type: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]

    @property
    def output(self) -> Any:
        """The node's first output."""
        return next(iter(self.outputs.values()))

    @property
    def stats(self) -> TensorStats | None:
        """`TensorStats` of the first output."""
        return TensorStats.of(self.output)


# --------------------------------------------------------------------------- helpers

def _as_model(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    from onnxlab.formats import as_model

    return as_model(model)


def node_names(model: onnx.ModelProto) -> list[str]:
    """Every node's name in graph order; unnamed nodes get ``<op_type>_<index>`` (as `trace` reports them)."""
    return [node.name or f"{node.op_type}_{i}" for i, node in enumerate(model.graph.node)]


def _feeds(model: onnx.ModelProto, inputs: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    initializers = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise InvalidArgument(f"inputs missing for {', '.join(missing)} (the model takes {', '.join(names)})")
        return {n: np.asarray(inputs[n]) for n in names}
    if len(names) != 1:
        raise InvalidArgument(f"the model takes {len(names)} inputs ({', '.join(names)}): pass a dict by name")
    return {names[0]: np.asarray(inputs)}


def _session(model: onnx.ModelProto):
    from onnxlab.runtime import ort_session

    # no graph optimisation: every node of the file runs as written (fusions would merge the nodes we inspect)
    return ort_session(model, optimization="disable")


# --------------------------------------------------------------------------- one run

def trace(model: onnx.ModelProto | str | os.PathLike,
          inputs: np.ndarray | Mapping[str, np.ndarray]) -> "OrderedDict[str, NodeRecord]":
    """Run ``model`` once and return every node's inputs and outputs, by node name, in graph order.

    Every node output becomes a graph output of a copy of the model, run by ONNX Runtime with graph
    optimisations off (so each tensor is the one the file's node computes).
    """
    model = _as_model(model)
    feeds = _feeds(model, inputs)
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    declared = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in declared:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
                declared.add(name)
    session = _session(probe)
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(names, feeds)))
    values.update(feeds)
    values.update({t.name: numpy_helper.to_array(t) for t in model.graph.initializer})
    records = OrderedDict()
    for i, (node, name) in enumerate(zip(model.graph.node, node_names(model))):
        records[name] = NodeRecord(i, name, node.op_type, {n: values.get(n) for n in node.input if n},
                                   {n: values[n] for n in node.output if n})
    return records


# --------------------------------------------------------------------------- node by node

class Stepper:
    """Runs a model node by node, each node on its own in ONNX Runtime.

    Parameters
    ----------
    model
        An ONNX model or its path.
    inputs
        The model's input array (one input) or a dict by input name.

    Examples
    --------
    >>> stepper = Stepper("lenet5.onnx", x)          # doctest: +SKIP
    >>> record = stepper.step()                       # the first node
    >>> record = stepper.run_to("conv2d_1")           # everything up to and including that node
    >>> records = stepper.run()                       # the rest
    """

    def __init__(self, model: onnx.ModelProto | str | os.PathLike, inputs: np.ndarray | Mapping[str, np.ndarray],
                 sessions: dict | None = None):
        self.model = _as_model(model)
        # one-node sessions by (node index, input shapes and dtypes); pass one dict to several steppers of the same
        # model to build each node's session once
        self.sessions = {} if sessions is None else sessions
        self.names = node_names(self.model)
        self.values: dict[str, Any] = dict(_feeds(self.model, inputs))
        self._initializers = {t.name: t for t in self.model.graph.initializer}
        self.records: "OrderedDict[str, NodeRecord]" = OrderedDict()
        self.position = 0

    @property
    def done(self) -> bool:
        return self.position >= len(self.model.graph.node)

    def _one_node_model(self, node: onnx.NodeProto, inputs: dict[str, Any]) -> onnx.ModelProto:
        for attribute in node.attribute:
            if attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise OnnxlabError(f"node {node.name or node.op_type} ({node.op_type}) holds a subgraph: the stepper "
                                   "cannot run it on its own; use trace() for this model")
        graph_inputs, initializers = [], []
        for name in node.input:
            if not name or name in [i.name for i in graph_inputs] or name in [t.name for t in initializers]:
                continue
            if name in inputs:
                array = np.asarray(inputs[name])
                graph_inputs.append(onnx.helper.make_tensor_value_info(
                    name, onnx.helper.np_dtype_to_tensor_dtype(array.dtype), array.shape))
            elif name in self._initializers:
                initializers.append(self._initializers[name])
            else:
                raise OnnxlabError(f"node {node.name or node.op_type}: input {name!r} has no value yet")
        graph = onnx.helper.make_graph([node], f"step_{node.name or node.op_type}", graph_inputs,
                                       [onnx.ValueInfoProto(name=n) for n in node.output if n], initializers)
        one = onnx.helper.make_model(graph, opset_imports=list(self.model.opset_import),
                                     ir_version=self.model.ir_version)
        one.functions.extend(self.model.functions)
        return one

    def run_node(self, index: int, inputs: Mapping[str, Any] | None = None,
                 node: onnx.NodeProto | None = None) -> dict[str, Any]:
        """Outputs of node ``index`` (or of ``node``, a replacement) on ``inputs`` (default: the values so far);
        nothing is recorded."""
        replaced = node is not None
        node = node if replaced else self.model.graph.node[index]
        values = dict(self.values if inputs is None else inputs)
        known = [n for n in node.input if n and n in values]
        key = (index, tuple((n, np.shape(values[n]), np.asarray(values[n]).dtype.str) for n in known))
        session = None if replaced else self.sessions.get(key)
        if session is None:
            session = _session(self._one_node_model(node, values))
            if not replaced:
                self.sessions[key] = session
        feeds = {i.name: np.asarray(values[i.name]) for i in session.get_inputs()}
        outputs = [n for n in node.output if n]
        return dict(zip(outputs, session.run(outputs, feeds)))

    def step(self, substitutes: Mapping[str, Any] | None = None,
             transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> NodeRecord:
        """Run the next node; its `NodeRecord`.

        ``substitutes`` replace input values (a weight given here is fed as an input instead of the file's
        initializer); ``transform`` maps the node's outputs before later nodes see them. Cross inference runs a
        node "in int8" with both (`onnxlab.cross_inference`).
        """
        if self.done:
            raise OnnxlabError("the stepper has run every node")
        node = self.model.graph.node[self.position]
        inputs = {**self.values, **substitutes} if substitutes else None
        outputs = self.run_node(self.position, inputs)
        if transform is not None:
            outputs = transform(outputs)
        self.values.update(outputs)
        seen = inputs if inputs is not None else self.values
        record = NodeRecord(self.position, self.names[self.position], node.op_type,
                            {n: seen.get(n, self._constant(n)) for n in node.input if n}, outputs)
        self.records[record.name] = record
        self.position += 1
        return record

    def _constant(self, name: str) -> Any:
        tensor = self._initializers.get(name)
        return numpy_helper.to_array(tensor) if tensor is not None else None

    def run_to(self, name: str) -> NodeRecord:
        """Run nodes up to and including the one called ``name``; its record."""
        if name not in self.names:
            raise InvalidArgument(f"no node {name!r} in the model; nodes: {', '.join(self.names[:8])}"
                                  + (", ..." if len(self.names) > 8 else ""))
        if name in self.records:
            return self.records[name]
        while True:
            record = self.step()
            if record.name == name:
                return record

    def run(self) -> "OrderedDict[str, NodeRecord]":
        """Run the remaining nodes; every record so far."""
        while not self.done:
            self.step()
        return self.records

    def outputs(self) -> dict[str, Any]:
        """The graph outputs computed so far, by name."""
        return {o.name: self.values[o.name] for o in self.model.graph.output if o.name in self.values}


# --------------------------------------------------------------------------- weights

def layer_weights(model: onnx.ModelProto | str | os.PathLike, node: str) -> dict[str, np.ndarray]:
    """The constant inputs (initializers) of the node called ``node``, by tensor name."""
    model = _as_model(model)
    names = node_names(model)
    if node not in names:
        raise InvalidArgument(f"no node {node!r} in the model")
    inits = {t.name: t for t in model.graph.initializer}
    return {n: numpy_helper.to_array(inits[n]) for n in model.graph.node[names.index(node)].input if n in inits}


def _set(w: np.ndarray, index: tuple[int, ...], value: float) -> np.ndarray:
    out = w.copy()
    try:
        out[tuple(index)] = value
    except IndexError as exc:
        raise InvalidArgument(f"index {tuple(index)} is outside the tensor's shape {w.shape}") from None
    return out


def _prune(w: np.ndarray, threshold: float) -> np.ndarray:
    if threshold < 0:
        raise InvalidArgument(f"prune threshold must be >= 0, got {threshold}")
    return np.where(np.abs(w) < threshold, np.zeros_like(w), w)


def _clip(w: np.ndarray, low: float, high: float) -> np.ndarray:
    if low > high:
        raise InvalidArgument(f"clip needs low <= high, got {low} > {high}")
    return np.clip(w, low, high).astype(w.dtype)


#: Weight edits by name: ``edit(array, **parameters) -> array`` of the same shape and dtype.
WEIGHT_EDITS: dict[str, Callable[..., np.ndarray]] = {
    "set": _set,                                                        # index=(...), value=x
    "scale": lambda w, factor: (w * factor).astype(w.dtype),            # factor=x
    "prune": _prune,                                                    # threshold=t: |w| < t -> 0
    "clip": _clip,                                                      # low=a, high=b
}


def edit_weight(model: onnx.ModelProto | str | os.PathLike, tensor: str, edit: str,
                **parameters: Any) -> onnx.ModelProto:
    """A copy of ``model`` whose initializer ``tensor`` is changed by ``WEIGHT_EDITS[edit](array, **parameters)``.

    The source (proto or file) is left as it was.
    """
    model = onnx.ModelProto.FromString(_as_model(model).SerializeToString())
    if edit not in WEIGHT_EDITS:
        raise InvalidArgument(f"unknown edit {edit!r}; known: {', '.join(WEIGHT_EDITS)}")
    target = next((t for t in model.graph.initializer if t.name == tensor), None)
    if target is None:
        raise InvalidArgument(f"no initializer {tensor!r} in the model")
    array = numpy_helper.to_array(target)
    try:
        changed = WEIGHT_EDITS[edit](array, **parameters)
    except TypeError as exc:
        raise InvalidArgument(f"edit {edit!r}: {exc}") from None
    target.CopyFrom(numpy_helper.from_array(np.asarray(changed, dtype=array.dtype).reshape(array.shape), tensor))
    return model


def diff_traces(before: Mapping[str, NodeRecord], after: Mapping[str, NodeRecord]) -> list[dict[str, Any]]:
    """Per node output: the largest absolute difference between two traces of the same graph, in graph order."""
    rows = []
    for name, record in before.items():
        other = after.get(name)
        if other is None:
            continue
        for tensor, value in record.outputs.items():
            a, b = np.asarray(value), np.asarray(other.outputs.get(tensor))
            numeric = a.dtype.kind in "biuf" and b.dtype.kind in "biuf" and a.shape == b.shape
            diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if numeric and a.size else 0.0
            rows.append({"node": name, "op_type": record.op_type, "tensor": tensor, "max_abs_diff": diff,
                         "changed": diff > 0})
    return rows


def save_edited(model: onnx.ModelProto, path: str | os.PathLike, source: str | os.PathLike | None = None) -> Path:
    """Write an edited model to ``path`` atomically; refuse ``path`` if it is the ``source`` file or exists."""
    from onnxlab.formats import save_model

    path = Path(path)
    if source is not None and path.resolve() == Path(source).resolve():
        raise InvalidArgument(f"{path}: this is the source model; write the edited model to a new file")
    if path.exists():
        raise InvalidArgument(f"{path}: exists; edited models are written to new files only")
    return save_model(model, path)


# --------------------------------------------------------------------------- augmentation probe (paper R)

#: Degrees of the "rotate" augmentation.
ROTATE_DEGREES = 15.0
#: Side (pixels) of the box filter of the "blur" augmentation.
BLUR_SIZE = 3


def _spatial(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``fn`` to an (H, W) plane of an (H, W) or (H, W, C) image, channel by channel."""
    if image.ndim == 2:
        return fn(image)
    return np.stack([fn(image[..., c]) for c in range(image.shape[-1])], axis=-1)


def _rotate(image: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return _spatial(image, lambda p: ndimage.rotate(p, ROTATE_DEGREES, reshape=False, order=1, mode="constant"))


def _blur(image: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return _spatial(image, lambda p: ndimage.uniform_filter(p, size=BLUR_SIZE, mode="nearest"))


#: Paper R's augmentations, one image -> five: the original, rotated, blurred, flipped (upside down) and
#: flopped (mirrored left-right), as ImageMagick names them. Images are (H, W) or (H, W, C).
AUGMENTATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "original": lambda image: image,
    "rotate": _rotate,
    "blur": _blur,
    "flip": lambda image: image[::-1],
    "flop": lambda image: image[:, ::-1],
}


def augment(image: np.ndarray) -> dict[str, np.ndarray]:
    """`AUGMENTATIONS` of one image (H, W) or (H, W, C), each as float32 of the same shape."""
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise InvalidArgument(f"augment takes one image (H, W) or (H, W, C), got shape {image.shape}")
    return {name: np.ascontiguousarray(fn(image), dtype=np.float32) for name, fn in AUGMENTATIONS.items()}


def augmentation_probe(model: onnx.ModelProto | str | os.PathLike, image: np.ndarray) -> dict[str, Any]:
    """Run ``model`` on the five `augment` versions of ``image`` (one batch) and report its stability.

    Returns ``{"images": {name: image}, "predictions": {name: class}, "scores": {name: output row},
    "layers": [row per node and augmentation with `TensorStats.row` fields]}``.
    """
    images = augment(image)
    batch = np.stack(list(images.values()))
    records = trace(model, batch)
    final = np.asarray(records[next(reversed(records))].output)
    names = list(images)
    layers = []
    for record in records.values():
        output = np.asarray(record.output)
        if output.ndim == 0 or output.shape[0] != len(names):
            continue
        for i, name in enumerate(names):
            stats = TensorStats.of(output[i])
            if stats is not None:
                layers.append({"node": record.name, "op_type": record.op_type, "augmentation": name, **stats.row()})
    return {"images": images, "predictions": {n: int(final[i].argmax()) for i, n in enumerate(names)},
            "scores": {n: final[i] for i, n in enumerate(names)}, "layers": layers}
