"""Generated Nengo code: it runs, builds the same network as to_nengo, and gives the same outputs."""
import subprocess
import sys

import numpy as np
import onnx
import pytest

from onnxlab.errors import SNNError
from onnxlab.snn import to_snn
from onnxlab.snn.codegen import run_script, to_nengo_code
from onnxlab.snn.parameters import nengo_parameters
from onnxlab.snn.simulate import simulate
from onnxlab.snn.to_nengo import to_nengo
from tests.onnx_models import branching, keras_style_cnn, mlp, one_channel_net

nengo = pytest.importorskip("nengo")
RNG = np.random.default_rng(11)


def _structure(network):
    """Object types, sizes, seeds, and which objects NengoDL may train."""
    return ([(type(c.transform).__name__, network.config[c].trainable) for c in network.all_connections],
            [(e.n_neurons, type(e.neuron_type).__name__, e.seed, network.config[e].trainable)
             for e in network.all_ensembles],
            [n.size_in for n in network.all_nodes])


@pytest.mark.filterwarnings("ignore:.*max pooling replaced by average pooling")
@pytest.mark.parametrize("make", [mlp, lambda: branching(pool="MaxPool", batch_norm=True), keras_style_cnn,
                                  one_channel_net], ids=["dense", "branching", "keras-style", "channels-last"])
def test_generated_script_builds_the_same_network(tmp_path, make):
    model = to_snn(make(), "LIF", params={"amplitude": 0.05}, max_rates=150, intercepts=-0.2)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    script = tmp_path / "net.py"
    script.write_text(to_nengo_code(path))
    built = to_nengo(path)
    generated = run_script(script, built)
    assert "(filtered)" not in " ".join(p.label for p in generated.outputs.values())
    assert _structure(generated.network) == _structure(built.network)
    expected, actual = nengo_parameters(built.network), nengo_parameters(generated.network)
    assert expected.keys() == actual.keys()
    for role, value in expected.items():
        np.testing.assert_array_equal(actual[role], value, err_msg=role)
    x = RNG.normal(size=(3, *built.input_shapes[next(iter(built.input_shapes))])).astype(np.float32)
    np.testing.assert_array_equal(simulate(generated, x, n_steps=15)[next(iter(built.outputs))],
                                  simulate(built, x, n_steps=15)[next(iter(built.outputs))])


def test_script_is_readable_nengo_code(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(to_snn(mlp(), "LIF", params={"amplitude": 0.01}), path)
    code = to_nengo_code(path)
    assert "nengo.Ensemble(5, 1, neuron_type=nengo.LIF(tau_rc=0.02, tau_ref=0.002, min_voltage=0.0, amplitude=0.01)" in code
    assert "nengo.Dense((5, 6), init=layout.dense_to_gemm(W['W0']))" in code
    compile(code, "net.py", "exec")


def test_proto_needs_the_file_path():
    with pytest.raises(SNNError, match="needs onnx_path"):
        to_nengo_code(to_snn(mlp()))


def test_cli_prints_the_script(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(to_snn(mlp()), path)
    proc = subprocess.run([sys.executable, "-m", "onnxlab.cli", "to-nengo-code", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('"""Nengo network of') and "with nengo.Network(" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "onnxlab.cli", "to-nengo-code", str(tmp_path / "none.onnx")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error:")
