"""Quiet, seeded, recorded runs: silence framework log noise, fix seeds, and describe the machine.

Every table onnxlab writes carries `run_metadata()` beside it, so a number can always be traced
to the profile, date, machine, thread settings and library versions that produced it.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import logging
import os
import platform
import random
import time
import warnings
from typing import Any

import numpy as np

#: Libraries whose versions are recorded with every result (distribution names).
RECORDED_LIBRARIES = (
    "numpy", "scikit-learn", "tensorflow", "keras", "onnx", "onnxruntime", "skl2onnx",
    "tf2onnx", "nengo", "nengo-dl", "pandas", "matplotlib", "mlxtend", "papermill",
)


def quiet() -> None:
    """Silence TensorFlow's C++ and Python log noise and known-harmless warnings.

    Call before importing TensorFlow; safe to call more than once.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "tf2onnx", "absl", "h5py", "skl2onnx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TensorRT.*")
    # nengo-dl 3.6.0 with nengo 4.1.0 is the pinned, checked pair; its version warning is noise
    warnings.filterwarnings("ignore", message="This version of NengoDL has not been tested")
    # NengoDL transposes channels-first convolutions for TensorFlow's CPU kernels: a speed note, not a problem
    warnings.filterwarnings("ignore", message="TensorFlow does not support convolution with channels_last=False")
    warnings.filterwarnings("ignore", message="No GPU support detected")  # CPU-only by design


def import_nengo_dl():
    """Import and return ``nengo_dl`` once, without its import-time noise; every onnxlab module gets it here.

    Importing nengo_dl 3.6 sets ``TF_CPP_MIN_LOG_LEVEL=1`` (undoing `quiet`) and starts a second
    Python that imports TensorFlow only to ask whether a GPU exists: 2 s per import, and TF-TRT
    warnings on stderr. onnxlab simulates on the CPU by design, so that probe is answered "no GPU"
    without starting it, TensorFlow is imported first (under the caller's log level), and the
    caller's log level is restored afterwards.
    """
    import subprocess
    import sys

    if "nengo_dl" in sys.modules:
        return sys.modules["nengo_dl"]
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    import tensorflow  # noqa: F401  (its C++ logging starts under the caller's level)

    real_call = subprocess.call
    subprocess.call = lambda *args, **kwargs: 1  # nengo_dl.utils' GPU probe: exit status 1 means "no GPU"
    try:
        import nengo_dl
    finally:
        subprocess.call = real_call
        if level is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = level
    return nengo_dl


def seed_everything(seed: int) -> int:
    """Seed Python, NumPy and (if already imported) TensorFlow; return the seed for recording."""
    import sys

    random.seed(seed)
    np.random.seed(seed)
    if "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(seed)
    return seed


def library_versions(names: tuple[str, ...] = RECORDED_LIBRARIES) -> dict[str, str]:
    """Installed versions of ``names`` (without importing them); missing ones read ``"absent"``."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: The vector and matrix instruction-set extensions that change speed figures, as /proc/cpuinfo names them, in order.
SPEED_RELEVANT_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                            "amx_tile", "amx_int8", "amx_bf16")


def cpu_flags() -> set[str]:
    """Every flag of the CPU's ``flags`` line in /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_extensions() -> list[str]:
    """The `SPEED_RELEVANT_CPU_FLAGS` this CPU has (empty where /proc/cpuinfo cannot be read)."""
    flags = cpu_flags()
    return [flag for flag in SPEED_RELEVANT_CPU_FLAGS if flag in flags]


#: The flags that give x86 CPUs an 8-bit dot-product instruction (ONNX Runtime's int8 kernels use them).
VNNI_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def has_vnni() -> bool:
    """Whether this CPU has an 8-bit dot-product instruction (`VNNI_CPU_FLAGS`)."""
    return any(flag in cpu_extensions() for flag in VNNI_CPU_FLAGS)


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, memory and OS of this machine, and the thread-count settings."""
    import psutil

    return {
        "cpu": cpu_model(),
        "cpu_extensions": cpu_extensions(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                  "TF_NUM_INTRAOP_THREADS") if k in os.environ},
    }


def notebook_parameters(namespace: dict[str, Any], before: set[str]) -> dict[str, Any]:
    """The parameters a notebook ran with: every name its parameters cell (and papermill's injected cell) defined.

    Parameters
    ----------
    namespace
        The notebook's ``globals()`` after the parameters cell.
    before
        ``set(globals())`` taken in a cell before the parameters cell.

    Returns
    -------
    dict
        Name -> value, for the names added since ``before`` that hold plain data (numbers, strings, None, lists,
        tuples, dicts), in definition order; so a table's JSON records the parameters without retyping them.
    """
    plain = (bool, int, float, str, type(None), list, tuple, dict)
    return {name: value for name, value in namespace.items()
            if name not in before and not name.startswith("_") and isinstance(value, plain)}


def run_metadata(profile: str, parameters: dict[str, Any] | None = None,
                 started: float | None = None) -> dict[str, Any]:
    """Everything a table should record about the run that produced it.

    Parameters
    ----------
    profile
        The experiment profile (``smoke``, ``default`` or ``paper``).
    parameters
        The notebook's parameters (sizes, seeds, thread counts) as given by papermill.
    started
        ``time.perf_counter()`` at the start of the run; recorded as ``elapsed_s`` (seconds).
    """
    return {
        "profile": profile,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(time.perf_counter() - started, 1) if started is not None else None,
        "machine": machine_info(),
        "versions": library_versions(),
        "parameters": dict(parameters or {}),
    }
