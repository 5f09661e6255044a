"""ONNX graph utilities shared by every pass: domains and opsets, constants, readers, rewrites.

Everything here works on the top-level graph of any file a real exporter writes (PyTorch,
tf2onnx, keras2onnx, the original ONNX-SNN tool), whatever its opset: a question such as
"is this node in the default domain?" or "what constant feeds this input?" is answered once, here.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, helper, numpy_helper

from onnxlab.errors import OnnxlabError

#: The two spellings of the default (``ai.onnx``) domain in a file.
DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})
#: Oldest default-domain opset whose files onnxlab reads and converts (what keras2onnx wrote).
MIN_SUPPORTED_OPSET = 9
#: Newest default-domain opset the installed ``onnx`` knows (its schemas define every op's meaning).
MAX_SUPPORTED_OPSET = onnx.defs.onnx_opset_version()
#: IR version from which a model may carry model-local functions (every ONNX-SNN neuron op is one).
FUNCTIONS_MIN_IR_VERSION = 8
#: Attribute of a Constant node -> how its value becomes an array (opset 12 added the scalar and list forms).
_CONSTANT_ATTRIBUTES = {
    "value": lambda a: numpy_helper.to_array(a.t),
    "value_float": lambda a: np.array(a.f, np.float32),
    "value_floats": lambda a: np.array(list(a.floats), np.float32),
    "value_int": lambda a: np.array(a.i, np.int64),
    "value_ints": lambda a: np.array(list(a.ints), np.int64),
}


def is_default_domain(domain: str) -> bool:
    """True for the default ONNX domain, written ``""`` or ``"ai.onnx"``."""
    return domain in DEFAULT_DOMAINS


def default_opset(model: onnx.ModelProto) -> int:
    """The ``ai.onnx`` opset version ``model`` imports.

    Raises
    ------
    OnnxlabError
        If the model imports no default-domain opset.
    """
    for opset in model.opset_import:
        if is_default_domain(opset.domain):
            return int(opset.version)
    raise OnnxlabError(f"model {model.graph.name!r} imports no ai.onnx opset")


def check_opset_supported(model: onnx.ModelProto, what: str = "onnxlab") -> int:
    """The model's ``ai.onnx`` opset, if within [`MIN_SUPPORTED_OPSET`, `MAX_SUPPORTED_OPSET`].

    Raises
    ------
    OnnxlabError
        Naming the model, its opset and the supported range.
    """
    version = default_opset(model)
    if not MIN_SUPPORTED_OPSET <= version <= MAX_SUPPORTED_OPSET:
        raise OnnxlabError(f"model {model.graph.name!r} imports ai.onnx opset {version}; {what} supports opsets "
                           f"{MIN_SUPPORTED_OPSET} to {MAX_SUPPORTED_OPSET} (the newest the installed onnx "
                           f"{onnx.__version__} knows)")
    return version


def min_ir_version(model: onnx.ModelProto) -> int:
    """The lowest IR version that can hold ``model``: what its opsets need, and model-local functions."""
    needed = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    return max(needed, FUNCTIONS_MIN_IR_VERSION if model.functions else 0)


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """The node's attributes by name, as Python values (bytes for strings, as onnx gives them)."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def string_attribute(node: onnx.NodeProto, name: str, default: str) -> str:
    """A string attribute decoded to ``str`` (onnx returns bytes), or ``default``."""
    value = attributes(node).get(name, default)
    return value.decode() if isinstance(value, bytes) else value


def node_label(node: onnx.NodeProto) -> str:
    """How errors name a node: ``node 'name' (OpType)`` (the first output when it has no name)."""
    return f"node {node.name or (node.output[0] if node.output else '?')!r} ({node.op_type})"


def constant_value(node: onnx.NodeProto) -> np.ndarray:
    """The value of a default-domain Constant node, whichever attribute holds it.

    Raises
    ------
    OnnxlabError
        For a sparse constant or an attribute reference (only valid inside functions).
    """
    for attr in node.attribute:
        if attr.ref_attr_name:
            break
        if attr.name in _CONSTANT_ATTRIBUTES:
            return _CONSTANT_ATTRIBUTES[attr.name](attr)
    raise OnnxlabError(f"{node_label(node)}: constant of a kind onnxlab cannot read "
                       f"({', '.join(a.name for a in node.attribute) or 'no attribute'})")


def is_constant_node(node: onnx.NodeProto) -> bool:
    return node.op_type == "Constant" and is_default_domain(node.domain)


def constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every constant of the top-level graph by name: initializers and the outputs of Constant nodes."""
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if is_constant_node(node):
            values[node.output[0]] = constant_value(node)
    return values


def use_counts(graph: onnx.GraphProto) -> Counter:
    """How often each tensor is read: as a node input, or as a graph output."""
    counts: Counter[str] = Counter(name for n in graph.node for name in n.input if name)
    counts.update(v.name for v in graph.output)
    return counts


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Tensor name -> the node that writes it."""
    return {out: n for n in graph.node for out in n.output}


