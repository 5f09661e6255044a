"""What it costs to run a spiking network on each engine: time to the first prediction in a fresh process, that
process's peak memory, and the size on disk of the packages the engine needs.

Two engines run an ONNX-SNN classifier spiking (`onnxlab.inference.ENGINES`):

- ``onnxruntime-spiking``: the file compiled once by `onnxlab.snn.to_spiking_onnx` and then run by ONNX Runtime
  alone; the fresh process here is `STANDALONE_SCRIPT`, which imports ``numpy`` and ``onnxruntime`` and nothing
  else (it reports any TensorFlow, Nengo or onnxlab module that got loaded anyway);
- ``nengo-dl``: the ONNX-SNN file built as a Nengo network (`to_nengo`) and simulated by a NengoDL simulator built
  for one image (``python -m onnxlab.snn.deployment``).

Both children report wall-clock timestamps (``time.time()``, shared by all processes of a machine), so the time to
the first prediction counts the interpreter's start as well: from just before the parent starts the child to the
moment the child holds the first image's scores.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from onnxlab.bench import in_turn
from onnxlab.errors import OnnxlabError, exit_status

#: The distributions each engine needs to run a spiking file (their dependencies are added by `installed_size`).
#: onnxlab's own code is counted in neither: the compiled file does not need it, NengoDL needs `to_nengo`.
ENGINE_PACKAGES: dict[str, tuple[str, ...]] = {
    "onnxruntime-spiking": ("onnxruntime", "numpy"),
    "nengo-dl": ("nengo-dl", "nengo", "tensorflow", "onnx", "numpy"),
}

#: Modules a standalone ONNX Runtime process must not load (reported by `STANDALONE_SCRIPT`).
FRAMEWORK_MODULES = ("tensorflow", "nengo", "nengo_dl", "onnxlab", "keras", "torch")

#: Seconds a child may take to its first prediction before it is stopped.
CHILD_TIMEOUT_S = 600

#: The fresh process of the ``onnxruntime-spiking`` engine: numpy and onnxruntime only.
#: argv: compiled model path, .npy file of images (the first is classified).
STANDALONE_SCRIPT = r"""
import json, sys, time
import numpy as np
import onnxruntime as ort
imported = time.time()
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])  # a Loop: exact at any level
built = time.time()
x = np.load(sys.argv[2])[:1]
scores = session.run(None, {session.get_inputs()[0].name: x})[0]
done = time.time()
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[3].split(",")))
print(json.dumps({"imported": imported, "built": built, "done": done, "peak_bytes": peak,
                  "label": int(scores[0, -1].argmax()), "frameworks_loaded": loaded}))
"""


@dataclass(frozen=True)
class FirstPrediction:
    """One fresh process classifying one image (seconds from just before the process started).

    Attributes
    ----------
    imports_s
        Until the engine's libraries were imported.
    build_s
        Loading the model and building the engine's session or simulator.
    run_s
        Classifying the first image.
    peak_bytes
        The process's peak resident memory (``VmHWM``).
    label
        The predicted class (the last step's filtered output).
    frameworks_loaded
        Which of `FRAMEWORK_MODULES` the process imported.
    """

    imports_s: float
    build_s: float
    run_s: float
    peak_bytes: int
    label: int
    frameworks_loaded: tuple[str, ...]

    @property
    def total_s(self) -> float:
        """Time to the first prediction: imports + build + run."""
        return self.imports_s + self.build_s + self.run_s


def _nengo_dl_first_prediction(model: Path, images: Path) -> dict:
    """In this (fresh) process: import onnxlab's Nengo path, build a NengoDL simulator, classify one image."""
    from onnxlab.reproducibility import quiet

    quiet()
    from onnxlab.engines import peak_rss_bytes
    from onnxlab.formats import load_model
    from onnxlab.snn.simulate import predictor
    from onnxlab.snn.to_nengo import to_nengo
    import nengo_dl  # noqa: F401  (imported here so the import time is counted as imports)

    imported = time.time()
    network = to_nengo(load_model(model))
    x = np.load(images)[:1]
    with predictor(network, minibatch_size=1, filtered=True) as predict:
        built = time.time()
        (scores,) = predict(x).values()
        done = time.time()
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(FRAMEWORK_MODULES))
    return {"imported": imported, "built": built, "done": done, "peak_bytes": peak_rss_bytes(),
            "label": int(scores[0, -1].argmax()), "frameworks_loaded": loaded}


