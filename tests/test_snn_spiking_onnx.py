"""onnxlab.snn.to_spiking_onnx: an ONNX-SNN model compiled to a plain ONNX time loop spikes as nengo.Simulator does.

The reference is `nengo.Simulator` at 32-bit precision on the network `to_nengo` builds from the same file, every
neuron starting at voltage 0. Spikes of recorded layers must be identical at every step; outputs (sums of spikes
through the next layer's weights, in another summation order) agree to float32 rounding.
"""
import subprocess
import sys

import numpy as np
import onnx
import pytest

from onnxlab.errors import SNNError
from onnxlab.formats import ONNX_SNN_DOMAIN
from onnxlab.runtime import ort_session
from onnxlab.snn import to_snn, upgrade
from onnxlab.snn.converter_compare import zero_initial_voltage
from onnxlab.snn.simulation import Simulation
from onnxlab.snn.spiking_onnx import SPIKES_SUFFIX, to_spiking_onnx
from onnxlab.snn.to_nengo import to_nengo
from tests import onnx_models

#: Output agreement: max |ours - nengo| <= OUTPUT_RTOL * max |nengo| (float32 summation order only).
OUTPUT_RTOL = 1e-5
N_STEPS = 40


@pytest.fixture(autouse=True)
def fixed_weights(monkeypatch):
    """The hand-built models draw their weights from a module-level generator: fix it, so what spikes here does not
    depend on which tests ran before."""
    monkeypatch.setattr(onnx_models, "RNG", np.random.default_rng(12))


@pytest.fixture(autouse=True)
def float32_nengo():
    import nengo

    before = nengo.rc["precision"]["bits"]
    nengo.rc["precision"]["bits"] = "32"
    yield
    nengo.rc["precision"]["bits"] = before


def _nengo(snn, x, layers, n_steps=N_STEPS, at_rest=True):
    """nengo.Simulator per sample: (filtered output, raw output, {layer: spikes}), batch first."""
    import nengo

    filtered, raw, spikes = [], [], {name: [] for name in layers}
    for sample in x:
        model = to_nengo(snn)
        if at_rest:
            zero_initial_voltage(model.network)
        (node,) = model.inputs.values()
        node.output = sample.ravel()
        with model.network:
            probes = {name: nengo.Probe(model.ensembles[name].neurons) for name in layers}
        with nengo.Simulator(model.network, dt=model.simulation.dt, progress_bar=False) as sim:
            sim.run_steps(n_steps)
        filtered.append(sim.data[next(iter(model.filtered_outputs.values()))])
        raw.append(sim.data[next(iter(model.outputs.values()))])
        for name in layers:  # in the ONNX tensor's order, as the compiled file records them
            spikes[name].append(model.in_onnx_order(name, sim.data[probes[name]]))
    return np.array(filtered), np.array(raw), {k: np.array(v) for k, v in spikes.items()}


def _ours(snn, x, layers, **options):
    compiled = to_spiking_onnx(snn, record=layers, **options)
    session = ort_session(compiled)
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {session.get_inputs()[0].name: x})))
    return compiled, outputs


def _neuron_names(snn):
    return [n.name for n in snn.graph.node if n.domain == ONNX_SNN_DOMAIN]


NETS = {
    "dense": (lambda: onnx_models.mlp(sizes=(6, 16, 12, 4)), (6,)),
    # conv + residual Add + Concat + average pool + Gemm, H = W = 6, 2 -> 3 -> 5 channels
    "conv-branching": (lambda: onnx_models.branching(), (2, 6, 6)),
    "conv-maxpool-batchnorm": (lambda: onnx_models.branching(pool="MaxPool", batch_norm=True), (2, 6, 6)),
}


NEURON_SETTINGS = {"LIF": dict(gain=3.0, bias=0.5, params={"amplitude": 0.01}),
                   "SpikingRectifiedLinear": dict(gain=40.0, params={"amplitude": 0.025})}
CASES = [("dense", "LIF"), ("dense", "SpikingRectifiedLinear"), ("conv-branching", "LIF"),
         ("conv-branching", "SpikingRectifiedLinear"), ("conv-maxpool-batchnorm", "LIF")]


