"""onnxlab's path and nengo_dl.Converter built from the same Keras weights compute the same (the comparison's basis)."""
import numpy as np
import pytest

from onnxlab.errors import InvalidArgument
from onnxlab.snn.converter_compare import (COMPARISON_MODELS, Built, Mode, Runner, bias_folding_speedup,
                                           build_converter, build_onnxlab, object_counts, zero_initial_voltage)

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
        return runner.run(x)[0]
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


def test_bias_folding_keeps_every_prediction(residual_bn):
    from onnxlab.snn import to_snn

    _, onnx_model, x = residual_bn
    snn = to_snn(onnx_model, "LIF", params={"amplitude": 0.01}, max_rates=100, intercepts=0)
    result = bias_folding_speedup(snn, x, np.zeros(len(x), int), n_steps=10, minibatch_size=3)
    assert result["identical_predictions"] == 1.0 and result["max_output_diff"] <= 1e-5
    assert result["before_s"] > 0 and result["after_s"] > 0


def test_evaluation_seconds_by_neuron_times_every_case(residual_bn):
    from onnxlab.snn.converter_compare import NEURON_TIME_CASES, evaluation_seconds_by_neuron

    _, onnx_model, x = residual_bn
    seconds = evaluation_seconds_by_neuron(onnx_model, x[:3], n_steps=5, minibatch_size=3)
    assert list(seconds) == list(NEURON_TIME_CASES) and all(s > 0 for s in seconds.values())