def readers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes that read it (each once, in graph order); graph outputs are not nodes."""
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in dict.fromkeys(n for n in node.input if n):
            found.setdefault(name, []).append(node)
    return found


def taken_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor and initializer name in use in ``graph`` (for picking fresh names)."""
    return ({i.name for i in graph.initializer} | {v for n in graph.node for v in [*n.input, *n.output]}
            | {v.name for v in [*graph.input, *graph.output]})


def fold_batch_norm(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with every inference BatchNormalization that follows a Conv folded into it.

    The Conv's weight and bias become ``weight * a`` and ``(bias - mean) * a + offset`` with
    ``a = scale / sqrt(var + epsilon)``; a Conv read by anything else, a non-constant statistic, or
    a BatchNormalization in training mode (``training_mode=1``, opset 14+) is left as it is.
    """
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    inits = {i.name: i for i in graph.initializer}
    uses = use_counts(graph)
    producer = producers(graph)
    keep = []
    for n in graph.node:
        conv = producer.get(n.input[0]) if n.op_type == "BatchNormalization" and is_default_domain(n.domain) else None
        foldable = (conv is not None and conv.op_type == "Conv" and uses[conv.output[0]] == 1
                    and len(n.output) == 1 and not attributes(n).get("training_mode", 0)
                    and all(name in inits for name in [conv.input[1], *n.input[1:5]])
                    and (len(conv.input) < 3 or not conv.input[2] or conv.input[2] in inits))
        if not foldable:
            keep.append(n)
            continue
        scale, offset, mean, var = (numpy_helper.to_array(inits[name]) for name in n.input[1:5])
        a = scale / np.sqrt(var + attributes(n).get("epsilon", 1e-5))
        weight = numpy_helper.to_array(inits[conv.input[1]])
        bias = numpy_helper.to_array(inits[conv.input[2]]) if len(conv.input) > 2 and conv.input[2] else 0.0
        w_name, b_name = conv.input[1] + ".bnfold", conv.output[0] + ".bnfold_bias"
        per_channel = (-1,) + (1,) * (weight.ndim - 1)
        graph.initializer.extend([
            numpy_helper.from_array((weight * a.reshape(per_channel)).astype(weight.dtype), w_name),
            numpy_helper.from_array(((bias - mean) * a + offset).astype(weight.dtype), b_name)])
        del conv.input[1:]
        conv.input.extend([w_name, b_name])
        conv.output[0] = n.output[0]
    del graph.node[:]
    graph.node.extend(keep)
    return folded


def evaluate_node(node: onnx.NodeProto, values: dict[str, np.ndarray], opset: int) -> list[np.ndarray] | None:
    """``node``'s outputs on constant inputs, by onnx's reference implementation; None if it cannot run it."""
    from onnx.reference import ReferenceEvaluator

    inputs = [name for name in node.input if name]
    graph = helper.make_graph(
        [node], "fold", [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(values[name].dtype),
                                                       values[name].shape) for name in inputs],
        [helper.make_empty_tensor_value_info(name) for name in node.output if name])
    try:
        evaluator = ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
        return [np.asarray(v) for v in evaluator.run(None, {name: values[name] for name in inputs})]
    except Exception:  # an op the reference cannot run: the node stays, and its builder decides
        return None


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose constant computations are done: Constant nodes and every default-domain node
    whose inputs are all constants (an ``Identity`` of a weight, a ``Transpose`` or ``Cast`` of one, shape
    arithmetic) become initializers, computed by ``onnx.reference``. Nodes with subgraphs are left alone."""
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    opset = default_opset(model)
    keep, new = [], []
    for node in graph.node:
        computed = None
        if is_constant_node(node):
            computed = [constant_value(node)]
        elif (is_default_domain(node.domain) and node.input and all(not n or n in values for n in node.input)
              and not any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for a in node.attribute)):
            computed = evaluate_node(node, values, opset)
        if computed is None:
            keep.append(node)
            continue
        for name, value in zip([o for o in node.output if o], computed):
            values[name] = value
            new.append(numpy_helper.from_array(value, name))
    del graph.node[:]
    graph.node.extend(keep)
    graph.initializer.extend(new)
    return folded


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """The rewrites every ONNX -> Nengo pass applies first: `fold_constants`, then `fold_batch_norm`.

    `onnxlab.snn.to_nengo` builds from this, and generated scripts read their weights from it
    (`onnxlab.snn.transforms.load_weights`), so both see the same constants by the same names.
    """
    return fold_batch_norm(fold_constants(model))
