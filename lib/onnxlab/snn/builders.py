"""One small builder per ONNX op, for the opset versions it covers: ONNX-SNN graph -> `NetworkDescription`.

Every ONNX tensor becomes a Nengo object whose output is the tensor's per-sample values, flat
in ONNX (channels-first, row-major) order: linear ops (Conv, Gemm, MatMul, Add/Sub/Mul/Div by
constants, pooling, Pad, Transpose, Concat, Split, Gather, reductions) become connection
transforms, neuron ops become ensembles, and shape-only ops (Reshape, Flatten, Squeeze,
Unsqueeze, Identity, Dropout) reuse their input's object.

`BUILDERS` is a registry keyed by op type *and opset*: ``@BUILDERS.register("Squeeze", since=13)``
covers Squeeze from opset 13 on (axes as an input), the ``since=1`` entry the versions before
(axes as an attribute), as onnx's reference ops and tf2onnx's handlers do. An op whose meaning a
builder does not honour is refused with an `SNNError` naming the node.

A linear op's result stays *pending* (a list of `Term` connections not yet made) until it is
used: a neuron op with a single pending input receives those connections directly, as a
hand-written Nengo network would (``Convolution`` straight into ``ens.neurons``); anything else
gets a passthrough node summing them. A pure permutation (a Transpose before a Flatten) feeding
a dense layer is folded into the dense matrix's column order. Passthrough nodes and sparse
permutations each cost NengoDL a copy per time step: avoiding them halves the run time of a
Keras-style CNN.

Convolutions run faster in NengoDL channels-last. So a (C, H, W) tensor may be held *channels-last*
(``Tensor.channels_last``: its flat values in (H, W, C) order) wherever that costs no copy: a tensor with one
channel (or one pixel) is the same either way (read so only where the ops reading the result keep the layout,
`Builder.reads_any_layout`), a Transpose to or from (H, W, C) — what tf2onnx writes around a
Keras network's convolutions — only relabels, and convolutions, pooling, neurons, BatchNorm and element-wise
arithmetic keep the layout they are given. Every other op reads the tensor in ONNX order (`Builder.tensor`):
a permutation, which a dense or sparse transform after it absorbs.
"""
from __future__ import annotations

import bisect
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx

from onnxlab.errors import InvalidArgument, SNNError
from onnxlab.formats import ONNX_SNN_DOMAIN
from onnxlab.graph import (attributes, evaluate_node, is_default_domain, node_label, readers, string_attribute,
                           use_counts)
from onnxlab.snn.description import Call, Environment, NetworkDescription, Var, Weight, evaluate
from onnxlab.snn.neurons import NEURONS, NeuronOp

#: What to do with MaxPool, which NengoDL cannot spike through: "average" (replace, warn) or "error".
MAX_POOL_MODES = ("average", "error")
#: The batch size `Shape` reports to the shape arithmetic after it: 1, so that a Reshape target computed from
#: it (PyTorch's ``x.view(x.size(0), -1)``: Shape -> Gather -> Unsqueeze -> Concat -> Reshape) keeps the
#: batch axis apart, as `_reshape` expects.
SHAPE_BATCH = 1
#: `onnxlab.snn.transforms` helpers that return a ``nengo.Sparse`` transform: `Builder.add_term` composes them with
#: a selection before them.
SPARSE_HELPERS = ("concat_transform", "pad_transform", "pool_transform", "reduce_mean_transform", "scale_transform",
                  "selection_transform", "sparse_product", "transpose_transform")
#: Largest finite float32: Clip bounds at or beyond it are no bound at all (Clip-6's defaults).
FLOAT32_MAX = float(np.finfo(np.float32).max)


# --------------------------------------------------------------------------- tensors on the Nengo side

@dataclass
class Term:
    """One connection into a pending tensor: ``pre`` through ``transform`` (None = identity).

    ``pre`` None is the constant 1: ``transform`` is then an (n, 1) column of constants (a bias), which
    `build_neuron` folds into the ensemble's bias and anything else receives from the ``one`` node.
    Pure selections (``out[i] = pre[index[i]]``) also keep their ``index`` expression, so a
    following dense layer can absorb them.
    """

    pre: Var | None
    transform: Any = None
    trainable: bool = False
    index: Any = None


@dataclass
class Tensor:
    """One ONNX tensor on the Nengo side: prod(shape) values per sample.

    Either built (``obj`` is the Var of a Nengo object outputting them) or pending (``obj`` is None
    and the value is the sum of ``terms``, connected only when a consumer needs them).
    """

    obj: Var | None
    shape: tuple[int, ...]
    terms: list[Term] = field(default_factory=list)
    label: str = ""
    #: a (C, H, W) tensor whose flat values are in (H, W, C) order (see the module's docstring)
    channels_last: bool = False

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def bias_terms(self) -> list[Term]:
        """The pending constant terms (biases)."""
        return [t for t in self.terms if t.pre is None]

    def alias(self, shape: tuple[int, ...], channels_last: bool | None = None) -> "Tensor":
        """The same values under another per-sample shape (flat order unchanged), held channels-last or not
        (None: as this tensor)."""
        return Tensor(self.obj, tuple(int(s) for s in shape), self.terms, self.label,
                      self.channels_last if channels_last is None else channels_last)

    @property
    def layout(self) -> dict[str, bool]:
        """Keyword arguments of the `transforms` helpers that make this tensor's per-element constants."""
        return {"channels_last": True} if self.channels_last else {}


