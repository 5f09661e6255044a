"""Read the original ONNX-SNN tool's files (Park 2019) and upgrade them to the valid encoding.

That tool wrote spiking op types (``LIF``, ``SoftLIFRate``, ...) into the *default* ONNX domain,
where ``onnx.checker`` rejects them, with no gain or bias. Its Nengo side built every ensemble
with ``max_rates=100, intercepts=0`` (thesis Fig. 4-4), so the upgrade stores the gain and bias
those imply, explicitly, unless told otherwise — and reports every change it makes.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxlab.errors import SNNError
from onnxlab.formats import ONNX_SNN_DOMAIN, finalize, unique_name
from onnxlab.graph import FUNCTIONS_MIN_IR_VERSION, attributes, is_default_domain, taken_names
from onnxlab.snn.neurons import NEURONS, install_functions
from onnxlab.snn.simulation import Simulation
from onnxlab.snn.to_snn import gain_bias

#: Ensemble settings of the original tool (thesis Fig. 4-4), used for files that store none.
LEGACY_MAX_RATES = 100.0
LEGACY_INTERCEPTS = 0.0


def legacy_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Top-level nodes that are spiking neuron ops in the default domain (the legacy encoding)."""
    return [n for n in model.graph.node if is_default_domain(n.domain) and n.op_type in NEURONS]


def is_legacy(model: onnx.ModelProto) -> bool:
    """True if ``model`` uses the original tool's encoding."""
    return bool(legacy_nodes(model))


def upgrade(model: onnx.ModelProto | str | os.PathLike, *, max_rates: float = LEGACY_MAX_RATES,
            intercepts: float = LEGACY_INTERCEPTS) -> tuple[onnx.ModelProto, list[str]]:
    """Upgrade a legacy ONNX-SNN model to the valid encoding.

    Parameters
    ----------
    model
        A legacy model proto or file path. Not modified.
    max_rates, intercepts
        Ensemble settings for nodes that store no gain and bias.

    Returns
    -------
    (model, changes)
        The upgraded model (valid under ``onnx.checker``) and one line per change made.

    Raises
    ------
    SNNError
        If the model has no legacy neuron node, or one of them cannot be upgraded.
    """
    from onnxlab.formats import as_model

    source = as_model(model, check=False)
    if not is_legacy(source):
        raise SNNError(f"model {source.graph.name!r} has no legacy ONNX-SNN node "
                       f"({', '.join(NEURONS)} in the default domain)")
    upgraded = onnx.ModelProto()
    upgraded.CopyFrom(source)
    taken = taken_names(upgraded.graph)
    changes = []
    for node in legacy_nodes(upgraded):
        op = NEURONS[node.op_type]
        label = node.name or node.output[0]
        stored = attributes(node)
        unknown = sorted(set(stored) - set(op.attributes) - set(op.derived))
        if unknown:
            raise SNNError(f"node {label!r} ({node.op_type}) has attributes {', '.join(unknown)} "
                           f"that {op.nengo_path} does not know")
        params = op.parameters(stored)
        node.domain = ONNX_SNN_DOMAIN
        changes.append(f"node {label!r}: {node.op_type} moved from the default domain to {ONNX_SNN_DOMAIN}")
        missing = [k for k in (*op.attributes, *op.derived) if k not in stored]
        if missing:
            del node.attribute[:]
            node.attribute.extend(helper.make_attribute(k, v) for k, v in op.node_attributes(params).items())
            changes.append(f"node {label!r}: wrote Nengo defaults for {', '.join(missing)}")
        if len(node.input) == 1:
            g, b = gain_bias(op, params, gain=1.0, bias=0.0, max_rates=max_rates, intercepts=intercepts)
            g_name, b_name = unique_name(f"{label}.gain", taken), unique_name(f"{label}.bias", taken)
            upgraded.graph.initializer.extend([numpy_helper.from_array(np.array(g, np.float32), g_name),
                                               numpy_helper.from_array(np.array(b, np.float32), b_name)])
            node.input.extend([g_name, b_name])
            changes.append(f"node {label!r}: no gain/bias stored; wrote gain={g:.6g}, bias={b:.6g} "
                           f"(max_rates={max_rates:g}, intercepts={intercepts:g})")
        elif len(node.input) != 3:
            raise SNNError(f"node {label!r} ({node.op_type}) has {len(node.input)} inputs; expected 1 (legacy) or 3")
    install_functions(upgraded)
    if not any(p.key.startswith("onnxsnn.") for p in upgraded.metadata_props):
        Simulation().write(upgraded)
        changes.append("no simulation settings stored; wrote the defaults " + repr(Simulation()))
    if upgraded.ir_version < FUNCTIONS_MIN_IR_VERSION:
        changes.append(f"IR version {upgraded.ir_version} raised to {FUNCTIONS_MIN_IR_VERSION} (model-local "
                       "functions need it); the ai.onnx opset is kept")
    return finalize(upgraded, keep_ir_version=True), changes
