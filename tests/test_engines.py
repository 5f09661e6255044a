"""onnxlab.engines: every engine that runs here gives the Keras model's outputs within a stated tolerance;
memory is measured in-process (tracemalloc) and in a child process; bad requests get clear errors."""
import numpy as np
import pytest

from onnxlab import data, engines, zoo
from onnxlab.convert.keras import export
from onnxlab.convert.tflite import to_tflite
from onnxlab.errors import InvalidArgument, OnnxlabError

#: Float engines agree with Keras within this (softmax outputs).
FLOAT_ATOL = 1e-5
#: TFLite int8 agrees with Keras on at least this fraction of predicted classes.
INT8_MIN_AGREEMENT = 0.95
THREADS = 2


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    engines.set_tensorflow_threads(THREADS)
    split = data.load_mnist(n_train=2000, n_test=300)
    x, x_test = data.images_as_float(split.x_train), data.images_as_float(split.x_test)
    model = zoo.lenet5("relu")
    zoo.train_keras_classifier(model, x, split.y_train, epochs=2, seed=0)
    folder = tmp_path_factory.mktemp("engines")
    paths = {".h5": folder / "lenet5.h5", ".onnx": folder / "lenet5.onnx", ".tflite": folder / "lenet5.tflite"}
    export(model, paths[".onnx"], keras_path=paths[".h5"])
    to_tflite(model, paths[".tflite"])
    to_tflite(model, folder / "lenet5-int8.tflite", variant="int8", representative=x)
    return model, x_test, paths, folder


@pytest.mark.parametrize("name", list(engines.ENGINES))
def test_each_engine_gives_the_keras_outputs(name, lenet):
    model, x, paths, _ = lenet
    spec = engines.ENGINES[name]
    if spec.unavailable():
        pytest.skip(spec.unavailable())
    loaded = engines.load(name, paths[spec.reads], THREADS)
    assert loaded.load_seconds > 0
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(engines.predict_in_batches(loaded.run, x, 64), expected, atol=FLOAT_ATOL)
    np.testing.assert_allclose(loaded.run(x[:1]), expected[:1], atol=FLOAT_ATOL)  # batch size changes


def test_tflite_int8_keeps_the_predictions(lenet):
    model, x, _, folder = lenet
    loaded = engines.load("tflite", folder / "lenet5-int8.tflite", THREADS)
    labels = engines.predict_in_batches(loaded.run, x, 100).argmax(1)
    assert np.mean(labels == model.predict(x, verbose=0).argmax(1)) >= INT8_MIN_AGREEMENT
    assert (folder / "lenet5-int8.tflite").stat().st_size < (folder / "lenet5.tflite").stat().st_size / 3


def test_memory_in_process_and_in_a_child(lenet):
    _, x, paths, folder = lenet
    loaded = engines.load("keras-predict", paths[".h5"], THREADS)
    traced = engines.traced_allocation(loaded.run, x[:64])
    assert traced.peak >= traced.retained >= 64 * 10 * 4  # at least the (64, 10) float32 output
    child = engines.peak_memory_in_child("onnxruntime", paths[".onnx"], x[:64], threads=THREADS, workdir=folder)
    assert 0 < child.after_imports < child.peak
    # the child is a fresh process: it must not report this (TensorFlow-sized) parent's memory
    keras_child = engines.peak_memory_in_child("keras-predict", paths[".h5"], x[:64], threads=THREADS, workdir=folder)
    assert child.peak < keras_child.after_imports


def test_bad_requests_are_named(lenet):
    _, _, paths, _ = lenet
    with pytest.raises(InvalidArgument, match="unknown engine 'tvm'; known: keras-predict"):
        engines.load("tvm", paths[".onnx"])
    with pytest.raises(InvalidArgument, match="engine onnxruntime reads .onnx files"):
        engines.load("onnxruntime", paths[".h5"])
    with pytest.raises(OnnxlabError, match="missing.onnx: no such file"):
        engines.load("onnxruntime", paths[".onnx"].with_name("missing.onnx"))
    with pytest.raises(InvalidArgument, match="needs representative data"):
        to_tflite(lenet[0], paths[".tflite"].with_name("x.tflite"), variant="int8")
