"""A Nengo / NengoDL network -> ONNX-SNN, with its (trained) weights: the thesis' future work.

The exporter walks the network's objects in dependency order. Every object's value is the sum
of its incoming connections, each turned into ONNX ops by its transform:

- ``nengo.Dense`` -> ``MatMul`` (matrix, stored (in, out)) or ``Mul`` (scalar or diagonal);
- ``nengo.Convolution`` -> ``Conv`` (kernel remapped by `onnxlab.snn.layout`), with the
  transposes a channels-last convolution needs; one whose kernel averages each channel over its window
  (`onnxlab.snn.transforms.pool_kernel`, how `to_nengo` builds pooling) -> ``AveragePool``;
- ``nengo.Sparse`` -> ``Gather`` when it selects/permutes (one input of weight 1 per output),
  else ``Gather -> Mul -> ReduceSum`` over each output's non-zeros (`_gathered_sum`: pooling stays
  small and, re-imported, stays a fixed transform rather than a trainable dense matrix);
- ``nengo.transforms.NoTransform`` -> nothing.

Input nodes become graph inputs, constant nodes become constants folded through their
transforms (biases), passthrough nodes become sums, and ``Ensemble.neurons`` become ONNX-SNN
neuron ops with the ensemble's gain and bias.

Biases that `to_nengo` folded into an ensemble (J = gain * (x + c) + bias built as gain * x + bias',
bias' = bias + gain * c; `onnxlab.snn.to_nengo.to_nengo`'s ``fold_biases``) come back as that neuron op's
bias input, bias', and the Conv / MatMul before it carries no bias of its own: the file computes the same J,
and `to_nengo` rebuilds the same ensemble from it bit for bit. Biases from constant nodes into anything
else (the output layer's) come back as an ``Add`` of one constant. Trained NengoDL parameters must first be written
back into the network with ``sim.freeze_params(network)``.

ONNX-SNN models are float32: NengoDL's (float32) parameters export bit for bit; parameters that
a plain Nengo script made in float64 are rounded to float32.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxlab.errors import SNNError
from onnxlab.formats import ONNX_OPSET, ONNX_SNN_DOMAIN, PRODUCER, finalize, unique_name
from onnxlab.snn import layout
from onnxlab.snn.neurons import NEURONS, install_functions
from onnxlab.snn.simulation import Simulation
from onnxlab.snn.transforms import is_pool_kernel

#: Largest nengo.Sparse transform from a constant node folded through its dense matrix (elements).
MAX_DENSE_FROM_SPARSE = 1 << 25


class _Graph:
    """Accumulates nodes and initializers with unique, readable names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.names: set[str] = set()

    def name(self, base: str) -> str:
        return unique_name(re.sub(r"[^A-Za-z0-9_.\-]+", "_", base).strip("_") or "t", self.names)

    def const(self, base: str, value: np.ndarray) -> str:
        """An initializer: float values as float32 (the model's type), integer ones (shapes) unchanged."""
        value = np.asarray(value)
        name = self.name(base)
        if not np.issubdtype(value.dtype, np.integer):
            value = value.astype(np.float32)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], base: str, domain: str = "", **attrs: Any) -> str:
        out = self.name(base)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, domain=domain, **attrs))
        return out


def _label(obj: Any) -> str:
    label = getattr(obj, "label", None)
    return label if label else type(obj).__name__.lower()


def _neuron_op(neuron_type: Any) -> tuple[str, dict[str, float]]:
    """The ONNX-SNN op type and parameters of a Nengo neuron type object."""
    for op_type, op in NEURONS.items():
        if type(neuron_type) is op.nengo_class():
            return op_type, {k: float(getattr(neuron_type, k)) for k in op.attributes}
    raise SNNError(f"neuron type {neuron_type!r} has no ONNX-SNN op; supported: {', '.join(NEURONS)}")


def _transform(g: _Graph, conn: Any, value: str, base: str) -> str:
    """ONNX ops applying ``conn.transform`` to the flat tensor ``value`` (N, size_in)."""
    import nengo

    t = conn.transform
    if isinstance(t, nengo.transforms.NoTransform):
        return value
    if isinstance(t, nengo.Dense):
        w = np.asarray(t.init, np.float64)
        if w.ndim == 2:
            return g.op("MatMul", [value, g.const(f"{base}.weight", layout.dense_from_gemm(w))], base)
        return g.op("Mul", [value, g.const(f"{base}.scale", w)], base)
    if isinstance(t, nengo.Convolution):
        return _convolution(g, t, value, base)
    if isinstance(t, nengo.Sparse):
        selection = _selection(t)
        if selection is not None:  # a permutation / selection: cheap and exact as a Gather
            return g.op("Gather", [value, g.const(f"{base}.index", selection)], base, axis=1)
        return _gathered_sum(g, t, value, base)
    raise SNNError(f"connection into {base!r}: transform {type(t).__name__} is not supported")


