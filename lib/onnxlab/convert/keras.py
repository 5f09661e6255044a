"""Keras -> ONNX with tf2onnx, in-process for small models and in a fresh process for big ones.

Zero biases (untrained layers) are kept: TensorFlow would fold ``x + 0`` away (see
`_mark_zero_biases`). tf2onnx's graph optimisation copies every constant several times: VGG16 (138 M parameters)
exhausted 24 GiB in-process. `convert_file` runs the conversion in a child process with
``large_model=True`` (tensors kept outside the protobuf during conversion), so the peak is
returned to the system when the child exits, and writes one self-contained ``.onnx`` file.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx

from onnxlab.errors import ConversionError
from onnxlab.formats import ONNX_OPSET, finalize, save_model

#: Models with more parameters are converted in a child process by `export`: tf2onnx's peak
#: memory is tens of times the weight size (VGG16, 138 M parameters, peaked at 19 GB;
#: ResNet50, 25.6 M, at 4.4 GB), and a child returns it to the system when it exits.
IN_PROCESS_MAX_PARAMS = 20_000_000


def _input_signature(model: Any, example_input: Any) -> list:
    import tensorflow as tf

    examples = list(example_input) if isinstance(example_input, (list, tuple)) else [example_input]
    if len(examples) != len(model.inputs):
        raise ConversionError(
            f"{model.name} has {len(model.inputs)} inputs but {len(examples)} example arrays were given"
        )
    signature = []
    for tensor, example in zip(model.inputs, examples):
        x = np.asarray(example)
        declared = tuple(tensor.shape[1:])
        fits = x.ndim == len(declared) + 1 and all(d is None or d == s for d, s in zip(declared, x.shape[1:]))
        if not fits:
            raise ConversionError(
                f"example input for {model.name}.{tensor.name} has shape {x.shape}; "
                f"the model expects (N, {', '.join(str(d) for d in declared)})"
            )
        name = tensor.name.split(":")[0]
        signature.append(tf.TensorSpec((None, *x.shape[1:]), tf.as_dtype(x.dtype), name=name))
    return signature


#: Step between the values of a zero-bias sentinel (a power of two: every sentinel is exact in float32).
SENTINEL_STEP = 2.0 ** -20


def _mark_zero_biases(model: Any, skip: frozenset = frozenset()) -> list[tuple[Any, list[np.ndarray], np.ndarray]]:
    """Give every all-zero bias a unique sentinel value so that TensorFlow does not fold it away.

    TensorFlow's graph optimisation removes ``x + 0``, so an untrained (or zero-bias) Keras layer
    would lose its bias tensor in ONNX. Layers named in ``skip`` are left alone. Returns
    (layer, original weights, sentinel) per marked layer.
    """
    marked = []
    for index, layer in enumerate(model.layers):
        bias = getattr(layer, "bias", None)
        if bias is None or layer.name in skip:
            continue
        values = bias.numpy()
        if values.ndim != 1 or np.any(values):
            continue
        sentinel = ((np.arange(values.size) + 1 + 8192 * (index + 1)) * SENTINEL_STEP).astype(values.dtype)
        original = layer.get_weights()
        bias.assign(sentinel)
        marked.append((layer, original, sentinel))
    return marked


def _zero_sentinels(proto: onnx.ModelProto, marked: list) -> list[str]:
    """Zero the sentinel initializers that `_mark_zero_biases` planted; return the names of the
    layers whose sentinel was not found (folded into another constant, e.g. a following BatchNorm)."""
    from onnx import numpy_helper

    initializers = {i.name: i for i in proto.graph.initializer}
    lost = []
    for layer, _, sentinel in marked:
        found = [name for name, init in initializers.items()
                 if init.data_type == onnx.TensorProto.FLOAT and int(np.prod(init.dims)) == sentinel.size
                 and np.array_equal(numpy_helper.to_array(init).ravel(), sentinel)]
        if not found:
            lost.append(layer.name)
        for name in found:
            zero = np.zeros(tuple(initializers[name].dims), np.float32)
            initializers[name].CopyFrom(numpy_helper.from_array(zero, name))
    return lost


def _run_tf2onnx(model: Any, signature: list, large_model: bool, skip: frozenset = frozenset(),
                 opset: int = ONNX_OPSET):
    """One tf2onnx conversion with zero biases marked (except ``skip``); returns (proto, marked)."""
    import tf2onnx

    marked = _mark_zero_biases(model, skip)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "model.zip"
            proto, _ = tf2onnx.convert.from_keras(
                model, input_signature=signature, opset=opset, large_model=large_model,
                output_path=str(archive) if large_model else None)
            if large_model:
                with zipfile.ZipFile(archive) as z:
                    z.extractall(tmp)
                proto = onnx.load(os.path.join(tmp, "__MODEL_PROTO.onnx"), load_external_data=True)
    except Exception as exc:
        raise ConversionError(f"tf2onnx could not convert Keras model {model.name!r}: {exc}") from exc
    finally:
        for layer, original, _ in marked:
            layer.set_weights(original)
    return proto, marked


def convert(model: Any, example_input: Any, *, large_model: bool = False, opset: int = ONNX_OPSET) -> onnx.ModelProto:
    """Convert a built Keras model with ``tf2onnx.convert.from_keras``.

    Parameters
    ----------
    model
        A Keras model whose inputs have known non-batch dimensions.
    example_input
        Array (or list of arrays, one per model input) of shape (N, ...).
    large_model
        Use tf2onnx's large-model mode, which keeps tensors out of the protobuf while
        converting (much lower peak memory for big models); the result is loaded back into one
        in-memory proto (models under the 2 GB protobuf limit).
    opset
        ai.onnx opset tf2onnx writes (default `ONNX_OPSET`; other values give files as older or
        newer tf2onnx setups write them, for testing on files onnxlab would not write itself).
    """
    from onnxlab.reproducibility import quiet

    quiet()
    if not hasattr(model, "inputs") or not model.inputs:
        raise ConversionError(f"{type(model).__name__} has no defined inputs: build or call it first")
    signature = _input_signature(model, example_input)
    proto, marked = _run_tf2onnx(model, signature, large_model, opset=opset)
    lost = _zero_sentinels(proto, marked)
    if lost:  # those zero biases were folded into other constants: convert again leaving them at zero
        proto, marked = _run_tf2onnx(model, signature, large_model, skip=frozenset(lost), opset=opset)
        if _zero_sentinels(proto, marked):
            raise ConversionError(f"could not keep the zero biases of {model.name!r} apart from other constants")
    return proto


def convert_file(keras_path: str | os.PathLike, onnx_path: str | os.PathLike, *,
                 timeout_s: float = 1800) -> Path:
    """Convert a saved Keras model (``.h5`` or ``.keras``) to one ``.onnx`` file in a child process.

    The child loads the model, converts it in large-model mode, and merges the external
    tensors back into a single file (models under the 2 GB protobuf limit). The parent never
    imports TensorFlow for this.

    Returns
    -------
    pathlib.Path
        ``onnx_path``, written only if the conversion succeeded.

    Raises
    ------
    ConversionError
        With the child's last error lines if it fails.
    """
    onnx_path = Path(onnx_path)
    cmd = [sys.executable, "-m", "onnxlab.convert.keras", str(keras_path), str(onnx_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise ConversionError(f"converting {keras_path} failed (exit {proc.returncode}):\n{tail}")
    return onnx_path


def export(model: Any, onnx_path: str | os.PathLike, *, keras_path: str | os.PathLike | None = None,
           example_input: Any = None) -> Path:
    """Save a Keras model as ``.onnx`` (and as ``.h5`` if ``keras_path`` is given).

    Models up to `IN_PROCESS_MAX_PARAMS` parameters are converted in this process with
    `onnxlab.to_onnx`; larger ones are saved to ``keras_path`` (required then) and converted by
    `convert_file` in a child process.

    Parameters
    ----------
    example_input
        Passed to `onnxlab.to_onnx` for in-process conversion; defaults to one zero batch.
    """
    from onnxlab.convert import to_onnx

    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    if keras_path is not None:
        model.save(keras_path)
    if model.count_params() > IN_PROCESS_MAX_PARAMS:
        if keras_path is None:
            raise ConversionError(f"{model.name} has {model.count_params():,} parameters: pass keras_path "
                                  "so it can be converted in a child process")
        return convert_file(keras_path, onnx_path)
    if example_input is None:
        example_input = [np.zeros((1, *t.shape[1:]), dtype=t.dtype.as_numpy_dtype) for t in model.inputs]
    return save_model(to_onnx(model, example_input, name=model.name), onnx_path)


def _convert_file_here(keras_path: str, onnx_path: str) -> None:
    """Body of the child process of `convert_file`."""
    from onnxlab.reproducibility import quiet

    quiet()
    import keras

    model = keras.models.load_model(keras_path, compile=False)
    example = [np.zeros((1, *t.shape[1:]), dtype=t.dtype.as_numpy_dtype) for t in model.inputs]
    proto = convert(model, example, large_model=True)
    proto.graph.name = model.name
    save_model(finalize(proto, full_check=True), onnx_path)


def _main(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m onnxlab.convert.keras MODEL.h5 OUT.onnx", file=sys.stderr)
        return 2
    try:
        _convert_file_here(argv[0], argv[1])
    except (ConversionError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