class Builder:
    """State shared by the op builders while a network is described."""

    def __init__(self, model: onnx.ModelProto, weights: dict[str, np.ndarray], *, opset: int, rate: bool,
                 max_pool: str, seed: int = 0, layer_synapse: float | None = None, fold_biases: bool = True,
                 trainable_ensembles: bool = False, channels_last: bool = True):
        self.model = model
        #: hold (C, H, W) tensors channels-last where that costs no copy (the module's docstring)
        self.channels_last = channels_last
        #: tensor name -> the same values in ONNX order, for tensors held channels-last
        self._in_onnx_order: dict[str, Tensor] = {}
        #: fold constant inputs of neuron layers into the ensembles' biases (`build_neuron`)
        self.fold_biases = fold_biases
        #: let NengoDL train the ensembles' biases (False: marked fixed, only ONNX weights train)
        self.trainable_ensembles = trainable_ensembles
        #: lowpass time constant (s) of every connection out of a neuron layer (None: instantaneous)
        self.layer_synapse = layer_synapse
        self.opset = opset
        self.rate = rate
        self.max_pool = max_pool
        self.seed = seed
        self.consts = weights
        #: constants computed from the tensors' shapes (`Shape` and what follows it), not stored in the file
        self.derived: set[str] = set()
        self.net = NetworkDescription(model.graph.name or "onnx-snn")
        self.tensors: dict[str, Tensor] = {}
        self.ensembles: dict[str, Var] = {}
        #: ensemble label -> (C, H, W) of the neuron layers held channels-last (their neurons in (H, W, C) order)
        self.channels_last_layers: dict[str, tuple[int, int, int]] = {}
        self.notes: list[str] = []
        self._one: Var | None = None
        #: how often each tensor is read: pending tensors read more than once are built as a
        #: passthrough node rather than computed twice
        self.uses = use_counts(model.graph)
        #: tensor name -> the nodes reading it
        self.readers = readers(model.graph)
        self.graph_outputs = {o.name for o in model.graph.output}

    # -- reading the node
    def const(self, name: str, node: onnx.NodeProto) -> np.ndarray:
        if name not in self.consts:
            raise SNNError(f"{node_label(node)}: input {name!r} must be a constant (initializer) for Nengo")
        return self.consts[name]

    def optional_const(self, node: onnx.NodeProto, position: int) -> np.ndarray | None:
        """The constant at input ``position``, or None when the optional input is absent."""
        if len(node.input) <= position or not node.input[position]:
            return None
        return self.const(node.input[position], node)

    def fold(self, node: onnx.NodeProto) -> bool:
        """Compute ``node`` now if it reads only constants, at least one of them derived from a shape.

        (Constant subgraphs of the file itself were folded before building, by `onnxlab.graph.simplify`.)
        """
        inputs = [name for name in node.input if name]
        if not inputs or not all(n in self.consts for n in inputs) or not any(n in self.derived for n in inputs):
            return False
        values = evaluate_node(node, self.consts, self.opset)
        if values is None:
            raise SNNError(f"{node_label(node)}: cannot compute it from the input's shape")
        for name, value in zip([o for o in node.output if o], values):
            self.consts[name] = value
            self.derived.add(name)
        return True

    def value(self, expr: Any) -> Any:
        """Evaluate an index or weight expression now (for decisions the builder must make)."""
        return evaluate(expr, Environment(self.consts))

    def tensor(self, name: str, node: onnx.NodeProto, any_layout: bool = False) -> Tensor:
        """The tensor ``name`` as ``node`` reads it; still pending only if ``node`` is its sole reader.

        In ONNX order, unless ``any_layout`` (for builders that honour `Tensor.channels_last`).
        """
        if name not in self.tensors:
            raise SNNError(f"{node_label(node)}: input {name!r} is not produced by any supported op")
        tensor = self.tensors[name]
        if tensor.obj is None and self.uses.get(name, 0) > 1:
            self.obj(tensor)
        if tensor.channels_last and not any_layout:
            return self.in_onnx_order(name)
        return tensor

    def in_onnx_order(self, name: str) -> Tensor:
        """The tensor ``name`` (held channels-last) in ONNX order: a permutation, made once."""
        if name not in self._in_onnx_order:
            src = self.tensors[name]
            out = Tensor(None, src.shape, [], f"{src.label}.onnx_order")
            index = Call.of("onnx_order_index", src.shape)
            self.add_term(out, src, Call.of("selection_transform", src.size, src.size, index), index=index)
            if self.uses.get(name, 0) > 1:
                self.obj(out)
            self._in_onnx_order[name] = out
        return self._in_onnx_order[name]

    def channels_last_view(self, tensor: Tensor, output: str | None = None) -> Tensor:
        """``tensor`` held channels-last if it is, or can be at no cost (one channel or one pixel); else as it is.

        ``output``: the tensor the reading node makes from it in the same layout. A free view is taken only if every
        reader of ``output`` keeps the layout (`reads_any_layout`): else the output, e.g. a convolution's before a
        ``Flatten``, would need a permutation that holding it channels-first avoids.
        """
        if tensor.channels_last or not self.channels_last or len(tensor.shape) != 3:
            return tensor
        if output is not None and not self.reads_any_layout(output):
            return tensor
        if tensor.shape[0] == 1 or tensor.shape[1] * tensor.shape[2] == 1:
            return tensor.alias(tensor.shape, channels_last=True)
        return tensor

    def reads_any_layout(self, name: str) -> bool:
        """True if tensor ``name`` is no graph output and every node reading it keeps a channels-last layout
        (a neuron op, or an op whose builder is registered with ``keeps_layout``)."""
        if name in self.graph_outputs:
            return False
        for node in self.readers.get(name, []):
            if node.domain == ONNX_SNN_DOMAIN:
                continue
            builder = BUILDERS.lookup(node.op_type, self.opset) if is_default_domain(node.domain) else None
            if builder is None or not builder.keeps_layout:
                return False
        return True

    def sample_axis(self, axis: int, rank: int, node: onnx.NodeProto) -> int:
        """ONNX ``axis`` of a tensor with ``rank`` sample axes (plus the batch) as a sample axis, 0-based."""
        full = axis + rank + 1 if axis < 0 else axis
        if full == 0:
            raise SNNError(f"{node_label(node)}: operates on the batch axis (axis={axis})")
        if not 1 <= full <= rank:
            raise SNNError(f"{node_label(node)}: axis {axis} is out of range for a tensor of rank {rank + 1}")
        return full - 1

    # -- writing
    def pending(self, shape: tuple[int, ...], node: onnx.NodeProto, output: int = 0,
                channels_last: bool = False) -> Tensor:
        """A new pending tensor of per-sample ``shape`` for the node's ``output``."""
        tensor = Tensor(None, tuple(int(s) for s in shape), [], node.name or node.output[output], channels_last)
        self.tensors[node.output[output]] = tensor
        return tensor

    def obj(self, tensor: Tensor) -> Var:
        """The object outputting ``tensor``: a pending tensor gets its passthrough node now."""
        if tensor.obj is None:
            node = self.net.assign("node", Call.of("nengo.Node", size_in=tensor.size, label=tensor.label))
            self.feed(tensor, node)
            tensor.obj, tensor.terms = node, []
        return tensor.obj

    def add_term(self, out: Tensor, pre: Tensor | Var, transform: Any = None, *, trainable: bool = False,
                 index: Any = None) -> None:
        """Add ``transform(pre)`` to the pending tensor ``out``.

        A sparse ``transform`` (one of `SPARSE_HELPERS`) of a pending selection (e.g. a transpose) absorbs the
        selection (`transforms.sparse_product`): one connection instead of a passthrough node and two.
        """
        if isinstance(pre, Tensor) and pre.obj is None and len(pre.terms) == 1 and pre.terms[0].index is not None \
                and isinstance(transform, Call) and transform.function in SPARSE_HELPERS:
            (selection,) = pre.terms
            index = None if index is None else Call.of("np.take", selection.index, index)
            out.terms.append(Term(selection.pre, Call.of("sparse_product", transform, selection.transform),
                                  trainable, index))
            return
        out.terms.append(Term(self.obj(pre) if isinstance(pre, Tensor) else pre, transform, trainable, index))

    def add_tensor(self, out: Tensor, src: Tensor) -> None:
        """Add ``src`` as it is: its pending terms directly, a built object as an identity connection."""
        if src.obj is None:
            out.terms.extend(src.terms)
        else:
            self.add_term(out, src.obj)

    def feed(self, src: Tensor, post: Var) -> None:
        """Connect ``src`` into ``post``: a pending tensor's terms directly, a built one as identity.

        Only connections carrying ONNX weights (Conv, Gemm, MatMul) are trainable: structural
        transforms and the biases left as connections (those feeding no neurons) stay fixed in NengoDL,
        so training changes exactly what the ONNX file stores as weights, plus the ensembles' biases
        (into which `build_neuron` folds the biases in front of them).
        """
        if src.obj is not None:
            self.net.connect(src.obj, post, synapse=self.synapse_from(src.obj))
        for term in src.terms:
            pre = self.one() if term.pre is None else term.pre
            self.net.connect(pre, post, term.transform, trainable=term.trainable, synapse=self.synapse_from(pre))

    def one(self) -> Var:
        """The constant node (output 1) that feeds the biases no ensemble absorbs; made when first needed."""
        if self._one is None:
            self._one = self.net.assign("one", Call.of("nengo.Node", [1.0], label="one"))
        return self._one

    def synapse_from(self, pre: Var) -> float | None:
        """The synapse of a connection from ``pre``: `layer_synapse` out of neurons, else none. Every path out
        of a neuron layer starts with exactly one such connection, so each is filtered once."""
        return self.layer_synapse if pre.attribute == "neurons" else None

    def add_bias(self, out: Tensor, value: Any) -> None:
        """Add a constant column (an (n, 1) expression, e.g. `transforms.bias_column`) to ``out``."""
        out.terms.append(Term(None, value))


