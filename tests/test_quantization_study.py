"""onnxlab.quantization_study: the recipe of Table J on a tiny model — variants written and named, parameter
bytes read alike from every file kind, training cached, accuracy and latency measured."""
import math

import numpy as np
import pytest

from onnxlab import quantization_study as study
from onnxlab.engines import load
from onnxlab.errors import InvalidArgument

TINY = study.StudyModel("TinyDNN", "mnist", lambda: __import__("onnxlab.zoo").zoo.dnn(hidden=(32,)), (28, 28, 1))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    data = study.load_data(TINY, n_train=600, n_test=200)
    model, training = study.trained_keras_model(TINY, data, cache_dir=folder / "cache", epochs=1)
    keras_path, onnx_path = study.prepare(TINY, model, folder / "models")
    variants = study.make_variants(TINY, model, keras_path, onnx_path, data.x_train[:64],
                                   [{"mode": "dynamic"}, {"mode": "static", "calibration": "minmax"}],
                                   ("float", "int8"), folder / "models")
    return dict(folder=folder, data=data, model=model, training=training, variants=variants)


def test_variants_are_written_named_and_sorted_into_families(tiny):
    names = [v.name for v in tiny["variants"]]
    assert names == ["Keras .h5", "ONNX fp32", "ONNX dynamic-per-tensor", "ONNX static-minmax-per-tensor",
                     "TFLite float", "TFLite int8"]
    assert [v.family for v in tiny["variants"]] == ["keras", "onnx", "onnx-int8", "onnx-int8", "tflite", "tflite-int8"]
    assert all(v.path.is_file() for v in tiny["variants"])
    assert tiny["variants"][3].kernels.startswith("integer: ") and tiny["variants"][3].notes


def test_parameter_bytes_agree_across_file_kinds(tiny):
    weights = sum(w.nbytes for w in tiny["model"].get_weights())
    by_name = {v.name: study.parameter_bytes(v.path) for v in tiny["variants"]}
    for name in ("Keras .h5", "ONNX fp32", "TFLite float"):
        assert by_name[name] == pytest.approx(weights, rel=0.01), name
    for name in ("ONNX static-minmax-per-tensor", "TFLite int8"):
        assert by_name[name] == pytest.approx(weights / 4, rel=0.05), name
    with pytest.raises(InvalidArgument, match="reads .onnx, .h5 or .tflite"):
        study.parameter_bytes(tiny["folder"] / "x.pt")


def test_training_is_cached_by_its_settings(tiny):
    assert tiny["training"]["weights"] == "trained" and not tiny["training"]["cached"]
    again, training = study.trained_keras_model(TINY, tiny["data"], cache_dir=tiny["folder"] / "cache", epochs=1)
    assert training["cached"]
    for a, b in zip(again.get_weights(), tiny["model"].get_weights()):
        np.testing.assert_array_equal(a, b)


def test_accuracy_latency_and_the_model_without_a_data_set(tiny):
    data = tiny["data"]
    keras_run = load("keras-predict", tiny["variants"][0].path, 2).run
    onnx_run = load("onnxruntime", tiny["variants"][1].path, 2).run
    assert study.evaluate_accuracy(keras_run, data.x_test, data.y_test) == \
        study.evaluate_accuracy(onnx_run, data.x_test, data.y_test, batch_size=64)
    times = study.measure_latency({"keras": keras_run, "onnx": onnx_run}, data.x_test[:8], number=2, repeats=3)
    assert set(times) == {"keras", "onnx"} and all(0 < t["median"] <= t["p90"] for t in times.values())
    random_only = study.load_data(study.STUDY_MODELS["ResNet50"], n_random=3)
    assert random_only.x_test.shape == (3, 224, 224, 3) and len(random_only.y_test) == 0
    assert math.isnan(study.evaluate_accuracy(onnx_run, random_only.x_test, random_only.y_test))
