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
                optimized_model_path: str | os.PathLike | None = None, profile_prefix: str | None = None,
                spin: bool = True, providers: tuple[str, ...] = ("CPUExecutionProvider",),
                disabled_optimizers: tuple[str, ...] = ()):
    """An ``onnxruntime.InferenceSession`` (on the CPU unless other ``providers`` are given).

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
    spin
        Let idle intra-op threads spin-wait for the next run (ONNX Runtime's default: lowest latency for
        one session alone). Turn off where several sessions or engines take turns on the same cores, or
        the spinning threads of one steal the cores of the next.
    providers
        Execution providers in order of preference (the CPU by default; GPU providers before it where a build has them).
    disabled_optimizers
        Names of ONNX Runtime graph rewrites to leave out at every level (e.g. ``"NchwcTransformer"``).
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
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=list(providers),
                                disabled_optimizers=list(disabled_optimizers) or None)


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


def op_type_profile(model: onnx.ModelProto | str | os.PathLike, x: np.ndarray, *, runs: int = 10,
                    intra_op_threads: int = 0) -> dict[str, float]:
    """Share of kernel time per op type when ONNX Runtime runs ``model`` on ``x``, from its profiler.

    The first run (allocations, first-touch) is left out; the shares of the next ``runs`` runs sum to 1
    and are sorted from the largest. Where quantized models are slower than float, this shows whether
    the time goes to integer kernels, to unfused QuantizeLinear/DequantizeLinear, or to float ops.
    """
    import json
    import tempfile
    from collections import defaultdict

    if runs < 1:
        raise InvalidArgument(f"runs must be >= 1, got {runs}")
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(model, intra_op_threads=intra_op_threads, profile_prefix=os.path.join(tmp, "profile"))
        for _ in range(runs + 1):
            run_single(session, x)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    node_events = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_run = len(node_events) // (runs + 1)  # every run logs the same nodes; skip the first run's
    totals: dict[str, float] = defaultdict(float)
    for event in node_events[per_run:]:
        totals[event["args"].get("op_name", "?")] += event["dur"]
    total = sum(totals.values()) or 1.0
    return {op: t / total for op, t in sorted(totals.items(), key=lambda kv: -kv[1])}
