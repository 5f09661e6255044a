"""The bad inputs the CLI and library must refuse with one clear error (issue: "never crash on bad input").

`BAD_INPUTS` maps a case name to a `BadInput`: how to write the offending file(s) into a folder,
and a fragment the error message must contain. The tests run each case through the CLI and
assert exit status 1, that message, no traceback and no output file; the model_classification
notebook tabulates the messages users actually see.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxlab.formats import IR_VERSION, ONNX_OPSET


def _model(node: onnx.NodeProto | None = None, initializers=(), opset: int = ONNX_OPSET,
           domains: tuple[str, ...] = ()) -> onnx.ModelProto:
    """y = node(x) on x (N, 4) float32 (Identity by default), with ``initializers``."""
    node = node or helper.make_node("Identity", ["x"], ["y"], name="identity")
    graph = helper.make_graph([node], "bad-input-case", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]
                              + [helper.make_opsetid(d, 1) for d in domains])
    model.ir_version = IR_VERSION
    return model


def _x(folder: Path, array: np.ndarray | None = None) -> Path:
    path = folder / "x.npy"
    np.save(path, np.zeros((2, 4), np.float32) if array is None else array)
    return path


def _write(folder: Path, data: bytes | onnx.ModelProto) -> Path:
    path = folder / "model.onnx"
    path.write_bytes(data.SerializeToString() if isinstance(data, onnx.ModelProto) else data)
    return path


def _too_new(folder: Path) -> tuple[Path, Path]:
    from onnxlab.inference import onnxruntime_max_opset

    return _write(folder, _model(opset=onnxruntime_max_opset() + 1)), _x(folder)


def _external(folder: Path) -> tuple[Path, Path]:
    bias = numpy_helper.from_array(np.ones((1, 4), np.float32), "bias")
    model = _model(helper.make_node("Add", ["x", "bias"], ["y"], name="add"), [bias])
    onnx.save_model(model, folder / "model.onnx", save_as_external_data=True, size_threshold=0, location="weights.bin")
    (folder / "weights.bin").unlink()
    return folder / "model.onnx", _x(folder)


def _huge(folder: Path) -> tuple[Path, Path]:
    weight = TensorProto(name="weight", data_type=TensorProto.FLOAT, dims=[1 << 20, 1 << 20, 4])
    weight.raw_data = b"\0" * 16
    return _write(folder, _model(helper.make_node("Add", ["x", "weight"], ["y"], name="add"), [weight])), _x(folder)


@dataclass(frozen=True)
class BadInput:
    """``write(folder) -> (model path, input .npy path)``; the CLI error must contain ``message``."""

    write: Callable[[Path], tuple[Path, Path]]
    message: str


#: Case name -> how to make it and what the error must say.
BAD_INPUTS: dict[str, BadInput] = {
    "empty file": BadInput(lambda f: (_write(f, b""), _x(f)), "empty file, not an ONNX model"),
    "random bytes": BadInput(lambda f: (_write(f, np.random.default_rng(0).bytes(4096)), _x(f)),
                             "not an ONNX model"),
    "truncated model": BadInput(lambda f: (_write(f, _model().SerializeToString()[:-9]), _x(f)),
                                "not an ONNX model"),
    "text file": BadInput(lambda f: (_write(f, b"name,value\nlearning_rate,0.01\n"), _x(f)), "not an ONNX model"),
    "protobuf that is not a model": BadInput(
        lambda f: (_write(f, numpy_helper.from_array(np.arange(6.0), "t").SerializeToString()), _x(f)),
        "not an ONNX model"),
    "opset newer than onnxruntime": BadInput(_too_new, "newer than onnxruntime"),
    "unknown custom domain": BadInput(
        lambda f: (_write(f, _model(helper.make_node("Frobnicate", ["x"], ["y"], name="mystery", domain="com.example"),
                                    domains=("com.example",))), _x(f)),
        "node 'mystery' uses op 'Frobnicate' of the custom domain 'com.example'"),
    "missing external data": BadInput(_external, "keeps its data in 'weights.bin', which is missing"),
    "dimensions too large to allocate": BadInput(_huge, "declares dims [1048576, 1048576, 4]"),
    "input of the wrong shape": BadInput(lambda f: (_write(f, _model()), _x(f, np.zeros((2, 5), np.float32))),
                                         "input 'x' expects shape (N, 4), got (2, 5)"),
    "input of the wrong dtype": BadInput(lambda f: (_write(f, _model()), _x(f, np.zeros((2, 4), np.float64))),
                                         "input 'x' expects float (float32), got float64"),
}