def _convolution(g: _Graph, t: Any, value: str, base: str) -> str:
    """A nengo.Convolution as Reshape -> (Transpose) -> Conv -> (Transpose) -> Flatten; a fixed averaging kernel
    (`transforms.pool_kernel`, how `onnxlab.snn.to_nengo` builds pooling) as AveragePool instead of Conv."""
    in_shape = tuple(t.input_shape.shape)
    if t.channels_last:
        h, w, c = in_shape
        x = g.op("Reshape", [value, g.const(f"{base}.in_shape", np.array([-1, h, w, c], np.int64))], f"{base}.reshape")
        x = g.op("Transpose", [x], f"{base}.to_nchw", perm=[0, 3, 1, 2])
    else:
        c, h, w = in_shape
        x = g.op("Reshape", [value, g.const(f"{base}.in_shape", np.array([-1, c, h, w], np.int64))], f"{base}.reshape")
    kernel = np.asarray(t.init, np.float64)
    if getattr(t, "groups", 1) != 1:
        raise SNNError(f"connection into {base!r}: grouped convolutions are not supported")
    pads = [0, 0, 0, 0]
    if t.padding == "same":
        from onnxlab.snn.builders import same_pads

        pads = same_pads((h, w), tuple(t.kernel_size), tuple(t.strides))
    window = dict(kernel_shape=list(t.kernel_size), strides=list(t.strides), pads=pads)
    if is_pool_kernel(t.init):  # padding, where there is any, counts (the kernel divides by the window's size)
        y = g.op("AveragePool", [x], f"{base}.pool", count_include_pad=int(any(pads)), **window)
    else:
        y = g.op("Conv", [x, g.const(f"{base}.kernel", layout.conv_kernel_to_onnx(kernel))], f"{base}.conv", **window)
    if t.channels_last:
        y = g.op("Transpose", [y], f"{base}.to_nhwc", perm=[0, 2, 3, 1])
    return g.op("Flatten", [y], f"{base}.flat", axis=1)


