"""ONNX-SNN -> a `nengo.Network` built from Nengo objects, runnable in NengoDL (and Nengo).

`describe` walks the graph once and asks each node's builder (`onnxlab.snn.builders.BUILDERS`, chosen
by op type *and* the model's opset) to describe what it builds; `to_nengo` realizes that
description as Nengo objects, and `onnxlab.snn.codegen.to_nengo_code` renders the same description
as a script. Graph inputs become `nengo.Node` inputs, linear ops become connection transforms,
neuron ops become ensembles with the file's gain, bias and neuron type. Connections have
``synapse=None`` — the network is feed-forward within one time step, like the ONNX graph — except
those out of neuron layers when the file sets a ``layer_synapse`` (`onnxlab.snn.Simulation`).

Files of every ai.onnx opset from `onnxlab.graph.MIN_SUPPORTED_OPSET` to
`onnxlab.graph.MAX_SUPPORTED_OPSET` are read as they are (no version conversion); weights in
external data files are read from beside the model file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from onnxlab.errors import SNNError
from onnxlab.formats import ONNX_SNN_DOMAIN
from onnxlab.graph import (check_opset_supported, constants, is_constant_node, is_default_domain, node_label,
                           simplify)
from onnxlab.snn.builders import BUILDERS, MAX_POOL_MODES, Builder, Tensor, build_neuron, rate_twin
from onnxlab.snn.description import Call, NetworkDescription
from onnxlab.snn.simulation import Simulation
from onnxlab.snn.to_snn import DEFAULT_ACTIVATIONS

__all__ = ["MAX_POOL_MODES", "NengoModel", "describe", "rate_twin", "to_nengo"]

#: Output ops dropped when they end the graph: they keep the argmax, and spiking outputs are scores.
DROPPED_OUTPUT_OPS = ("Softmax", "LogSoftmax")


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
        ONNX neuron node name -> its `nengo.Ensemble`, its neurons in the flat order of the node's tensor — except
        the layers in ``channels_last_layers``.
    channels_last_layers
        ONNX neuron node name -> (C, H, W), for the neuron layers held channels-last: neuron ``i`` of the ensemble
        is element ``i`` of the tensor in (H, W, C) order (`in_onnx_order` puts values back in ONNX order).
    softmax_dropped
        Output names whose final Softmax (or LogSoftmax) was dropped (Nengo outputs the logits).
    notes
        What the conversion changed (dropped Softmax, MaxPool as average, ...).
    description
        The statements the network was built from (`onnxlab.snn.description`); `codegen` renders them.
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
    description: NetworkDescription | None = None
    channels_last_layers: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def in_onnx_order(self, layer: str, values: np.ndarray) -> np.ndarray:
        """Per-neuron ``values`` (..., n_neurons) of ensemble ``layer`` in the flat order of its ONNX tensor."""
        from onnxlab.snn.transforms import onnx_order_index

        if layer not in self.channels_last_layers:
            return values
        return np.asarray(values)[..., onnx_order_index(self.channels_last_layers[layer])]


@dataclass
class Description:
    """What `describe` returns: the network's statements and what `to_nengo` needs besides them."""

    network: NetworkDescription
    weights: dict[str, np.ndarray]
    input_shapes: dict[str, tuple[int, ...]]
    output_shapes: dict[str, tuple[int, ...]]
    ensembles: dict[str, Any]
    simulation: Simulation
    softmax_dropped: set[str]
    notes: list[str]
    channels_last_layers: dict[str, tuple[int, int, int]]