# --------------------------------------------------------------------------- the registry

@dataclass(frozen=True)
class OpBuilder:
    """A builder for ``op_type`` from opset ``since`` until the next entry's ``since`` (exclusive)."""

    op_type: str
    since: int
    build: Callable[[Builder, onnx.NodeProto], None]
    #: reads its tensor inputs in either layout (`Builder.tensor`'s ``any_layout``), keeping channels-last ones so
    keeps_layout: bool = False


class BuilderRegistry:
    """Op type -> the builders for its opset versions (see the module docstring)."""

    def __init__(self) -> None:
        self._entries: dict[str, list[OpBuilder]] = {}

    def register(self, *op_types: str, since: int = 1, keeps_layout: bool = False):
        """Decorator registering ``build(builder, node)`` for ``op_types`` from opset ``since`` on; ``keeps_layout``:
        the builder reads its inputs in either layout (`OpBuilder.keeps_layout`)."""
        def decorate(build):
            for op_type in op_types:
                entries = self._entries.setdefault(op_type, [])
                if any(e.since == since for e in entries):
                    raise InvalidArgument(f"{op_type} already has a builder since opset {since}")
                bisect.insort(entries, OpBuilder(op_type, since, build, keeps_layout), key=lambda e: e.since)
            return build
        return decorate

    def __contains__(self, op_type: str) -> bool:
        return op_type in self._entries

    def op_types(self) -> list[str]:
        return sorted(self._entries)

    def versions(self, op_type: str) -> list[int]:
        """The opsets from which each of ``op_type``'s builders applies."""
        return [e.since for e in self._entries.get(op_type, [])]

    def lookup(self, op_type: str, opset: int) -> OpBuilder | None:
        """The builder for ``op_type`` in a model importing ai.onnx ``opset``, or None."""
        entries = self._entries.get(op_type, [])
        position = bisect.bisect_right([e.since for e in entries], opset)
        return entries[position - 1] if position else None


#: Every op builder.
BUILDERS = BuilderRegistry()


# --------------------------------------------------------------------------- shape-only ops

@BUILDERS.register("Identity", keeps_layout=True)
def _identity(b: Builder, node: onnx.NodeProto) -> None:
    src = b.tensor(node.input[0], node, any_layout=True)
    b.tensors[node.output[0]] = src.alias(src.shape)


@BUILDERS.register("Dropout")
def _dropout(b: Builder, node: onnx.NodeProto) -> None:
    """Inference: the identity. Refused when its mask output is read or training mode is switched on (opset 12+)."""
    if len(node.output) > 1 and b.uses.get(node.output[1]):
        raise SNNError(f"{node_label(node)}: its mask output is used; Nengo has no dropout mask")
    training = b.optional_const(node, 2)
    if training is not None and bool(np.asarray(training).item()):
        raise SNNError(f"{node_label(node)}: training_mode is true (dropout at inference is not supported)")
    _identity(b, node)


def _reshape(b: Builder, node: onnx.NodeProto, allowzero: bool) -> None:
    src = b.tensor(node.input[0], node)
    target = [int(d) for d in b.const(node.input[1], node)]
    if allowzero and 0 in target:
        raise SNNError(f"{node_label(node)}: allowzero=1 with a 0 in the shape {target} makes an empty tensor")
    full = np.empty((1, *src.shape))
    target = [full.shape[i] if d == 0 and i < full.ndim else d for i, d in enumerate(target)]
    try:
        shape = full.reshape(target).shape
    except ValueError:
        raise SNNError(f"{node_label(node)}: cannot reshape {src.shape} to {target}") from None
    if shape[0] != 1:
        raise SNNError(f"{node_label(node)}: reshapes across the batch axis ({target})")
    b.tensors[node.output[0]] = src.alias(shape[1:])


@BUILDERS.register("Reshape", since=5)
def _reshape_5(b: Builder, node: onnx.NodeProto) -> None:
    """A 0 in the shape copies the input's dimension."""
    _reshape(b, node, allowzero=False)


