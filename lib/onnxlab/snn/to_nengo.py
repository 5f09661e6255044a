"""ONNX-SNN -> a `nengo.Network` built from Nengo objects, runnable in NengoDL (and Nengo).

Every ONNX tensor becomes a Nengo object whose output is the tensor's per-sample values,
flattened in ONNX (channels-first, row-major) order: graph inputs are `nengo.Node` inputs,
linear ops (Conv, Gemm, MatMul, Add, pooling, Transpose, Concat, Gather) become
`nengo.Connection` transforms, and neuron ops become `nengo.Ensemble` neurons with the file's
gain, bias and neuron type. Reshape/Flatten/Identity/Dropout reuse their input's object. All
connections have ``synapse=None``: the network is feed-forward within one time step, like the
ONNX graph. Each op type has one small builder in `BUILDERS`; any other op is an error naming
the node.

A linear op's result stays *pending* (a list of `Term` connections not yet made) until it is
used: a neuron op with a single pending input receives those connections directly, as a
hand-written Nengo network would (``Convolution`` straight into ``ens.neurons``); anything else
gets a passthrough `nengo.Node` summing them. A pure permutation (a Transpose before a Flatten)
feeding a dense layer is folded into the dense matrix's column order. Passthrough nodes and
sparse permutations each cost NengoDL a copy per time step: removing them halves the run time
of a Keras-style CNN.

Each builder also records the Python expression that recreates what it built, so
`onnxlab.snn.codegen.to_nengo_code` writes a script that builds exactly this network. The index
computations (transposes, pooling, concatenation, selections) are the module-level functions
below, called by the builders and by the generated scripts alike.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxlab.errors import SNNError
from onnxlab.formats import ONNX_SNN_DOMAIN
from onnxlab.snn import layout
from onnxlab.snn.neurons import NEURONS, NeuronOp
from onnxlab.snn.simulation import Simulation
from onnxlab.snn.to_snn import DEFAULT_ACTIVATIONS

#: What to do with MaxPool, which NengoDL cannot spike through: "average" (replace, warn) or "error".
MAX_POOL_MODES = ("average", "error")


# --------------------------------------------------------------------------- transforms (shared with scripts)

def _sparse(out_size: int, in_size: int, rows: np.ndarray, cols: np.ndarray, values: Any = 1.0):
    import nengo

    init = np.broadcast_to(np.asarray(values, np.float64), np.shape(rows)).copy()
    return nengo.Sparse((int(out_size), int(in_size)), indices=np.stack([rows, cols], axis=1), init=init)


def selection_transform(out_size: int, in_size: int, index: np.ndarray):
    """Sparse transform with ``out[i] = in[index[i]]``."""
    return _sparse(out_size, in_size, np.arange(out_size), np.asarray(index))


def transpose_index(shape: tuple[int, ...], perm: list[int]) -> np.ndarray:
    """Flat index with ``out[i] = in[index[i]]`` for a transpose of per-sample ``shape`` by ``perm``."""
    return np.arange(int(np.prod(shape))).reshape(shape).transpose(perm).ravel()


def transpose_transform(shape: tuple[int, ...], perm: list[int]):
    """Sparse transform permuting a flat tensor of per-sample ``shape`` by ``perm`` (sample axes)."""
    index = transpose_index(shape, perm)
    return selection_transform(index.size, index.size, index)


def dense_after_selection(init: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(out, in) matrix ``W'`` with ``W' @ x == init @ x[index]``, for a permutation ``index``."""
    return np.ascontiguousarray(np.asarray(init)[:, np.argsort(index)])


def pool_transform(shape: tuple[int, int, int], kernel: tuple[int, int], strides: tuple[int, int]):
    """Sparse transform averaging (C, H, W) over ``kernel`` windows with ``strides`` (no padding)."""
    c, h, w = shape
    oh, ow = (h - kernel[0]) // strides[0] + 1, (w - kernel[1]) // strides[1] + 1
    index = np.arange(c * h * w).reshape(shape)
    out_index = np.arange(c * oh * ow).reshape(c, oh, ow)
    rows, cols = [], []
    for i in range(oh):
        for j in range(ow):
            window = index[:, i * strides[0]:i * strides[0] + kernel[0], j * strides[1]:j * strides[1] + kernel[1]]
            rows.append(np.repeat(out_index[:, i, j], kernel[0] * kernel[1]))
            cols.append(window.reshape(c, -1).ravel())
    return _sparse(c * oh * ow, c * h * w, np.concatenate(rows), np.concatenate(cols), 1.0 / (kernel[0] * kernel[1]))