@pytest.mark.parametrize("net,neuron", CASES, ids=[f"{n}-{t}" for n, t in CASES])
def test_spikes_equal_nengo_simulator_at_every_step(net, neuron):
    make, shape = NETS[net]
    settings = NEURON_SETTINGS[neuron]
    snn = to_snn(make(), neuron, simulation=Simulation(n_steps=N_STEPS, synapse=0.01), **settings)
    layers = _neuron_names(snn)
    x = np.random.default_rng(3).uniform(-1, 1, (3, *shape)).astype(np.float32)
    compiled, ours = _ours(snn, x, layers)
    filtered, raw, spikes = _nengo(snn, x, layers)
    fired = 0
    for name in layers:
        got = ours[name + SPIKES_SUFFIX].reshape(spikes[name].shape)
        np.testing.assert_array_equal(got, spikes[name], err_msg=f"{net}/{neuron}: spikes of {name}")
        fired += int((got > 0).sum())
    assert fired > 50, "the test must make neurons spike"
    (out_name,) = [o.name for o in compiled.graph.output if not o.name.endswith(SPIKES_SUFFIX)]
    assert np.abs(ours[out_name].reshape(filtered.shape) - filtered).max() <= OUTPUT_RTOL * np.abs(filtered).max()
    assert np.abs(ours[out_name][:, 1:] - ours[out_name][:, :-1]).max() > 0  # the output moves over time
    del raw


LAYER_SYNAPSE_CASES = [("dense", "LIF"), ("conv-branching", "SpikingRectifiedLinear"), ("conv-maxpool-batchnorm", "LIF")]


@pytest.mark.parametrize("net,neuron", LAYER_SYNAPSE_CASES, ids=[f"{n}-{t}" for n, t in LAYER_SYNAPSE_CASES])
def test_a_layer_synapse_filters_what_the_next_layers_read_as_nengo_connections_do(net, neuron):
    make, shape = NETS[net]
    settings = NEURON_SETTINGS[neuron]
    simulation = Simulation(n_steps=N_STEPS, synapse=0.01, layer_synapse=0.004)
    snn = to_snn(make(), neuron, simulation=simulation, **settings)
    layers = _neuron_names(snn)
    x = np.random.default_rng(3).uniform(-1, 1, (3, *shape)).astype(np.float32)
    compiled, ours = _ours(snn, x, layers)
    filtered, _, spikes = _nengo(snn, x, layers)
    fired = 0
    for name in layers:  # Nengo filters after each connection's weights, the loop before: rounding apart, equal
        got = ours[name + SPIKES_SUFFIX].reshape(spikes[name].shape)
        np.testing.assert_array_equal(got, spikes[name], err_msg=f"{net}/{neuron}: spikes of {name}")
        fired += int((got > 0).sum())
    assert fired > 50, "the test must make neurons spike"
    (out_name,) = [o.name for o in compiled.graph.output if not o.name.endswith(SPIKES_SUFFIX)]
    assert np.abs(ours[out_name].reshape(filtered.shape) - filtered).max() <= OUTPUT_RTOL * np.abs(filtered).max()
    # and the synapse matters: without it the same file spikes otherwise
    unfiltered = to_snn(make(), neuron, simulation=Simulation(n_steps=N_STEPS, synapse=0.01), **settings)
    _, plain = _ours(unfiltered, x, layers)
    assert any(not np.array_equal(plain[n + SPIKES_SUFFIX], ours[n + SPIKES_SUFFIX]) for n in layers[1:])
    assert Simulation.read(compiled).layer_synapse == 0.004


def test_max_pooling_is_averaged_as_nengo_builds_it_or_kept_or_refused():
    snn = to_snn(onnx_models.branching(pool="MaxPool"), "LIF", gain=3.0, bias=0.5)
    averaged = to_spiking_onnx(snn)
    loop = next(n for n in averaged.graph.node if n.op_type == "Loop")
    body_ops = [n.op_type for n in loop.attribute[0].g.node]
    assert "AveragePool" in body_ops and "MaxPool" not in body_ops
    assert "max pooling replaced by average pooling" in averaged.doc_string
    kept = to_spiking_onnx(snn, max_pool="max")
    assert "MaxPool" in [n.op_type for n in next(n for n in kept.graph.node if n.op_type == "Loop").attribute[0].g.node]
    with pytest.raises(SNNError, match="node 'pool' \\(MaxPool\\): Nengo averages instead"):
        to_spiking_onnx(snn, max_pool="error")


