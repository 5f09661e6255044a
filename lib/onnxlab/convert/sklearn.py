"""scikit-learn -> ONNX with skl2onnx.

Classifiers output their labels and probabilities as plain tensors (ZipMap off), so
ONNX Runtime returns arrays rather than lists of dicts.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from onnxlab.errors import ConversionError
from onnxlab.formats import TARGET_OPSETS

#: Input dtypes skl2onnx can declare; anything else is cast to float32.
SUPPORTED_DTYPES = (np.float32, np.float64)


def convert(model: Any, example_input: Any, *, model_options: dict[str, Any] | None = None,
            dtype: type | None = None) -> onnx.ModelProto:
    """Convert a fitted scikit-learn estimator or pipeline.

    Parameters
    ----------
    model
        A fitted estimator or pipeline.
    example_input
        Array of shape (N, n_features). Its dtype (float32 or float64) becomes the ONNX input
        type unless ``dtype`` says otherwise; float64 keeps results bit-close to scikit-learn
        for converters that support it.
    model_options
        skl2onnx options for the top-level model, e.g. ``{"optim": "cdist"}`` for
        nearest-neighbour models.
    dtype
        Force the input dtype (``np.float32`` or ``np.float64``).
    """
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted
    from skl2onnx import to_onnx as skl_to_onnx

    try:
        check_is_fitted(model)
    except NotFittedError:
        raise ConversionError(
            f"{type(model).__name__} is not fitted: call fit() before converting it to ONNX"
        ) from None
    x = np.asarray(example_input)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ConversionError(
            f"example_input for {type(model).__name__} must have shape (N, n_features) with N >= 1, "
            f"got {x.shape}"
        )
    target = np.dtype(dtype or (x.dtype if x.dtype.type in SUPPORTED_DTYPES else np.float32))
    if target.type not in SUPPORTED_DTYPES:
        raise ConversionError(f"dtype must be float32 or float64, got {target}")
    options = {**({"zipmap": False} if _is_classifier(model) else {}), **(model_options or {})}
    try:
        return skl_to_onnx(model, x[:1].astype(target), target_opset=dict(TARGET_OPSETS),
                           options=options or None)
    except Exception as exc:  # skl2onnx raises many types; name the model in one message
        raise ConversionError(f"skl2onnx could not convert {type(model).__name__}: {exc}") from exc


def _is_classifier(model: Any) -> bool:
    from sklearn.base import is_classifier

    return is_classifier(model)
