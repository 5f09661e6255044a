"""The inference system: routing to the right engine, input checks, and one clear error for each bad file."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlab.errors import OnnxlabError
from onnxlab.formats import ONNX_OPSET
from onnxlab.inference import check_inputs, info, onnxruntime_max_opset, run
from onnxlab.runtime import ort_session, run_single
from onnxlab.snn import Simulation, to_snn
from tests.onnx_models import legacy_model, mlp

RNG = np.random.default_rng(9)
X6 = RNG.normal(size=(5, 6)).astype(np.float32)


def test_dl_runs_on_onnxruntime():
    model = mlp()
    result = run(model, X6)
    assert (result.kind, result.engine) == ("DL", "onnxruntime")
    np.testing.assert_array_equal(result.outputs["y"], run_single(ort_session(model), X6)[0])
    assert result.seconds > 0


def test_ml_runs_on_onnxruntime_with_scikit_learns_answers():
    from sklearn.linear_model import LogisticRegression

    from onnxlab import to_onnx

    y = (X6[:, 0] > 0).astype(np.int64)
    y[:2] = [0, 1]
    clf = LogisticRegression().fit(X6, y)
    result = run(to_onnx(clf, X6[:1]), X6)
    assert (result.kind, result.engine) == ("ML", "onnxruntime")
    np.testing.assert_array_equal(result.outputs["label"], clf.predict(X6))


def test_snn_runs_in_nengo_and_rate_neurons_match_onnxruntime():
    snn = to_snn(mlp(), "RectifiedLinear", simulation=Simulation(n_steps=3, synapse=None))
    result = run(snn, X6)
    assert (result.kind, result.engine) == ("SNN", "nengo-dl")
    assert result.series["y"].shape == (5, 3, 4)
    np.testing.assert_allclose(result.outputs["y"], run_single(ort_session(snn), X6)[0], rtol=1e-5, atol=1e-5)


def test_snn_settings_come_from_the_file_unless_overridden():
    snn = to_snn(mlp(), "LIF", params={"amplitude": 0.01}, simulation=Simulation(n_steps=4, synapse=0.01))
    assert run(snn, X6).series["y"].shape == (5, 4, 4)
    result = run(snn, X6, n_steps=7, synapse=None)
    assert result.series["y"].shape == (5, 7, 4) and any("overridden" in n for n in result.notes)


def test_snn_runs_spiking_in_onnxruntime_alone_and_agrees_with_nengo_dl():
    snn = to_snn(mlp(), "LIF", gain=3.0, bias=0.5, simulation=Simulation(n_steps=25, synapse=0.005))
    dl = run(snn, X6)
    ort = run(snn, X6, engine="onnxruntime-spiking")
    assert (ort.kind, ort.engine) == ("SNN", "onnxruntime-spiking") and ort.series["y"].shape == (5, 25, 4)
    # both start from Nengo's seeded initial voltages; NengoDL's float32 arithmetic may differ in the last bits
    np.testing.assert_allclose(ort.series["y"], dl.series["y"], rtol=1e-4, atol=1e-4)
    at_rest = run(snn, X6, engine="onnxruntime-spiking", initial_state="rest", n_steps=5)
    assert at_rest.series["y"].shape == (5, 5, 4) and any("overridden" in n for n in at_rest.notes)


@pytest.mark.parametrize("engine, message", [
    ("tensorflow", r"unknown engine 'tensorflow'; engines: onnxruntime, nengo-dl, onnxruntime-spiking"),
    ("onnxruntime-spiking", r"is a DL model; engine 'onnxruntime-spiking' runs SNN models \(for DL: onnxruntime\)"),
])
def test_an_engine_that_cannot_run_the_model_is_refused_by_name(engine, message):
    with pytest.raises(OnnxlabError, match=message):
        run(mlp(), X6, engine=engine)


def test_legacy_snn_is_upgraded_and_says_so():
    for engine in ("nengo-dl", "onnxruntime-spiking"):
        result = run(legacy_model(), X6, engine=engine)
        assert result.kind == "SNN" and any("legacy" in n for n in result.notes)


@pytest.mark.parametrize("inputs, message", [
    (X6.astype(np.float64), r"input 'x' expects float \(float32\), got float64"),
    (X6[:, :5], r"expects shape \(\?, 6\), got \(5, 5\) \(axis 1: 5 != 6\)"),
    (X6[None], r"expects 2 dimensions \(\?, 6\), got shape \(1, 5, 6\)"),
    ({"x": X6, "z": X6}, r"unexpected \['z'\]"),
    ({"z": X6}, r"missing \['x'\]"),
])
def test_inputs_are_checked(inputs, message):
    with pytest.raises(OnnxlabError, match=message):
        check_inputs(mlp(), inputs, "mlp.onnx")


def _identity(opset=ONNX_OPSET, node=None, initializers=()):
    node = node or helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])], list(initializers))
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(node.domain, 1)] if node.domain else [])
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8
    return model


def test_opset_newer_than_onnxruntime_is_refused():
    newest = onnxruntime_max_opset()
    assert newest >= ONNX_OPSET
    run(_identity(newest), np.zeros((1, 2), np.float32))
    with pytest.raises(OnnxlabError, match=f"imports ai.onnx opset {newest + 1}, newer than onnxruntime .* "
                                           f"supports \\(up to {newest}\\)"):
        run(_identity(newest + 1), np.zeros((1, 2), np.float32))


def test_unknown_custom_domain_names_the_node():
    model = _identity(node=helper.make_node("Frobnicate", ["x"], ["y"], name="mystery", domain="com.example"))
    with pytest.raises(OnnxlabError, match="node 'mystery' uses op 'Frobnicate' of the custom domain 'com.example'"):
        run(model, np.zeros((1, 2), np.float32))


def test_missing_external_data_is_named(tmp_path):
    onnx.save_model(mlp(), tmp_path / "m.onnx", save_as_external_data=True, size_threshold=0, location="m.weights")
    assert run(tmp_path / "m.onnx", X6).engine == "onnxruntime"
    (tmp_path / "m.weights").unlink()
    with pytest.raises(OnnxlabError, match=r"m.onnx: initializer 'W0' keeps its data in 'm.weights', which is missing"):
        run(tmp_path / "m.onnx", X6)


def test_declared_dimensions_too_large_to_allocate():
    huge = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 20, 1 << 20])
    huge.raw_data = b"\0" * 16
    model = _identity(node=helper.make_node("Add", ["x", "w"], ["y"]), initializers=[huge])
    with pytest.raises(OnnxlabError, match=r"initializer 'w' declares dims \[1048576, 1048576\] \(4096 GiB\)"):
        run(model, np.zeros((1, 2), np.float32), )


def test_truncated_tensor_data_is_named():
    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    w.raw_data = w.raw_data[:10]
    model = _identity(node=helper.make_node("Add", ["x", "w"], ["y"]), initializers=[w])
    with pytest.raises(OnnxlabError, match=r"initializer 'w' declares dims \[4, 2\] \(32 bytes\) but stores 10 bytes"):
        run(model, np.zeros((1, 2), np.float32))


def test_engine_failures_become_one_line():
    bad = _identity(node=helper.make_node("Reshape", ["x", "shape"], ["y"]),
                    initializers=[numpy_helper.from_array(np.array([3, 5], np.int64), "shape")])
    with pytest.raises(OnnxlabError, match="onnxruntime failed while running it") as err:
        run(bad, np.zeros((1, 2), np.float32))
    assert "\n" not in str(err.value) and "onnxruntime_src" not in str(err.value)


def test_info_summarises_a_file(tmp_path):
    onnx.save(to_snn(mlp(), "LIF", params={"amplitude": 0.01}), tmp_path / "s.onnx")
    summary = info(tmp_path / "s.onnx")
    assert summary["kind"] == "SNN" and summary["parameters"] == 6 * 5 + 5 + 5 * 4 + 4 + 2
    assert summary["inputs"] == [dict(name="x", type="float", dims="(?, 6)")]
    assert summary["size_bytes"] == (tmp_path / "s.onnx").stat().st_size
