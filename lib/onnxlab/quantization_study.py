"""Paper J's study as a recipe: one Keras model → its ONNX, quantized ONNX and TFLite variants, each
measured for size, accuracy, latency and memory.

The notebook ``notebooks/quantization.ipynb`` calls `STUDY_MODELS`, `prepare`, `make_variants`,
`evaluate_accuracy`, `measure_latency` and `measure_memory`; the test runs the same on a tiny model.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from onnxlab.errors import InvalidArgument

#: Batch used for accuracy over a test set.
ACCURACY_BATCH = 500


# --------------------------------------------------------------------------- models

@dataclass(frozen=True)
class StudyModel:
    """A model of the study.

    Attributes
    ----------
    name
        As in the table.
    dataset
        ``"mnist"``, ``"cifar10"``, or None for a model measured on random images (speed and size only).
    build
        Returns a fresh Keras model.
    input_shape
        One sample's shape (H, W, C).
    """

    name: str
    dataset: str | None
    build: Callable[[], Any]
    input_shape: tuple[int, ...]


def _resnet50():
    from onnxlab.zoo import keras_application

    return keras_application("ResNet50", weights="random")[0]


def _study_models() -> dict[str, StudyModel]:
    from onnxlab import zoo

    return {m.name: m for m in (
        StudyModel("DNN", "mnist", zoo.dnn, zoo.MNIST_SHAPE),
        StudyModel("LeNet-5", "mnist", lambda: zoo.lenet5("relu"), zoo.MNIST_SHAPE),
        StudyModel("CNN", "cifar10", zoo.cifar10_cnn, zoo.CIFAR10_SHAPE),
        StudyModel("ResNet50", None, _resnet50, zoo.IMAGENET_SHAPE),
    )}


#: The models of Tables J and E by name: paper J's DNN on MNIST and CNN on CIFAR-10, LeNet-5 (ReLU) on MNIST, and
#: ResNet50 (random weights).
STUDY_MODELS: dict[str, StudyModel] = _study_models()


@dataclass
class ImageData:
    """Float images (N, H, W, C) in [0, 1] and uint8 labels (N,) of a study model's data set."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_data(model: StudyModel, *, n_train: int | None = None, n_test: int | None = None,
              n_random: int = 64, seed: int = 0) -> ImageData:
    """The data of ``model``: MNIST or CIFAR-10 (subsets if ``n_train``/``n_test``), or for a model without a
    data set ``n_random`` uniform random images for calibration and timing (no labels: accuracy is not defined)."""
    from onnxlab import data

    loaders = {"mnist": data.load_mnist, "cifar10": data.load_cifar10}
    if model.dataset is None:
        x = np.random.default_rng(seed).random((n_random, *model.input_shape), dtype=np.float32)
        empty = np.zeros(0, np.uint8)
        return ImageData(x, empty, x, empty)
    split = loaders[model.dataset](n_train=n_train, n_test=n_test)
    return ImageData(data.images_as_float(split.x_train), split.y_train,
                     data.images_as_float(split.x_test), split.y_test)


# --------------------------------------------------------------------------- variants

@dataclass
class Variant:
    """One file of the study and the engine that runs it.

    Attributes
    ----------
    name
        Row label, e.g. ``ONNX static-entropy-per-channel``.
    family
        ``keras``, ``onnx`` (fp32), ``onnx-int8``, ``tflite`` or ``tflite-int8``.
    engine
        A key of `onnxlab.engines.ENGINES`.
    path
        The model file.
    kernels, notes
        For ONNX Runtime int8 variants: the kernel census summary and the quantizer's notes.
    """

    name: str
    family: str
    engine: str
    path: Path
    kernels: str = ""
    notes: list[str] = field(default_factory=list)


def prepare(model: StudyModel, keras_model: Any, folder: str | os.PathLike) -> tuple[Path, Path]:
    """Save ``keras_model`` as ``<folder>/<name>.h5`` and export it to ``<name>.onnx``; both paths."""
    from onnxlab.convert.keras import export

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keras_path, onnx_path = folder / f"{model.name}.h5", folder / f"{model.name}.onnx"
    export(keras_model, onnx_path, keras_path=keras_path)
    return keras_path, onnx_path


def make_variants(model: StudyModel, keras_model: Any, keras_path: Path, onnx_path: Path,
                  calibration: np.ndarray, quantizations: list[dict[str, Any]], tflite: tuple[str, ...],
                  folder: str | os.PathLike, progress: Callable[[str], None] | None = None) -> list[Variant]:
    """Write every variant of ``model`` into ``folder`` and return them, Keras and ONNX fp32 first.

    Parameters
    ----------
    quantizations
        Keyword sets for `onnxlab.quantize.QuantizationSettings`, one per ONNX Runtime int8 variant.
    tflite
        TFLite variants to write (``"float"``, ``"int8"``).
    calibration
        Samples for static quantization and TFLite's representative data set.
    """
    from onnxlab.convert.tflite import to_tflite
    from onnxlab.quantize import QuantizationSettings, quantize

    folder = Path(folder)
    variants = [Variant("Keras .h5", "keras", "keras-predict", keras_path),
                Variant("ONNX fp32", "onnx", "onnxruntime", onnx_path)]
    for options in quantizations:
        settings = QuantizationSettings(**options)
        if progress:
            progress(f"{model.name}: quantizing {settings.label}")
        result = quantize(onnx_path, folder / f"{model.name}-{settings.label}.onnx", calibration, settings)
        variants.append(Variant(f"ONNX {settings.label}", "onnx-int8", "onnxruntime", result.path,
                                result.kernels.summary(), result.notes))
    for kind in tflite:
        if progress:
            progress(f"{model.name}: TFLite {kind}")
        path = to_tflite(keras_model, folder / f"{model.name}-{kind}.tflite", variant=kind, representative=calibration)
        variants.append(Variant(f"TFLite {kind}", "tflite" if kind == "float" else "tflite-int8", "tflite", path))
    return variants