def _input_shape(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    if len(dims) < 2 or any(d is None for d in dims[1:]):
        raise SNNError(f"input {value.name!r} needs a batch axis and fixed sample dimensions, got {dims}")
    return tuple(int(d) for d in dims[1:])


def describe(model: onnx.ModelProto | str | os.PathLike, *, rate: bool = False, max_pool: str = "average",
             filtered_probes: bool = True, layer_synapses: bool = True, fold_biases: bool = True,
             trainable_ensembles: bool = False, channels_last: bool = True) -> Description:
    """Describe the Nengo network of an ONNX-SNN (or plain linear ONNX) model, without building it.

    Parameters are those of `to_nengo`.
    """
    from onnxlab.formats import as_model
    from onnxlab.snn.legacy import is_legacy

    if max_pool not in MAX_POOL_MODES:
        raise SNNError(f"max_pool must be one of {MAX_POOL_MODES}, got {max_pool!r}")
    source = as_model(model, check=False)
    opset = check_opset_supported(source, "to_nengo")
    if is_legacy(source):
        raise SNNError("this is a legacy ONNX-SNN file (neuron ops in the default domain): "
                       "upgrade it first with `onnxlab upgrade` / onnxlab.snn.upgrade")
    source = simplify(source)
    weights = constants(source)
    simulation = Simulation.read(source)
    b = Builder(source, weights, opset=opset, rate=rate, max_pool=max_pool, seed=simulation.seed,
                layer_synapse=simulation.layer_synapse if layer_synapses else None, fold_biases=fold_biases,
                trainable_ensembles=trainable_ensembles, channels_last=channels_last)
    graph_outputs = [o.name for o in source.graph.output]
    input_shapes, softmax_dropped = {}, set()
    for value in source.graph.input:
        if value.name in weights:
            continue
        shape = input_shapes[value.name] = _input_shape(value)
        node = b.net.assign("inp", Call.of("nengo.Node", Call.of("np.zeros", int(np.prod(shape))), label=value.name))
        b.net.inputs[value.name] = node
        b.tensors[value.name] = Tensor(node, shape, label=value.name)
    for node in source.graph.node:
        if is_constant_node(node):
            continue  # already among the weights
        if is_default_domain(node.domain) and b.fold(node):
            continue  # shape arithmetic after a Shape
        if node.domain == ONNX_SNN_DOMAIN:
            build_neuron(b, node)
        elif not is_default_domain(node.domain):
            raise SNNError(f"{node_label(node)}: op of domain {node.domain!r}; Nengo builders exist for ai.onnx "
                           f"ops and {ONNX_SNN_DOMAIN} neuron ops")
        elif node.op_type in DROPPED_OUTPUT_OPS and node.output[0] in graph_outputs:
            src = b.tensor(node.input[0], node)
            b.tensors[node.output[0]] = src.alias(src.shape)
            softmax_dropped.add(node.output[0])
            b.notes.append(f"{node_label(node)}: output {node.op_type} dropped (the classification, argmax, "
                           "is unchanged)")
        elif (builder := BUILDERS.lookup(node.op_type, opset)) is not None:
            builder.build(b, node)
        elif node.op_type in BUILDERS:
            raise SNNError(f"{node_label(node)}: no Nengo builder for {node.op_type} at opset {opset}; builders "
                           f"cover it from opset {min(BUILDERS.versions(node.op_type))}")
        elif node.op_type in DEFAULT_ACTIVATIONS:
            raise SNNError(f"{node_label(node)}: a non-spiking activation; convert the model with to_snn "
                           "(`onnxlab to-snn`) to replace it with a neuron op")
        else:
            raise SNNError(f"{node_label(node)}: no Nengo builder for this op; supported: "
                           f"{', '.join(BUILDERS.op_types())}, output Softmax, and {ONNX_SNN_DOMAIN} neuron ops")
    derived = b.net.weights_used() & b.derived
    if derived:
        raise SNNError(f"constants {sorted(derived)} are computed from the input's shape and used as weights; "
                       "only Reshape targets may be")
    output_shapes = {}
    for name in graph_outputs:
        if name not in b.tensors:
            raise SNNError(f"output {name!r} is a constant or is not computed from the inputs")
        tensor = b.in_onnx_order(name) if b.tensors[name].channels_last else b.tensors[name]
        obj = b.obj(tensor)
        b.net.outputs[name] = b.net.assign("probe", Call.of("nengo.Probe", obj, synapse=None, label=name))
        if filtered_probes:
            b.net.filtered_outputs[name] = b.net.assign(
                "probe", Call.of("nengo.Probe", obj, synapse=simulation.synapse, label=f"{name} (filtered)"))
        output_shapes[name] = tensor.shape
    return Description(b.net, weights, input_shapes, output_shapes, b.ensembles, simulation, softmax_dropped,
                       b.notes, b.channels_last_layers)


def to_nengo(model: onnx.ModelProto | str | os.PathLike, *, rate: bool = False,
             max_pool: str = "average", filtered_probes: bool = True, layer_synapses: bool = True,
             fold_biases: bool = True, trainable_ensembles: bool = False, channels_last: bool = True) -> NengoModel:
    """Build a `nengo.Network` from an ONNX-SNN (or plain linear ONNX) model.

    Parameters
    ----------
    model
        Model proto or path (external data is read from beside the file); legacy ONNX-SNN files
        must be upgraded first (`onnxlab.snn.upgrade`).
    rate
        Use each spiking neuron's rate twin (LIF -> LIFRate): the network then computes what
        ONNX Runtime computes, which `verify` checks.
    max_pool
        One of `MAX_POOL_MODES`.
    filtered_probes
        Also probe each output through the file's synapse (``NengoModel.filtered_outputs``).
    layer_synapses
        Filter every connection out of a neuron layer with the file's ``layer_synapse``
        (`onnxlab.snn.Simulation`), if it sets one; False builds the instantaneous network (`verify`).
    fold_biases
        Fold every constant that feeds a neuron layer (the Conv / Gemm / BatchNorm bias before it) into the
        ensemble's bias: J = gain * (x + c) + bias = gain * x + (bias + gain * c). The network computes the same
        and NengoDL no longer adds each bias through a connection from a constant node at every step. False
        builds those connections, as onnxlab did before (for comparisons). Biases that feed no neurons (the
        output layer's) always come from one constant node ``one``.
    trainable_ensembles
        Let NengoDL train the ensembles, i.e. their per-neuron biases (which hold the folded ONNX biases). False
        (the default) marks them fixed, so that in NengoDL only the ONNX weights (Conv, Gemm, MatMul connections)
        are trainable — as `nengo_dl.Converter` leaves a convolution's ensemble — and a trainable NengoDL graph
        runs several times faster (`snn_vs_converter` measures it). `onnxlab.snn.train.train_classifier` makes
        the ensembles trainable while it trains (``train_biases``).
    channels_last
        Hold (C, H, W) tensors channels-last wherever that costs no copy (one-channel inputs; the Transposes
        tf2onnx writes around a Keras network's convolutions), as NengoDL runs channels-last convolutions faster.
        The network computes the same; such neuron layers order their neurons
        (H, W, C) (``NengoModel.channels_last_layers``). False builds every tensor in ONNX order, as before.

    Raises
    ------
    SNNError
        Naming the first node whose op, attributes or inputs Nengo cannot represent at the
        model's opset.
    """
    described = describe(model, rate=rate, max_pool=max_pool, filtered_probes=filtered_probes,
                         layer_synapses=layer_synapses, fold_biases=fold_biases,
                         trainable_ensembles=trainable_ensembles, channels_last=channels_last)
    net = described.network
    network, objects = net.realize(described.weights)
    return NengoModel(network, {k: v.evaluate_in(objects) for k, v in net.inputs.items()}, described.input_shapes,
                      {k: v.evaluate_in(objects) for k, v in net.outputs.items()},
                      {k: v.evaluate_in(objects) for k, v in net.filtered_outputs.items()}, described.output_shapes,
                      {k: v.evaluate_in(objects) for k, v in described.ensembles.items()}, described.simulation,
                      described.softmax_dropped, described.notes, net, described.channels_last_layers)