@BUILDERS.register("Reshape", since=14)
def _reshape_14(b: Builder, node: onnx.NodeProto) -> None:
    """As `_reshape_5`, unless ``allowzero=1`` (then a 0 means an empty dimension: refused)."""
    _reshape(b, node, allowzero=bool(attributes(node).get("allowzero", 0)))


@BUILDERS.register("Flatten")
def _flatten(b: Builder, node: onnx.NodeProto) -> None:
    """Only ``axis`` 1 (or its negative form, opset 11+) keeps the batch axis apart."""
    src = b.tensor(node.input[0], node)
    axis = attributes(node).get("axis", 1)
    rank = len(src.shape) + 1
    if (axis + rank if axis < 0 else axis) != 1:
        raise SNNError(f"{node_label(node)}: only axis=1 (keep the batch axis) is supported, got {axis}")
    b.tensors[node.output[0]] = src.alias((src.size,))


def _squeeze(b: Builder, node: onnx.NodeProto, axes: list[int] | None) -> None:
    src = b.tensor(node.input[0], node)
    if axes is None:
        shape = tuple(s for s in src.shape if s != 1)
    else:
        drop = {b.sample_axis(int(a), len(src.shape), node) for a in axes}
        if any(src.shape[a] != 1 for a in drop):
            raise SNNError(f"{node_label(node)}: squeezes axes {list(axes)} of shape {src.shape}, not all of size 1")
        shape = tuple(s for i, s in enumerate(src.shape) if i not in drop)
    b.tensors[node.output[0]] = src.alias(shape)


def _unsqueeze(b: Builder, node: onnx.NodeProto, axes: list[int]) -> None:
    src = b.tensor(node.input[0], node)
    rank = len(src.shape) + len(axes)
    positions = sorted(b.sample_axis(int(a), rank, node) for a in axes)
    shape = list(src.shape)
    for position in positions:
        shape.insert(position, 1)
    b.tensors[node.output[0]] = src.alias(tuple(shape))


@BUILDERS.register("Squeeze")
def _squeeze_1(b: Builder, node: onnx.NodeProto) -> None:
    """Axes as an attribute (before opset 13)."""
    _squeeze(b, node, attributes(node).get("axes"))


@BUILDERS.register("Squeeze", since=13)
def _squeeze_13(b: Builder, node: onnx.NodeProto) -> None:
    """Axes as an optional input."""
    axes = b.optional_const(node, 1)
    _squeeze(b, node, None if axes is None else [int(a) for a in axes])


@BUILDERS.register("Unsqueeze")
def _unsqueeze_1(b: Builder, node: onnx.NodeProto) -> None:
    """Axes as an attribute (before opset 13)."""
    _unsqueeze(b, node, list(attributes(node)["axes"]))


@BUILDERS.register("Unsqueeze", since=13)
def _unsqueeze_13(b: Builder, node: onnx.NodeProto) -> None:
    """Axes as an input."""
    _unsqueeze(b, node, [int(a) for a in b.const(node.input[1], node)])


def _shape(b: Builder, node: onnx.NodeProto, start: int = 0, end: int | None = None) -> None:
    src = b.tensor(node.input[0], node)
    b.consts[node.output[0]] = np.array([SHAPE_BATCH, *src.shape], np.int64)[start:end]
    b.derived.add(node.output[0])


@BUILDERS.register("Shape")
def _shape_1(b: Builder, node: onnx.NodeProto) -> None:
    """The tensor's shape, batch axis as `SHAPE_BATCH`: a constant for the shape arithmetic after it."""
    _shape(b, node)


@BUILDERS.register("Shape", since=15)
def _shape_15(b: Builder, node: onnx.NodeProto) -> None:
    """As `_shape_1`, sliced by the ``start`` and ``end`` attributes."""
    attrs = attributes(node)
    _shape(b, node, int(attrs.get("start", 0)), attrs.get("end"))


@BUILDERS.register("Cast")
def _cast(b: Builder, node: onnx.NodeProto) -> None:
    """Only a cast to float32, which Nengo's values already are."""
    to = attributes(node).get("to")
    if to != onnx.TensorProto.FLOAT:
        raise SNNError(f"{node_label(node)}: casts to {onnx.TensorProto.DataType.Name(to)}; Nengo carries float32 only")
    _identity(b, node)


# --------------------------------------------------------------------------- structural (sparse) ops

@BUILDERS.register("Transpose", keeps_layout=True)
def _transpose(b: Builder, node: onnx.NodeProto) -> None:
    """A permutation (sparse); from (C, H, W) held channels-last to (H, W, C), or from (H, W, C) to a (C, H, W)
    then held channels-last, only a relabelling of the same flat values."""
    src = b.tensor(node.input[0], node, any_layout=True)
    rank = len(src.shape) + 1
    perm = list(attributes(node).get("perm", list(range(rank))[::-1]))
    if perm[0] != 0:
        raise SNNError(f"{node_label(node)}: permutes the batch axis (perm={perm})")
    sample_perm = [p - 1 for p in perm[1:]]
    shape = np.empty(src.shape).transpose(sample_perm).shape
    if src.channels_last and sample_perm == [1, 2, 0]:
        b.tensors[node.output[0]] = src.alias(shape, channels_last=False)
        return
    if b.channels_last and not src.channels_last and sample_perm == [2, 0, 1]:
        b.tensors[node.output[0]] = src.alias(shape, channels_last=True)
        return
    src = b.tensor(node.input[0], node)
    out = b.pending(shape, node)
    b.add_term(out, src, Call.of("transpose_transform", src.shape, sample_perm),
               index=Call.of("transpose_index", src.shape, sample_perm))


@BUILDERS.register("Gather")
def _gather(b: Builder, node: onnx.NodeProto) -> None:
    """Selection along the flat feature axis (axis=1) with constant indices, as a Sparse transform."""
    src = b.tensor(node.input[0], node)
    index = b.const(node.input[1], node)
    if attributes(node).get("axis", 0) not in (1, -1) or len(src.shape) != 1 or index.ndim != 1:
        raise SNNError(f"{node_label(node)}: only Gather along axis 1 of a flat tensor with 1-D indices is supported")
    out = b.pending(index.shape, node)
    selection = Call.of("np.mod", Weight(node.input[1]), src.size)
    b.add_term(out, src, Call.of("selection_transform", out.size, src.size, selection), index=selection)