def parameter_bytes(path: str | os.PathLike) -> int:
    """Bytes of a model file's stored parameters: ONNX initializers, Keras weights, TFLite constant tensors."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path))
        return sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
    if path.suffix == ".h5":
        import keras

        return sum(w.nbytes for w in keras.models.load_model(path, compile=False).get_weights())
    if path.suffix == ".tflite":
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=str(path))
        produced = {i for op in interpreter._get_ops_details() for i in op["outputs"]}
        consumed = {i for op in interpreter._get_ops_details() for i in op["inputs"] if i >= 0}
        inputs = {d["index"] for d in interpreter.get_input_details()}
        details = {d["index"]: d for d in interpreter.get_tensor_details()}
        return int(sum(np.prod(details[i]["shape"]) * np.dtype(details[i]["dtype"]).itemsize
                       for i in consumed - produced - inputs if i in details))
    raise InvalidArgument(f"{path}: parameter_bytes reads .onnx, .h5 or .tflite files")


def file_bytes(path: str | os.PathLike) -> int:
    """Size of a model file on disk."""
    return Path(path).stat().st_size


# --------------------------------------------------------------------------- measurements

def evaluate_accuracy(runner: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray,
                      batch_size: int = ACCURACY_BATCH) -> float:
    """Top-1 accuracy of ``runner`` on ``x`` (N, ...) with labels ``y`` (N,); NaN without labels."""
    from onnxlab.engines import predict_in_batches

    if len(y) == 0:
        return float("nan")
    return float(np.mean(predict_in_batches(runner, x, batch_size).argmax(-1) == y))


def measure_latency(runners: dict[str, Callable[[np.ndarray], np.ndarray]], x: np.ndarray, *, number: int,
                    repeats: int, warmup: int = 2) -> dict[str, dict[str, float]]:
    """Seconds per call of each runner on the batch ``x``, interleaved (`onnxlab.bench.compare`).

    Returns name -> {"median": s, "p90": s} per single call (each repeat times ``number`` calls).
    """
    from onnxlab.bench import compare

    result = compare({name: (lambda run=run: run(x)) for name, run in runners.items()},
                     number=number, repeats=repeats, warmup=warmup)
    return {name: {"median": t.per_call, "p90": float(np.percentile(t.samples, 90)) / t.number}
            for name, t in result.timings.items()}


# --------------------------------------------------------------------------- training (cached)

#: Cache kind of the study's trained Keras models.
CACHE_KIND = "quantization-study"
KERAS_FILE = "model.h5"


def trained_keras_model(model: StudyModel, data: ImageData, *, cache_dir: str | os.PathLike, epochs: int,
                        batch_size: int = 128, learning_rate: float = 1e-3, shift_pixels: float = 0.0,
                        seed: int = 0, progress: str | None = None) -> tuple[Any, dict[str, Any]]:
    """``model`` built with ``seed`` and trained (Adam, ``epochs`` over ``data``), or read from the cache.

    Models without a data set are returned untrained (random weights). The second value says how the
    weights came about: ``{"weights": "trained" | "random", "train_seconds": ..., "cached": bool}``.
    """
    import time

    import keras
    import tensorflow as tf

    from onnxlab.cache import arrays_digest, cache_entry
    from onnxlab.zoo import train_keras_classifier

    tf.keras.backend.clear_session()
    tf.random.set_seed(seed)
    if model.dataset is None:
        return model.build(), {"weights": "random", "train_seconds": 0.0, "cached": False}
    settings = dict(model=model.name, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                    shift_pixels=shift_pixels, seed=seed, data=arrays_digest(data.x_train, data.y_train))
    entry = cache_entry(cache_dir, CACHE_KIND, model.name, settings)
    stored = entry.load()
    if stored is not None:
        return keras.models.load_model(entry.folder / KERAS_FILE, compile=False), {**stored, "cached": True}
    keras_model = model.build()
    start = time.perf_counter()
    train_keras_classifier(keras_model, data.x_train, data.y_train, epochs=epochs, batch_size=batch_size,
                           learning_rate=learning_rate, shift_pixels=shift_pixels, seed=seed, progress=progress)
    seconds = time.perf_counter() - start
    keras_model.save(entry.workdir() / KERAS_FILE)
    return keras_model, {**entry.store({"weights": "trained", "train_seconds": seconds}), "cached": False}