@pytest.mark.parametrize("neuron", ["LIF", "SpikingRectifiedLinear"])
def test_nengos_seeded_initial_voltages_are_reproduced(neuron):
    snn = to_snn(onnx_models.branching(), neuron, simulation=Simulation(n_steps=N_STEPS, synapse=0.01, seed=7),
                 **NEURON_SETTINGS[neuron])
    layers = _neuron_names(snn)
    x = np.random.default_rng(9).uniform(-1, 1, (2, 2, 6, 6)).astype(np.float32)
    _, ours = _ours(snn, x, layers, initial_state="nengo")
    _, _, spikes = _nengo(snn, x, layers, at_rest=False)
    _, at_rest = _ours(snn, x, layers)
    for name in layers:
        np.testing.assert_array_equal(ours[name + SPIKES_SUFFIX].reshape(spikes[name].shape), spikes[name])
    # and the seeded start is not the resting one: the first spikes come earlier
    assert any((ours[n + SPIKES_SUFFIX][:, :5] > 0).sum() > (at_rest[n + SPIKES_SUFFIX][:, :5] > 0).sum()
               for n in layers)


def test_the_refractory_path_and_the_min_voltage_clip_are_taken_exactly():
    # a hard drive makes LIF neurons spike nearly every refractory period; a negative drive pushes voltages below a
    # negative min_voltage floor
    snn = to_snn(onnx_models.mlp(sizes=(6, 16, 4)), "LIF", gain=25.0, bias=0.0,
                 params={"min_voltage": -0.5, "tau_ref": 0.005}, simulation=Simulation(n_steps=60, synapse=None))
    layers = _neuron_names(snn)
    x = np.random.default_rng(4).uniform(-1, 1, (4, 6)).astype(np.float32)
    _, ours = _ours(snn, x, layers, n_steps=60)
    _, raw, spikes = _nengo(snn, x, layers, n_steps=60)
    got = ours[layers[0] + SPIKES_SUFFIX].reshape(spikes[layers[0]].shape)
    np.testing.assert_array_equal(got, spikes[layers[0]])
    per_neuron = (got > 0).sum(axis=1)
    assert per_neuron.max() >= 60 // 6, "some neuron must fire at the refractory limit (a spike every ~6 steps)"
    (out,) = [v for k, v in ours.items() if not k.endswith(SPIKES_SUFFIX)]
    assert np.abs(out.reshape(raw.shape) - raw).max() <= OUTPUT_RTOL * np.abs(raw).max()


