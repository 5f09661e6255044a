"""The spiking training recipe shared by Tables K4 and P1: settings checked, each stage doing what it says."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxlab.errors import SNNError
from onnxlab.snn.recipe import SpikingRecipe

pytest.importorskip("nengo_dl")


@pytest.fixture(scope="module")
def mnist_subset():
    from onnxlab.data import load_mnist, mnist_as_float

    data = load_mnist(n_train=400, n_test=100)
    return (mnist_as_float(data.x_train), data.y_train.astype(np.int64), mnist_as_float(data.x_test),
            data.y_test.astype(np.int64))


def _lenet1(activation):
    from onnxlab.zoo import lenet1

    return lenet1(activation, logits=True)


@pytest.mark.parametrize("kwargs, message", [
    (dict(neuron="Izhikevich"), "neuron must be one of LIF, SoftLIFRate, got 'Izhikevich'"),
    (dict(epochs=0), "keras_pretrain_epochs must be >= 0 and epochs >= 1, got 6 and 0"),
    (dict(neuron="SoftLIFRate", lif_smoothing=None), "SoftLIFRate needs lif_smoothing"),
])
def test_bad_recipe_settings(kwargs, message):
    with pytest.raises(SNNError, match=message):
        SpikingRecipe(**kwargs)


def test_neuron_parameters_follow_the_neuron():
    assert SpikingRecipe().neuron_params() == {"amplitude": 0.01}
    soft = SpikingRecipe(neuron="SoftLIFRate", lif_smoothing=0.02)
    assert soft.neuron_params() == {"amplitude": 0.01, "sigma": 0.02} and not soft.spiking
    assert soft.settings["neuron"] == "SoftLIFRate" and soft.replace(seed=3).seed == 3


def test_pretrained_file_computes_the_keras_rate_network(mnist_subset):
    """Keras trained through the exact LIF rate curve; the ONNX-SNN file's rate approximation (ONNX Runtime) is that
    network: the same predictions up to float rounding. (With ``lif_smoothing`` Keras trains through the smoothed
    curve, which the LIF op does not compute: near the threshold the two differ, and so can a few predictions.)"""
    from onnxlab.runtime import ort_session, predicted_labels
    from onnxlab.snn.recipe import pretrain_snn
    from onnxlab.snn.simulation import Simulation

    x, y, x_test, y_test = mnist_subset
    recipe = SpikingRecipe(keras_pretrain_epochs=6, keras_learning_rate=1e-2, keras_schedule="cosine",
                           lif_smoothing=None)
    pretrained = pretrain_snn(_lenet1, recipe, x, y, simulation=Simulation(n_steps=7), x_eval=x_test,
                              y_eval=y_test)
    onnx.checker.check_model(pretrained.snn, full_check=True)
    ops = [n.op_type for n in pretrained.snn.graph.node if n.domain == "org.onnxlab.snn"]
    assert ops == ["LIF", "LIF"] and pretrained.seconds > 0
    ort_accuracy = float(np.mean(predicted_labels(ort_session(pretrained.snn), x_test, 50) == y_test))
    assert ort_accuracy == pytest.approx(pretrained.keras_accuracy, abs=0.011)  # at most one image of 100 flips
    assert pretrained.keras_accuracy > 0.3  # it learned something in 6 epochs of 400 images
    untrained = pretrain_snn(_lenet1, recipe.replace(keras_pretrain_epochs=0), x, y, simulation=Simulation())
    assert untrained.keras_accuracy is None and untrained.seconds == 0


@pytest.mark.parametrize("neuron, n_steps", [("LIF", 12), ("SoftLIFRate", 1)])
def test_train_evaluate_round_trip(mnist_subset, tmp_path, neuron, n_steps):
    """The whole recipe on 400 images: NengoDL lowers the loss; LIF is scored at every step, SoftLIFRate from one;
    the exported file rebuilds the same network (parameters equal, predictions equal)."""
    from onnxlab.snn.recipe import evaluate, is_spiking, round_trip, train_snn
    from onnxlab.snn.simulation import Simulation

    x, y, x_test, y_test = mnist_subset
    recipe = SpikingRecipe(neuron=neuron, keras_pretrain_epochs=1, epochs=2, minibatch_size=100,
                           learning_rate=1e-3)
    trained = train_snn(_lenet1, recipe, x, y, simulation=Simulation(n_steps=12))
    assert len(trained.training.loss) == 2 and trained.training.loss[1] < trained.training.loss[0]
    assert is_spiking(trained.model) == (neuron == "LIF")
    before = evaluate(trained.model, x_test, y_test, minibatch_size=50)
    assert before.per_step.shape == (n_steps,) and before.labels.shape == (100,)
    assert before.error_rate == pytest.approx(1 - np.mean(before.labels == y_test))
    trip = round_trip(trained.model, tmp_path / "trained.onnx", name="lenet1-trained")
    assert trip.path.is_file() and trip.max_weight_abs_diff == 0.0
    after = evaluate(trip.model, x_test, y_test, minibatch_size=50)
    np.testing.assert_array_equal(after.labels, before.labels)
    np.testing.assert_array_equal(after.per_step, before.per_step)


def test_a_rate_network_with_layer_synapses_is_refused_by_evaluate(mnist_subset):
    """One step through a lowpass only scales a rate network's signal down: evaluate names the filtered layers."""
    from onnxlab.snn.recipe import evaluate, pretrain_snn
    from onnxlab.snn.simulation import Simulation
    from onnxlab.snn.to_nengo import to_nengo

    x, y, x_test, y_test = mnist_subset
    lif = SpikingRecipe(keras_pretrain_epochs=0)
    filtered = pretrain_snn(_lenet1, lif, x, y, simulation=Simulation(layer_synapse=0.002)).snn
    assert Simulation.read(filtered).layer_synapse == 0.002  # a spiking recipe keeps it
    rate = to_nengo(filtered, rate=True)
    with pytest.raises(SNNError, match=r"evaluate: a rate network is scored from one step, but its connections "
                                       r"out of .+ have synapses.+layer_synapses=False"):
        evaluate(rate, x_test, y_test)
    assert evaluate(to_nengo(filtered, rate=True, layer_synapses=False), x_test, y_test).per_step.shape == (1,)
    soft = pretrain_snn(_lenet1, lif.replace(neuron="SoftLIFRate"), x, y, simulation=Simulation(layer_synapse=0.002))
    assert Simulation.read(soft.snn).layer_synapse is None  # a rate recipe's file gets none


