"""Keras -> ONNX with tf2onnx, in-process for small models and in a fresh process for big ones.

tf2onnx's graph optimisation copies every constant several times: VGG16 (138 M parameters)
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


def convert(model: Any, example_input: Any, *, large_model: bool = False,
            output_path: str | os.PathLike | None = None) -> onnx.ModelProto:
    """Convert a built Keras model with ``tf2onnx.convert.from_keras``.

    Parameters
    ----------
    model
        A Keras model whose inputs have known non-batch dimensions.
    example_input
        Array (or list of arrays, one per model input) of shape (N, ...).
    large_model
        Use tf2onnx's large-model mode (needs ``output_path``, a ``.zip``); the returned
        proto then refers to tensors stored in that archive.
    output_path
        Where tf2onnx writes the archive in large-model mode.
    """
    from onnxlab.reproducibility import quiet

    quiet()
    import tf2onnx

    if not hasattr(model, "inputs") or not model.inputs:
        raise ConversionError(f"{type(model).__name__} has no defined inputs: build or call it first")
    signature = _input_signature(model, example_input)
    try:
        proto, _ = tf2onnx.convert.from_keras(
            model, input_signature=signature, opset=ONNX_OPSET,
            large_model=large_model, output_path=str(output_path) if output_path else None,
        )
    except Exception as exc:
        raise ConversionError(f"tf2onnx could not convert Keras model {model.name!r}: {exc}") from exc
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
    onnx.save(to_onnx(model, example_input, name=model.name), onnx_path)
    return onnx_path


def _convert_file_here(keras_path: str, onnx_path: str) -> None:
    """Body of the child process of `convert_file`."""
    from onnxlab.reproducibility import quiet

    quiet()
    import keras

    model = keras.models.load_model(keras_path, compile=False)
    example = [np.zeros((1, *t.shape[1:]), dtype=t.dtype.as_numpy_dtype) for t in model.inputs]
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "model.zip"
        convert(model, example, large_model=True, output_path=archive)
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
        proto = onnx.load(os.path.join(tmp, "__MODEL_PROTO.onnx"), load_external_data=True)
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