def _pads_of(node: onnx.NodeProto, in_hw: tuple[int, ...], kernel: tuple[int, ...],
             strides: tuple[int, ...]) -> list[int]:
    """ONNX pads (begin..., end...) of an undilated Conv or pool, with ``auto_pad`` resolved."""
    auto_pad = string_attribute(node, "auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = same_pads(in_hw, kernel, strides)  # SAME_UPPER; SAME_LOWER puts the larger half first
        half = len(kernel)
        return pads if auto_pad == "SAME_UPPER" else pads[half:] + pads[:half]
    if auto_pad == "VALID":
        return [0] * (2 * len(kernel))
    if auto_pad != "NOTSET":
        raise SNNError(f"{node_label(node)}: auto_pad={auto_pad} is not an ONNX value")
    return [int(p) for p in attributes(node).get("pads", [0] * (2 * len(kernel)))]


@BUILDERS.register("AveragePool", "MaxPool", keeps_layout=True)
def _pool(b: Builder, node: onnx.NodeProto) -> None:
    """2-D pooling with pads, ``auto_pad``, ``count_include_pad`` (AveragePool 7+) and ``ceil_mode`` (10+).

    Where every window divides by its full size (no padding, or Nengo's 'same' padding counted) the pooling is a
    fixed ``nengo.Convolution`` (`transforms.pool_kernel`); elsewhere a sparse transform (`transforms.pool_transform`).
    MaxPool becomes average pooling over the same windows (padding excluded), with a note.
    """
    attrs = attributes(node)
    if node.op_type == "MaxPool":
        if b.max_pool == "error":
            raise SNNError(f"{node_label(node)}: NengoDL cannot spike through max pooling (use max_pool='average')")
        if len(node.output) > 1 and b.uses.get(node.output[1]):
            raise SNNError(f"{node_label(node)}: its Indices output is used; Nengo has no argmax")
        note = f"{node_label(node)}: max pooling replaced by average pooling (spiking networks cannot take a max)"
        warnings.warn(note)
        b.notes.append(note)
    src = b.tensor(node.input[0], node, any_layout=True)
    if len(src.shape) != 3:
        raise SNNError(f"{node_label(node)}: only 2-D pooling of (C, H, W) tensors is supported, got {src.shape}")
    kernel = tuple(int(k) for k in attrs["kernel_shape"])
    strides = tuple(int(s) for s in attrs.get("strides", [1, 1]))
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise SNNError(f"{node_label(node)}: dilated pooling (dilations {list(attrs['dilations'])}) is not supported")
    pads = _pads_of(node, src.shape[1:], kernel, strides)
    count_include_pad = bool(attrs.get("count_include_pad", 0)) and node.op_type == "AveragePool"
    floor_hw = tuple((s + pads[i] + pads[i + 2] - k) // st + 1
                     for i, (s, k, st) in enumerate(zip(src.shape[1:], kernel, strides)))
    out_hw = floor_hw
    if attrs.get("ceil_mode", 0):
        out_hw = tuple(math.ceil((s + pads[i] + pads[i + 2] - k) / st) + 1
                       for i, (s, k, st) in enumerate(zip(src.shape[1:], kernel, strides)))
        # a last window must start inside the input or its begin padding (as ONNX Runtime computes)
        out_hw = tuple(o - 1 if (o - 1) * st >= s + pads[i] else o
                       for i, (o, s, st) in enumerate(zip(out_hw, src.shape[1:], strides)))
    padding = _pool_padding(src.shape[1:], kernel, strides, pads, count_include_pad) if out_hw == floor_hw else None
    if padding is not None:  # every window divides by its full size: a fixed convolution, faster than sparse
        src = b.channels_last_view(src, node.output[0])
        out = b.pending((src.shape[0], *out_hw), node, channels_last=src.channels_last)
        b.add_term(out, src, Call.of("nengo.Convolution", n_filters=src.shape[0], input_shape=_stored_shape(src),
                                     kernel_size=kernel, strides=strides, padding=padding,
                                     channels_last=src.channels_last, init=Call.of("pool_kernel", src.shape[0], kernel)))
        return
    src = b.tensor(node.input[0], node)
    out = b.pending((src.shape[0], *out_hw), node)
    settings: dict[str, Any] = {}
    if any(pads):
        settings["pads"] = tuple(pads)
    if count_include_pad:
        settings["count_include_pad"] = True
    if out_hw != floor_hw:
        settings["out_hw"] = out_hw
    b.add_term(out, src, Call.of("pool_transform", src.shape, kernel, strides, **settings))


def _pool_padding(in_hw: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...], pads: list[int],
                  count_include_pad: bool) -> str | None:
    """The ``nengo.Convolution`` padding ('valid', 'same') with which `transforms.pool_kernel` computes this
    average pooling, or None where a window must divide by fewer elements than its size (padding left out
    of the count) or the pads are not Nengo's."""
    if not any(pads):
        return "valid"
    if count_include_pad and pads == same_pads(in_hw, kernel, strides):
        return "same"
    return None


@BUILDERS.register("GlobalAveragePool")
def _global_average_pool(b: Builder, node: onnx.NodeProto) -> None:
    src = b.tensor(node.input[0], node)
    if len(src.shape) < 2:
        raise SNNError(f"{node_label(node)}: needs a (C, *spatial) tensor, got {src.shape}")
    axes = list(range(1, len(src.shape)))
    out = b.pending((src.shape[0],) + (1,) * len(axes), node)
    b.add_term(out, src, Call.of("reduce_mean_transform", src.shape, axes))


def _reduce(b: Builder, node: onnx.NodeProto, axes: list[int] | None, noop_with_empty_axes: bool = False) -> None:
    src = b.tensor(node.input[0], node)
    if axes is None or not len(axes):
        if noop_with_empty_axes:
            return _identity(b, node)
        raise SNNError(f"{node_label(node)}: reduces over every axis, the batch axis included")
    sample_axes = sorted({b.sample_axis(int(a), len(src.shape), node) for a in axes})
    keep = bool(attributes(node).get("keepdims", 1))
    shape = tuple(1 if i in sample_axes else s for i, s in enumerate(src.shape) if keep or i not in sample_axes)
    out = b.pending(shape, node)
    kwargs = {} if node.op_type == "ReduceMean" else {"mean": False}
    b.add_term(out, src, Call.of("reduce_mean_transform", src.shape, sample_axes, **kwargs))


@BUILDERS.register("ReduceMean", "ReduceSum")
def _reduce_1(b: Builder, node: onnx.NodeProto) -> None:
    """Axes as an attribute: ReduceMean before opset 18, ReduceSum before 13."""
    _reduce(b, node, attributes(node).get("axes"))


