"""Inference engines as one interface: load a model file, run a batch, measure memory.

`ENGINES` maps a name to an `EngineSpec`: the file kind it reads, how to load it with a given
thread count, and why it is unavailable where it is. A loaded engine is a `Runner`: call it with
a float32 batch (N, ...) to get the first output as a numpy array.

Memory is measured two ways (`traced_allocation`, `peak_memory_in_child`):

- ``tracemalloc`` before and after one inference, as paper J did. It sees only allocations made
  through Python's allocator (numpy arrays, Python objects) — not the native buffers of ONNX
  Runtime's or TensorFlow's C++ arena, which is where an engine keeps its weights and activations;
- the peak resident set size (``VmHWM``) of a child process that imports the engine, loads the
  model and runs the batch: everything the process touched, native memory included, reported
  beside the resident size after the imports alone so the model's own share can be read off.

Command line (used by `peak_memory_in_child`):
``python -m onnxlab.engines memory ENGINE MODEL INPUT.npy --threads N`` prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from onnxlab.errors import InvalidArgument, OnnxlabError, exit_status

#: Default threads per engine: this machine's logical cores.
DEFAULT_THREADS = os.cpu_count() or 1
#: Seconds a memory-measuring child process may take.
CHILD_TIMEOUT_S = 600

Runner = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- loaders

def _keras_model(path: Path, threads: int):
    set_tensorflow_threads(threads)
    import keras

    return keras.models.load_model(path, compile=False)


def _load_keras_predict(path: Path, threads: int) -> Runner:
    model = _keras_model(path, threads)
    return lambda x: model.predict(x, batch_size=len(x), verbose=0)


def _load_keras_function(path: Path, threads: int) -> Runner:
    import tensorflow as tf

    model = _keras_model(path, threads)
    graph = tf.function(model)
    return lambda x: graph(tf.constant(x), training=False).numpy()


def _load_onnxruntime(path: Path, threads: int) -> Runner:
    from onnxlab.runtime import ort_session

    # no spin-waiting: engines and sessions take turns on the same cores in a comparison, and a session's
    # spinning threads would steal the next one's cores (measured here: both ran twice as slow)
    session = ort_session(path, intra_op_threads=threads, spin=False)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def _load_onnxruntime_gpu(path: Path, threads: int, provider: str) -> Runner:
    from onnxlab.runtime import ort_session

    session = ort_session(path, intra_op_threads=threads, providers=(provider, "CPUExecutionProvider"))
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def _tflite_runner(path: Path, threads: int, xnnpack: bool) -> Runner:
    set_tensorflow_threads(threads)
    import tensorflow as tf

    resolver = (tf.lite.experimental.OpResolverType.AUTO if xnnpack
                else tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads,
                                      experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    shape = {"batch": tuple(source["shape"])}

    def run(x: np.ndarray) -> np.ndarray:
        if x.shape != shape["batch"]:
            interpreter.resize_tensor_input(source["index"], x.shape)
            interpreter.allocate_tensors()
            shape["batch"] = x.shape
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(target["index"])

    return run


def _load_openvino(path: Path, threads: int) -> Runner:
    import openvino as ov

    # f32 precision hint: on CPUs with AMX/AVX512-BF16 OpenVINO would otherwise run float models in bfloat16
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return lambda x: request.infer([x])[0].copy()


@dataclass(frozen=True)
class EngineSpec:
    """An inference engine.

    Attributes
    ----------
    name, description
        As shown in tables.
    reads
        Suffix of the model file it loads (``.h5``, ``.onnx``, ``.tflite``).
    module
        The Python package it needs.
    load
        ``load(path, threads) -> Runner``.
    """

    name: str
    description: str
    reads: str
    module: str
    load: Callable[[Path, int], Runner]
    ort_provider: str | None = None

    def unavailable(self) -> str | None:
        """None where the engine runs here, else the reason it does not."""
        import importlib.util

        if not importlib.util.find_spec(self.module):
            return f"the {self.module} package is not installed"
        if self.ort_provider:
            import onnxruntime

            if self.ort_provider not in onnxruntime.get_available_providers():
                return f"this onnxruntime build has no {self.ort_provider} (CPU-only build, or no GPU)"
        return None


#: Engines by name.
ENGINES: dict[str, EngineSpec] = {e.name: e for e in (
    EngineSpec("keras-predict", "Keras model.predict (builds a data pipeline per call)", ".h5", "tensorflow",
               _load_keras_predict),
    EngineSpec("keras-tf.function", "the Keras model compiled with tf.function (TensorFlow graph)", ".h5", "tensorflow",
               _load_keras_function),
    EngineSpec("onnxruntime", "ONNX Runtime, CPU execution provider, all graph optimisations", ".onnx", "onnxruntime",
               _load_onnxruntime),
    EngineSpec("tflite", "TensorFlow Lite interpreter with its default XNNPACK delegate", ".tflite", "tensorflow",
               lambda p, t: _tflite_runner(p, t, xnnpack=True)),
    EngineSpec("tflite-builtin", "TensorFlow Lite interpreter, built-in kernels only (no XNNPACK)", ".tflite",
               "tensorflow", lambda p, t: _tflite_runner(p, t, xnnpack=False)),
    EngineSpec("openvino", "OpenVINO reading the ONNX file directly, CPU plugin", ".onnx", "openvino",
               _load_openvino),
    EngineSpec("onnxruntime-cuda", "ONNX Runtime, CUDA execution provider", ".onnx", "onnxruntime",
               lambda p, t: _load_onnxruntime_gpu(p, t, "CUDAExecutionProvider"), "CUDAExecutionProvider"),
    EngineSpec("onnxruntime-tensorrt", "ONNX Runtime, TensorRT execution provider", ".onnx", "onnxruntime",
               lambda p, t: _load_onnxruntime_gpu(p, t, "TensorrtExecutionProvider"), "TensorrtExecutionProvider"),
)}


def engine(name: str) -> EngineSpec:
    """The `EngineSpec` called ``name``; a clear error for unknown names."""
    try:
        return ENGINES[name]
    except KeyError:
        raise InvalidArgument(f"unknown engine {name!r}; known: {', '.join(ENGINES)}") from None


@dataclass
class LoadedEngine:
    """A model loaded in an engine: ``run(x)`` and how long loading took (seconds)."""

    engine: str
    path: Path
    run: Runner
    load_seconds: float


def load(name: str, path: str | os.PathLike, threads: int = DEFAULT_THREADS) -> LoadedEngine:
    """Load the model file at ``path`` in engine ``name`` with ``threads`` threads.

    Raises
    ------
    OnnxlabError
        If the engine is unknown or not installed, the file does not exist or is of the wrong kind.
    """
    spec = engine(name)
    path = Path(path)
    reason = spec.unavailable()
    if reason:
        raise OnnxlabError(f"engine {name} is not available: {reason}")
    if path.suffix != spec.reads:
        raise InvalidArgument(f"{path}: engine {name} reads {spec.reads} files")
    if not path.exists():
        raise OnnxlabError(f"{path}: no such file")
    start = time.perf_counter()
    runner = spec.load(path, threads)
    return LoadedEngine(name, path, runner, time.perf_counter() - start)


def set_tensorflow_threads(threads: int) -> int:
    """Give TensorFlow ``threads`` intra-op threads and one inter-op thread, if it has not started yet.

    TensorFlow fixes its thread pools when it first runs an op; after that the settings cannot change, and
    this leaves them as they are. Returns the intra-op thread count TensorFlow uses (0: its default, one per
    core) — call it before anything runs TensorFlow, and record what it returns.
    """
    import tensorflow as tf

    config = tf.config.threading
    try:
        config.set_intra_op_parallelism_threads(threads)
        config.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow has started: its pools are fixed
        pass
    return config.get_intra_op_parallelism_threads()


def predict_in_batches(runner: Runner, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``runner`` over ``x`` (N, ...) in batches; the outputs concatenated, (N, ...)."""
    return np.concatenate([runner(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


# --------------------------------------------------------------------------- memory

@dataclass(frozen=True)
class TracedAllocation:
    """Python-heap memory of one inference as ``tracemalloc`` sees it (bytes).

    Attributes
    ----------
    retained
        Allocated after the call minus before it (paper J's figure: what the call left allocated).
    peak
        Highest traced allocation during the call, above the level before it.
    """

    retained: int
    peak: int


def traced_allocation(runner: Runner, x: np.ndarray) -> TracedAllocation:
    """`TracedAllocation` of ``runner(x)`` (the output is kept alive until measured, as a caller would)."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        output = runner(x)
        after, peak = tracemalloc.get_traced_memory()
        del output
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return TracedAllocation(after - before, peak - before)


def _status_bytes(field: str) -> int:
    """A memory field of /proc/self/status (``VmRSS``, ``VmHWM``) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # the file gives kB
    raise OnnxlabError(f"/proc/self/status has no {field} field")


def _rss_bytes() -> int:
    return _status_bytes("VmRSS")


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (``VmHWM``), bytes."""
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork + exec, so a child started by a
    # large parent would report the parent's size
    return _status_bytes("VmHWM")


@dataclass(frozen=True)
class ChildMemory:
    """Resident memory (bytes) of a child process that imported an engine, loaded a model and ran a batch.

    Attributes
    ----------
    after_imports
        Resident size once the engine's libraries are imported, before the model is loaded.
    peak
        Peak resident size of the whole process (``VmHWM``).
    """

    after_imports: int
    peak: int

    @property
    def model_share(self) -> int:
        """Peak minus the resident size after the imports: what loading and running the model added."""
        return self.peak - self.after_imports


def _measure_here(name: str, model: Path, inputs: Path, threads: int) -> dict[str, int]:
    import importlib

    from onnxlab.reproducibility import quiet

    quiet()
    importlib.import_module(engine(name).module)
    x = np.load(inputs)
    after_imports = _rss_bytes()
    loaded = load(name, model, threads)
    loaded.run(x)
    return {"after_imports": after_imports, "peak": peak_rss_bytes()}


def peak_memory_in_child(name: str, model: str | os.PathLike, x: np.ndarray, *,
                         threads: int = DEFAULT_THREADS, workdir: str | os.PathLike) -> ChildMemory:
    """`ChildMemory` of loading ``model`` in engine ``name`` and running it on ``x``, in a fresh process.

    ``x`` is written to ``workdir`` for the child to read.
    """
    inputs = Path(workdir) / f"memory-input-{os.getpid()}.npy"
    np.save(inputs, x)
    try:
        proc = subprocess.run([sys.executable, "-m", "onnxlab.engines", "memory", name, str(model), str(inputs),
                               "--threads", str(threads)], capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    finally:
        inputs.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise OnnxlabError(f"measuring {name} on {model} in a child process failed: "
                           f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return ChildMemory(**json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onnxlab.engines")
    sub = parser.add_subparsers(dest="command", required=True)
    memory = sub.add_parser("memory", help="peak resident memory of loading MODEL and running it on INPUT.npy")
    memory.add_argument("engine", choices=list(ENGINES))
    memory.add_argument("model", type=Path)
    memory.add_argument("inputs", type=Path)
    memory.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    args = parser.parse_args(argv)
    return exit_status(lambda: print(json.dumps(_measure_here(args.engine, args.model, args.inputs, args.threads))))


if __name__ == "__main__":
    sys.exit(main())