def test_a_time_varying_input_is_read_one_step_at_a_time_as_a_nengo_node_would_give_it():
    import nengo

    n_steps, dt = 30, 0.001
    snn = to_snn(onnx_models.mlp(sizes=(6, 16, 4)), "LIF", gain=3.0, bias=0.5,
                 simulation=Simulation(n_steps=n_steps, synapse=None))
    layer = _neuron_names(snn)[0]
    rng = np.random.default_rng(8)
    x = rng.uniform(-1, 1, (2, n_steps, 6)).astype(np.float32)
    x[:, n_steps // 2:] *= -1  # the drive reverses half-way: a constant presentation could not match
    _, ours = _ours(snn, x, [layer], time_varying_input=True)
    for i, sequence in enumerate(x):
        model = to_nengo(snn)
        zero_initial_voltage(model.network)
        (node,) = model.inputs.values()
        node.output = lambda t, seq=sequence: seq[int(round(t / dt)) - 1]  # step k (t = k dt) shows x[:, k - 1]
        with model.network:
            probe = nengo.Probe(model.ensembles[layer].neurons)
        with nengo.Simulator(model.network, dt=dt, progress_bar=False) as sim:
            sim.run_steps(n_steps)
        np.testing.assert_array_equal(ours[layer + SPIKES_SUFFIX][i], model.in_onnx_order(layer, sim.data[probe]))
        (out,) = [v for k, v in ours.items() if not k.endswith(SPIKES_SUFFIX)]
        reference = sim.data[next(iter(model.outputs.values()))]
        assert np.abs(out[i] - reference).max() <= OUTPUT_RTOL * np.abs(reference).max()
    assert (ours[layer + SPIKES_SUFFIX] > 0).sum() > 20


def test_the_output_synapse_lags_one_step_as_nengo_probes_do():
    snn = to_snn(onnx_models.mlp(sizes=(6, 8, 3)), "LIF", gain=3.0, bias=0.5,
                 simulation=Simulation(n_steps=20, synapse=0.005))
    x = np.random.default_rng(5).uniform(-1, 1, (1, 6)).astype(np.float32)
    _, filtered_ours = _ours(snn, x, [])
    _, raw_ours = _ours(snn, x, [], synapse=None)
    (filtered,) = filtered_ours.values()
    (raw,) = raw_ours.values()
    a = np.float32(np.exp(-0.001 / 0.005))
    expected = np.zeros_like(raw)
    for t in range(1, raw.shape[1]):  # the filter at step t has seen the raw outputs up to t - 1
        expected[:, t] = a * expected[:, t - 1] + (np.float32(1) - a) * raw[:, t - 1]
    np.testing.assert_allclose(filtered, expected, rtol=1e-5, atol=1e-6)  # the lag, not the last bit
    assert np.all(filtered[:, 0] == 0)


@pytest.mark.parametrize("neuron", ["RectifiedLinear", "LIFRate", "SoftLIFRate"])
def test_rate_neurons_step_as_their_rate(neuron):
    snn = to_snn(onnx_models.mlp(sizes=(6, 8, 3)), neuron, gain=2.0, bias=1.0, simulation=Simulation(n_steps=5))
    x = np.random.default_rng(6).uniform(-1, 1, (4, 6)).astype(np.float32)
    _, ours = _ours(snn, x, [], synapse=None)
    (steps,) = ours.values()
    rate = ort_session(snn).run(None, {"x": x})[0]
    for t in range(5):
        np.testing.assert_allclose(steps[:, t], rate, rtol=1e-6, atol=1e-6)


def test_the_compiled_model_is_plain_onnx_and_runs_without_tensorflow_or_nengo(tmp_path):
    snn = to_snn(onnx_models.branching(), "LIF", gain=3.0, bias=0.5, simulation=Simulation(n_steps=10))
    compiled = to_spiking_onnx(snn)
    onnx.checker.check_model(compiled, full_check=True)
    assert not compiled.functions and {o.domain for o in compiled.opset_import} <= {"", "ai.onnx"}
    assert all(n.domain in ("", "ai.onnx") for n in compiled.graph.node)
    path = tmp_path / "spiking.onnx"
    onnx.save(compiled, str(path))
    x = np.random.default_rng(7).uniform(-1, 1, (2, 2, 6, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = ort_session(compiled).run(None, {"x": x})[0]
    script = (
        "import sys\n"
        "for banned in ('tensorflow', 'nengo', 'nengo_dl', 'onnxlab', 'keras'):\n"
        "    sys.modules[banned] = None  # importing any of them now fails\n"
        "import numpy as np, onnxruntime as ort\n"
        f"session = ort.InferenceSession({str(path)!r}, providers=['CPUExecutionProvider'])\n"
        f"y = session.run(None, {{'x': np.load({str(tmp_path / 'x.npy')!r})}})[0]\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, y)\n"
        "assert not any(m in sys.modules and sys.modules[m] for m in ('tensorflow', 'nengo'))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)
    assert expected.shape == (2, 10, 4)


def test_settings_default_to_the_file_and_can_be_overridden():
    snn = to_snn(onnx_models.mlp(), "LIF", simulation=Simulation(dt=0.002, n_steps=7, synapse=0.02))
    compiled = to_spiking_onnx(snn)
    assert Simulation.read(compiled) == Simulation(dt=0.002, n_steps=7, synapse=0.02)
    assert compiled.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 7
    assert Simulation.read(to_spiking_onnx(snn, n_steps=3, synapse=None)).n_steps == 3


def test_errors_name_the_problem():
    with pytest.raises(SNNError, match="no ONNX-SNN neuron op"):
        to_spiking_onnx(onnx_models.mlp())
    snn = to_snn(onnx_models.mlp(), "LIF")
    with pytest.raises(SNNError, match="record names no neuron node: nope; neuron nodes: act0"):
        to_spiking_onnx(snn, record=["nope"])
    with pytest.raises(SNNError, match="Izhikevich has no exact ONNX time step"):
        to_spiking_onnx(to_snn(onnx_models.mlp(), "Izhikevich"))
    with pytest.raises(SNNError, match="initial_state must be one of rest, nengo, got 'random'"):
        to_spiking_onnx(snn, initial_state="random")


def test_run_spiking_keeps_the_sample_order_across_workers_and_refuses_no_samples():
    from onnxlab.snn.spiking_onnx import run_spiking

    compiled = to_spiking_onnx(to_snn(onnx_models.mlp(), "LIF", gain=3.0, simulation=Simulation(n_steps=6)))
    x = np.random.default_rng(11).uniform(-1, 1, (23, 6)).astype(np.float32)
    whole = ort_session(compiled).run(None, {"x": x})[0]
    (parallel,) = run_spiking(compiled, x, batch_size=4, workers=3).values()
    np.testing.assert_array_equal(parallel, whole)
    with pytest.raises(SNNError, match="at least one sample"):
        run_spiking(compiled, x[:0])


def test_the_command_line_compiles_a_file_and_names_bad_input(tmp_path, capsys):
    from onnxlab.cli import main as cli

    source = tmp_path / "snn.onnx"
    onnx.save(to_snn(onnx_models.mlp(), "LIF"), str(source))
    target = tmp_path / "spiking.onnx"
    assert cli(["to-spiking-onnx", str(source), str(target), "--n-steps", "12", "--record", "act0"]) == 0
    assert "outputs y ['N', 12, 4], act0/spikes ['N', 12, 5]" in capsys.readouterr().out
    onnx.checker.check_model(onnx.load(str(target)), full_check=True)
    assert cli(["to-spiking-onnx", str(source), str(target), "--n-steps", "3", "--form", "unrolled"]) == 0
    assert "unrolled" in capsys.readouterr().out
    assert "Loop" not in {n.op_type for n in onnx.load(str(target)).graph.node}
    assert cli(["to-spiking-onnx", str(source), str(target), "--record", "nope"]) == 1
    assert capsys.readouterr().err.startswith("error: mlp: record names no neuron node: nope")
    legacy = tmp_path / "legacy.onnx"  # the original tool's file is upgraded in memory, as `onnxlab run` does
    onnx.save(onnx_models.legacy_lenet1(), str(legacy))
    assert cli(["to-spiking-onnx", str(legacy), str(target), "--n-steps", "4"]) == 0
    assert "legacy ONNX-SNN file upgraded in memory: node" in capsys.readouterr().out
    onnx.checker.check_model(onnx.load(str(target)), full_check=True)


def test_onnxlab_run_takes_the_engine_on_the_command_line(tmp_path, capsys):
    from onnxlab.cli import main as cli

    source = tmp_path / "snn.onnx"
    onnx.save(to_snn(onnx_models.mlp(), "LIF", gain=3.0, simulation=Simulation(n_steps=8)), str(source))
    np.save(tmp_path / "x.npy", np.random.default_rng(10).uniform(-1, 1, (3, 6)).astype(np.float32))
    assert cli(["run", str(source), "--input", str(tmp_path / "x.npy"), "--engine", "onnxruntime-spiking",
                "--output", str(tmp_path / "y.npy")]) == 0
    assert "SNN model, ran on onnxruntime-spiking" in capsys.readouterr().out
    assert np.load(tmp_path / "y.npy").shape == (3, 4)
    plain = tmp_path / "plain.onnx"
    onnx.save(onnx_models.mlp(), str(plain))
    assert cli(["run", str(plain), "--input", str(tmp_path / "x.npy"), "--engine", "nengo-dl"]) == 1
    assert "is a DL model; engine 'nengo-dl' runs SNN models (for DL: onnxruntime)" in capsys.readouterr().err


@pytest.mark.parametrize("make, shape", [
    (lambda: onnx_models.pytorch_style_cnn(opset=20), (2, 7, 6)),  # PyTorch's conventions, opset 20, IR 10
    (lambda: upgrade(onnx_models.legacy_lenet1())[0], (28, 28, 1)),  # the original ONNX-SNN tool's file, opset 11
], ids=["pytorch-opset20", "original-tool-opset11"])
def test_files_other_producers_wrote_spike_as_nengo_does(make, shape):
    model = make()
    snn = model if any(n.domain == ONNX_SNN_DOMAIN for n in model.graph.node) else to_snn(
        model, "LIF", gain=3.0, bias=0.5)
    layers = _neuron_names(snn)
    x = np.random.default_rng(13).uniform(0, 1, (2, *shape)).astype(np.float32)
    _, ours = _ours(snn, x, layers, n_steps=20)
    _, _, spikes = _nengo(snn, x, layers, n_steps=20)
    for name in layers:
        np.testing.assert_array_equal(ours[name + SPIKES_SUFFIX].reshape(spikes[name].shape), spikes[name])
    assert sum(int((ours[n + SPIKES_SUFFIX] > 0).sum()) for n in layers) > 20


@pytest.mark.parametrize("net,time_varying,layer_synapse", [("conv-branching", False, None), ("dense", True, None),
                                                            ("conv-branching", False, 0.003)])
def test_the_unrolled_form_computes_exactly_what_the_loop_does(net, time_varying, layer_synapse):
    from onnxlab.snn.spiking_onnx import SpikingRunner

    make, shape = NETS[net]
    n_steps = 7
    snn = to_snn(make(), "LIF", simulation=Simulation(n_steps=n_steps, synapse=0.01, layer_synapse=layer_synapse),
                 **NEURON_SETTINGS["LIF"])
    layers = _neuron_names(snn)
    x = np.random.default_rng(9).uniform(-1, 1, (5, *((n_steps,) if time_varying else ()), *shape)).astype(np.float32)
    options = dict(record=layers, time_varying_input=time_varying)
    loop = to_spiking_onnx(snn, **options)
    unrolled = to_spiking_onnx(snn, form="unrolled", **options)
    onnx.checker.check_model(unrolled, full_check=True)
    assert "Loop" not in {n.op_type for n in unrolled.graph.node}
    assert [o.name for o in unrolled.graph.output] == [o.name for o in loop.graph.output]
    by_loop, by_unrolled = SpikingRunner(loop, batch_size=2)(x), SpikingRunner(unrolled, batch_size=2)(x)
    for name, expected in by_loop.items():
        np.testing.assert_array_equal(by_unrolled[name], expected, err_msg=name)
    assert sum(int((by_loop[n + SPIKES_SUFFIX] > 0).sum()) for n in layers) > 10
    # nothing left over from the loop: ONNX Runtime would warn about unused initializers
    used = {i for n in unrolled.graph.node for i in n.input}
    assert {t.name for t in unrolled.graph.initializer} <= used
    with pytest.raises(SNNError, match="form must be one of loop, unrolled, got 'scan'"):
        to_spiking_onnx(snn, form="scan")
    from onnxlab.snn.spiking_onnx import unroll

    with pytest.raises(SNNError, match="unroll takes a to_spiking_onnx model \\(one Loop\\); this one has 0"):
        unroll(snn)


def test_the_unrolled_form_of_an_opset_11_file_equals_its_loop():
    """Opset 11: Unsqueeze takes its axes as an attribute (an input from opset 13)."""
    from onnxlab.graph import default_opset
    from onnxlab.snn.spiking_onnx import SpikingRunner

    snn = upgrade(onnx_models.legacy_lenet1())[0]
    assert default_opset(snn) == 11
    loop, unrolled = (to_spiking_onnx(snn, n_steps=4, form=form) for form in ("loop", "unrolled"))
    onnx.checker.check_model(unrolled, full_check=True)
    x = np.random.default_rng(1).uniform(0, 1, (3, 28, 28, 1)).astype(np.float32)
    (expected,), (got,) = SpikingRunner(loop)(x).values(), SpikingRunner(unrolled)(x).values()
    np.testing.assert_array_equal(got, expected)
    assert np.abs(expected).max() > 0