@BUILDERS.register("ReduceSum", since=13)
def _reduce_sum_13(b: Builder, node: onnx.NodeProto) -> None:
    """Axes as an optional input, and ``noop_with_empty_axes``."""
    axes = b.optional_const(node, 1)
    _reduce(b, node, None if axes is None else list(axes), bool(attributes(node).get("noop_with_empty_axes", 0)))


BUILDERS.register("ReduceMean", since=18)(_reduce_sum_13)


def _pad(b: Builder, node: onnx.NodeProto, pads: list[int], value: float, axes: list[int] | None = None) -> None:
    src = b.tensor(node.input[0], node)
    mode = string_attribute(node, "mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise SNNError(f"{node_label(node)}: pad mode {mode!r} is not an ONNX mode")
    rank = len(src.shape) + 1
    axes = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
    full = [0] * (2 * rank)
    for i, axis in enumerate(axes):
        full[axis], full[axis + rank] = pads[i], pads[i + len(axes)]
    if full[0] or full[rank]:
        raise SNNError(f"{node_label(node)}: pads the batch axis ({pads})")
    if any(p < 0 for p in full):
        raise SNNError(f"{node_label(node)}: negative pads (cropping) {pads} are not supported")
    sample_pads = full[1:rank] + full[rank + 1:]
    out_shape = tuple(s + sample_pads[i] + sample_pads[i + len(src.shape)] for i, s in enumerate(src.shape))
    out = b.pending(out_shape, node)
    b.add_term(out, src, Call.of("pad_transform", src.shape, sample_pads, mode),
               index=Call.of("pad_index", src.shape, sample_pads, mode) if mode != "constant" else None)
    if mode == "constant" and value != 0:
        b.add_bias(out, Call.of("bias_column", Call.of("pad_constant", src.shape, sample_pads, value), (out.size,)))


@BUILDERS.register("Pad", since=2)
def _pad_2(b: Builder, node: onnx.NodeProto) -> None:
    """Pads and the constant as attributes (before opset 11)."""
    attrs = attributes(node)
    _pad(b, node, [int(p) for p in attrs["pads"]], float(attrs.get("value", 0.0)))


@BUILDERS.register("Pad", since=11)
def _pad_11(b: Builder, node: onnx.NodeProto) -> None:
    """Pads and the constant as inputs; ``axes`` as a further input from opset 18, ``wrap`` mode from 19."""
    value = b.optional_const(node, 2)
    axes = b.optional_const(node, 3) if b.opset >= 18 else None
    _pad(b, node, [int(p) for p in b.const(node.input[1], node)], 0.0 if value is None else float(value),
         None if axes is None else [int(a) for a in axes])


@BUILDERS.register("Concat")
def _concat(b: Builder, node: onnx.NodeProto) -> None:
    parts = [b.tensor(name, node) for name in node.input]
    axis = b.sample_axis(int(attributes(node)["axis"]), len(parts[0].shape), node)
    shapes = [p.shape for p in parts]
    try:
        out_shape = np.concatenate([np.empty(s) for s in shapes], axis=axis).shape
    except ValueError:
        raise SNNError(f"{node_label(node)}: shapes {shapes} do not concatenate along axis {axis + 1}") from None
    out = b.pending(out_shape, node)
    for i, part in enumerate(parts):
        b.add_term(out, part, Call.of("concat_transform", shapes, axis, i))


def _split(b: Builder, node: onnx.NodeProto, sizes: list[int] | None) -> None:
    src = b.tensor(node.input[0], node)
    axis = b.sample_axis(int(attributes(node).get("axis", 0)), len(src.shape), node)
    n = len(node.output)
    if sizes is None:
        length = src.shape[axis]
        chunk = math.ceil(length / n)  # equal parts; the last one smaller (opset 18 num_outputs)
        sizes = [min(chunk, length - i * chunk) for i in range(n)]
    if sum(sizes) != src.shape[axis] or len(sizes) != n:
        raise SNNError(f"{node_label(node)}: split sizes {sizes} do not divide axis {axis + 1} "
                       f"of {src.shape} into {n} outputs")
    for part, size in enumerate(sizes):
        shape = tuple(size if i == axis else s for i, s in enumerate(src.shape))
        out = b.pending(shape, node, output=part)
        index = Call.of("split_index", src.shape, axis, [int(s) for s in sizes], part)
        b.add_term(out, src, Call.of("selection_transform", out.size, src.size, index), index=index)


@BUILDERS.register("Split", since=2)
def _split_2(b: Builder, node: onnx.NodeProto) -> None:
    """Sizes as the ``split`` attribute (before opset 13)."""
    split = attributes(node).get("split")
    _split(b, node, None if split is None else [int(s) for s in split])


@BUILDERS.register("Split", since=13)
def _split_13(b: Builder, node: onnx.NodeProto) -> None:
    """Sizes as an optional input (opset 18 adds ``num_outputs``, equivalent to equal parts here)."""
    split = b.optional_const(node, 1)
    _split(b, node, None if split is None else [int(s) for s in split])


# --------------------------------------------------------------------------- weighted ops

def _conv_settings(node: onnx.NodeProto, src: Tensor, weight: np.ndarray) -> tuple[dict, list[int]]:
    attrs = attributes(node)
    if len(src.shape) != 3 or weight.ndim != 4:
        raise SNNError(f"{node_label(node)}: only 2-D convolutions are supported (input {src.shape})")
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise SNNError(f"{node_label(node)}: dilations {list(attrs['dilations'])} are not supported by "
                       "nengo.Convolution")
    if attrs.get("group", 1) != 1:
        raise SNNError(f"{node_label(node)}: grouped convolution (group={attrs['group']}) is not supported")
    kernel = tuple(int(k) for k in weight.shape[2:])
    strides = tuple(int(s) for s in attrs.get("strides", [1, 1]))
    pads = _pads_of(node, src.shape[1:], kernel, strides)
    return dict(kernel=kernel, strides=strides), pads


def same_pads(in_hw: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...]) -> list[int]:
    """ONNX pads (begin..., end...) of 'same' padding as nengo.Convolution and ONNX's SAME_UPPER make it
    (TensorFlow's SAME: the extra element at the end)."""
    totals = [max((math.ceil(s / st) - 1) * st + k - s, 0) for s, k, st in zip(in_hw, kernel, strides)]
    return [t // 2 for t in totals] + [t - t // 2 for t in totals]


@BUILDERS.register("Conv", keeps_layout=True)
def _conv(b: Builder, node: onnx.NodeProto) -> None:
    """2-D convolution as ``nengo.Convolution`` ('valid' or 'same'); any other padding goes through a Pad first."""
    src = b.channels_last_view(b.tensor(node.input[0], node, any_layout=True), node.output[0])
    weight = b.const(node.input[1], node)
    settings, pads = _conv_settings(node, src, weight)
    kernel, strides = settings["kernel"], settings["strides"]
    if not any(pads):
        padding = "valid"
    elif pads == same_pads(src.shape[1:], kernel, strides):
        padding = "same"
    else:  # explicit padding as a selection, then a 'valid' convolution
        padded = Tensor(None, (src.shape[0], src.shape[1] + pads[0] + pads[2], src.shape[2] + pads[1] + pads[3]),
                        [], f"{node.name or node.output[0]}.pad", src.channels_last)
        spatial = [*pads[:2], 0, *pads[2:], 0] if src.channels_last else [0, *pads[:2], 0, *pads[2:]]
        b.add_term(padded, src, Call.of("pad_transform", _stored_shape(src), spatial))
        src, padding = padded, "valid"
    out_hw = tuple((s - k) // st + 1 if padding == "valid" else math.ceil(s / st)
                   for s, k, st in zip(src.shape[1:], kernel, strides))
    transform = Call.of("nengo.Convolution", n_filters=int(weight.shape[0]), input_shape=_stored_shape(src),
                        kernel_size=kernel, strides=strides, padding=padding, channels_last=src.channels_last,
                        init=Call.of("layout.conv_kernel_from_onnx", Weight(node.input[1])))
    out = b.pending((int(weight.shape[0]), *out_hw), node, channels_last=src.channels_last)
    b.add_term(out, src, transform, trainable=True)
    if len(node.input) > 2 and node.input[2]:
        b.const(node.input[2], node)
        b.add_bias(out, Call.of("channel_bias", Weight(node.input[2]), out.shape, **out.layout))


def _stored_shape(tensor: Tensor) -> tuple[int, ...]:
    """The shape a (C, H, W) tensor's flat values have: (H, W, C) if it is held channels-last."""
    if tensor.channels_last:
        c, h, w = tensor.shape
        return h, w, c
    return tensor.shape


def _is_permutation(index: np.ndarray | None) -> bool:
    return index is not None and np.array_equal(np.sort(index), np.arange(len(index)))


def _dense(b: Builder, node: onnx.NodeProto, src: Tensor, n_in: int, n_out: int, init: Any) -> Tensor:
    """Dense layer with the (out, in) matrix ``init``; a pending permutation input is folded into its columns."""
    if len(src.shape) != 1 or src.size != n_in:
        raise SNNError(f"{node_label(node)}: needs a flat input of {n_in} values; got input {src.shape}")
    out = b.pending((n_out,), node)
    if src.obj is None and len(src.terms) == 1 and src.terms[0].index is not None \
            and _is_permutation(b.value(src.terms[0].index)):
        (term,) = src.terms
        init, src = Call.of("dense_after_selection", init, term.index), term.pre
    b.add_term(out, src, Call.of("nengo.Dense", (n_out, n_in), init=init), trainable=True)
    return out


@BUILDERS.register("Gemm")
def _gemm(b: Builder, node: onnx.NodeProto) -> None:
    """``alpha * A @ B' + beta * C`` with B' = B or B.T (``transB``); ``transA`` would transpose the batch axis."""
    src = b.tensor(node.input[0], node)
    attrs = attributes(node)
    if attrs.get("transA", 0):
        raise SNNError(f"{node_label(node)}: transA=1 transposes the batch axis; not supported")
    weight = b.const(node.input[1], node)
    if weight.ndim != 2:
        raise SNNError(f"{node_label(node)}: needs a 2-D weight, got shape {weight.shape}")
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    w = Weight(node.input[1])
    if alpha != 1.0:
        w = Call.of("np.multiply", w, alpha)
    if attrs.get("transB", 0):  # stored (out, in), as nengo.Dense wants it
        n_out, n_in = weight.shape
        init = Call.of("np.ascontiguousarray", w)
    else:
        n_in, n_out = weight.shape
        init = Call.of("layout.dense_to_gemm", w)
    out = _dense(b, node, src, n_in, n_out, init)
    bias = b.optional_const(node, 2)
    if bias is not None and (beta != 0.0 and np.any(bias)):
        value = Weight(node.input[2]) if beta == 1.0 else Call.of("np.multiply", Weight(node.input[2]), beta)
        _check_broadcast(node, bias, out.shape)
        b.add_bias(out, Call.of("bias_column", value, out.shape))


@BUILDERS.register("MatMul")
def _matmul(b: Builder, node: onnx.NodeProto) -> None:
    weight = b.const(node.input[1], node)
    if weight.ndim != 2:
        raise SNNError(f"{node_label(node)}: needs a constant 2-D second input, got shape {weight.shape}")
    _dense(b, node, b.tensor(node.input[0], node), weight.shape[0], weight.shape[1],
           Call.of("layout.dense_to_gemm", Weight(node.input[1])))


def _check_broadcast(node: onnx.NodeProto, value: np.ndarray, shape: tuple[int, ...]) -> None:
    try:
        np.broadcast_to(value, shape)
    except ValueError:
        raise SNNError(f"{node_label(node)}: constant of shape {value.shape} does not broadcast to "
                       f"{shape}") from None


def _per_sample_constant(b: Builder, node: onnx.NodeProto, name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, Any]:
    """A constant operand without its leading batch axis of 1 if it has one, checked to broadcast to ``shape``."""
    value, expr = b.const(name, node), Weight(name)
    if value.ndim == len(shape) + 1:
        if value.shape[0] != 1:
            raise SNNError(f"{node_label(node)}: constant {name!r} varies over the batch axis")
        value, expr = value[0], Call.of("np.squeeze", expr, 0)
    _check_broadcast(node, value, shape)
    return value, expr


def _arithmetic(b: Builder, node: onnx.NodeProto) -> None:
    """Add and Sub of tensors and constants; Mul and Div of one tensor by a constant (numpy broadcasting)."""
    tensors = [n for n in node.input if n in b.tensors]
    if not tensors:
        raise SNNError(f"{node_label(node)}: combines two constants (fold them before converting)")
    shape = b.tensors[tensors[0]].shape
    if any(b.tensors[t].shape != shape for t in tensors):
        raise SNNError(f"{node_label(node)}: combines tensors of different shapes {[b.tensors[t].shape for t in tensors]}")
    if node.op_type in ("Mul", "Div") and len(tensors) != 1:
        raise SNNError(f"{node_label(node)}: multiplies two network tensors, which is not linear")
    if node.op_type == "Div" and node.input[1] in tensors:
        raise SNNError(f"{node_label(node)}: divides by a network tensor, which is not linear")
    # channels-last if every tensor operand is held so, or can be at no cost, and one is
    views = {t: b.channels_last_view(b.tensor(t, node, any_layout=True)) for t in tensors}
    channels_last = all(v.channels_last for v in views.values()) and any(b.tensors[t].channels_last for t in tensors)
    out = b.pending(shape, node, channels_last=channels_last)
    for position, name in enumerate(node.input):
        negate = node.op_type == "Sub" and position == 1
        if name in b.tensors:
            src = views[name] if channels_last else b.tensor(name, node)
            if node.op_type in ("Mul", "Div"):
                const = node.input[1 - position]
                _, expr = _per_sample_constant(b, node, const, shape)
                gains = Call.of("broadcast_flat", Call.of("np.reciprocal", expr) if node.op_type == "Div" else expr,
                                shape, **out.layout)
                b.add_term(out, src, Call.of("scale_transform", gains))
            elif negate:
                b.add_term(out, src, -1.0)
            else:
                b.add_tensor(out, src)
        elif node.op_type in ("Add", "Sub"):
            _, expr = _per_sample_constant(b, node, name, shape)
            b.add_bias(out, Call.of("bias_column", Call.of("np.negative", expr) if negate else expr, shape,
                                    **out.layout))


BUILDERS.register("Add", "Sub", "Mul", "Div", since=7, keeps_layout=True)(_arithmetic)


@BUILDERS.register("BatchNormalization", since=9, keeps_layout=True)
def _batch_norm(b: Builder, node: onnx.NodeProto) -> None:
    """Inference batch norm as a per-channel affine map (`onnxlab.graph.fold_batch_norm` removes most first)."""
    if attributes(node).get("training_mode", 0):
        raise SNNError(f"{node_label(node)}: training_mode=1 normalises with batch statistics; not supported")
    if sum(1 for o in node.output if o) > 1:
        raise SNNError(f"{node_label(node)}: outputs running statistics (training); not supported")
    src = b.tensor(node.input[0], node, any_layout=True)
    eps = float(attributes(node).get("epsilon", 1e-5))
    for name in node.input[1:5]:
        b.const(name, node)
    scale, offset, mean, var = (Weight(n) for n in node.input[1:5])
    out = b.pending(src.shape, node, channels_last=src.channels_last)
    b.add_term(out, src, Call.of("scale_transform", Call.of("batch_norm_gains", scale, var, eps, src.shape,
                                                            **src.layout)))
    b.add_bias(out, Call.of("bias_column", Call.of("batch_norm_offsets", scale, offset, mean, var, eps, src.shape),
                            src.shape, **src.layout))


@BUILDERS.register("Clip")
def _clip_6(b: Builder, node: onnx.NodeProto) -> None:
    """Bounds as attributes (before opset 11)."""
    attrs = attributes(node)
    _clip(b, node, attrs.get("min"), attrs.get("max"))


@BUILDERS.register("Clip", since=11)
def _clip_11(b: Builder, node: onnx.NodeProto) -> None:
    """Bounds as optional inputs."""
    low, high = b.optional_const(node, 1), b.optional_const(node, 2)
    _clip(b, node, None if low is None else float(low), None if high is None else float(high))


def _clip(b: Builder, node: onnx.NodeProto, low: float | None, high: float | None) -> None:
    """A Clip that bounds nothing is the identity; a real bound is a nonlinearity Nengo connections cannot apply."""
    if (low is None or low <= -FLOAT32_MAX) and (high is None or high >= FLOAT32_MAX):
        return _identity(b, node)
    raise SNNError(f"{node_label(node)}: clips to [{low}, {high}], a nonlinearity a Nengo connection cannot apply "
                   "(a ReLU6 needs a neuron; replace it by Relu before to_snn)")


# --------------------------------------------------------------------------- neurons

def rate_twin(op: type[NeuronOp], params: dict[str, float]) -> tuple[type[NeuronOp], dict[str, float]]:
    """The non-spiking op whose rate response ``op`` shares, with the parameters it knows."""
    for cls in op.__mro__:
        if isinstance(cls, type) and issubclass(cls, NeuronOp) and cls is not NeuronOp and not cls.spiking:
            return cls, {k: v for k, v in params.items() if k in cls.attributes}
    raise SNNError(f"{op.op_type} has no rate twin in Nengo (no closed-form rate): it can only be simulated "
                   "spiking; ONNX Runtime computes its tabulated rate")


def build_neuron(b: Builder, node: onnx.NodeProto) -> None:
    """An ONNX-SNN neuron op as a ``nengo.Ensemble`` with the file's gain, bias and neuron parameters."""
    if node.op_type not in NEURONS:
        raise SNNError(f"{node_label(node)}: unknown ONNX-SNN neuron op; known: {', '.join(NEURONS)}")
    op: type[NeuronOp] = NEURONS[node.op_type]
    params = op.parameters(attributes(node))
    if b.rate and op.spiking:
        op, params = rate_twin(op, params)
    src = b.tensor(node.input[0], node, any_layout=True)
    label, seed = node.name or node.output[0], b.seed + len(b.ensembles)
    gain_name, bias_name = node.input[1:3]
    for name in (gain_name, bias_name):
        _check_broadcast(node, b.const(name, node), src.shape)
    bias = Call.of("broadcast_neurons", Weight(bias_name), src.shape, **src.layout)
    columns = [t.transform for t in src.bias_terms]
    if b.fold_biases and columns and len(columns) < len(src.terms):
        # J = gain * (x + c) + bias = gain * x + (bias + gain * c): the constant c needs no connection
        bias = Call.of("folded_bias", Weight(bias_name), Weight(gain_name), src.shape, columns, **src.layout)
        src = Tensor(None, src.shape, [t for t in src.terms if t.pre is not None], src.label, src.channels_last)
    ensemble = b.net.assign("ens", Call.of(
        "nengo.Ensemble", src.size, 1, neuron_type=Call.of(op.nengo_path, **params),
        gain=Call.of("broadcast_neurons", Weight(gain_name), src.shape, **src.layout), bias=bias, label=label,
        seed=seed), trainable=b.trainable_ensembles)
    b.feed(src, ensemble.neurons())
    b.ensembles[label] = ensemble
    if src.channels_last:
        b.channels_last_layers[label] = src.shape
    b.tensors[node.output[0]] = Tensor(ensemble.neurons(), src.shape, label=label, channels_last=src.channels_last)
