"""onnxlab.snn.deployment: fresh-process first predictions, installed sizes; and the prebuilt runners both engines
offer for timing inference apart from the build (`SpikingRunner`, `predictor`)."""
import numpy as np
import pytest

from onnxlab.errors import OnnxlabError
from onnxlab.formats import save_model
from onnxlab.snn import to_snn
from onnxlab.snn.deployment import FRAMEWORK_MODULES, first_prediction, first_predictions, installed_size
from onnxlab.snn.simulate import predictor, simulate
from onnxlab.snn.simulation import Simulation
from onnxlab.snn.spiking_onnx import SpikingRunner, run_spiking, to_spiking_onnx
from onnxlab.snn.to_nengo import to_nengo
from tests import onnx_models


@pytest.fixture
def lif_mlp(monkeypatch):
    monkeypatch.setattr(onnx_models, "RNG", np.random.default_rng(5))
    return to_snn(onnx_models.mlp(), "LIF", gain=4.0, simulation=Simulation(n_steps=12, synapse=0.005))


def _dist(root, name, requires=(), files=None):
    """A fake installed distribution ``name`` under ``root``: its files and its install record."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
    record = []
    for path, size in (files or {}).items():
        (root / path).write_bytes(b"x" * size)
        record.append(f"{path},,")
    (info / "RECORD").write_text("\n".join([*record, f"{info.name}/METADATA,,"]) + "\n")
    return len((info / "METADATA").read_bytes())


def test_installed_size_follows_requirements_and_their_markers(tmp_path, monkeypatch):
    meta = _dist(tmp_path, "fake-app", ["fake-lib>=1", 'fake-dev; extra == "dev"',
                                        'fake-win; sys_platform == "win32"', "fake-absent"], {"app.py": 100})
    meta += _dist(tmp_path, "fake-lib", [], {"lib.so": 1000})
    _dist(tmp_path, "fake-dev", [], {"dev.py": 50_000})
    _dist(tmp_path, "fake-win", [], {"win.dll": 70_000})
    monkeypatch.syspath_prepend(str(tmp_path))

    size = installed_size(["fake_app"])
    assert size.packages == ("fake-app", "fake-lib")  # no extra, no other platform
    assert size.missing == ("fake-absent",)
    assert size.bytes == 100 + 1000 + meta
    with pytest.raises(OnnxlabError, match="'no-such-dist' is not installed"):
        installed_size(["no-such-dist"])


def test_installed_size_of_onnxruntime_includes_numpy_and_is_far_below_tensorflow():
    runtime, numpy_only = installed_size(["onnxruntime"]), installed_size(["numpy"])
    assert {"numpy", "onnxruntime", "protobuf"} <= set(runtime.packages)
    assert numpy_only.packages == ("numpy",)
    assert numpy_only.bytes < runtime.bytes < installed_size(["tensorflow"]).bytes


def test_spiking_runner_built_once_equals_run_spiking_and_a_whole_batch(lif_mlp):
    compiled = to_spiking_onnx(lif_mlp)
    x = np.random.default_rng(2).uniform(-1, 1, (13, 6)).astype(np.float32)
    runner = SpikingRunner(compiled, batch_size=3, workers=2)
    first, again = runner(x), runner(x[:5])
    (expected,) = run_spiking(compiled, x, batch_size=13, workers=1).values()
    np.testing.assert_array_equal(first["y"], expected)
    np.testing.assert_array_equal(again["y"], expected[:5])
    with pytest.raises(OnnxlabError, match="at least one sample"):
        runner(x[:0])
    with pytest.raises(OnnxlabError, match="batch_size >= 1, got 0"):
        SpikingRunner(compiled, batch_size=0)


def test_predictor_built_once_equals_simulate(lif_mlp):
    network = to_nengo(lif_mlp)
    x = np.random.default_rng(3).uniform(-1, 1, (7, 6)).astype(np.float32)
    expected = simulate(network, x, minibatch_size=4, filtered=True)["y"]
    with predictor(network, minibatch_size=4, filtered=True) as predict:
        np.testing.assert_allclose(predict(x)["y"], expected, rtol=0, atol=1e-6)
        np.testing.assert_allclose(predict(x[:3])["y"], expected[:3], rtol=0, atol=1e-6)


def test_first_prediction_in_fresh_processes_agrees_and_the_onnxruntime_one_loads_no_framework(lif_mlp, tmp_path):
    snn_path = save_model(lif_mlp, tmp_path / "mlp_snn.onnx")
    compiled_path = save_model(to_spiking_onnx(lif_mlp, initial_state="nengo"), tmp_path / "mlp_spiking.onnx")
    x = np.random.default_rng(4).uniform(-1, 1, (3, 6)).astype(np.float32)
    runs = first_predictions({"onnxruntime-spiking": compiled_path, "nengo-dl": snn_path}, x, repeats=1,
                             workdir=tmp_path)
    (ort,), (dl,) = runs["onnxruntime-spiking"], runs["nengo-dl"]
    (scores,) = run_spiking(compiled_path, x[:1]).values()
    assert np.ptp(scores[0, -1]) > 0  # the outputs differ, so the labels say something
    assert ort.label == dl.label == int(scores[0, -1].argmax())
    assert ort.frameworks_loaded == ()
    assert {"tensorflow", "nengo_dl", "onnxlab"} <= set(dl.frameworks_loaded) <= set(FRAMEWORK_MODULES)
    for run in (ort, dl):
        assert min(run.imports_s, run.build_s, run.run_s) > 0 and run.peak_bytes > 10 * 2**20
    assert sorted(tmp_path.iterdir()) == sorted([snn_path, compiled_path])  # the images file is cleaned up


def test_first_prediction_names_the_engine_and_a_failing_file(tmp_path):
    x = np.zeros((1, 6), np.float32)
    with pytest.raises(OnnxlabError, match="no fresh-process measurement for engine 'tflite'"):
        first_prediction("tflite", tmp_path / "m.onnx", x, workdir=tmp_path)
    missing = tmp_path / "absent.onnx"
    with pytest.raises(OnnxlabError, match=f"first prediction of {missing} on onnxruntime-spiking failed"):
        first_prediction("onnxruntime-spiking", missing, x, workdir=tmp_path)
