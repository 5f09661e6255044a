"""Table P1's cells: every network builds and converts with every activation; a cell trains, evaluates and
round-trips on a subset; a second run reads the cache and trains nothing."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxlab.errors import InvalidArgument
from onnxlab.lenet_activations import ACTIVATIONS, NETWORKS, MnistArrays, TableSettings, run_cell
from onnxlab.snn.recipe import SpikingRecipe

pytest.importorskip("nengo_dl")


@pytest.fixture(scope="module")
def data():
    from onnxlab.data import load_mnist, mnist_as_float

    split = load_mnist(n_train=300, n_test=60)
    return MnistArrays(mnist_as_float(split.x_train), split.y_train.astype(np.int64),
                       mnist_as_float(split.x_test), split.y_test.astype(np.int64))


#: Seconds, not accuracy: one short epoch everywhere, 8 simulation steps.
TINY = TableSettings(keras_epochs=1, recipe=SpikingRecipe(keras_pretrain_epochs=1, minibatch_size=100),
                     n_steps=8, minibatch_size=60)


@pytest.mark.parametrize("network", NETWORKS)
def test_each_network_converts_with_each_activation(network, data):
    """Keras → ONNX equal to Keras (1e-5) for the non-spiking rows; → ONNX-SNN valid for the neuron rows."""
    from onnxlab import to_onnx
    from onnxlab.runtime import ort_session, run_single
    from onnxlab.snn import to_snn

    build = NETWORKS[network]
    x = data.x_test[:8]
    for row in ACTIVATIONS.values():
        if row.spiking_pipeline:
            snn = to_snn(to_onnx(build("relu", logits=True), x[:1]), row.neuron, params={"amplitude": 0.01})
            onnx.checker.check_model(snn, full_check=True)
            hidden = {"LeNet-1": 2, "LeNet-4": 3, "LeNet-5": 4}[network]
            assert [n.op_type for n in snn.graph.node if n.domain == "org.onnxlab.snn"] == [row.neuron] * hidden
        else:
            model = build(row.keras)
            (ort,) = run_single(ort_session(to_onnx(model, x[:1])), x)
            np.testing.assert_allclose(ort, model.predict(x, verbose=0), atol=1e-5)


def test_spiking_cell_trains_evaluates_round_trips_and_is_cached(data, tmp_path, monkeypatch):
    first = run_cell("LeNet-1", "LIF", data, TINY, cache_dir=tmp_path, progress=False)
    assert first["spiking"] and not first["cached"]
    assert first["max_weight_abs_diff"] == 0.0 and first["identical_predictions"] == 1.0
    assert first["error_rate"] == first["error_rate_after_roundtrip"]
    assert len(first["error_by_step"]) == 8 == first["n_steps"]
    assert first["error_by_step"][-1] == pytest.approx(first["error_rate"])
    onnx.checker.check_model(onnx.load(first["model_path"]), full_check=True)

    def no_training(*args, **kwargs):
        raise AssertionError("a cached cell trained again")

    monkeypatch.setattr("onnxlab.snn.recipe.train_snn", no_training)
    monkeypatch.setattr("onnxlab.zoo.train_keras_classifier", no_training)
    again = run_cell("LeNet-1", "LIF", data, TINY, cache_dir=tmp_path, progress=False)
    assert again["cached"] and {k: v for k, v in again.items() if k != "cached"} == \
        {k: v for k, v in first.items() if k != "cached"}
    with pytest.raises(AssertionError, match="trained again"):  # another setting is another cell
        run_cell("LeNet-1", "LIF", data, TableSettings(**{**TINY.__dict__, "n_steps": 9}), cache_dir=tmp_path)


def test_non_spiking_cell_agrees_with_onnxruntime_image_by_image(data, tmp_path):
    row = run_cell("LeNet-4", "Sigmoid", data, TINY, cache_dir=tmp_path, progress=False)
    assert not row["spiking"] and row["identical_predictions"] == 1.0
    assert row["error_rate"] == row["error_rate_onnxruntime"] and row["error_rate_after_roundtrip"] is None
    assert 0 <= row["train_error_rate_onnxruntime"] <= 1 and row["epochs"] == 1


def test_rate_neuron_cell_is_one_step_without_layer_synapse(data, tmp_path):
    """A rate neuron's cell is scored from one step; the table's layer synapse (for LIF) is left out of its file and
    its cache key, where it would scale that one step's signal down by dt/tau (every prediction the same class)."""
    from onnxlab.snn.simulation import Simulation

    settings = TableSettings(**{**TINY.__dict__, "layer_synapse": 0.002})
    assert settings.cell_settings(ACTIVATIONS["SoftLIFRate"]) == TINY.cell_settings(ACTIVATIONS["SoftLIFRate"])
    row = run_cell("LeNet-1", "SoftLIFRate", data, settings, cache_dir=tmp_path, progress=False)
    assert not row["spiking"] and row["n_steps"] == 1 and row["identical_predictions"] == 1.0
    assert Simulation.read(onnx.load(row["model_path"])).layer_synapse is None
    assert row["error_rate_without_layer_synapse"] is None
    # a rate network: Nengo and ONNX Runtime compute the same function
    assert row["error_rate"] == pytest.approx(row["error_rate_onnxruntime"], abs=1 / 60)


