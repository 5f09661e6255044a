"""Synapses between layers (`Simulation.layer_synapse`): stored in the file, built, rendered, exported, and a lowpass."""
import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlab.errors import SNNError
from onnxlab.snn import Simulation, to_snn
from onnxlab.snn.codegen import run_script, to_nengo_code
from onnxlab.snn.from_nengo import from_nengo
from onnxlab.snn.simulate import simulate, verify
from onnxlab.snn.to_nengo import to_nengo
from tests.onnx_models import branching, mlp

nengo = pytest.importorskip("nengo")
RNG = np.random.default_rng(29)
TAU = 0.01


def _relay(simulation):
    """x (N, 1) -> MatMul 1 -> Relu -> MatMul 1 -> y: one RectifiedLinear neuron passing its input on."""
    one = numpy_helper.from_array(np.ones((1, 1), np.float32), "one")
    nodes = [helper.make_node("MatMul", ["x", "one"], ["a"]), helper.make_node("Relu", ["a"], ["h"], name="relu"),
             helper.make_node("MatMul", ["h", "one"], ["y"])]
    graph = helper.make_graph(nodes, "relay", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return to_snn(model, "RectifiedLinear", simulation=simulation)


def test_a_step_through_the_layer_synapse_follows_the_lowpass_curve():
    """A unit step leaving a neuron layer reaches the output as 1 - exp(-t / tau) (t = k dt, zero-order hold)."""
    simulation = Simulation(dt=0.001, n_steps=40, synapse=None, layer_synapse=TAU)
    y = simulate(to_nengo(_relay(simulation)), np.ones((1, 1), np.float32), n_steps=40)["y"][0, :, 0]
    t = np.arange(40) * simulation.dt
    np.testing.assert_allclose(y, 1 - np.exp(-t / TAU), atol=1e-6)
    instantaneous = simulate(to_nengo(_relay(dataclasses.replace(simulation, layer_synapse=None))),
                             np.ones((1, 1), np.float32), n_steps=40)["y"][0, :, 0]
    np.testing.assert_allclose(instantaneous, 1.0, atol=1e-6)


def test_layer_synapse_round_trips_through_the_file(tmp_path):
    snn = to_snn(mlp(), "LIF", max_rates=100, intercepts=0, simulation=Simulation(layer_synapse=0.005))
    onnx.save(snn, tmp_path / "m.onnx")
    assert Simulation.read(onnx.load(str(tmp_path / "m.onnx"))).layer_synapse == 0.005
    built = to_nengo(tmp_path / "m.onnx")
    from_neurons = [c for c in built.network.all_connections if isinstance(c.pre_obj, nengo.ensemble.Neurons)]
    assert from_neurons and all(c.synapse == nengo.Lowpass(0.005) for c in from_neurons)
    assert all(c.synapse is None for c in built.network.all_connections if c not in from_neurons)
    exported = from_nengo(built)
    assert Simulation.read(exported).layer_synapse == 0.005
    x = RNG.normal(size=(3, 6)).astype(np.float32)
    np.testing.assert_array_equal(simulate(to_nengo(exported), x, n_steps=20)["y"], simulate(built, x, n_steps=20)["y"])


def test_rate_verify_ignores_the_layer_synapse():
    snn = to_snn(branching(), "LIF", max_rates=150, intercepts=-0.2, simulation=Simulation(layer_synapse=0.005))
    verify(snn, RNG.normal(size=(3, 2, 6, 6)).astype(np.float32))


def test_generated_script_has_the_same_synapses(tmp_path):
    onnx.save(to_snn(branching(), "LIF", max_rates=150, intercepts=-0.2, simulation=Simulation(layer_synapse=0.005)),
              tmp_path / "m.onnx")
    code = to_nengo_code(tmp_path / "m.onnx")
    assert "synapse=0.005)" in code
    (tmp_path / "net.py").write_text(code)
    built = to_nengo(tmp_path / "m.onnx")
    generated = run_script(tmp_path / "net.py", built)
    x = RNG.normal(size=(2, 2, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(simulate(generated, x, n_steps=10)["y"], simulate(built, x, n_steps=10)["y"])


def test_from_nengo_refuses_synapses_it_cannot_store():
    with nengo.Network() as net:
        a = nengo.Node(np.zeros(2), label="a")
        e1 = nengo.Ensemble(2, 1, gain=np.ones(2), bias=np.zeros(2))
        e2 = nengo.Ensemble(2, 1, gain=np.ones(2), bias=np.zeros(2))
        out = nengo.Node(size_in=2, label="out")
        nengo.Connection(a, e1.neurons, synapse=None)
        nengo.Connection(e1.neurons, e2.neurons, synapse=0.005)
        nengo.Connection(e2.neurons, out, synapse=0.01)
    with pytest.raises(SNNError, match="different synapses"):
        from_nengo(net, {"a": a}, {"out": out})


def test_negative_layer_synapse_is_refused():
    with pytest.raises(SNNError, match="layer_synapse must be >= 0"):
        Simulation(layer_synapse=-0.1)


def test_cli_writes_the_layer_synapse(tmp_path):
    import subprocess
    import sys

    onnx.save(mlp(), tmp_path / "m.onnx")
    proc = subprocess.run([sys.executable, "-m", "onnxlab.cli", "to-snn", str(tmp_path / "m.onnx"),
                           str(tmp_path / "s.onnx"), "--layer-synapse", "0.005"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert Simulation.read(onnx.load(str(tmp_path / "s.onnx"))).layer_synapse == 0.005
