"""The exception hierarchy: every error onnxlab raises on purpose derives from `OnnxlabError`,
so the CLI and notebooks can show its message instead of a traceback."""
from __future__ import annotations

import sys
from typing import Callable


class OnnxlabError(Exception):
    """Base class of every error raised on purpose by onnxlab."""


class ConversionError(OnnxlabError):
    """A model could not be converted to ONNX (unsupported type, unfitted, bad example input)."""


class DataError(OnnxlabError):
    """A data set is missing, corrupt, or could not be fetched from any source."""


class SNNError(OnnxlabError):
    """An ONNX-SNN model or request is invalid: unknown neuron, bad parameter, unsupported op."""


class InvalidArgument(OnnxlabError, ValueError):
    """A function was called with an argument value it cannot use (also a ``ValueError``, as Python's own)."""


def exit_status(action: Callable[[], object], errors: type[Exception] | None = None) -> int:
    """Run a module command line's ``action``: 0 when it finishes, 1 after printing an ``errors`` (default
    `OnnxlabError`) as one ``error: ...`` line on stderr instead of a traceback."""
    try:
        action()
    except (errors or OnnxlabError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
