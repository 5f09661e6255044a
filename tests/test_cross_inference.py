"""onnxlab.cross_inference: stepping the float model with every node in float equals the float model, with every
node in int8 equals the QDQ model evaluated in float, with one node in int8 changes nothing upstream of it; the
layer table and the mixed-precision choice."""
import numpy as np
import onnx
import pytest

from onnxlab import cross_inference as ci, data, zoo
from onnxlab.convert import to_onnx
from onnxlab.errors import InvalidArgument, OnnxlabError
from onnxlab.formats import save_model
from onnxlab.runtime import ort_session

#: Stepping node by node vs one ONNX Runtime run of the same graph (same kernels; float32 rounding only).
ATOL = 1e-5


@pytest.fixture(scope="module")
def mnist():
    split = data.load_mnist(n_train=1000, n_test=200)
    return data.images_as_float(split.x_train), split.y_train, data.images_as_float(split.x_test), split.y_test


@pytest.fixture(scope="module", params=[False, True], ids=["per-tensor", "per-channel"])
def pair(request, mnist, tmp_path_factory):
    x, y, x_test, _ = mnist
    model = zoo.lenet5("relu")
    zoo.train_keras_classifier(model, x, y, epochs=1, seed=0)
    folder = tmp_path_factory.mktemp("cross")
    save_model(to_onnx(model, x[:1]), folder / "lenet5.onnx")
    float_path, qdq_path = ci.quantization_pair(folder / "lenet5.onnx", x[:128], folder, per_channel=request.param)
    return ci.CrossInference(float_path, qdq_path, x_test), float_path, qdq_path


def _run(path, x, optimization="all"):
    session = ort_session(path, optimization=optimization)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_every_node_in_float_is_the_float_model(pair, mnist):
    cross, float_path, _ = pair
    np.testing.assert_allclose(cross.outputs(cross.run()), _run(float_path, mnist[2]), atol=ATOL)


def test_every_node_in_int8_is_the_qdq_model_in_float(pair, mnist):
    cross, _, qdq_path = pair
    fake = _run(qdq_path, mnist[2], optimization="disable")
    np.testing.assert_allclose(cross.outputs(cross.run(ci.ALL)), fake, atol=1e-6)
    # with its optimisations on, ONNX Runtime runs integer kernels: close, not equal
    real = _run(qdq_path, mnist[2])
    assert 0 < np.abs(real - fake).max() < 0.1


def test_one_layer_in_int8_leaves_everything_upstream_alone(pair):
    cross, _, _ = pair
    reference, layer = cross.run(), cross.layers[1]
    crossed = cross.run({layer})
    names = list(reference)
    for name in names[:names.index(layer)]:
        for tensor, value in reference[name].outputs.items():
            np.testing.assert_array_equal(crossed[name].outputs[tensor], value)
    assert not np.array_equal(crossed[layer].output, reference[layer].output)


def test_layer_table_and_mixed_precision(pair, mnist):
    cross, _, _ = pair
    labels = mnist[3]
    rows = ci.layer_table(cross, labels)
    assert [r["layer"] for r in rows] == cross.layers and len(rows) == 5  # 2 conv + 3 dense
    for row in rows:
        assert 10 < row["local_sqnr_db"] < 200 and 0.99 < row["local_cosine"] <= 1 + 1e-9
        assert 0 <= row["accuracy_alone_int8"] <= 1
    loose = ci.choose_float_layers(cross, labels, budget_points=100.0, rows=rows)
    assert loose["met"] and loose["float_layers"] == []
    strict = ci.choose_float_layers(cross, labels, budget_points=0.0, rows=rows)
    if strict["met"]:
        assert strict["accuracy"] >= strict["float_accuracy"]
    with pytest.raises(InvalidArgument, match="budget must be >= 0"):
        ci.choose_float_layers(cross, labels, budget_points=-1, rows=rows)


def test_metrics():
    ref = np.array([3.0, 4.0])
    assert ci.sqnr_db(ref, ref) == float("inf")
    assert ci.sqnr_db(ref, ref + np.array([0.0, 0.5])) == pytest.approx(10 * np.log10(25 / 0.25))
    assert ci.cosine(ref, 2 * ref) == pytest.approx(1.0)
    assert ci.error_row(ref, ref + 0.5)["max_abs_error"] == pytest.approx(0.5)


def test_bad_input_is_named(pair):
    cross, float_path, _ = pair
    with pytest.raises(OnnxlabError, match="not a QDQ model"):
        ci.QdqParameters.of(onnx.load(str(float_path)))
    with pytest.raises(InvalidArgument, match="no node 'nope'"):
        cross.run({"nope"})
    with pytest.raises(InvalidArgument, match="no node 'nope'"):
        cross.all_but("nope")
