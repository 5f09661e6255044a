"""onnxlab's path and nengo_dl.Converter built from the same Keras weights compute the same (the comparison's basis)."""
import numpy as np
import pytest

from onnxlab.errors import InvalidArgument
from onnxlab.snn.converter_compare import (COMPARISON_MODELS, DT, Built, Mode, Runner, build_converter,
                                           build_onnxlab, object_counts, zero_initial_voltage)

pytest.importorskip("nengo_dl")
RNG = np.random.default_rng(3)


@pytest.fixture(scope="module")
def residual_bn():
    """The residual net with BatchNorm, every weight drawn here (Keras' own initial values depend on what else the
    process built before), non-trivial BatchNorm statistics, and its ONNX conversion."""
    from onnxlab import to_onnx

    model = COMPARISON_MODELS["residual_bn"][1]()
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([RNG.uniform(0.5, 1.5, gamma.shape), RNG.normal(0, 0.1, beta.shape),
                               RNG.normal(0, 0.1, mean.shape), RNG.uniform(0.5, 2, var.shape)])
        elif layer.get_weights():  # conv and dense: Glorot-uniform kernel, small biases (the dense layer's)
            kernel, *biases = layer.get_weights()
            limit = np.sqrt(6 / (np.prod(kernel.shape[:-1]) + kernel.shape[-1]))
            layer.set_weights([RNG.uniform(-limit, limit, kernel.shape), *(RNG.normal(0, 0.1, b.shape) for b in biases)])
    x = RNG.uniform(0, 1, (6, 28, 28, 1)).astype(np.float32)
    return model, to_onnx(model, x[:1]), x


def _outputs(built: Built, x: np.ndarray, steps: int) -> np.ndarray:
    runner = Runner(built, "simulate", len(x), steps)
    try:
        return runner.run(x)
    finally:
        runner.close()


@pytest.mark.parametrize("mode", [Mode(False), Mode(True, 100.0), Mode(True, 100.0, 0.005)], ids=lambda m: m.label)
def test_both_paths_compute_the_same_from_the_same_initial_state(residual_bn, mode):
    model, onnx_model, x = residual_bn
    steps = 20 if mode.spiking else 1
    converter, ours = build_converter(model, mode), build_onnxlab(onnx_model, mode)
    for built in (converter, ours):
        zero_initial_voltage(built.network)
    a, b = _outputs(converter, x, steps), _outputs(ours, x, steps)
    assert np.abs(a).max() > 0
    close = np.isclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())
    if mode.spiking:  # the paths sum in different orders (channels-last / -first): a spike may move by a step
        assert close.mean() >= 0.9 and np.array_equal(a[:, -1].argmax(-1), b[:, -1].argmax(-1))
    else:  # rate mode: equal, and equal to the Keras network
        assert close.all()
        np.testing.assert_allclose(b[:, -1], model.predict(x, verbose=0), atol=1e-4 * np.abs(a).max())
    assert object_counts(ours.network)["connections"] < object_counts(converter.network)["connections"]


def test_runner_refuses_unknown_settings(residual_bn):
    _, onnx_model, _ = residual_bn
    with pytest.raises(InvalidArgument, match="settings must be one of"):
        Runner(build_onnxlab(onnx_model, Mode(False)), "fastest", 2, 1)


@pytest.mark.parametrize("synapse", [None, 0.005])
def test_simulate_plans_without_merging_where_the_greedy_plan_would_scatter(residual_bn, synapse):
    """A lowpass between layers lets the greedy planner merge both conv layers' neuron updates over signals that do
    not lie side by side, written back by scatter: `inference_simulator` then merges nothing, same outputs."""
    from onnxlab.snn.simulate import PLANNER, UNMERGED_PLANNER, inference_simulator, presented, scatter_writes

    _, onnx_model, x = residual_bn
    built = build_onnxlab(onnx_model, Mode(True, 100.0, synapse))
    runner = Runner(built, "simulate", len(x), 10)
    try:
        assert runner.planner == (PLANNER if synapse is None else UNMERGED_PLANNER)
        assert scatter_writes(runner.sim) == 0
        planned = runner.run(x)
    finally:
        runner.close()
    with inference_simulator(built.network, dt=DT, minibatch_size=len(x), planners=(PLANNER,)) as greedy:
        assert greedy.planner == PLANNER and (scatter_writes(greedy.sim) > 0) == (synapse is not None)
        expected = greedy.sim.predict({built.input_node: presented(x, 10, len(x))}, verbose=0)[built.output_probe]
    assert np.abs(expected).max() > 0
    np.testing.assert_array_equal(planned, expected)


def test_evaluation_seconds_by_neuron_times_every_case(residual_bn):
    from onnxlab.snn.converter_compare import NEURON_TIME_CASES, evaluation_seconds_by_neuron

    _, onnx_model, x = residual_bn
    seconds = evaluation_seconds_by_neuron(onnx_model, x[:3], n_steps=5, minibatch_size=3)
    assert list(seconds) == list(NEURON_TIME_CASES) and all(s > 0 for s in seconds.values())