@pytest.mark.parametrize("network, activation, message", [
    ("LeNet-2", "LIF", "unknown network 'LeNet-2'; known: LeNet-1, LeNet-4, LeNet-5"),
    ("LeNet-5", "Swish", "unknown activation 'Swish'; known: Tanh, Sigmoid, ReLU, LIF, SoftLIFRate"),
])
def test_unknown_cell_is_named(network, activation, message, data, tmp_path):
    with pytest.raises(InvalidArgument, match=message):
        run_cell(network, activation, data, TINY, cache_dir=tmp_path)


def test_layer_synapse_is_simulated_stored_and_compared(data, tmp_path):
    """A LIF cell with a layer synapse writes it into its file, and reports the same file simulated without it."""
    from onnxlab.snn.simulation import Simulation

    settings = TableSettings(**{**TINY.__dict__, "layer_synapse": 0.002})
    assert settings.cell_settings(ACTIVATIONS["LIF"]) != TINY.cell_settings(ACTIVATIONS["LIF"])
    assert settings.cell_settings(ACTIVATIONS["ReLU"]) == TINY.cell_settings(ACTIVATIONS["ReLU"])
    cell = run_cell("LeNet-1", "LIF", data, settings, cache_dir=tmp_path, progress=False)
    assert Simulation.read(onnx.load(cell["model_path"])).layer_synapse == 0.002
    assert 0.0 <= cell["error_rate_without_layer_synapse"] <= 1.0
    assert cell["error_rate"] == cell["error_rate_after_roundtrip"] and cell["identical_predictions"] == 1.0


def test_regularisation_keys_the_rows_it_applies_to():
    """A shift for every row keys every cell (a spiking row's through its recipe's pre-training shift); weight decay
    keys the non-spiking cells only; both only when used (cells trained before they existed keep their keys)."""
    regularised = TableSettings(**{**TINY.__dict__, "keras_shift_pixels": 2.0, "keras_weight_decay": 0.05})
    for name, row in ACTIVATIONS.items():
        if row.spiking_pipeline:
            assert regularised.row_recipe(row) == TINY.row_recipe(row).replace(keras_shift_pixels=2.0), name
            assert regularised.cell_settings(row) != TINY.cell_settings(row), name
        else:
            assert regularised.cell_settings(row) == {**TINY.cell_settings(row), "keras_shift_pixels": 2.0,
                                                      "keras_weight_decay": 0.05}, name
    assert "keras_weight_decay" not in TINY.cell_settings(ACTIVATIONS["ReLU"])
    decayed_lif = TableSettings(**{**TINY.__dict__, "keras_weight_decay": {"LIF": 0.01}})
    with pytest.raises(InvalidArgument, match="the spiking recipe has no weight decay, but LIF was given 0.01"):
        decayed_lif.cell_settings(ACTIVATIONS["LIF"])


def test_regularisation_per_activation_keys_each_row_with_its_own_values():
    per_row = TableSettings(**{**TINY.__dict__, "keras_shift_pixels": {"Tanh": 2.0, "Sigmoid": 1.0},
                               "keras_weight_decay": {"Tanh": 0.05, "Sigmoid": 0.01}})
    assert per_row.regularisation("Tanh") == {"shift_pixels": 2.0, "weight_decay": 0.05}
    assert per_row.cell_settings(ACTIVATIONS["Sigmoid"])["keras_shift_pixels"] == 1.0
    assert per_row.cell_settings(ACTIVATIONS["Sigmoid"])["keras_weight_decay"] == 0.01
    assert per_row.cell_settings(ACTIVATIONS["ReLU"]) == TINY.cell_settings(ACTIVATIONS["ReLU"])  # absent: none
    soft = TableSettings(**{**TINY.__dict__, "keras_shift_pixels": {"SoftLIFRate": 2.0}})
    assert soft.row_recipe(ACTIVATIONS["SoftLIFRate"]).keras_shift_pixels == 2.0
    assert soft.cell_settings(ACTIVATIONS["LIF"]) == TINY.cell_settings(ACTIVATIONS["LIF"])
    typo = TableSettings(**{**TINY.__dict__, "keras_weight_decay": {"tanh": 0.05}})
    with pytest.raises(InvalidArgument, match="keras_weight_decay names unknown activation.s. tanh; known: Tanh"):
        typo.cell_settings(ACTIVATIONS["Tanh"])
