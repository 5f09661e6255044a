"""ONNX -> ONNX-SNN: replace activation nodes by spiking neuron ops, keeping every weight."""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxlab.errors import SNNError
from onnxlab.formats import ONNX_SNN_DOMAIN, finalize, unique_name
from onnxlab.graph import check_opset_supported, is_default_domain, taken_names
from onnxlab.snn.neurons import NeuronOp, install_functions, neuron, neuron_nodes
from onnxlab.snn.simulation import Simulation

#: Activation op types replaced by default (the thesis' choice).
DEFAULT_ACTIVATIONS = ("Relu", "Sigmoid", "Tanh")


def gain_bias(op: type[NeuronOp], params: dict[str, float], *, gain: float, bias: float,
              max_rates: float | None, intercepts: float | None) -> tuple[float, float]:
    """Gain and bias for ``op``: given directly, or from Nengo's ``gain_bias(max_rates, intercepts)``."""
    if (max_rates is None) != (intercepts is None):
        raise SNNError("give both max_rates and intercepts, or neither")
    if max_rates is None:
        return float(gain), float(bias)
    try:
        g, b = op.nengo_type(params).gain_bias(np.array([max_rates]), np.array([intercepts]))
    except Exception as exc:
        raise SNNError(f"{op.op_type}: max_rates={max_rates}, intercepts={intercepts}: {exc}") from exc
    return float(g[0]), float(b[0])


def to_snn(model: onnx.ModelProto | str | os.PathLike, neuron_type: str = "LIF", *,
           mapping: dict[str, str] | None = None, params: dict[str, float] | None = None,
           gain: float = 1.0, bias: float = 0.0, max_rates: float | None = None,
           intercepts: float | None = None, simulation: Simulation | None = None) -> onnx.ModelProto:
    """Convert an ONNX model to ONNX-SNN by replacing its activation nodes with neuron ops.

    Parameters
    ----------
    model
        A model proto or the path of an ``.onnx`` file. Not modified.
    neuron_type
        Neuron op replacing every activation in `DEFAULT_ACTIVATIONS` (see
        `onnxlab.snn.neurons.NEURONS`).
    mapping
        Activation op type -> neuron op type, replacing the default (e.g.
        ``{"Relu": "SpikingRectifiedLinear"}`` replaces only Relu nodes).
    params
        Neuron parameters (e.g. ``{"amplitude": 0.01}``), applied to every neuron op in use that
        has them; the rest take Nengo's defaults.
    gain, bias
        Ensemble gain and bias of every new neuron op (scalars, broadcast over the neurons).
    max_rates, intercepts
        Alternatively, Nengo's max_rates (Hz) and intercepts, turned into gain and bias by the
        neuron type's ``gain_bias``.
    simulation
        Simulation settings stored in the file (default: `Simulation()`).

    Returns
    -------
    onnx.ModelProto
        Valid under ``onnx.checker.check_model(full_check=True)``; runs in ONNX Runtime (rates).
        The model's ai.onnx opset is kept (any of 9 to `onnxlab.graph.MAX_SUPPORTED_OPSET`): each
        neuron op's function is built for it. Its IR version is kept, raised to 8 if older
        (model-local functions need IR 8). External data is read into the returned proto;
        `onnxlab.formats.save_model` writes it back out when the model is large.

    Raises
    ------
    SNNError
        Unknown neuron or parameter, an already-spiking model, or no activation to replace.
    """
    from onnxlab.formats import as_model

    source = as_model(model)
    check_opset_supported(source, "to_snn")
    if neuron_nodes(source):
        raise SNNError(f"model {source.graph.name!r} is already ONNX-SNN (it has {ONNX_SNN_DOMAIN} nodes)")
    mapping = dict(mapping) if mapping is not None else {a: neuron_type for a in DEFAULT_ACTIVATIONS}
    ops = {activation: neuron(name) for activation, name in mapping.items()}
    params = dict(params or {})
    unknown = sorted(set(params) - set().union(*(op.attributes for op in ops.values())))
    if unknown:
        names = ", ".join(sorted({op.op_type for op in ops.values()}))
        raise SNNError(f"no neuron in use ({names}) has parameter {', '.join(unknown)}")
    op_params = {activation: op.parameters({k: v for k, v in params.items() if k in op.attributes})
                 for activation, op in ops.items()}

    snn = onnx.ModelProto()
    snn.CopyFrom(source)
    taken = taken_names(snn.graph)
    replaced = 0
    for index, node in enumerate(snn.graph.node):
        if not is_default_domain(node.domain) or node.op_type not in ops:
            continue
        op, p = ops[node.op_type], op_params[node.op_type]
        g, b = gain_bias(op, p, gain=gain, bias=bias, max_rates=max_rates, intercepts=intercepts)
        base = node.name or node.output[0]
        g_name, b_name = unique_name(f"{base}.gain", taken), unique_name(f"{base}.bias", taken)
        snn.graph.initializer.extend([numpy_helper.from_array(np.array(g, np.float32), g_name),
                                      numpy_helper.from_array(np.array(b, np.float32), b_name)])
        new = helper.make_node(op.op_type, [node.input[0], g_name, b_name], list(node.output),
                               name=node.name or f"{op.op_type}_{index}", domain=ONNX_SNN_DOMAIN,
                               doc_string=f"replaces {node.op_type}", **op.node_attributes(p))
        snn.graph.node[index].CopyFrom(new)
        replaced += 1
    if not replaced:
        raise SNNError(f"model {source.graph.name!r} has no {', '.join(mapping)} node to replace")
    install_functions(snn)
    (simulation or Simulation()).write(snn)
    return finalize(snn, keep_ir_version=True)

