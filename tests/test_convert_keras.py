"""Keras -> ONNX: ONNX Runtime reproduces Keras for dense and conv nets, in-process and in a child process."""
import numpy as np
import onnx
import pytest

from onnxlab import to_onnx
from onnxlab.errors import ConversionError
from onnxlab.formats import IR_VERSION, ONNX_OPSET
from onnxlab.runtime import ort_session, run_single

#: max |Keras - ONNX Runtime| for float32 nets of this size.
ATOL = 1e-5

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def lenet():
    from onnxlab.zoo import lenet1

    return lenet1()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)


def test_lenet1_matches_keras(lenet, images):
    onx = to_onnx(lenet, images)
    onnx.checker.check_model(onx, full_check=True)
    assert onx.ir_version == IR_VERSION
    assert {o.domain: o.version for o in onx.opset_import}[""] == ONNX_OPSET
    out = run_single(ort_session(onx), images)[0]
    np.testing.assert_allclose(out, lenet.predict(images, verbose=0), atol=ATOL)


def test_dnn_matches_keras_and_has_dynamic_batch(images):
    from onnxlab.zoo import dnn

    model = dnn(hidden=(32,))
    session = ort_session(to_onnx(model, images[:1]))
    out = run_single(session, images)[0]  # converted with batch 1, run with batch 5
    np.testing.assert_allclose(out, model.predict(images, verbose=0), atol=ATOL)


def test_lenet1_architecture(lenet):
    shapes = [tuple(layer.output_shape[1:]) for layer in lenet.layers]
    assert shapes == [(24, 24, 4), (12, 12, 4), (8, 8, 12), (4, 4, 12), (192,), (10,)]
    assert lenet.count_params() == 104 + 1212 + 1930


def test_wrong_example_shape_is_reported(lenet):
    with pytest.raises(ConversionError, match=r"has shape \(1, 32, 32, 1\); the model expects \(N, 28, 28, 1\)"):
        to_onnx(lenet, np.zeros((1, 32, 32, 1), np.float32))


def test_example_with_a_missing_axis_is_reported(lenet):
    # (1, 28, 28) has the right leading sizes but no channel axis: zip() alone would accept it
    with pytest.raises(ConversionError, match=r"has shape \(1, 28, 28\); the model expects \(N, 28, 28, 1\)"):
        to_onnx(lenet, np.zeros((1, 28, 28), np.float32))


def test_wrong_number_of_example_inputs_is_reported(lenet, images):
    with pytest.raises(ConversionError, match="1 inputs but 2 example arrays"):
        to_onnx(lenet, [images, images])


def test_convert_file_in_a_child_process(tmp_path, lenet, images):
    from onnxlab.convert.keras import convert_file

    h5 = tmp_path / "lenet.h5"
    lenet.save(h5)
    out = convert_file(h5, tmp_path / "lenet.onnx")
    onnx.checker.check_model(str(out), full_check=True)
    np.testing.assert_allclose(run_single(ort_session(out), images)[0], lenet.predict(images, verbose=0), atol=ATOL)
    assert not list(tmp_path.glob("*.partial"))


def test_convert_file_failure_names_the_file_and_writes_nothing(tmp_path):
    from onnxlab.convert.keras import convert_file

    bogus = tmp_path / "not_a_model.h5"
    bogus.write_text("hello")
    with pytest.raises(ConversionError, match="not_a_model.h5"):
        convert_file(bogus, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_export_small_model_in_process(tmp_path, lenet, images):
    from onnxlab.convert.keras import export

    path = export(lenet, tmp_path / "m.onnx", keras_path=tmp_path / "m.h5")
    assert path.is_file() and (tmp_path / "m.h5").is_file()
    np.testing.assert_allclose(run_single(ort_session(path), images)[0], lenet.predict(images, verbose=0), atol=ATOL)


def test_export_large_model_requires_a_keras_path(monkeypatch, tmp_path, lenet):
    from onnxlab.convert import keras as keras_converter

    monkeypatch.setattr(keras_converter, "IN_PROCESS_MAX_PARAMS", 10)
    with pytest.raises(ConversionError, match="pass keras_path"):
        keras_converter.export(lenet, tmp_path / "m.onnx")


def test_zero_biases_are_kept_and_stay_zero(images):
    """TensorFlow folds `x + 0` away; an untrained model must still carry every bias, as zeros."""
    from onnx import numpy_helper

    from onnxlab.zoo import kim2021_snn_cnn

    model = kim2021_snn_cnn()
    before = [w.copy() for w in model.get_weights()]
    onx = to_onnx(model, np.zeros((1, 28, 28, 1), np.float32))
    shapes = sorted(tuple(i.dims) for i in onx.graph.initializer if len(i.dims) == 1 and i.dims[0] in (32, 64, 128, 784, 10))
    assert shapes == [(10,), (32,), (64,), (128,), (784,)]
    for init in onx.graph.initializer:
        if tuple(init.dims) in shapes:
            assert not numpy_helper.to_array(init).any()
    for a, b in zip(before, model.get_weights()):  # the Keras model is left as it was
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(1).random((3, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(run_single(ort_session(onx), x)[0], model.predict(x, verbose=0), atol=ATOL)


def test_zero_bias_before_batch_norm_converts_correctly():
    """A zero conv bias folded into a following BatchNorm cannot be kept apart: the model must still be right."""
    from keras import Sequential, layers

    model = Sequential([layers.Input((8, 8, 3)), layers.Conv2D(4, 3), layers.BatchNormalization(),
                        layers.ReLU(), layers.Flatten(), layers.Dense(5)])
    bn = model.layers[1]
    bn.set_weights([np.full(4, 1.5, np.float32), np.full(4, 0.2, np.float32),
                    np.full(4, 0.1, np.float32), np.full(4, 2.0, np.float32)])
    x = np.random.default_rng(2).normal(size=(3, 8, 8, 3)).astype(np.float32)
    onx = to_onnx(model, x)
    np.testing.assert_allclose(run_single(ort_session(onx), x)[0], model.predict(x, verbose=0), atol=ATOL)


def test_train_keras_classifier_handles_logit_and_softmax_outputs():
    """A logits model trained with a probabilities loss stays at chance: train_keras_classifier must tell them apart."""
    from onnxlab.data import load_mnist, mnist_as_float
    from onnxlab.zoo import kim2021_snn_cnn, lenet1, train_keras_classifier

    data = load_mnist(n_train=2000, n_test=500)
    x, y, xt, yt = mnist_as_float(data.x_train), data.y_train, mnist_as_float(data.x_test), data.y_test
    for model in (kim2021_snn_cnn(), lenet1()):  # logits, softmax
        train_keras_classifier(model, x, y, epochs=4, seed=0)
        accuracy = np.mean(model.predict(xt, verbose=0).argmax(1) == yt)
        # chance is 0.1; LeNet-1 (tanh, 2000 images) reached 0.49-0.8 after 2 epochs across runs (TensorFlow's CPU
        # training is not bit-deterministic), so 4 epochs and a bar far above chance
        assert accuracy > 0.4, (model.name, accuracy)
