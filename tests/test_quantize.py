"""onnxlab.quantize: every mode and calibration method gives a valid model that runs and keeps its
accuracy; the kernels ONNX Runtime runs are reported; bad input gets one clear error and no file."""
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxlab import data, quantize as q, zoo
from onnxlab.cli import main as cli
from onnxlab.convert import to_onnx
from onnxlab.errors import InvalidArgument, OnnxlabError
from onnxlab.formats import save_model
from onnxlab.runtime import ort_session, predicted_labels

#: Largest accuracy loss (points) tolerated on the test images of the small models below.
MAX_ACCURACY_DROP = 2.0
#: Smallest fraction of test images on which the quantized model predicts the float model's class.
MIN_AGREEMENT = 0.95
N_TEST = 500


@pytest.fixture(scope="module")
def mnist():
    split = data.load_mnist(n_train=3000, n_test=N_TEST)
    return data.images_as_float(split.x_train), split.y_train, data.images_as_float(split.x_test), split.y_test


def _trained(tmp_path_factory, mnist, name, build):
    x, y, x_test, _ = mnist
    model = build()
    zoo.train_keras_classifier(model, x, y, epochs=3, seed=0)
    path = tmp_path_factory.mktemp(name) / f"{name}.onnx"
    save_model(to_onnx(model, x_test[:1]), path)
    return path


@pytest.fixture(scope="module")
def dnn_path(tmp_path_factory, mnist):
    return _trained(tmp_path_factory, mnist, "dnn", lambda: zoo.dnn(hidden=(128, 64)))


@pytest.fixture(scope="module")
def cnn_path(tmp_path_factory, mnist):
    return _trained(tmp_path_factory, mnist, "cnn", lambda: zoo.lenet1("relu"))


def _accuracy(path, mnist):
    _, _, x_test, y_test = mnist
    labels = predicted_labels(ort_session(path), x_test, 250)
    return labels, float(np.mean(labels == y_test))


VARIANTS = [dict(mode="dynamic"), dict(mode="dynamic", per_channel=True),
            *(dict(mode="static", calibration=c, per_channel=pc)
              for c in q.CALIBRATION_METHODS for pc in (False, True))]


