"""ONNX files as other exporters write them, to test onnxlab on files it did not write itself.

One network (its Keras weights) goes out through several producers:

- `tf2onnx_export`: tf2onnx at any opset it supports (NHWC input, a Transpose before the first Conv);
- `version_converted`: ``onnx.version_converter`` from one opset to another;
- `export_pytorch`: PyTorch's own ``torch.onnx.export`` (TorchScript and dynamo exporters; NCHW input,
  ``Flatten -> Gemm(transB=1)``, node names like ``/features/features.0/Conv``, weights in a ``.onnx.data``
  file for the dynamo exporter), run in the PyTorch environment (`PYTORCH_PYTHON_ENV`), with the
  Keras weights remapped by `pytorch_weights`;
- `as_legacy`: the original ONNX-SNN tool's encoding (Park 2019: keras2onnx 1.6 on onnx 1.6): neuron
  ops in the default domain with no attributes and no gain or bias, IR version 6, opset 11.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper

from onnxlab.errors import OnnxlabError
from onnxlab.graph import default_opset, is_default_domain

#: Producer name, IR version and opset of the original ONNX-SNN tool's files.
LEGACY_PRODUCER = "snn2onnx"
LEGACY_IR_VERSION = 6
LEGACY_MAX_OPSET = 11
#: Activations the original tool replaced by neuron ops.
LEGACY_ACTIVATIONS = ("Relu", "Sigmoid", "Tanh")
#: Environment variable naming the PyTorch environment's Python (default: `DEFAULT_PYTORCH_PYTHON`).
PYTORCH_PYTHON_ENV = "ONNXLAB_PYTORCH_PYTHON"
#: The PyTorch environment `make pytorch-env` creates, relative to the repository.
DEFAULT_PYTORCH_PYTHON = Path(__file__).resolve().parents[2] / ".venv-pytorch" / "bin" / "python"
#: The script that environment runs.
PYTORCH_EXPORT_SCRIPT = Path(__file__).resolve().parent / "exporters" / "pytorch_export.py"
#: PyTorch exporters, as `export_pytorch` names them.
PYTORCH_EXPORTERS = ("torchscript", "dynamo")


@dataclass
class ForeignFile:
    """A file to check.

    Attributes
    ----------
    name
        Row label (producer, network, opset).
    path
        The ``.onnx`` file (external data beside it).
    x
        An input batch in the file's own layout (NHWC for Keras exports, NCHW for PyTorch's).
    reference
        The producer's own outputs on ``x`` (None when there are none, e.g. legacy files).
    legacy
        A file of the original ONNX-SNN tool (upgraded instead of converted).
    """

    name: str
    path: Path
    x: np.ndarray
    reference: np.ndarray | None = None
    legacy: bool = False
    info: dict[str, Any] = field(default_factory=dict)


def tf2onnx_export(keras_model: Any, opset: int) -> onnx.ModelProto:
    """The Keras model converted by tf2onnx at ai.onnx ``opset``, checked (IR version as `finalize` sets it)."""
    from onnxlab.convert import to_onnx

    example = np.zeros((1, *keras_model.input_shape[1:]), np.float32)
    return to_onnx(keras_model, example, name=keras_model.name, opset=opset)


def version_converted(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """``model`` converted to ai.onnx ``opset`` by ``onnx.version_converter``, checked.

    Raises
    ------
    OnnxlabError
        If the converter cannot convert one of the model's ops (its message, one line).
    """
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, opset)
        onnx.checker.check_model(converted, full_check=True)
    except Exception as exc:
        raise OnnxlabError(f"onnx.version_converter cannot take {model.graph.name!r} from opset "
                           f"{default_opset(model)} to {opset}: {str(exc).splitlines()[0]}") from None
    return converted


def as_legacy(model: onnx.ModelProto, neuron: str = "LIF") -> onnx.ModelProto:
    """``model`` as the original ONNX-SNN tool wrote it: each activation replaced by ``neuron`` in the default domain.

    The neuron nodes keep the activation's name, input and output, and carry no attributes and no
    gain or bias (that tool's Nengo side set ``max_rates=100, intercepts=0``); the file gets IR
    version 6 and producer ``snn2onnx``. Such a file is not valid ONNX (``onnx.checker`` rejects the
    unknown default-domain op): `onnxlab.snn.upgrade` turns it into ONNX-SNN.

    Raises
    ------
    OnnxlabError
        If ``model`` imports an opset newer than 11 (that tool ran on onnx 1.6) or has no activation.
    """
    opset = default_opset(model)
    if opset > LEGACY_MAX_OPSET:
        raise OnnxlabError(f"the original ONNX-SNN tool wrote opset {LEGACY_MAX_OPSET} at most; "
                           f"{model.graph.name!r} imports {opset}")
    legacy = onnx.ModelProto()
    legacy.CopyFrom(model)
    replaced = 0
    for node in legacy.graph.node:
        if is_default_domain(node.domain) and node.op_type in LEGACY_ACTIVATIONS:
            node.CopyFrom(helper.make_node(neuron, list(node.input), list(node.output), name=node.name))
            replaced += 1
    if not replaced:
        raise OnnxlabError(f"{model.graph.name!r} has no {'/'.join(LEGACY_ACTIVATIONS)} node to replace")
    legacy.ir_version = LEGACY_IR_VERSION
    legacy.producer_name, legacy.producer_version = LEGACY_PRODUCER, ""
    del legacy.functions[:]
    return legacy


def pytorch_weights(keras_model: Any) -> list[np.ndarray]:
    """The Keras model's weights in PyTorch's layout, in the order of the matching module's ``state_dict``.

    Conv kernels (kh, kw, in, out) -> (out, in, kh, kw); Dense kernels (in, out) -> (out, in), and
    the first Dense after a Flatten gets its rows reordered from Keras' (H, W, C) flatten to
    PyTorch's (C, H, W); BatchNormalization gives gamma, beta, moving mean, moving variance, as
    PyTorch's weight, bias, running_mean, running_var.
    """
    from onnxlab.snn import layout

    arrays, flat_from = [], None
    for layer in keras_model.layers:
        kind, weights = type(layer).__name__, layer.get_weights()
        if kind == "Conv2D":
            arrays += [layout.conv_kernel_to_onnx(weights[0]), *weights[1:]]
        elif kind == "BatchNormalization":
            arrays += weights
        elif kind == "Flatten":
            flat_from = tuple(layer.input_shape[1:])  # (H, W, C)
        elif kind == "Dense":
            kernel = weights[0]
            if flat_from is not None and len(flat_from) == 3:
                h, w, c = flat_from
                kernel = layout.dense_rows_hwc_to_chw(kernel, c, h, w)
            flat_from = None
            arrays += [layout.dense_to_gemm(kernel), weights[1]]
        elif weights:
            raise OnnxlabError(f"layer {layer.name!r} ({kind}) has weights pytorch_weights does not map")
    return [np.ascontiguousarray(a, np.float32) for a in arrays]


def pytorch_python() -> Path:
    """The PyTorch environment's Python (`PYTORCH_PYTHON_ENV`, or `DEFAULT_PYTORCH_PYTHON`).

    Raises
    ------
    OnnxlabError
        If it does not exist, saying how to create it.
    """
    path = Path(os.environ.get(PYTORCH_PYTHON_ENV, DEFAULT_PYTORCH_PYTHON))
    if not path.is_file():
        raise OnnxlabError(f"no PyTorch environment at {path}: run `make pytorch-env` (or set {PYTORCH_PYTHON_ENV})")
    return path


def export_pytorch(networks: dict[str, list[np.ndarray]], x_nchw: np.ndarray, exports: list[dict[str, Any]],
                   *, timeout_s: float = 600) -> dict[str, np.ndarray]:
    """Export networks with PyTorch in its own environment (see ``exporters/pytorch_export.py``).

    Parameters
    ----------
    networks
        Network name (``lenet5``, ``residual_bn_cnn``) -> weights from `pytorch_weights`.
    x_nchw
        Input batch (N, 1, 28, 28) on which PyTorch's outputs are returned.
    exports
        ``{"network", "exporter" (one of `PYTORCH_EXPORTERS`), "opset", "path"}`` per file to write.

    Returns
    -------
    dict
        Network name -> PyTorch's output on ``x_nchw`` (the reference the ONNX files must reproduce).

    Raises
    ------
    OnnxlabError
        If the environment is missing or the export fails (PyTorch's last error lines).
    """
    for job in exports:
        if job["exporter"] not in PYTORCH_EXPORTERS:
            raise OnnxlabError(f"unknown PyTorch exporter {job['exporter']!r}; known: {', '.join(PYTORCH_EXPORTERS)}")
    python = pytorch_python()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = {}
        for name, arrays in networks.items():
            paths[name] = str(tmp / f"{name}.npz")
            np.savez(paths[name], **{f"p{i}": a for i, a in enumerate(arrays)})
        np.save(tmp / "x.npy", np.ascontiguousarray(x_nchw, np.float32))
        spec = dict(networks=paths, inputs=str(tmp / "x.npy"), outputs=str(tmp / "outputs.npz"),
                    exports=[{**job, "path": str(Path(job["path"]).resolve())} for job in exports])
        (tmp / "spec.json").write_text(json.dumps(spec))
        proc = subprocess.run([str(python), str(PYTORCH_EXPORT_SCRIPT), str(tmp / "spec.json")],
                              capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise OnnxlabError(f"PyTorch export failed (exit {proc.returncode}):\n{tail}")
        with np.load(tmp / "outputs.npz") as outputs:
            return {k: outputs[k] for k in outputs.files}


def produce_files(keras_models: dict[str, Any], x_nhwc: np.ndarray, out_dir: str | os.PathLike, *,
                  tf2onnx_opsets: list[int], converter_source_opset: int, converter_opsets: list[int],
                  pytorch_exports: dict[str, list[int]], legacy_networks: list[str]) -> list[ForeignFile]:
    """Write every network through every producer into ``out_dir``; one `ForeignFile` per file, with its reference.

    Parameters
    ----------
    keras_models
        Network name (``lenet5``, ``residual_bn_cnn``: the architectures the PyTorch script mirrors) -> Keras model.
    x_nhwc
        Input batch (N, 28, 28, 1); PyTorch files get it as NCHW.
    tf2onnx_opsets
        Opsets at which tf2onnx writes each network.
    converter_source_opset, converter_opsets
        ``onnx.version_converter`` takes the tf2onnx file at the source opset to each of these.
    pytorch_exports
        PyTorch exporter (``torchscript``, ``dynamo``) -> opsets; dynamo files keep their weights in
        ``<file>.data``, as PyTorch writes them.
    legacy_networks
        Networks also written in the original ONNX-SNN tool's encoding (from the tf2onnx file at the
        source opset, which must be 11 or lower).

    The reference outputs are the producer's own: Keras' for tf2onnx and converted files, PyTorch's for
    PyTorch's files; legacy files have none.
    """
    from onnxlab.formats import save_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keras_outputs = {name: m.predict(x_nhwc, verbose=0) for name, m in keras_models.items()}
    files: list[ForeignFile] = []
    sources = {}
    for name, keras_model in keras_models.items():
        for opset in sorted(set(tf2onnx_opsets) | {converter_source_opset}):
            model = tf2onnx_export(keras_model, opset)
            path = save_model(model, out_dir / f"{name}-tf2onnx-opset{opset}.onnx")
            if opset == converter_source_opset:
                sources[name] = model
            if opset in tf2onnx_opsets:
                files.append(ForeignFile(f"{name} tf2onnx opset {opset}", path, x_nhwc, keras_outputs[name],
                                         info=dict(producer="tf2onnx", network=name, layout="NHWC")))
        for opset in converter_opsets:
            path = save_model(version_converted(sources[name], opset),
                          out_dir / f"{name}-converted-{converter_source_opset}-to-{opset}.onnx")
            files.append(ForeignFile(f"{name} version_converter {converter_source_opset}->{opset}", path, x_nhwc,
                                     keras_outputs[name],
                                     info=dict(producer="onnx.version_converter", network=name, layout="NHWC")))
    x_nchw = np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))
    jobs = [dict(network=name, exporter=exporter, opset=opset,
                 path=str(out_dir / f"{name}-pytorch-{exporter}-opset{opset}.onnx"))
            for name in keras_models for exporter, opsets in pytorch_exports.items() for opset in opsets]
    if jobs:
        torch_outputs = export_pytorch({name: pytorch_weights(m) for name, m in keras_models.items()}, x_nchw, jobs)
        for job in jobs:
            files.append(ForeignFile(f"{job['network']} PyTorch {job['exporter']} opset {job['opset']}",
                                     Path(job["path"]), x_nchw, torch_outputs[job["network"]],
                                     info=dict(producer=f"torch.onnx ({job['exporter']})", network=job["network"],
                                               layout="NCHW")))
    for name in legacy_networks:
        path = out_dir / f"{name}-legacy-snn2onnx.onnx"
        onnx.save(as_legacy(sources[name]), str(path))  # not valid ONNX: written as that tool did
        files.append(ForeignFile(f"{name} original ONNX-SNN tool (legacy)", path, x_nhwc, None, legacy=True,
                                 info=dict(producer=LEGACY_PRODUCER, network=name, layout="NHWC")))
    return files
