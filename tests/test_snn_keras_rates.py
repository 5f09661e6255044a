"""keras_rates: the Keras activation is Nengo's LIF rate curve, and Keras weights carry over through ONNX exactly."""
import numpy as np
import pytest

from onnxlab import to_onnx
from onnxlab.runtime import ort_session, run_single
from onnxlab.snn import to_snn
from onnxlab.snn.keras_rates import lif_gain_bias, lif_rate_activation, with_relu_placeholders
from onnxlab.snn.simulate import simulate
from onnxlab.snn.to_nengo import to_nengo

pytest.importorskip("nengo_dl")
LIF = dict(amplitude=0.02, max_rate=150.0, intercept=-0.1, tau_rc=0.03, tau_ref=0.004)
X = np.linspace(-1.0, 2.0, 301, dtype=np.float32)


def _nengo_rates(neuron_type, x):
    gain, bias = lif_gain_bias(LIF["max_rate"], LIF["intercept"], tau_rc=LIF["tau_rc"], tau_ref=LIF["tau_ref"])
    return LIF["amplitude"] * neuron_type.rates(x[:, None], np.array([gain]), np.array([bias]))[:, 0]


def test_exact_curve_is_nengo_lif_rate():
    import nengo

    x = X[np.abs(X - LIF["intercept"]) > 1e-3]  # the slope is infinite at the intercept: float32 vs float64 there
    ours = lif_rate_activation(**LIF, sigma=None)(x[:, None]).numpy()[:, 0]
    theirs = _nengo_rates(nengo.LIFRate(tau_rc=LIF["tau_rc"], tau_ref=LIF["tau_ref"]), x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
    assert ours[x < -0.1].max() == 0 and ours[-1] > LIF["amplitude"] * LIF["max_rate"]


def test_smoothed_curve_is_nengo_dl_soft_lif_rate():
    from nengo_dl import SoftLIFRate

    ours = lif_rate_activation(**LIF, sigma=0.05)(X[:, None]).numpy()[:, 0]
    theirs = _nengo_rates(SoftLIFRate(sigma=0.05, tau_rc=LIF["tau_rc"], tau_ref=LIF["tau_ref"]), X)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_keras_weights_reach_nengo_and_onnxruntime_unchanged():
    """Keras with the rate curve = ONNX-SNN in ONNX Runtime = Nengo rate mode, on the same input."""
    from keras import Sequential, layers

    curve = lif_rate_activation(**LIF, sigma=None)
    rng = np.random.default_rng(3)
    keras_model = Sequential([layers.Input((7,)), layers.Dense(9, activation=curve), layers.Dense(3)])
    keras_model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in keras_model.get_weights()])
    x = rng.normal(size=(16, 7)).astype(np.float32)
    placeholders = with_relu_placeholders(keras_model, curve)
    assert placeholders.layers[0].activation.__name__ == "relu"
    snn = to_snn(to_onnx(placeholders, x[:1]), "LIF", max_rates=LIF["max_rate"], intercepts=LIF["intercept"],
                 params={k: LIF[k] for k in ("amplitude", "tau_rc", "tau_ref")})
    expected = keras_model.predict(x, verbose=0)
    np.testing.assert_allclose(run_single(ort_session(snn), x)[0], expected, rtol=1e-4, atol=1e-5)
    (nengo_out,) = simulate(to_nengo(snn, rate=True), x, n_steps=1).values()
    np.testing.assert_allclose(nengo_out[:, -1], expected, rtol=1e-4, atol=1e-5)


#: Samples whose mean squared noise the test compares with the noise variance 0.25: its standard error is
#: 0.25 * sqrt(2 / n) = 0.0055, so the bounds 0.2-0.3 are 9 standard errors away (with 256 samples they were 2.3,
#: and a fresh-clone CI run drew 0.313).
NOISE_SAMPLES = 4096


def test_training_noise_acts_in_fit_only():
    """Noise while Keras trains (the loss of a model whose rates are pure noise around a constant is large), none in
    predict, so the exported network is the noiseless one."""
    from keras import Sequential, layers

    from onnxlab.errors import InvalidArgument

    quiet = lif_rate_activation(**LIF, sigma=None)
    noisy = lif_rate_activation(**LIF, sigma=None, training_noise=0.5)
    from onnxlab.reproducibility import seed_everything

    seed_everything(0)
    x = np.full((NOISE_SAMPLES, 1), 1.0, np.float32)
    losses = {}
    for name, curve in (("quiet", quiet), ("noisy", noisy)):
        model = Sequential([layers.Input((1,)), layers.Dense(1, activation=curve, kernel_initializer="ones",
                                                             bias_initializer="zeros")])
        model.compile("sgd", "mse")
        target = model.predict(x, verbose=0)
        np.testing.assert_allclose(target, quiet(x).numpy(), rtol=1e-6)  # predict: no noise
        model.optimizer.learning_rate.assign(0.0)  # measure the training loss without moving the weights
        losses[name] = model.fit(x, target, epochs=1, batch_size=NOISE_SAMPLES, verbose=0).history["loss"][0]
    assert losses["quiet"] < 1e-10 and 0.2 < losses["noisy"] < 0.3  # variance of the noise: 0.25
    with pytest.raises(InvalidArgument, match="training_noise must be >= 0"):
        lif_rate_activation(training_noise=-1.0)
