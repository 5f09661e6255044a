"""Do two engines agree? Output errors and label agreement between an original model and its ONNX twin."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from onnxlab.errors import InvalidArgument


@dataclass(frozen=True)
class Agreement:
    """How closely ``actual`` reproduces ``expected``.

    Attributes
    ----------
    max_abs_err
        max |actual - expected| over all elements (0 for identical labels).
    scale
        max |expected|, the reference magnitude of `max_rel_err`.
    label_agreement
        Fraction of rows whose predicted label agrees: argmax over the last axis for score
        matrices, equality for label vectors. ``None`` for regression outputs.
    n
        Number of rows compared.
    """

    max_abs_err: float
    scale: float
    label_agreement: float | None
    n: int

    @property
    def max_rel_err(self) -> float:
        """max_abs_err / max |expected| (a norm-wise relative error; 0 if expected is all 0)."""
        return self.max_abs_err / self.scale if self.scale > 0 else 0.0

    def within(self, atol: float, rtol: float = 0.0) -> bool:
        """True if ``max_abs_err <= atol + rtol * max|expected|`` and all labels agree."""
        labels_ok = self.label_agreement is None or self.label_agreement == 1.0
        return self.max_abs_err <= atol + rtol * self.scale and labels_ok

    def as_dict(self) -> dict[str, Any]:
        """Fields and `max_rel_err`, for a table row."""
        return {**asdict(self), "max_rel_err": self.max_rel_err}


def _labels(values: np.ndarray) -> np.ndarray | None:
    if values.ndim == 2 and values.shape[1] > 1:
        return values.argmax(axis=1)
    if values.ndim == 1 and np.issubdtype(values.dtype, np.integer):
        return values
    return None


def compare_outputs(expected: Any, actual: Any) -> Agreement:
    """Compare an original model's output with the converted model's output.

    Parameters
    ----------
    expected, actual
        Arrays of the same number of elements; shapes (N,), (N, 1) and (N, k) are accepted,
        and (N,) vs (N, 1) is treated as the same shape. Integer vectors are compared as labels.

    Raises
    ------
    InvalidArgument
        If the shapes cannot be matched.
    """
    e = np.asarray(expected)
    a = np.asarray(actual)
    if e.shape != a.shape:
        if e.size == a.size and e.shape[:1] == a.shape[:1]:
            a = a.reshape(e.shape)
        else:
            raise InvalidArgument(f"cannot compare outputs of shapes {e.shape} and {a.shape}")
    diff = np.abs(e.astype(np.float64) - a.astype(np.float64))
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(e).max()) if e.size else 0.0
    le, la = _labels(e), _labels(a)
    agreement = float(np.mean(le == la)) if le is not None and la is not None else None
    return Agreement(max_abs, scale, agreement, int(e.shape[0]) if e.ndim else 1)
