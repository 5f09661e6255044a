"""ONNX Runtime sessions with recorded, explicit settings."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
from onnxlab.errors import InvalidArgument

#: Graph optimisation levels by name.
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def ort_session(model: onnx.ModelProto | str | os.PathLike, *, intra_op_threads: int = 0,
                optimization: str = "all", log_severity: int = 3,
                optimized_model_path: str | os.PathLike | None = None, profile_prefix: str | None = None):
    """An ``onnxruntime.InferenceSession`` on the CPU.

    Parameters
    ----------
    model
        A model proto or the path of an ``.onnx`` file (use a path for models with external data).
    intra_op_threads
        Threads per operator; 0 lets ONNX Runtime choose (one per physical core).
    optimization
        Graph optimisation level: one of `OPTIMIZATION_LEVELS`.
    log_severity
        ONNX Runtime's own logging: 3 shows errors, 4 only fatal ones (for callers that report
        load failures themselves).
    optimized_model_path
        If given, ONNX Runtime writes the graph it runs (after its optimisations and fusions) there.
    profile_prefix
        If given, ONNX Runtime's profiler is on and writes a JSON trace named ``<prefix>_<date>.json``
        (``session.end_profiling()`` returns its path).
    """
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise InvalidArgument(f"optimization must be one of {OPTIMIZATION_LEVELS}, got {optimization!r}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.graph_optimization_level = levels[optimization]
    options.log_severity_level = log_severity
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def single_input_runner(session, x: np.ndarray, output: int | None = 0):
    """A zero-argument callable running ``session`` on ``x`` (for `onnxlab.bench.compare`).

    ``output`` selects one output by index (None: all outputs).
    """
    feed = {session.get_inputs()[0].name: x}
    names = None if output is None else [session.get_outputs()[output].name]
    return lambda: session.run(names, feed)


def run_single(session, x: np.ndarray) -> list[Any]:
    """Run a one-input session on ``x`` and return all outputs."""
    return session.run(None, {session.get_inputs()[0].name: x})


def predicted_labels(session, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Predicted classes (argmax of the first output) of a one-input classifier session on ``x`` (N, ...),
    run ``batch_size`` samples at a time; shape (N,)."""
    return np.concatenate([run_single(session, x[i:i + batch_size])[0].argmax(-1)
                           for i in range(0, len(x), batch_size)])