def from_nengo(network: Any, inputs: dict[str, Any] | None = None, outputs: dict[str, Any] | None = None, *,
               input_shapes: dict[str, tuple[int, ...]] | None = None, simulation: Simulation | None = None,
               name: str | None = None) -> onnx.ModelProto:
    """Export a Nengo network as an ONNX-SNN model.

    Parameters
    ----------
    network
        The `nengo.Network` (with trained parameters frozen into it, for NengoDL), or a
        `onnxlab.snn.to_nengo.NengoModel`, which supplies inputs, outputs, input shapes and
        simulation settings itself (``from_nengo(to_nengo(path))``).
    inputs
        ONNX input name -> input `nengo.Node`; each becomes an input (N, *shape).
    outputs
        ONNX output name -> Nengo object (a node or ``ensemble.neurons``) whose output is exported.
    input_shapes
        Per-sample shape of each input (default: flat, the node's size).
    simulation
        Simulation settings to store (default `Simulation()`).

    Returns
    -------
    onnx.ModelProto
        Valid ONNX-SNN, runnable in ONNX Runtime (rates).

    Raises
    ------
    SNNError
        Naming the object or connection that cannot be exported (synapses other than one lowpass on
        every connection out of neurons, which is stored as ``layer_synapse``; functions, slices,
        decoded connections, unsupported transforms or neuron types).
    """
    import nengo

    from onnxlab.snn.to_nengo import NengoModel

    if isinstance(network, NengoModel):
        built = network
        network, inputs = built.network, inputs or built.inputs
        outputs = outputs or {name: probe.target for name, probe in built.outputs.items()}
        input_shapes, simulation = input_shapes or built.input_shapes, simulation or built.simulation
    if inputs is None or outputs is None:
        raise SNNError("from_nengo needs `inputs` and `outputs` for a nengo.Network (or pass a NengoModel)")
    g = _Graph()
    incoming: dict[Any, list[Any]] = {}
    simulation = _with_layer_synapse(simulation or Simulation(), network.all_connections)
    for conn in network.all_connections:
        if conn.function is not None:
            raise SNNError(f"{conn}: has a function; only linear transforms can be exported")
        if not isinstance(conn.pre_obj, (nengo.Node, nengo.ensemble.Neurons)) or \
                not isinstance(conn.post_obj, (nengo.Node, nengo.ensemble.Neurons)):
            raise SNNError(f"{conn}: decoded (ensemble-level) connections are not supported; "
                           "connect to and from ensemble.neurons")
        if conn.pre_slice != slice(None) or conn.post_slice != slice(None):
            raise SNNError(f"{conn}: sliced connections are not supported")
        incoming.setdefault(conn.post_obj, []).append(conn)

    values: dict[Any, str] = {}
    graph_inputs = []
    shapes = dict(input_shapes or {})
    for input_name, node in inputs.items():
        shape = tuple(shapes.get(input_name, (node.size_out,)))
        graph_inputs.append(helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, *shape]))
        g.names.add(input_name)
        values[node] = g.op("Reshape", [input_name, g.const(f"{input_name}.flat_shape", np.array([-1, node.size_out],
                                                                                              np.int64))],
                            f"{input_name}.flat")

    def value_of(obj: Any) -> str | np.ndarray:
        """ONNX tensor name of ``obj``'s output, or a constant vector for constant nodes."""
        if obj in values:
            return values[obj]
        if isinstance(obj, nengo.Node) and obj.size_in == 0:
            if callable(obj.output):
                raise SNNError(f"node {_label(obj)!r}: a function output cannot be exported; make it an input")
            values[obj] = np.asarray(obj.output, np.float64).ravel()
            return values[obj]
        target = obj.ensemble if isinstance(obj, nengo.ensemble.Neurons) else obj
        base = _label(target)
        terms, constant = [], None
        for conn in incoming.get(obj, []):
            pre = value_of(conn.pre_obj)
            if isinstance(pre, np.ndarray):  # constant input: fold the transform now
                folded = _apply_constant(conn, pre)
                constant = folded if constant is None else constant + folded
            else:
                terms.append(_transform(g, conn, pre, f"{base}.in{len(terms)}"))
        if not terms:
            raise SNNError(f"{_label(obj)!r} receives no input from the network's inputs")
        total = terms[0]
        for term in terms[1:]:
            total = g.op("Add", [total, term], f"{base}.sum")
        if constant is not None and np.any(constant):  # adding zeros is exact: leave it out
            total = g.op("Add", [total, g.const(f"{base}.bias", constant)], f"{base}.plus_bias")
        if isinstance(obj, nengo.ensemble.Neurons):
            ens = obj.ensemble
            op_type, params = _neuron_op(ens.neuron_type)
            gain, bias = _gain_bias(ens)
            total = g.op(op_type, [total, g.const(f"{base}.gain", gain), g.const(f"{base}.bias_current", bias)],
                         base, domain=ONNX_SNN_DOMAIN, **NEURONS[op_type].node_attributes(params))
        values[obj] = total
        return total

    graph_outputs = []
    for out_name, obj in outputs.items():
        value = value_of(obj)
        if isinstance(value, np.ndarray):
            raise SNNError(f"output {out_name!r} is a constant")
        g.nodes.append(helper.make_node("Identity", [value], [out_name], name=out_name))
        graph_outputs.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [None, obj.size_out]))

    graph = helper.make_graph(g.nodes, name or network.label or "nengo", graph_inputs, graph_outputs,
                              g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name=PRODUCER)
    install_functions(model)
    simulation.write(model)
    return finalize(model)


def _with_layer_synapse(simulation: Simulation, connections: list[Any]) -> Simulation:
    """``simulation`` with the ``layer_synapse`` the connections have: one lowpass time constant on every
    connection out of neurons (as `to_nengo` builds it from a file that sets one), or none anywhere.

    Raises
    ------
    SNNError
        For a synapse on a connection that does not leave neurons, a synapse other than a lowpass, or
        different synapses on different connections (not representable in the file yet).
    """
    import nengo

    taus = set()
    for conn in connections:
        from_neurons = isinstance(conn.pre_obj, nengo.ensemble.Neurons)
        if conn.synapse is None:
            taus.add(None) if from_neurons else None
            continue
        if not from_neurons:
            raise SNNError(f"{conn}: has a synapse but does not leave neurons; ONNX-SNN stores only synapses "
                           "out of neuron layers (use synapse=None elsewhere)")
        if type(conn.synapse) is not nengo.Lowpass:
            raise SNNError(f"{conn}: synapse {conn.synapse!r} is not a nengo.Lowpass")
        taus.add(float(conn.synapse.tau))
    if len(taus) > 1:
        raise SNNError(f"connections out of neurons have different synapses {sorted(taus, key=str)}; ONNX-SNN "
                       "stores one layer_synapse for every layer")
    tau = next(iter(taus), None)
    return dataclasses.replace(simulation, layer_synapse=tau)