def _child_command(engine: str, model: Path, images: Path) -> list[str]:
    if engine == "onnxruntime-spiking":
        return [sys.executable, "-I", "-c", STANDALONE_SCRIPT, str(model), str(images), ",".join(FRAMEWORK_MODULES)]
    if engine == "nengo-dl":
        return [sys.executable, "-m", "onnxlab.snn.deployment", str(model), str(images)]
    raise OnnxlabError(f"no fresh-process measurement for engine {engine!r}; engines: {', '.join(ENGINE_PACKAGES)}")


def first_prediction(engine: str, model: str | os.PathLike, x: np.ndarray, *,
                     workdir: str | os.PathLike) -> FirstPrediction:
    """Start a fresh Python, let it run ``model`` on ``engine`` for the first image of ``x``, and time it.

    Parameters
    ----------
    engine
        ``"onnxruntime-spiking"`` (``model``: a compiled file, `to_spiking_onnx`) or ``"nengo-dl"`` (``model``: the
        ONNX-SNN file).
    x
        Images (N, ...) float32; the first is classified. Written to ``workdir`` for the child.
    """
    images = Path(workdir) / f"first-prediction-{os.getpid()}.npy"
    np.save(images, np.asarray(x[:1], np.float32))
    command = _child_command(engine, Path(model), images)
    try:
        started = time.time()
        proc = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    finally:
        images.unlink(missing_ok=True)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit status {proc.returncode}"
        raise OnnxlabError(f"the first prediction of {model} on {engine} failed in a fresh process: {last}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return FirstPrediction(report["imported"] - started, report["built"] - report["imported"],
                           report["done"] - report["built"], report["peak_bytes"], report["label"],
                           tuple(report["frameworks_loaded"]))


def first_predictions(models: dict[str, str | os.PathLike], x: np.ndarray, *, repeats: int = 3,
                      workdir: str | os.PathLike) -> dict[str, list[FirstPrediction]]:
    """`first_prediction` for each engine -> model path, ``repeats`` times, engines taking turns (as `bench.compare`)."""
    names = list(models)
    runs: dict[str, list[FirstPrediction]] = {name: [] for name in names}
    for r in range(repeats):
        for name in in_turn(names, r):
            runs[name].append(first_prediction(name, models[name], x, workdir=workdir))
    return runs


@dataclass(frozen=True)
class InstalledSize:
    """Bytes on disk of some distributions and everything they require.

    Attributes
    ----------
    bytes
        Sum of the sizes of every file the distributions' install records list.
    packages
        The distributions counted (normalised names), sorted.
    missing
        Required distributions that are not installed (not counted).
    """

    bytes: int
    packages: tuple[str, ...]
    missing: tuple[str, ...]


def _normalised(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def installed_size(roots: Sequence[str]) -> InstalledSize:
    """The installed size of the distributions ``roots`` and, transitively, of what they require.

    Requirements follow each distribution's metadata (``Requires-Dist``) with its environment markers evaluated
    for this interpreter and no extras; every file listed in an install record counts once.

    Raises
    ------
    OnnxlabError
        If a root distribution is not installed.
    """
    from importlib import metadata

    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    missing: set[str] = set()
    todo = [(_normalised(r), True) for r in roots]
    while todo:
        name, is_root = todo.pop()
        if name in found or name in missing:
            continue
        try:
            found[name] = dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if is_root:
                raise OnnxlabError(f"installed_size: the distribution {name!r} is not installed") from None
            missing.add(name)
            continue
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append((_normalised(requirement.name), False))
    files = {Path(dist.locate_file(f)).resolve() for dist in found.values() for f in dist.files or []}
    size = sum(f.stat().st_size for f in files if f.is_file())
    return InstalledSize(size, tuple(sorted(found)), tuple(sorted(missing)))


def main(argv: list[str] | None = None) -> int:
    """``python -m onnxlab.snn.deployment MODEL IMAGES.npy``: the NengoDL engine's fresh process (JSON on stdout)."""
    parser = argparse.ArgumentParser(prog="python -m onnxlab.snn.deployment",
                                     description="classify the first image of IMAGES with the ONNX-SNN file MODEL "
                                                 "in NengoDL and print timestamps and peak memory as JSON")
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path)
    args = parser.parse_args(argv)
    return exit_status(lambda: print(json.dumps(_nengo_dl_first_prediction(args.model, args.images))))


if __name__ == "__main__":
    sys.exit(main())