def test_train_keras_classifier_reports_each_epoch_and_rejects_unknown_names(mnist_subset, capsys):
    from onnxlab.errors import InvalidArgument
    from onnxlab.zoo import train_keras_classifier

    x, y, _, _ = mnist_subset
    train_keras_classifier(_lenet1("relu"), x[:200], y[:200], epochs=2, schedule="cosine", progress="LeNet-1")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["LeNet-1 epoch 1/2", "LeNet-1 epoch 2/2"]
    assert "loss" in lines[0] and "accuracy" in lines[0]
    with pytest.raises(InvalidArgument, match="unknown optimizer 'lbfgs'; known: adam, rmsprop, sgd"):
        train_keras_classifier(_lenet1("relu"), x, y, epochs=1, optimizer="lbfgs")


def test_train_keras_classifier_shift_augmentation_changes_what_is_learned(mnist_subset):
    """Same seed, same data: shifted images give other weights than unshifted ones; a negative shift is refused."""
    from onnxlab.errors import InvalidArgument
    from onnxlab.zoo import train_keras_classifier

    x, y, _, _ = mnist_subset
    plain, shifted = _lenet1("relu"), _lenet1("relu")
    shifted.set_weights(plain.get_weights())
    history = train_keras_classifier(shifted, x, y, epochs=2, shift_pixels=2.0)
    train_keras_classifier(plain, x, y, epochs=2)
    assert len(history.history["loss"]) == 2
    assert max(np.abs(a - b).max() for a, b in zip(plain.get_weights(), shifted.get_weights())) > 1e-3
    with pytest.raises(InvalidArgument, match="shift_pixels must be >= 0, got -1"):
        train_keras_classifier(plain, x, y, epochs=1, shift_pixels=-1)


def test_train_keras_classifier_weight_decay_shrinks_the_weights(mnist_subset):
    """Same seed, same data, same start: decoupled weight decay leaves every kernel with a smaller norm than
    training without it; a negative decay is refused."""
    from onnxlab.errors import InvalidArgument
    from onnxlab.zoo import train_keras_classifier

    x, y, _, _ = mnist_subset
    plain, decayed = _lenet1("relu"), _lenet1("relu")
    decayed.set_weights(plain.get_weights())
    train_keras_classifier(plain, x, y, epochs=2, learning_rate=0.01)
    train_keras_classifier(decayed, x, y, epochs=2, learning_rate=0.01, weight_decay=5.0)
    kernels = [(p.kernel.numpy(), d.kernel.numpy())
               for p, d in zip(plain.layers, decayed.layers) if hasattr(p, "kernel")]
    assert len(kernels) == 3
    for p, d in kernels:
        assert np.linalg.norm(d) < 0.9 * np.linalg.norm(p)
    with pytest.raises(InvalidArgument, match="weight_decay must be >= 0, got -0.1"):
        train_keras_classifier(plain, x, y, epochs=1, weight_decay=-0.1)


def test_a_later_setting_at_its_earlier_value_leaves_the_cache_key_as_it_was():
    from onnxlab.snn.recipe import LATER_SETTINGS

    plain = SpikingRecipe()
    assert set(plain.settings) - set(plain.key_settings) == set(LATER_SETTINGS)
    noisy = plain.replace(keras_training_noise=0.1)
    assert noisy.key_settings["keras_training_noise"] == 0.1 and noisy.key_settings != plain.key_settings
