"""The parameter tensors of a network, by role, on the Nengo side and the ONNX side (Table K1).

Roles are numbered in graph order: ``conv{i}.kernel``, ``dense{i}.weight``, ``bias{i}``
(constant-node connections), ``ensemble{i}.gain`` / ``ensemble{i}.bias``. The same role names on
both sides let a round trip be compared tensor by tensor.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from onnxlab.formats import ONNX_SNN_DOMAIN
from onnxlab.errors import InvalidArgument
from onnxlab.snn.transforms import is_pool_kernel


class _Numbered(dict):
    def add(self, kind: str, suffix: str, value: Any) -> None:
        index = sum(1 for k in self if k.startswith(f"{kind}") and k.endswith(suffix))
        self[f"{kind}{index}{suffix}"] = np.asarray(value)


def nengo_parameters(network: Any) -> dict[str, np.ndarray]:
    """Role -> array for a Nengo network: Convolution kernels (kh, kw, in, out) except pooling's, Dense matrices
    (out, in), bias transforms from constant nodes, and each ensemble's gain and bias (per neuron)."""
    import nengo

    params = _Numbered()
    for conn in network.all_connections:
        t = conn.transform
        if isinstance(t, nengo.Convolution):
            if not is_pool_kernel(t.init):  # pooling is built as a fixed convolution; it holds no parameter
                params.add("conv", ".kernel", t.init)
        elif isinstance(t, nengo.Dense) and np.ndim(t.init) == 2:
            if conn.pre_obj.size_out == 1:  # from a constant node: a bias
                params.add("bias", "", t.init)
            else:
                params.add("dense", ".weight", t.init)
    for ens in network.all_ensembles:
        params.add("ensemble", ".gain", np.broadcast_to(ens.gain, (ens.n_neurons,)))
        params.add("ensemble", ".bias", np.broadcast_to(ens.bias, (ens.n_neurons,)))
    return dict(params)


def onnx_parameters(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Role -> initializer for an ONNX(-SNN) model: Conv kernels (out, in, kh, kw), MatMul
    weights (in, out), Gemm weights as stored, and each neuron op's gain and bias."""
    inits = {i.name: i for i in model.graph.initializer}
    params = _Numbered()
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in inits:
            params.add("conv", ".kernel", numpy_helper.to_array(inits[node.input[1]]))
        elif node.op_type in ("MatMul", "Gemm") and node.input[1] in inits:
            params.add("dense", ".weight", numpy_helper.to_array(inits[node.input[1]]))
        elif node.domain == ONNX_SNN_DOMAIN:
            params.add("ensemble", ".gain", numpy_helper.to_array(inits[node.input[1]]))
            params.add("ensemble", ".bias", numpy_helper.to_array(inits[node.input[2]]))
    return dict(params)


def max_abs_difference(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> float:
    """Largest |after - before| over every role present in ``before`` (sizes must match).

    A role absent from ``after`` counts as zeros — exporters leave out all-zero biases — so a
    lost non-zero tensor still shows up as a difference.
    """
    worst = 0.0
    for role, value in before.items():
        other = np.asarray(after[role]) if role in after else np.zeros_like(value)
        if other.size != value.size:
            raise InvalidArgument(f"{role}: {value.shape} before, {other.shape} after")
        worst = max(worst, float(np.max(np.abs(other.reshape(value.shape).astype(np.float64) - value))))
    return worst
