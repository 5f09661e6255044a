"""XLA-compiled neuron steps (`onnxlab.snn.fused_steps`): chosen when a simulator is built, and computing what
NengoDL's own LIF step computes (the same spikes, up to a rare one-step shift from last-bit rounding)."""
import numpy as np
import pytest

from onnxlab.snn import Simulation, to_snn
from onnxlab.snn.simulate import inference_simulator, simulate
from onnxlab.snn.to_nengo import to_nengo
from tests.onnx_models import mlp

nengo = pytest.importorskip("nengo")
RNG = np.random.default_rng(41)
N_STEPS = 200
#: Largest share of (sample, neuron, step) spike values allowed to differ between the two steps: XLA's expm1 and
#: log1p round differently in the last bit, which can move a spike by one step.
MAX_SPIKE_MISMATCH = 1e-3


def _lif_model():
    snn = to_snn(mlp((6, 64, 4)), "LIF", max_rates=100, intercepts=0,
                 simulation=Simulation(n_steps=N_STEPS, layer_synapse=0.002))
    return to_nengo(snn)


def _neuron_builders(sim):
    return {type(op_build.built_neurons).__name__ for op_build in sim.tensor_graph.op_builder.op_builds.values()
            if hasattr(op_build, "built_neurons")}


@pytest.mark.parametrize("fused, builder", [(True, "XlaLIFBuilder"), (False, "LIFBuilder")])
def test_the_lif_step_is_chosen_when_the_simulator_is_built(fused, builder):
    from nengo_dl.neuron_builders import LIFBuilder, SimNeuronsBuilder

    model = _lif_model()
    with inference_simulator(model.network, dt=model.simulation.dt, minibatch_size=1, fused_steps=fused) as planned:
        assert _neuron_builders(planned.sim) == {builder}
    assert SimNeuronsBuilder.TF_NEURON_IMPL[nengo.LIF] is LIFBuilder  # NengoDL's table restored


def test_fused_lif_spikes_as_nengodls_step():
    model = _lif_model()
    (hidden,) = model.ensembles.values()
    x = RNG.uniform(-1, 1, (20, 6)).astype(np.float32)
    runs = {fused: simulate(model, x, minibatch_size=20, fused_steps=fused, extra_probes={"spikes": hidden.neurons})
            for fused in (True, False)}
    spikes = {fused: run["spikes"] for fused, run in runs.items()}
    assert spikes[False].any() and spikes[False].shape == (20, N_STEPS, 64)
    assert np.mean(spikes[True] != spikes[False]) <= MAX_SPIKE_MISMATCH
    np.testing.assert_array_equal(spikes[True].sum(1) > 0, spikes[False].sum(1) > 0)  # the same neurons fire
    outputs = {fused: run["y"][:, -1] for fused, run in runs.items()}
    np.testing.assert_array_equal(outputs[True].argmax(-1), outputs[False].argmax(-1))
