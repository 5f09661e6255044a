"""Keras → TensorFlow Lite: float, or post-training int8 (paper J's "other lightweight library").

``int8`` is TensorFlow Lite's full-integer post-training quantization: int8 weights (per channel
for convolutions) and int8 activations with ranges from a representative data set, float input
and output tensors (the interpreter quantizes and dequantizes at the edges), float kernels only
where an op has no integer version.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from onnxlab.errors import ConversionError, InvalidArgument

#: TFLite variants by name.
TFLITE_VARIANTS = ("float", "int8")
#: Representative samples fed to the int8 converter, one at a time, by default.
DEFAULT_REPRESENTATIVE = 256


def to_tflite(model: Any, path: str | os.PathLike, *, variant: str = "float",
              representative: np.ndarray | None = None, n_representative: int = DEFAULT_REPRESENTATIVE) -> Path:
    """Convert a Keras model to a ``.tflite`` file.

    Parameters
    ----------
    model
        A Keras model.
    path
        Where to write (atomically).
    variant
        ``"float"`` or ``"int8"`` (`TFLITE_VARIANTS`).
    representative
        int8 only: samples of the model's input, (N, ...) float32; the first ``n_representative``
        calibrate the activation ranges.

    Raises
    ------
    InvalidArgument
        For an unknown variant or int8 without representative data.
    ConversionError
        If the TFLite converter fails.
    """
    import tensorflow as tf

    from onnxlab.formats import write_atomically

    if variant not in TFLITE_VARIANTS:
        raise InvalidArgument(f"unknown TFLite variant {variant!r}; known: {', '.join(TFLITE_VARIANTS)}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant == "int8":
        if representative is None or len(representative) == 0:
            raise InvalidArgument("TFLite int8 conversion needs representative data (samples of the input)")
        samples = np.asarray(representative[:n_representative], dtype=np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([sample[None]] for sample in samples)
    try:
        flatbuffer = converter.convert()
    except Exception as exc:
        raise ConversionError(f"TFLite conversion of {model.name} ({variant}) failed: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    return write_atomically(path, lambda partial: partial.write_bytes(flatbuffer))
