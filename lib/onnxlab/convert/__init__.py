"""``to_onnx``: one entry point from a fitted model of any supported framework to ONNX.

Converters are registered per framework in `CONVERTERS` (framework name -> "module:function").
The framework of a model is read from the modules of its class hierarchy, so subclasses of
a Keras ``Model`` or of a scikit-learn estimator are recognised too. Converter modules are
imported only when used: converting a scikit-learn model never imports TensorFlow.

Adding a framework: write ``onnxlab/convert/<name>.py`` with a ``convert(model, example_input,
**options) -> onnx.ModelProto`` function and add it to `CONVERTERS` and `FRAMEWORK_OF_MODULE`.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

import onnx

from onnxlab.errors import ConversionError
from onnxlab.formats import finalize

#: Framework name -> "module:function" of its converter.
CONVERTERS: dict[str, str] = {
    "sklearn": "onnxlab.convert.sklearn:convert",
    "keras": "onnxlab.convert.keras:convert",
}
#: Top-level Python package of a model's class -> framework name.
FRAMEWORK_OF_MODULE: dict[str, str] = {
    "sklearn": "sklearn",
    "keras": "keras",
    "tensorflow": "keras",  # tf.keras models live in tensorflow.python.keras in some versions
}


def framework_of(model: Any) -> str:
    """Name of the framework ``model`` belongs to, from the modules of its class hierarchy.

    Raises
    ------
    ConversionError
        If no class in the hierarchy comes from a supported framework.
    """
    for cls in type(model).__mro__:
        framework = FRAMEWORK_OF_MODULE.get(cls.__module__.split(".")[0])
        if framework is not None:
            return framework
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    raise ConversionError(
        f"to_onnx cannot convert an object of type {kind}: "
        f"supported frameworks are {', '.join(sorted(CONVERTERS))}"
    )


def converter_for(framework: str) -> Callable[..., onnx.ModelProto]:
    """The registered converter function of ``framework``."""
    module_name, function_name = CONVERTERS[framework].split(":")
    return getattr(importlib.import_module(module_name), function_name)


def to_onnx(model: Any, example_input: Any, *, name: str | None = None, **options: Any) -> onnx.ModelProto:
    """Convert a fitted scikit-learn estimator or a Keras model to a checked ONNX model.

    Parameters
    ----------
    model
        A fitted scikit-learn estimator or pipeline, or a built Keras model.
    example_input
        An input batch (or a list of them, one per model input), used for input names,
        dtypes and the non-batch dimensions. Shape (N, ...) with N >= 1; the batch
        dimension of the ONNX input is left dynamic.
    name
        Graph name; defaults to the model's class name.
    **options
        Framework-specific options, passed to the converter (see
        `onnxlab.convert.sklearn.convert` and `onnxlab.convert.keras.convert`).

    Returns
    -------
    onnx.ModelProto
        Stamped with `onnxlab.formats.IR_VERSION`, opset `onnxlab.formats.ONNX_OPSET`,
        and valid under ``onnx.checker.check_model(full_check=True)``.

    Raises
    ------
    ConversionError
        If the model's type is unsupported, it is not fitted, or the converter fails.
    """
    framework = framework_of(model)
    proto = converter_for(framework)(model, example_input, **options)
    proto.graph.name = name or type(model).__name__
    return finalize(proto)
