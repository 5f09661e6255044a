"""train_classifier: NengoDL training that lowers the loss and writes the trained weights back; clear errors."""
import numpy as np
import pytest

from onnxlab.errors import SNNError
from onnxlab.snn import to_snn
from onnxlab.snn.simulate import simulate
from onnxlab.snn.to_nengo import to_nengo
from tests.onnx_models import mlp

pytest.importorskip("nengo_dl")
RNG = np.random.default_rng(5)


def _task(n=400):
    """Four classes: the argmax of a fixed linear map of 6 Gaussian features."""
    x = RNG.normal(size=(n, 6)).astype(np.float32)
    return x, (x @ RNG.normal(size=(6, 4))).argmax(1)


def _accuracy(model, x, y):
    return float(np.mean(simulate(model, x, n_steps=1)["y"][:, -1].argmax(-1) == y))


@pytest.mark.parametrize("optimizer, schedule", [("adam", "cosine"), ("rmsprop", "constant")])
def test_training_learns_and_keeps_the_weights(optimizer, schedule):
    from onnxlab.snn.train import train_classifier

    model = to_nengo(to_snn(mlp((6, 32, 4)), "RectifiedLinear"))  # rate neurons: one step is the trained function
    x, y = _task()
    untrained = _accuracy(model, x, y)
    run = train_classifier(model, x, y, epochs=30, minibatch_size=50, optimizer=optimizer, learning_rate=0.02,
                           schedule=schedule)
    assert len(run.loss) == 30 and run.loss[-1] < 0.5 * run.loss[0]
    assert _accuracy(model, x, y) >= max(0.85, untrained + 0.3)


@pytest.mark.parametrize("train_biases", [True, False])
def test_ensemble_biases_train_only_when_asked(train_biases):
    """to_nengo leaves the ensembles fixed; train_classifier trains their biases (by default) and leaves them
    fixed again afterwards."""
    from onnxlab.snn.train import train_classifier

    model = to_nengo(to_snn(mlp((6, 32, 4)), "RectifiedLinear"))
    (ensemble,) = model.ensembles.values()
    before = np.array(ensemble.bias, copy=True)
    x, y = _task(200)
    train_classifier(model, x, y, epochs=2, minibatch_size=50, learning_rate=0.02, train_biases=train_biases)
    assert model.network.config[ensemble].trainable is False
    assert np.array_equal(ensemble.bias, before) != train_biases


def test_layer_synapses_are_left_out_of_training_and_kept():
    """One step per sample: the network with a layer synapse trains exactly as the one without, and keeps it."""
    from onnxlab.snn.simulation import Simulation
    from onnxlab.snn.train import train_classifier

    x, y = _task(200)
    onnx_model = mlp((6, 16, 4))  # the same random weights for both
    trained = {}
    for layer_synapse in (None, 0.005):
        snn = to_snn(onnx_model, "LIF", max_rates=100, intercepts=0, simulation=Simulation(layer_synapse=layer_synapse))
        model = to_nengo(snn)
        run = train_classifier(model, x, y, epochs=2, minibatch_size=50, learning_rate=0.02, seed=3)
        trained[layer_synapse] = (run.loss, model)
    # kept through training, the lowpass would scale the output by dt / tau = 0.2 after one step
    np.testing.assert_allclose(trained[0.005][0], trained[None][0], rtol=1e-5)
    synapses = [c.synapse for c in trained[0.005][1].network.all_connections if c.synapse is not None]
    assert len(synapses) == 1 and synapses[0].tau == 0.005


@pytest.mark.parametrize("kwargs, message", [
    (dict(optimizer="adagrad"), "unknown optimizer 'adagrad'; known: adam, rmsprop, sgd"),
    (dict(schedule="step"), "unknown schedule 'step'; known: constant, cosine"),
    (dict(lif_smoothing=0.0), "lif_smoothing must be positive or None, got 0.0"),
    (dict(epochs=0), "epochs and minibatch_size must be positive, got 0 and 50"),
    (dict(x=np.zeros((100, 5))), r"input 'x' expects samples of shape \(6,\), got \(5,\)"),
    (dict(y=np.zeros(99)), "need as many labels as samples and at least one minibatch"),
])
def test_bad_training_arguments(kwargs, message):
    from onnxlab.snn.train import train_classifier

    x, y = _task(100)
    args = dict(x=x, y=y, epochs=1, minibatch_size=50) | kwargs
    with pytest.raises(SNNError, match=message):
        train_classifier(to_nengo(to_snn(mlp())), args.pop("x"), args.pop("y"), **args)


def _fraction_slow(model, x, floor):
    """Fraction of (sample, hidden neuron) pairs firing above zero but below ``floor`` (rate mode)."""
    (ensemble,) = model.ensembles.values()
    rates = simulate(model, x, n_steps=1, extra_probes={"h": ensemble.neurons})["h"][:, -1]
    return float(np.mean((rates > 1e-6) & (rates < floor)))


def test_rate_floor_makes_neurons_silent_or_fast_and_leaves_no_probes():
    from onnxlab.snn.train import train_classifier

    x, y = _task()
    fractions, snn = {}, to_snn(mlp((6, 32, 4)), "RectifiedLinear")
    for weight in (None, 100.0):  # the same initial weights, trained without and with the penalty
        model = to_nengo(snn)
        n_probes = len(model.network.probes)
        floor = dict(rate_floor_hz=2.0, rate_floor_weight=weight) if weight else {}
        run = train_classifier(model, x, y, epochs=30, minibatch_size=50, optimizer="adam", learning_rate=0.02,
                               **floor)
        assert len(model.network.probes) == n_probes  # the penalty's probes are gone
        assert _accuracy(model, x, y) >= 0.8
        assert run.rate_floor_hz == floor.get("rate_floor_hz")
        fractions[weight] = _fraction_slow(model, x, 2.0)
    assert fractions[100.0] < 0.5 * fractions[None]


def test_bad_rate_floor():
    from onnxlab.snn.train import train_classifier

    x, y = _task(100)
    with pytest.raises(SNNError, match="rate_floor_hz and rate_floor_weight must be positive, got -1.0 and 1.0"):
        train_classifier(to_nengo(to_snn(mlp())), x, y, epochs=1, minibatch_size=50, rate_floor_hz=-1.0)