def test_accuracy_by_step_reads_both_paths_at_every_step(residual_bn):
    from onnxlab.snn.converter_compare import accuracy_by_step, filtered_scores, filtered_scores_by_step

    model, onnx_model, x = residual_bn
    y = model.predict(x, verbose=0).argmax(-1)  # the Keras classes: a long simulation should approach them
    acc = accuracy_by_step(model, onnx_model, x, y, Mode(True, 100.0, 0.005), n_steps=80, minibatch_size=3,
                           seeds=(0, 1))
    assert set(acc) == {"converter", "onnxlab"}
    for per_step in acc.values():
        assert per_step.shape == (2, 80) and ((per_step >= 0) & (per_step <= 1)).all()
        assert (per_step[:, 0] == np.mean(y == 0)).all()  # step 1: the output lowpass still reads 0, class 0
        assert per_step[:, -1].min() >= 0.5  # 80 steps: most images reach the Keras class
    # the last step of the per-step reading is what filtered_scores reads
    out = np.random.default_rng(0).uniform(0, 1, (4, 12, 10))
    np.testing.assert_array_equal(filtered_scores_by_step(out)[:, -1], filtered_scores(out, spiking=True))
    with pytest.raises(InvalidArgument, match="needs a spiking mode"):
        accuracy_by_step(model, onnx_model, x, y, Mode(False), n_steps=2, minibatch_size=3)


@pytest.mark.parametrize("per_step, target, expected", [
    ([0.5, 0.9, 0.95, 0.99], 0.9, 2),       # reached at step 2 and kept
    ([0.5, 0.95, 0.85, 0.92, 0.96], 0.9, 4),  # reached at 2, lost at 3: counts from step 4
    ([0.95, 0.96], 0.9, 1),                  # from the first step
    ([0.5, 0.95, 0.85], 0.9, None),          # below at the end: never
])
def test_steps_to_reach_counts_from_where_accuracy_stays_above(per_step, target, expected):
    from onnxlab.snn.converter_compare import steps_to_reach

    assert steps_to_reach(np.array(per_step), target) == expected


def test_the_build_before_issue_17_feeds_biases_through_connections_into_trainable_ensembles_channels_first(
        residual_bn):
    import nengo

    from onnxlab.snn import to_snn
    from onnxlab.snn.converter_compare import BEFORE_ISSUE_17_BUILD
    from onnxlab.snn.to_nengo import to_nengo

    _, onnx_model, _ = residual_bn
    snn = to_snn(onnx_model, "LIF", params={"amplitude": 0.01}, max_rates=100, intercepts=0)
    before, now = to_nengo(snn, **BEFORE_ISSUE_17_BUILD), to_nengo(snn)
    assert len(before.network.all_connections) > len(now.network.all_connections)
    assert {before.network.config[e].trainable is not False for e in before.network.all_ensembles} == {True}
    assert {now.network.config[e].trainable for e in now.network.all_ensembles} == {False}
    layouts = [{c.transform.channels_last for c in m.network.all_connections if isinstance(c.transform, nengo.Convolution)}
               for m in (before, now)]
    assert layouts == [{False}, {True}]  # the model's input has one channel: today's build reads it channels-last


def test_compare_model_times_both_paths_in_turn_with_the_ratio_spread(residual_bn):
    """A timed mode gets, per timing setting, each path's ms per image, the median per-turn ratio between its
    quartiles, and the number of timed runs (``repeats`` here, as ``min_timed_seconds`` is 0)."""
    from onnxlab.snn.converter_compare import TIMING_SETTINGS, compare_model

    model, onnx_model, x = residual_bn
    (row,) = compare_model(model, onnx_model, x, np.zeros(len(x), np.int64), [Mode(False)], n_steps=1,
                           minibatch_size=3, timed=lambda mode: True, n_timed=3, repeats=2, n_matched=2)
    for settings in TIMING_SETTINGS:
        assert row[f"converter_ms_per_image_{settings}"] > 0 and row[f"onnxlab_ms_per_image_{settings}"] > 0
        assert row[f"ratio_{settings}_q25"] <= row[f"ratio_{settings}"] <= row[f"ratio_{settings}_q75"]
        assert row[f"timed_runs_{settings}"] == 2
    assert row["converter_accuracy"] == row["onnxlab_accuracy"]  # rate mode, same weights: same classes


def test_timed_pair_prepares_each_input_once_and_times_only_the_simulation():
    """The input tiling (`Runner.feed`, ~19 MB for 30 steps of 100 MNIST images) stays out of the timed calls."""
    from onnxlab.snn.converter_compare import timed_pair

    class Counting:
        def __init__(self):
            self.fed, self.predicted = 0, 0

        def feed(self, x):
            self.fed += 1
            return {"input": x}

        def predict(self, feed, n_images):
            self.predicted += 1
            return feed["input"][:n_images]

    runners = {"converter": Counting(), "onnxlab": Counting()}
    timing = timed_pair(runners, np.zeros((3, 2)), repeats=4)
    assert [(r.fed, r.predicted) for r in runners.values()] == [(1, 5), (1, 5)]  # one untimed run, 4 timed
    assert set(timing.timings) == set(runners)