def _selection(t: Any) -> np.ndarray | None:
    """For a Sparse transform whose every output row takes exactly one input with weight 1, the
    input index of each output (int64, length out); else None."""
    if not hasattr(t.init, "toarray"):
        return None
    rows, cols = t.init.indices[:, 0], t.init.indices[:, 1]
    data = np.broadcast_to(np.asarray(t.init.data), rows.shape)
    if len(rows) != t.shape[0] or not np.all(data == 1) or not np.array_equal(np.sort(rows), np.arange(t.shape[0])):
        return None
    index = np.empty(t.shape[0], np.int64)
    index[rows] = cols
    return index


def _gathered_sum(g: _Graph, t: Any, value: str, base: str) -> str:
    """A general ``nengo.Sparse`` transform as ``ReduceSum(Gather(x, index) * weight)``, never as a dense matrix.

    Each output row's m entries (m = the most any row has; shorter rows padded with index 0, weight 0)
    are gathered, weighted and summed: sizes grow with the number of non-zeros, not with out x in (an
    average pooling of a 16x28x28 map would be a 157 MB MatMul weight). Rows of one entry skip the sum.
    """
    if not hasattr(t.init, "toarray"):
        raise SNNError(f"connection into {base!r}: sparse transform initialised by {t.init!r}, not by values")
    rows, cols = t.init.indices[:, 0], t.init.indices[:, 1]
    data = np.broadcast_to(np.asarray(t.init.data, np.float64), rows.shape)
    out = t.shape[0]
    order = np.lexsort((cols, rows))
    rows, cols, data = rows[order], cols[order], data[order]
    counts = np.bincount(rows, minlength=out)
    width = max(int(counts.max()), 1)
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    index, weight = np.zeros((out, width), np.int64), np.zeros((out, width))
    index[rows, slot], weight[rows, slot] = cols, data
    gathered = g.op("Gather", [value, g.const(f"{base}.index", index.ravel())], f"{base}.gather", axis=1)
    if width == 1:
        return g.op("Mul", [gathered, g.const(f"{base}.weight", weight.ravel())], base)
    grouped = g.op("Reshape", [gathered, g.const(f"{base}.groups", np.array([-1, out, width], np.int64))],
                   f"{base}.groups")
    weighted = g.op("Mul", [grouped, g.const(f"{base}.weight", weight)], f"{base}.weighted")
    return g.op("ReduceSum", [weighted, g.const(f"{base}.sum_axis", np.array([2], np.int64))], base, keepdims=0)


def _sparse_matrix(t: Any, where: str) -> np.ndarray:
    """The dense (out, in) matrix of a ``nengo.Sparse`` transform, within `MAX_DENSE_FROM_SPARSE`."""
    if t.shape[0] * t.shape[1] > MAX_DENSE_FROM_SPARSE:
        raise SNNError(f"connection into {where!r}: sparse transform {t.shape} is too large to export densely")
    if not hasattr(t.init, "toarray"):
        raise SNNError(f"connection into {where!r}: sparse transform initialised by {t.init!r}, not by values")
    return np.asarray(t.init.toarray(), np.float64)


def _apply_constant(conn: Any, vector: np.ndarray) -> np.ndarray:
    """``conn.transform`` applied to a constant input vector (numerically, in float64)."""
    import nengo

    t = conn.transform
    if isinstance(t, nengo.transforms.NoTransform):
        return vector
    if isinstance(t, nengo.Dense):
        w = np.asarray(t.init, np.float64)
        return w @ vector if w.ndim == 2 else w * vector
    if isinstance(t, nengo.Sparse):
        return _sparse_matrix(t, str(conn)) @ vector
    raise SNNError(f"{conn}: transform {type(t).__name__} from a constant node is not supported")


def _gain_bias(ens: Any) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble's explicit gain and bias (per neuron)."""
    if ens.gain is None or ens.bias is None:
        raise SNNError(f"ensemble {_label(ens)!r}: gain and bias must be set explicitly to export it "
                       "(max_rates/intercepts depend on the simulator's random draw)")
    return (np.broadcast_to(np.asarray(ens.gain, np.float64), (ens.n_neurons,)),
            np.broadcast_to(np.asarray(ens.bias, np.float64), (ens.n_neurons,)))