@pytest.mark.parametrize("model", ["dnn", "cnn"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_each_variant_is_valid_runs_and_keeps_its_accuracy(model, variant, dnn_path, cnn_path, mnist, tmp_path):
    source = {"dnn": dnn_path, "cnn": cnn_path}[model]
    result = q.quantize(source, tmp_path / "q.onnx", mnist[0], n_calibration=128, **variant)
    onnx.checker.check_model(str(result.path), full_check=True)
    float_labels, float_accuracy = _accuracy(source, mnist)
    labels, accuracy = _accuracy(result.path, mnist)
    assert 100 * (float_accuracy - accuracy) <= MAX_ACCURACY_DROP
    assert np.mean(labels == float_labels) >= MIN_AGREEMENT
    assert result.size_bytes < source.stat().st_size
    assert result.kernels.integer, "ONNX Runtime runs no integer kernel"
    assert list(tmp_path.iterdir()) == [result.path]  # no staging folder left behind


def test_static_convolutions_run_as_integer_kernels_and_dynamic_ones_stay_float(cnn_path, mnist, tmp_path):
    static = q.quantize(cnn_path, tmp_path / "s.onnx", mnist[0], n_calibration=64)
    assert static.kernels.integer.get("QLinearConv") == 2 and "Conv" not in static.kernels.float_compute
    dynamic = q.quantize(cnn_path, tmp_path / "d.onnx", mode="dynamic")
    assert dynamic.kernels.float_compute.get("Conv") == 2
    assert "DynamicQuantizeMatMul" in dynamic.kernels.integer
    assert any("left in float by ONNX Runtime: Conv×2" in note for note in dynamic.notes)


def test_static_quantization_makes_the_dense_model_about_four_times_smaller(dnn_path, mnist, tmp_path):
    result = q.quantize(dnn_path, tmp_path / "s.onnx", mnist[0], n_calibration=64)
    assert dnn_path.stat().st_size / result.size_bytes > 3.5


def test_power_of_two_calibration_leaves_only_power_of_two_scales(cnn_path, mnist, tmp_path):
    result = q.quantize(cnn_path, tmp_path / "p.onnx", mnist[0], calibration="power_of_two", per_channel=True,
                        n_calibration=64)
    model = onnx.load(str(result.path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    scales = [inits[n.input[1]] for n in model.graph.node
              if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[1] in inits]
    assert len(scales) > 5
    for scale in scales:
        exponent = np.log2(scale.astype(np.float64))
        assert np.array_equal(exponent, np.round(exponent))


def test_snapping_keeps_a_layer_equal_up_to_the_coarser_rounding():
    """Weights are requantized with the new scale, int32 biases with input scale × weight scale."""
    from onnx import helper, TensorProto

    w = np.array([[0.3, -0.7], [0.05, 0.9]], np.float32)
    scale_x, scale_w = np.float32(0.011), np.float32(0.0071)
    wq = np.round(w / scale_w).astype(np.int8)
    bias = np.array([0.2, -0.1], np.float32)
    bq = np.round(bias / (scale_x * scale_w)).astype(np.int32)
    inits = [numpy_helper.from_array(a, n) for a, n in (
        (np.array(scale_x), "sx"), (np.array(0, np.uint8), "zx"), (wq, "wq"), (np.array(scale_w), "sw"),
        (np.array(0, np.int8), "zw"), (bq, "bq"), (np.array(scale_x * scale_w), "sb"), (np.array(0, np.int32), "zb"))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"]),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["bd"]),
             helper.make_node("Gemm", ["xd", "wd", "bd"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    snapped = q.snap_scales_to_powers_of_two(onnx.ModelProto.FromString(model.SerializeToString()))
    new = {t.name: numpy_helper.to_array(t) for t in snapped.graph.initializer}
    assert new["sx"] == 2.0 ** -6 and new["sw"] == 2.0 ** -7 and new["sb"] == 2.0 ** -13
    # requantized integers: off by at most half the old step (first rounding) plus half the new one
    assert np.abs(new["wq"] * new["sw"] - w).max() <= (scale_w + new["sw"]) / 2
    assert np.abs(new["bq"] * new["sb"] - bias).max() <= (scale_x * scale_w + new["sb"]) / 2
    x = np.array([[0.5, 0.25]], np.float32)
    y = ort_session(snapped).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x @ w + bias, atol=0.02)


def test_reduce_range_follows_vnni(monkeypatch, dnn_path, mnist, tmp_path):
    monkeypatch.setattr("onnxlab.reproducibility.has_vnni", lambda: False)
    result = q.quantize(dnn_path, tmp_path / "r.onnx", mnist[0], n_calibration=32)
    assert result.settings.reduce_range is True
    assert any("no VNNI" in note for note in result.notes)
    monkeypatch.setattr("onnxlab.reproducibility.has_vnni", lambda: True)
    assert q.QuantizationSettings().resolved().reduce_range is False


def test_the_cpu_feature_reader_agrees_with_proc_cpuinfo():
    from onnxlab.reproducibility import SPEED_RELEVANT_CPU_FLAGS, VNNI_CPU_FLAGS, cpu_extensions, has_vnni

    with open("/proc/cpuinfo") as f:
        flags = set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    assert cpu_extensions() == [flag for flag in SPEED_RELEVANT_CPU_FLAGS if flag in flags]
    assert has_vnni() == any(flag in flags for flag in VNNI_CPU_FLAGS)


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="int4"), "unknown mode 'int4'; known: dynamic, static"),
    (dict(calibration="kl"), "unknown calibration 'kl'; known: minmax, entropy, percentile, power_of_two"),
    (dict(n_calibration=0), "n_calibration must be >= 1"),
    (dict(mode="dynamic", op_types=("Conv",)), "ConvInteger kernel takes uint8 weights only"),
])
def test_bad_settings_are_refused_and_no_file_is_written(kwargs, message, dnn_path, mnist, tmp_path):
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        q.quantize(dnn_path, tmp_path / "out.onnx", mnist[0], **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_calibration_data_of_the_wrong_shape_names_the_input(dnn_path, tmp_path):
    with pytest.raises(InvalidArgument, match=r"shape \[4, 32, 32, 3\] does not fit input 'image' .* \['N', 28, 28, 1\]"):
        q.quantize(dnn_path, tmp_path / "out.onnx", np.zeros((4, 32, 32, 3), np.float32))
    with pytest.raises(InvalidArgument, match="needs calibration data"):
        q.quantize(dnn_path, tmp_path / "out.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_model_and_the_input_as_output_are_refused(dnn_path, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(OnnxlabError, match="junk.onnx: not an ONNX model"):
        q.quantize(junk, tmp_path / "out.onnx", mode="dynamic")
    before = dnn_path.read_bytes()
    with pytest.raises(InvalidArgument, match="would overwrite the input"):
        q.quantize(dnn_path, dnn_path, mode="dynamic")
    assert dnn_path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.onnx"]


def test_cli_quantizes_and_reports_kernels(cnn_path, mnist, tmp_path, capsys):
    np.save(tmp_path / "cal.npy", mnist[0][:64])
    out = tmp_path / "q.onnx"
    assert cli(["quantize", str(cnn_path), str(out), "--calibration", "entropy", "--per-channel",
                "--calibration-data", str(tmp_path / "cal.npy")]) == 0
    printed = capsys.readouterr().out
    assert "static-entropy-per-channel" in printed and "QLinearConv×2" in printed
    onnx.checker.check_model(str(out))


def test_cli_bad_input_is_one_error_line_and_no_file(cnn_path, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((3, 5), np.float32))
    assert cli(["quantize", str(cnn_path), str(tmp_path / "q.onnx"), "--calibration-data",
                str(tmp_path / "bad.npy")]) == 1
    assert capsys.readouterr().err.startswith("error: calibration data of shape [3, 5] does not fit")
    assert cli(["quantize", str(cnn_path), str(tmp_path / "q.onnx")]) == 1
    assert "needs --calibration-data" in capsys.readouterr().err
    assert not (tmp_path / "q.onnx").exists()


def test_an_onnx_snn_model_keeps_its_neuron_ops_and_its_accuracy(cnn_path, mnist, tmp_path):
    """quant_pre_process would inline the neuron functions and quantize their arithmetic: it is skipped, said so."""
    from onnxlab.snn import to_snn

    snn = to_snn(onnx.load(str(cnn_path)), "LIF", params={"amplitude": 0.01}, max_rates=100, intercepts=0)
    save_model(snn, tmp_path / "snn.onnx")
    result = q.quantize(tmp_path / "snn.onnx", tmp_path / "snn-int8.onnx", mnist[0], n_calibration=64)
    assert q.FUNCTIONS_NOT_PREPROCESSED in result.notes
    model = onnx.load(str(result.path))
    assert sum(n.op_type == "LIF" for n in model.graph.node) == 2 and model.functions
    float_labels, float_accuracy = _accuracy(tmp_path / "snn.onnx", mnist)
    labels, accuracy = _accuracy(result.path, mnist)
    assert 100 * (float_accuracy - accuracy) <= MAX_ACCURACY_DROP


def test_a_legacy_onnx_snn_file_is_refused_with_the_upgrade_hint(dnn_path, tmp_path):
    """The original tool's files (LIF in the default domain) fail the checker: the error says how to fix it."""
    model = onnx.load(str(dnn_path))
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "LIF"
    legacy = tmp_path / "legacy.onnx"
    onnx.save(model, str(legacy))
    with pytest.raises(OnnxlabError, match=r"invalid ONNX model: .*LIF.* `onnxlab upgrade .*legacy.onnx upgraded.onnx`"):
        q.quantize(legacy, tmp_path / "out.onnx", mode="dynamic")
    assert not (tmp_path / "out.onnx").exists()