def pool_output_shape(shape: tuple[int, int, int], kernel: tuple[int, int], strides: tuple[int, int]) -> tuple:
    c, h, w = shape
    return c, (h - kernel[0]) // strides[0] + 1, (w - kernel[1]) // strides[1] + 1


def concat_transform(shapes: list[tuple[int, ...]], axis: int, part: int):
    """Sparse transform placing input ``part`` of a concatenation of ``shapes`` along sample ``axis``."""
    out_shape = np.concatenate([np.empty(s) for s in shapes], axis=axis).shape
    layout_index = np.arange(int(np.prod(out_shape))).reshape(out_shape)
    splits = np.cumsum([s[axis] for s in shapes])[:-1]
    block = np.split(layout_index, splits, axis=axis)[part]
    size = int(np.prod(shapes[part]))
    return _sparse(layout_index.size, size, block.ravel(), np.arange(size))


def scale_transform(gains: np.ndarray):
    """Sparse diagonal transform multiplying each element by ``gains``."""
    n = len(gains)
    return _sparse(n, n, np.arange(n), np.arange(n), gains)


def bias_column(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` broadcast to per-sample ``shape``, as an (n, 1) transform from a constant node."""
    return np.broadcast_to(np.asarray(value, np.float64), shape).ravel()[:, None]


def broadcast_neurons(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per-neuron gain or bias: ``value`` broadcast to ``shape``, flat, float64."""
    return np.broadcast_to(np.asarray(value).astype(np.float64), shape).ravel().copy()


def batch_norm_affine(scale, offset, mean, var, eps: float, shape: tuple[int, ...]):
    """Inference batch norm as (per-element gains, per-channel offsets broadcastable to ``shape``)."""
    a = scale / np.sqrt(var + eps)
    per_channel = (-1,) + (1,) * (len(shape) - 1)
    return np.broadcast_to(a.reshape(per_channel), shape).ravel(), (offset - mean * a).reshape(per_channel)


def onnx_constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every constant of the graph: initializers and the outputs of Constant nodes."""
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            consts[node.output[0]] = numpy_helper.to_array(helper.get_attribute_value(node.attribute[0]))
    return consts


# --------------------------------------------------------------------------- the builder

@dataclass
class Term:
    """One connection into a pending tensor: ``pre`` through ``transform`` (None = identity).

    ``code`` is the script expression of ``transform``. Pure selections (``out[i] = pre[index[i]]``)
    also keep their ``index`` and its script expression, so a following dense layer can absorb them.
    """

    pre: Any
    transform: Any = None
    code: str | None = None
    trainable: bool = False
    index: np.ndarray | None = None
    index_code: str | None = None


@dataclass
class Tensor:
    """One ONNX tensor on the Nengo side: prod(shape) values per sample.

    Either built (``obj`` is a Nengo object outputting them) or pending (``obj`` is None and the
    value is the sum of ``terms``, connected only when a consumer needs them, see `Builder.obj`).
    """

    obj: Any
    shape: tuple[int, ...]
    terms: list[Term] = field(default_factory=list)
    label: str = ""

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class NengoModel:
    """The result of `to_nengo`.

    Attributes
    ----------
    network
        The `nengo.Network`.
    inputs
        ONNX input name -> `nengo.Node` to feed, with per-sample ``input_shapes``.
    outputs
        ONNX output name -> unfiltered `nengo.Probe`; ``filtered_outputs`` use the file's synapse.
    ensembles
        ONNX neuron node name -> its `nengo.Ensemble`.
    softmax_dropped
        Output names whose final Softmax was dropped (Nengo outputs the logits).
    notes
        What the conversion changed (dropped Softmax, MaxPool as average, ...).
    code
        Python statements that rebuild the network (see `onnxlab.snn.codegen`).
    """

    network: Any
    inputs: dict[str, Any]
    input_shapes: dict[str, tuple[int, ...]]
    outputs: dict[str, Any]
    filtered_outputs: dict[str, Any]
    output_shapes: dict[str, tuple[int, ...]]
    ensembles: dict[str, Any]
    simulation: Simulation
    softmax_dropped: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _label(node: onnx.NodeProto) -> str:
    return f"node {node.name or node.output[0]!r} ({node.op_type})"


def _w(name: str) -> str:
    """Script expression of the ONNX constant ``name``."""
    return f"W[{name!r}]"


class Builder:
    """State shared by the op builders while a network is being built, and the code recording it."""

    def __init__(self, model: onnx.ModelProto, network: Any, *, rate: bool, max_pool: str, seed: int = 0):
        import nengo

        self.nengo = nengo
        self.network = network
        self.seed = seed
        self.model = model
        self.rate = rate
        self.max_pool = max_pool
        self.consts = onnx_constants(model)
        self.tensors: dict[str, Tensor] = {}
        self.ensembles: dict[str, Any] = {}
        self.notes: list[str] = []
        self.code: list[str] = []
        self._names: dict[int, str] = {}
        self._one = None
        #: how often each tensor is read (node inputs and graph outputs): pending tensors read
        #: more than once are built as a passthrough node rather than computed twice
        self.uses: dict[str, int] = {}
        for n in model.graph.node:
            for name in n.input:
                self.uses[name] = self.uses.get(name, 0) + 1
        for value in model.graph.output:
            self.uses[value.name] = self.uses.get(value.name, 0) + 1

    # -- recording
    def record(self, obj: Any, prefix: str, expression: str) -> Any:
        """Remember ``obj`` under a fresh variable name assigned from ``expression``; return ``obj``."""
        name = f"{prefix}{sum(1 for v in self._names.values() if v.rstrip('0123456789') == prefix)}"
        self._names[id(obj)] = name
        self.code.append(f"{name} = {expression}")
        return obj

    def ref(self, obj: Any) -> str:
        """Script expression of a recorded object (or of an ensemble's neurons)."""
        if id(obj) in self._names:
            return self._names[id(obj)]
        return f"{self._names[id(obj.ensemble)]}.neurons"

    # -- helpers used by the builders
    def const(self, name: str, node: onnx.NodeProto) -> np.ndarray:
        if name not in self.consts:
            raise SNNError(f"{_label(node)}: input {name!r} must be a constant (initializer) for Nengo")
        return self.consts[name]

    def tensor(self, name: str, node: onnx.NodeProto) -> Tensor:
        """The tensor ``name`` as ``node`` reads it; still pending only if ``node`` is its sole reader."""
        if name not in self.tensors:
            raise SNNError(f"{_label(node)}: input {name!r} is not produced by any supported op")
        tensor = self.tensors[name]
        if tensor.obj is None and self.uses.get(name, 0) > 1:
            self.obj(tensor)
        return tensor

    def pending(self, shape: tuple[int, ...], label: str) -> Tensor:
        """A new tensor of per-sample ``shape``, the sum of the terms added to it."""
        return Tensor(None, tuple(int(s) for s in shape), [], label)

    def obj(self, tensor: Tensor) -> Any:
        """The Nengo object outputting ``tensor``: a pending tensor gets its passthrough node now."""
        if tensor.obj is None:
            node = self.record(self.nengo.Node(size_in=tensor.size, label=tensor.label), "node",
                               f"nengo.Node(size_in={tensor.size}, label={tensor.label!r})")
            self.feed(tensor, node)
            tensor.obj, tensor.terms = node, []
        return tensor.obj

    def add_term(self, out: Tensor, pre: Tensor | Any, transform: Any = None, code: str | None = None, *,
                 trainable: bool = False, index: np.ndarray | None = None, index_code: str | None = None) -> None:
        """Add ``transform(pre)`` to the pending tensor ``out`` (see `connect` for the arguments)."""
        pre_obj = self.obj(pre) if isinstance(pre, Tensor) else pre
        out.terms.append(Term(pre_obj, transform, code, trainable, index, index_code))

    def feed(self, src: Tensor, post: Any) -> None:
        """Connect ``src`` into ``post``: a pending tensor's terms directly, a built one as identity."""
        if src.obj is not None:
            self.connect(src.obj, post)
        for term in src.terms:
            self.connect(term.pre, post, term.transform, term.code, trainable=term.trainable)

    def connect(self, pre: Any, post: Any, transform: Any = None, code: str | None = None, *,
                trainable: bool = False) -> None:
        """Connect without synapse; no transform means identity (``nengo.transforms.NoTransform``).

        ``code`` is the script expression of ``transform``. Only connections carrying ONNX
        weights (Conv, Gemm, MatMul) pass ``trainable=True``: structural transforms (transposes,
        pooling, concatenation, selections) and biases are fixed in NengoDL, so training changes
        exactly what the ONNX file stores as weights (plus the ensembles' own biases).
        """
        conn = self.nengo.Connection(pre, post, transform=transform, synapse=None)
        args = f"{self.ref(pre)}, {self.ref(post)}" + (f", transform={code}" if transform is not None else "")
        statement = f"nengo.Connection({args}, synapse=None)"
        if not trainable:
            self.network.config[conn].trainable = False
            statement = f"fixed({statement})"
        self.code.append(statement)

    def add_bias(self, out: Tensor, bias: np.ndarray, code: str) -> None:
        """Add a constant (broadcast to ``out.shape``) to pending ``out``, from a constant node."""
        if self._one is None:
            self._one = self.record(self.nengo.Node([1.0], label="one"), "one", 'nengo.Node([1.0], label="one")')
        self.add_term(out, self._one, bias_column(bias, out.shape), f"bias_column({code}, {out.shape})")


#: ONNX op type (default domain) -> builder(builder, node).
BUILDERS: dict[str, Callable[[Builder, onnx.NodeProto], None]] = {}


def builds(*op_types: str):
    def register(fn):
        for op_type in op_types:
            BUILDERS[op_type] = fn
        return fn
    return register


def _alias(src: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The same values under another per-sample shape (flat order unchanged)."""
    return Tensor(src.obj, tuple(int(s) for s in shape), src.terms, src.label)


@builds("Identity", "Dropout")
def _identity(b: Builder, node: onnx.NodeProto) -> None:
    src = b.tensor(node.input[0], node)
    b.tensors[node.output[0]] = _alias(src, src.shape)


@builds("Reshape", "Flatten")
def _reshape(b: Builder, node: onnx.NodeProto) -> None:
    src = b.tensor(node.input[0], node)
    if node.op_type == "Flatten":
        axis = _attrs(node).get("axis", 1)
        if axis != 1:
            raise SNNError(f"{_label(node)}: only axis=1 (keep the batch axis) is supported, got {axis}")
        shape = (src.size,)
    else:
        target = [int(d) for d in b.const(node.input[1], node)]
        full = np.empty((1, *src.shape))
        target = [full.shape[i] if d == 0 else d for i, d in enumerate(target)]
        try:
            shape = full.reshape(target).shape
        except ValueError:
            raise SNNError(f"{_label(node)}: cannot reshape {src.shape} to {target}") from None
        if shape[0] != 1:
            raise SNNError(f"{_label(node)}: reshapes across the batch axis ({target})")
        shape = shape[1:]
    b.tensors[node.output[0]] = _alias(src, shape)


@builds("Transpose")
def _transpose(b: Builder, node: onnx.NodeProto) -> None:
    src = b.tensor(node.input[0], node)
    perm = list(_attrs(node).get("perm", [len(src.shape) - i for i in range(len(src.shape) + 1)]))
    if perm[0] != 0:
        raise SNNError(f"{_label(node)}: permutes the batch axis (perm={perm})")
    sample_perm = [p - 1 for p in perm[1:]]
    out = b.pending(np.empty(src.shape).transpose(sample_perm).shape, node.name or node.output[0])
    b.add_term(out, src, transpose_transform(src.shape, sample_perm),
               f"transpose_transform({src.shape}, {sample_perm})",
               index=transpose_index(src.shape, sample_perm), index_code=f"transpose_index({src.shape}, {sample_perm})")
    b.tensors[node.output[0]] = out


@builds("Gather")
def _gather(b: Builder, node: onnx.NodeProto) -> None:
    """Selection along the flat feature axis (axis=1) with constant indices, as a Sparse transform."""
    src = b.tensor(node.input[0], node)
    index = b.const(node.input[1], node)
    if _attrs(node).get("axis", 0) != 1 or len(src.shape) != 1 or index.ndim != 1:
        raise SNNError(f"{_label(node)}: only Gather along axis 1 of a flat tensor with 1-D indices is supported")
    out = b.pending(index.shape, node.name or node.output[0])
    index_code = f"{_w(node.input[1])} % {src.size}"
    b.add_term(out, src, selection_transform(out.size, src.size, index % src.size),
               f"selection_transform({out.size}, {src.size}, {index_code})",
               index=index % src.size, index_code=index_code)
    b.tensors[node.output[0]] = out


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _padding_mode(node: onnx.NodeProto, in_hw: tuple[int, int], kernel: tuple[int, int],
                  strides: tuple[int, int]) -> str:
    attrs = _attrs(node)
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER",):
        return "same"
    if auto_pad == "VALID":
        return "valid"
    if auto_pad != "NOTSET":
        raise SNNError(f"{_label(node)}: auto_pad={auto_pad} is not supported by nengo.Convolution")
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if not any(pads):
        return "valid"
    same = [_same_padding(s, k, st) for s, k, st in zip(in_hw, kernel, strides)]
    if pads == [same[0][0], same[1][0], same[0][1], same[1][1]]:
        return "same"
    raise SNNError(f"{_label(node)}: pads {pads} are neither 'valid' nor 'same'; nengo.Convolution supports only those")


@builds("Conv")
def _conv(b: Builder, node: onnx.NodeProto) -> None:
    src = b.tensor(node.input[0], node)
    weight = b.const(node.input[1], node)
    attrs = _attrs(node)
    if len(src.shape) != 3 or weight.ndim != 4:
        raise SNNError(f"{_label(node)}: only 2-D convolutions are supported (input {src.shape})")
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise SNNError(f"{_label(node)}: dilations {attrs['dilations']} are not supported by nengo.Convolution")
    if attrs.get("group", 1) != 1:
        raise SNNError(f"{_label(node)}: grouped convolution (group={attrs['group']}) is not supported")
    kernel = tuple(int(k) for k in weight.shape[2:])
    strides = tuple(int(s) for s in attrs.get("strides", [1, 1]))
    padding = _padding_mode(node, src.shape[1:], kernel, strides)
    settings = dict(n_filters=int(weight.shape[0]), input_shape=src.shape, kernel_size=kernel, strides=strides,
                    padding=padding, channels_last=False)
    transform = b.nengo.Convolution(**settings, init=layout.conv_kernel_from_onnx(weight))
    code = ("nengo.Convolution(" + ", ".join(f"{k}={v!r}" for k, v in settings.items())
            + f", init=layout.conv_kernel_from_onnx({_w(node.input[1])}))")
    out = b.pending(transform.output_shape.shape, node.name or node.output[0])
    b.add_term(out, src, transform, code, trainable=True)
    if len(node.input) > 2 and node.input[2]:
        b.add_bias(out, b.const(node.input[2], node)[:, None, None], f"{_w(node.input[2])}[:, None, None]")
    b.tensors[node.output[0]] = out


@builds("Gemm")
def _gemm(b: Builder, node: onnx.NodeProto) -> None:
    src = b.tensor(node.input[0], node)
    attrs = _attrs(node)
    if attrs.get("transA", 0):
        raise SNNError(f"{_label(node)}: transA=1 is not supported")
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    weight = b.const(node.input[1], node) * alpha
    code = f"{_w(node.input[1])} * {alpha!r}"
    if attrs.get("transB", 0):  # stored (out, in), as nengo.Dense wants it
        _dense(b, node, src, layout.dense_from_gemm(weight), layout.dense_to_gemm(layout.dense_from_gemm(weight)),
               f"np.ascontiguousarray({code})")
    else:
        _dense(b, node, src, weight, layout.dense_to_gemm(weight), f"layout.dense_to_gemm({code})")
    if len(node.input) > 2 and node.input[2]:
        b.add_bias(b.tensors[node.output[0]], b.const(node.input[2], node) * beta,
                   f"{_w(node.input[2])} * {beta!r}")


@builds("MatMul")
def _matmul(b: Builder, node: onnx.NodeProto) -> None:
    weight = b.const(node.input[1], node)
    _dense(b, node, b.tensor(node.input[0], node), weight, layout.dense_to_gemm(weight),
           f"layout.dense_to_gemm({_w(node.input[1])})")


def _is_permutation(index: np.ndarray | None) -> bool:
    return index is not None and np.array_equal(np.sort(index), np.arange(len(index)))


def _dense(b: Builder, node: onnx.NodeProto, src: Tensor, weight: np.ndarray, init: np.ndarray, code: str) -> None:
    """Dense layer with an (in, out) ``weight``; ``init`` is the same as nengo.Dense's (out, in).

    A pending permutation input (the Transpose before a Flatten) is folded into the columns.
    """
    if len(src.shape) != 1 or weight.ndim != 2 or weight.shape[0] != src.size:
        raise SNNError(f"{_label(node)}: needs a flat input and an (in, out) weight; got input {src.shape}, "
                       f"weight {weight.shape}")
    shape = (int(weight.shape[1]), int(weight.shape[0]))
    out = b.pending((weight.shape[1],), node.name or node.output[0])
    if src.obj is None and len(src.terms) == 1 and _is_permutation(src.terms[0].index):
        (term,) = src.terms
        init, code = dense_after_selection(init, term.index), f"dense_after_selection({code}, {term.index_code})"
        src = term.pre
    b.add_term(out, src, b.nengo.Dense(shape, init=init), f"nengo.Dense({shape}, init={code})", trainable=True)
    b.tensors[node.output[0]] = out


@builds("Add")
def _add(b: Builder, node: onnx.NodeProto) -> None:
    """Sum: the terms of pending inputs are added directly, built inputs as identity connections."""
    tensors = [n for n in node.input if n in b.tensors]
    consts = [n for n in node.input if n not in b.tensors]
    if not tensors:
        raise SNNError(f"{_label(node)}: adds two constants")
    shape = b.tensors[tensors[0]].shape
    if any(b.tensors[t].shape != shape for t in tensors):
        raise SNNError(f"{_label(node)}: adds tensors of different shapes "
                       f"{[b.tensors[t].shape for t in tensors]}")
    out = b.pending(shape, node.name or node.output[0])
    for name in tensors:
        src = b.tensor(name, node)
        if src.obj is None:
            out.terms.extend(src.terms)
        else:
            b.add_term(out, src.obj)
    for name in consts:
        value, code = b.const(name, node), _w(name)
        if value.ndim == len(shape) + 1:
            if value.shape[0] != 1:
                raise SNNError(f"{_label(node)}: constant {name!r} varies over the batch axis")
            value, code = value[0], f"{code}[0]"
        try:
            b.add_bias(out, value, code)
        except ValueError:
            raise SNNError(f"{_label(node)}: constant of shape {value.shape} does not broadcast to {shape}") from None
    b.tensors[node.output[0]] = out


@builds("AveragePool", "MaxPool")
def _pool(b: Builder, node: onnx.NodeProto) -> None:
    if node.op_type == "MaxPool":
        if b.max_pool == "error":
            raise SNNError(f"{_label(node)}: NengoDL cannot spike through max pooling (use max_pool='average')")
        note = f"{_label(node)}: max pooling replaced by average pooling (spiking networks cannot take a max)"
        warnings.warn(note)
        b.notes.append(note)
    src = b.tensor(node.input[0], node)
    attrs = _attrs(node)
    kernel = tuple(int(k) for k in attrs["kernel_shape"])
    strides = tuple(int(s) for s in attrs.get("strides", kernel))
    if any(attrs.get("pads", [0])) or attrs.get("ceil_mode", 0):
        raise SNNError(f"{_label(node)}: padded or ceil-mode pooling is not supported")
    if len(src.shape) != 3:
        raise SNNError(f"{_label(node)}: only 2-D pooling of (C, H, W) tensors is supported, got {src.shape}")
    out = b.pending(pool_output_shape(src.shape, kernel, strides), node.name or node.output[0])
    b.add_term(out, src, pool_transform(src.shape, kernel, strides),
               f"pool_transform({src.shape}, {kernel}, {strides})")
    b.tensors[node.output[0]] = out


@builds("Concat")
def _concat(b: Builder, node: onnx.NodeProto) -> None:
    parts = [b.tensor(name, node) for name in node.input]
    axis = _attrs(node)["axis"]
    if axis == 0 or axis == -len(parts[0].shape) - 1:
        raise SNNError(f"{_label(node)}: concatenates along the batch axis")
    sample_axis = axis - 1 if axis > 0 else axis
    shapes = [p.shape for p in parts]
    out_shape = np.concatenate([np.empty(s) for s in shapes], axis=sample_axis).shape
    out = b.pending(out_shape, node.name or node.output[0])
    for i, part in enumerate(parts):
        b.add_term(out, part, concat_transform(shapes, sample_axis, i),
                   f"concat_transform({shapes}, {sample_axis}, {i})")
    b.tensors[node.output[0]] = out


@builds("BatchNormalization")
def _batch_norm(b: Builder, node: onnx.NodeProto) -> None:
    """Inference-mode batch norm as a per-channel affine map (`fold_batch_norm` removes most first)."""
    src = b.tensor(node.input[0], node)
    eps = _attrs(node).get("epsilon", 1e-5)
    gains, offsets = batch_norm_affine(*(b.const(n, node) for n in node.input[1:5]), eps, src.shape)
    code = f"batch_norm_affine({', '.join(_w(n) for n in node.input[1:5])}, {eps!r}, {src.shape})"
    out = b.pending(src.shape, node.name or node.output[0])
    b.add_term(out, src, scale_transform(gains), f"scale_transform({code}[0])")
    b.add_bias(out, offsets, f"{code}[1]")
    b.tensors[node.output[0]] = out


def _neuron(b: Builder, node: onnx.NodeProto) -> None:
    if node.op_type not in NEURONS:
        raise SNNError(f"{_label(node)}: unknown ONNX-SNN neuron op; known: {', '.join(NEURONS)}")
    op: type[NeuronOp] = NEURONS[node.op_type]
    params = op.parameters(_attrs(node))
    if b.rate and op.spiking:
        op, params = rate_twin(op, params)
    src = b.tensor(node.input[0], node)
    label, seed = node.name or node.output[0], b.seed + len(b.ensembles)
    gain_name, bias_name = node.input[1:3]
    ensemble = b.nengo.Ensemble(src.size, 1, neuron_type=op.nengo_type(params),
                                gain=broadcast_neurons(b.const(gain_name, node), src.shape),
                                bias=broadcast_neurons(b.const(bias_name, node), src.shape), label=label, seed=seed)
    neuron_code = f"{op.nengo_path}(" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")"
    b.record(ensemble, "ens", f"nengo.Ensemble({src.size}, 1, neuron_type={neuron_code}, "
                              f"gain=broadcast_neurons({_w(gain_name)}, {src.shape}), "
                              f"bias=broadcast_neurons({_w(bias_name)}, {src.shape}), label={label!r}, seed={seed})")
    b.feed(src, ensemble.neurons)
    b.ensembles[label] = ensemble
    b.tensors[node.output[0]] = Tensor(ensemble.neurons, src.shape, label=label)


def rate_twin(op: type[NeuronOp], params: dict[str, float]) -> tuple[type[NeuronOp], dict[str, float]]:
    """The non-spiking op whose rate response ``op`` shares, with the parameters it knows."""
    for cls in op.__mro__:
        if isinstance(cls, type) and issubclass(cls, NeuronOp) and cls is not NeuronOp and not cls.spiking:
            return cls, {k: v for k, v in params.items() if k in cls.attributes}
    raise SNNError(f"{op.op_type} has no rate twin in Nengo (no closed-form rate): it can only be simulated "
                   "spiking; ONNX Runtime computes its tabulated rate")


def fold_batch_norm(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with every BatchNormalization that follows a Conv folded into its weights."""
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, int] = {}
    for n in graph.node:
        for name in n.input:
            consumers[name] = consumers.get(name, 0) + 1
    producer = {out: n for n in graph.node for out in n.output}
    keep = []
    for n in graph.node:
        conv = producer.get(n.input[0]) if n.op_type == "BatchNormalization" else None
        if (conv is None or conv.op_type != "Conv" or consumers.get(conv.output[0]) != 1
                or not all(name in inits for name in [conv.input[1], *n.input[1:5]])):
            keep.append(n)
            continue
        scale, offset, mean, var = (numpy_helper.to_array(inits[name]) for name in n.input[1:5])
        a = scale / np.sqrt(var + _attrs(n).get("epsilon", 1e-5))
        weight = numpy_helper.to_array(inits[conv.input[1]])
        bias = numpy_helper.to_array(inits[conv.input[2]]) if len(conv.input) > 2 and conv.input[2] else 0.0
        w_name, b_name = conv.input[1] + ".bnfold", (conv.output[0] + ".bnfold_bias")
        graph.initializer.extend([
            numpy_helper.from_array((weight * a[:, None, None, None]).astype(weight.dtype), w_name),
            numpy_helper.from_array(((bias - mean) * a + offset).astype(weight.dtype), b_name)])
        del conv.input[1:]
        conv.input.extend([w_name, b_name])
        conv.output[0] = n.output[0]
    del graph.node[:]
    graph.node.extend(keep)
    return folded


def to_nengo(model: onnx.ModelProto | str | os.PathLike, *, rate: bool = False,
             max_pool: str = "average", filtered_probes: bool = True) -> NengoModel:
    """Build a `nengo.Network` from an ONNX-SNN (or plain ONNX) model.

    Parameters
    ----------
    model
        Model proto or path; legacy ONNX-SNN files must be upgraded first (`onnxlab.snn.upgrade`).
    rate
        Use each spiking neuron's rate twin (LIF -> LIFRate): the network then computes what
        ONNX Runtime computes, which `verify` checks.
    max_pool
        One of `MAX_POOL_MODES`.
    filtered_probes
        Also probe each output through the file's synapse (``NengoModel.filtered_outputs``).

    Raises
    ------
    SNNError
        Naming the first node whose op or attributes Nengo cannot represent.
    """
    import nengo
    import nengo_dl

    from onnxlab.formats import as_model
    from onnxlab.snn.legacy import is_legacy

    if max_pool not in MAX_POOL_MODES:
        raise SNNError(f"max_pool must be one of {MAX_POOL_MODES}, got {max_pool!r}")
    source = as_model(model, check=False)
    if is_legacy(source):
        raise SNNError("this is a legacy ONNX-SNN file (neuron ops in the default domain): "
                       "upgrade it first with `onnxlab upgrade` / onnxlab.snn.upgrade")
    source = fold_batch_norm(source)
    network = nengo.Network(label=source.graph.name or "onnx-snn")
    simulation = Simulation.read(source)
    b = Builder(source, network, rate=rate, max_pool=max_pool, seed=simulation.seed)
    graph_outputs = [o.name for o in source.graph.output]
    inputs, input_shapes, softmax_dropped = {}, {}, set()
    with network:
        nengo_dl.configure_settings(trainable=None)  # lets Builder.connect mark connections fixed
        for value in source.graph.input:
            if value.name in b.consts:
                continue
            dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
            if len(dims) < 2 or any(d is None for d in dims[1:]):
                raise SNNError(f"input {value.name!r} needs a batch axis and fixed sample dimensions, got {dims}")
            shape = tuple(int(d) for d in dims[1:])
            size = int(np.prod(shape))
            node = b.record(nengo.Node(np.zeros(size), label=value.name), "inp",
                            f"nengo.Node(np.zeros({size}), label={value.name!r})")
            inputs[value.name], input_shapes[value.name] = node, shape
            b.tensors[value.name] = Tensor(node, shape, label=value.name)
        for node in source.graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                continue  # already in b.consts (onnx_constants)
            elif node.domain == ONNX_SNN_DOMAIN:
                _neuron(b, node)
            elif node.op_type == "Softmax" and node.output[0] in graph_outputs:
                src = b.tensor(node.input[0], node)
                b.tensors[node.output[0]] = _alias(src, src.shape)
                softmax_dropped.add(node.output[0])
                b.notes.append(f"{_label(node)}: output Softmax dropped (the classification, argmax, is unchanged)")
            elif node.domain in ("", "ai.onnx") and node.op_type in BUILDERS:
                BUILDERS[node.op_type](b, node)
            elif node.op_type in DEFAULT_ACTIVATIONS:
                raise SNNError(f"{_label(node)}: a non-spiking activation; convert the model with to_snn "
                               "(`onnxlab to-snn`) to replace it with a neuron op")
            else:
                raise SNNError(f"{_label(node)}: no Nengo builder for this op; supported: "
                               f"{', '.join(sorted(BUILDERS))}, output Softmax, and {ONNX_SNN_DOMAIN} neuron ops")
        outputs, filtered, output_shapes = {}, {}, {}
        for name in graph_outputs:
            tensor = b.tensors[name]
            b.obj(tensor)
            outputs[name] = b.record(nengo.Probe(tensor.obj, synapse=None, label=name), "probe",
                                     f"nengo.Probe({b.ref(tensor.obj)}, synapse=None, label={name!r})")
            if filtered_probes:
                filtered[name] = b.record(
                    nengo.Probe(tensor.obj, synapse=simulation.synapse, label=f"{name} (filtered)"), "probe",
                    f"nengo.Probe({b.ref(tensor.obj)}, synapse={simulation.synapse!r}, label={name + ' (filtered)'!r})")
            output_shapes[name] = tensor.shape
    return NengoModel(network, inputs, input_shapes, outputs, filtered, output_shapes, b.ensembles,
                      simulation, softmax_dropped, b.notes, b.code)
