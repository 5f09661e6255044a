"""Table P1: MNIST error rates of LeNet-1, -4 and -5 with five activations, through the ONNX-SNN pipeline.

Each cell (network × activation) is one independent, cached computation (`run_cell`):

- non-spiking activations (`Activation.keras`): the LeNet trained in Keras, converted with `onnxlab.to_onnx`, and
  its error measured in Keras and in ONNX Runtime (the two must agree image by image);
- spiking-pipeline activations (`Activation.neuron`): the recipe of `onnxlab.snn.recipe` (Keras pre-training with the
  neuron's rate curve → ONNX → ONNX-SNN → Nengo → NengoDL training), evaluated in Nengo (LIF spiking, read through
  the output synapse at every step; SoftLIFRate as a rate neuron), exported with `from_nengo`, read back from the
  file and evaluated again: every spiking cell is also a round trip.

The trained model of each cell stays in its cache folder (``model.onnx``), for Netron.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from onnxlab.cache import arrays_digest, cache_entry
from onnxlab.errors import InvalidArgument
from onnxlab.snn.recipe import PREDICT_BATCH, RECIPE_NEURONS, SpikingRecipe
from onnxlab.snn.simulation import Simulation
from onnxlab.zoo import lenet1, lenet4, lenet5

#: Cache kind (folder under the cache root) of Table P1's cells.
CACHE_KIND = "activation_error_rates"
#: File name of a cell's trained model inside its cache folder.
MODEL_FILE = "model.onnx"


#: The regularisation settings of the Keras training (`TableSettings.keras_<name>`, one value or per activation).
REGULARISATION = ("shift_pixels", "weight_decay")


#: The table's networks, in its column order: name -> builder (activation, logits=False) -> Keras model.
NETWORKS: dict[str, Callable[..., Any]] = {"LeNet-1": lenet1, "LeNet-4": lenet4, "LeNet-5": lenet5}


@dataclass(frozen=True)
class Activation:
    """A row of Table P1: a Keras activation (non-spiking) or a neuron op trained by the spiking recipe."""

    name: str
    keras: str | None = None
    neuron: str | None = None

    @property
    def spiking_pipeline(self) -> bool:
        """True if the cell goes through ONNX-SNN, NengoDL and the round trip."""
        return self.neuron is not None


#: The table's rows, in the thesis' order.
ACTIVATIONS: dict[str, Activation] = {a.name: a for a in (
    Activation("Tanh", keras="tanh"),
    Activation("Sigmoid", keras="sigmoid"),
    Activation("ReLU", keras="relu"),
    Activation("LIF", neuron="LIF"),
    Activation("SoftLIFRate", neuron="SoftLIFRate"),
)}


@dataclass(frozen=True)
class TableSettings:
    """Training and evaluation settings shared by the cells.

    Attributes
    ----------
    keras_epochs, keras_learning_rate, keras_batch_size, keras_optimizer, keras_schedule
        Training of the non-spiking networks (`onnxlab.zoo.train_keras_classifier`).
    keras_shift_pixels, keras_weight_decay
        Regularisation of the Keras training: training images randomly shifted by up to this many pixels, and
        decoupled weight decay (per unit of learning rate). Each one value for every row, or activation name ->
        value (absent: 0); 0: none (`regularisation`). A spiking-pipeline row's shift applies to its Keras
        pre-training (`row_recipe`); weight decay applies to non-spiking rows only (a mapping that gives a spiking
        row one is refused).
    recipe
        The spiking recipe; its ``neuron`` (and pre-training shift, where ``keras_shift_pixels`` names the row) is
        set per row.
    n_steps
        Simulation steps per test image of spiking networks (dt = ``dt``).
    dt, synapse
        Simulation step (s) and output synapse (s) stored in the ONNX-SNN files.
    layer_synapse
        Lowpass time constant (s) on every connection out of a neuron layer in simulation (not in training,
        `onnxlab.snn.train.without_synapses`) of spiking cells (LIF; a rate neuron is evaluated in one step,
        `SpikingRecipe.file_simulation`); None: none.
    minibatch_size
        Images per NengoDL evaluation batch.
    """

    keras_epochs: int = 15
    keras_learning_rate: float = 1e-3
    keras_batch_size: int = 128
    keras_optimizer: str = "adam"
    keras_schedule: str = "cosine"
    keras_shift_pixels: float | Mapping[str, float] = 0.0
    keras_weight_decay: float | Mapping[str, float] = 0.0
    recipe: SpikingRecipe = field(default_factory=SpikingRecipe)
    n_steps: int = 50
    dt: float = 0.001
    synapse: float = 0.1
    layer_synapse: float | None = None
    minibatch_size: int = 200

    @property
    def simulation(self) -> Simulation:
        return Simulation(dt=self.dt, n_steps=self.n_steps, synapse=self.synapse, layer_synapse=self.layer_synapse)

    def cell_settings(self, activation: Activation) -> dict[str, Any]:
        """The settings a cell of this row depends on (its cache key, and what its table row records)."""
        if activation.spiking_pipeline:
            recipe = self.row_recipe(activation)
            key = {"recipe": recipe.key_settings, "n_steps": self.n_steps, "dt": self.dt, "synapse": self.synapse}
            filtered = recipe.file_simulation(self.simulation).layer_synapse  # none for a rate neuron
            return key | ({"layer_synapse": filtered} if filtered is not None else {})
        keras = {k: getattr(self, k) for k in ("keras_epochs", "keras_learning_rate", "keras_batch_size",
                                               "keras_optimizer", "keras_schedule")}
        # the regularisation keys only when used, so cells trained before they existed keep their cache keys
        used = {f"keras_{k}": v for k, v in self.regularisation(activation.name).items() if v}
        return keras | used | {"seed": self.recipe.seed}

    def regularisation(self, activation: str) -> dict[str, float]:
        """``shift_pixels`` and ``weight_decay`` of a row (`keras_shift_pixels`, `keras_weight_decay`, resolved per
        activation): arguments of `onnxlab.zoo.train_keras_classifier`."""
        resolved = {}
        for name in REGULARISATION:
            value = getattr(self, f"keras_{name}")
            if isinstance(value, Mapping):
                unknown = set(value) - set(ACTIVATIONS)
                if unknown:
                    raise InvalidArgument(f"keras_{name} names unknown activation(s) {', '.join(sorted(unknown))}; "
                                          f"known: {', '.join(ACTIVATIONS)}")
                value = value.get(activation, 0.0)
            resolved[name] = float(value)
        return resolved

    def row_recipe(self, activation: Activation) -> SpikingRecipe:
        """The spiking recipe of a spiking-pipeline row: `recipe` with the row's neuron, and its pre-training shift
        where `keras_shift_pixels` gives the row one."""
        regularisation = self.regularisation(activation.name)
        if isinstance(self.keras_weight_decay, Mapping) and regularisation["weight_decay"]:
            raise InvalidArgument(f"keras_weight_decay: the spiking recipe has no weight decay, but {activation.name} "
                                  f"was given {regularisation['weight_decay']:g}")
        shift = {"keras_shift_pixels": regularisation["shift_pixels"]} if regularisation["shift_pixels"] else {}
        return self.recipe.replace(neuron=activation.neuron, **shift)

    @property
    def settings(self) -> dict[str, Any]:
        """All settings as a plain dict, for the table's JSON."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MnistArrays:
    """The images and labels a table is computed on: float32 (N, 28, 28, 1) in [0, 1], int64 labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def digest(self) -> str:
        return arrays_digest(self.x_train, self.y_train, self.x_test, self.y_test)


def onnxruntime_errors(model: Any, data: MnistArrays) -> tuple[np.ndarray, float]:
    """A classifier (ONNX model or path) in ONNX Runtime, one session for both sets: its test-set predictions (N,)
    and its error rate on the training images."""
    from onnxlab.runtime import ort_session, predicted_labels

    session = ort_session(model)
    train_labels = predicted_labels(session, data.x_train, PREDICT_BATCH)
    return predicted_labels(session, data.x_test, PREDICT_BATCH), _error(train_labels, data.y_train)


def _error(labels: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(labels != y))


def _keras_cell(network: str, activation: Activation, data: MnistArrays, settings: TableSettings,
                folder: Path, progress: str | None) -> dict[str, Any]:
    import tensorflow as tf

    from onnxlab import to_onnx
    from onnxlab.formats import save_model
    from onnxlab.zoo import train_keras_classifier

    tf.random.set_seed(settings.recipe.seed)
    keras_model = NETWORKS[network](activation.keras)
    started = time.perf_counter()
    train_keras_classifier(keras_model, data.x_train, data.y_train, epochs=settings.keras_epochs,
                batch_size=settings.keras_batch_size, learning_rate=settings.keras_learning_rate,
                optimizer=settings.keras_optimizer, schedule=settings.keras_schedule,
                seed=settings.recipe.seed, progress=progress, **settings.regularisation(activation.name))
    train_seconds = time.perf_counter() - started
    keras_labels = keras_model.predict(data.x_test, batch_size=PREDICT_BATCH, verbose=0).argmax(-1)
    path = save_model(to_onnx(keras_model, data.x_train[:1]), folder / MODEL_FILE)
    started = time.perf_counter()
    ort_labels, ort_train_error = onnxruntime_errors(path, data)
    return dict(
        error_rate=_error(keras_labels, data.y_test), error_rate_onnxruntime=_error(ort_labels, data.y_test),
        error_rate_after_roundtrip=None, error_rate_without_layer_synapse=None,
        identical_predictions=float(np.mean(keras_labels == ort_labels)),
        max_weight_abs_diff=None, train_error_rate_onnxruntime=ort_train_error, keras_rate_error_rate=None, epochs=settings.keras_epochs, nengodl_epochs=0, n_steps=None,
        train_seconds=train_seconds, eval_seconds=time.perf_counter() - started, error_by_step=None)


def _spiking_cell(network: str, activation: Activation, data: MnistArrays, settings: TableSettings,
                  folder: Path, progress: str | None) -> dict[str, Any]:
    from onnxlab.snn.recipe import evaluate, round_trip, train_snn

    recipe = settings.row_recipe(activation)
    build = NETWORKS[network]
    trained = train_snn(lambda act: build(act, logits=True), recipe, data.x_train, data.y_train,
                        simulation=settings.simulation, x_eval=data.x_test, y_eval=data.y_test, progress=progress)
    before = evaluate(trained.model, data.x_test, data.y_test, n_steps=settings.n_steps,
                      minibatch_size=settings.minibatch_size)
    trip = round_trip(trained.model, folder / MODEL_FILE, name=f"{network}-{activation.name}-trained")
    after = evaluate(trip.model, data.x_test, data.y_test, n_steps=settings.n_steps,
                     minibatch_size=settings.minibatch_size)
    unfiltered = None
    if settings.layer_synapse is not None and recipe.spiking:  # what the layer synapse buys: the same file without
        from onnxlab.snn.to_nengo import to_nengo

        unfiltered = evaluate(to_nengo(trip.proto, layer_synapses=False), data.x_test, data.y_test,
                              n_steps=settings.n_steps, minibatch_size=settings.minibatch_size).error_rate
    keras_error = None if trained.pretrained.keras_accuracy is None else 1.0 - trained.pretrained.keras_accuracy
    ort_labels, ort_train_error = onnxruntime_errors(trip.proto, data)
    return dict(
        error_rate=before.error_rate, error_rate_onnxruntime=_error(ort_labels, data.y_test),
        error_rate_after_roundtrip=after.error_rate, error_rate_without_layer_synapse=unfiltered,
        identical_predictions=float(np.mean(before.labels == after.labels)),
        max_weight_abs_diff=trip.max_weight_abs_diff, train_error_rate_onnxruntime=ort_train_error,
        keras_rate_error_rate=keras_error, epochs=recipe.keras_pretrain_epochs, nengodl_epochs=recipe.epochs,
        n_steps=len(before.per_step), train_seconds=trained.seconds, eval_seconds=before.seconds + after.seconds,
        error_by_step=(1.0 - before.per_step).tolist())


def run_cell(network: str, activation: str, data: MnistArrays, settings: TableSettings, *,
             cache_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Train and evaluate one cell of Table P1, or read it from the cache.

    Parameters
    ----------
    network, activation
        A name in `NETWORKS` and a key of `ACTIVATIONS`.
    data
        The images and labels (part of the cache key, by digest).
    settings
        Training and evaluation settings; only those the row uses key the cache.
    cache_dir
        Cache root; the cell's folder holds ``result.json`` and the trained ``model.onnx``.
    progress
        Print one line per training epoch.

    Returns
    -------
    dict
        The table row: ``network``, ``activation``, ``spiking`` (evaluated with spikes), ``error_rate``
        (Keras, or Nengo before the round trip), ``error_rate_onnxruntime`` (the ONNX file in ONNX Runtime: the
        rate approximation for LIF), ``error_rate_after_roundtrip`` (spiking pipeline only),
        ``error_rate_without_layer_synapse`` (spiking with a ``layer_synapse``: the same file simulated without it),
        ``identical_predictions`` (Keras vs ONNX Runtime, or before vs after the round trip),
        ``max_weight_abs_diff``, ``train_error_rate_onnxruntime`` (on the training images), ``epochs`` (Keras
        training or pre-training), ``nengodl_epochs``, ``n_steps``, ``train_seconds``, ``eval_seconds``,
        ``error_by_step`` (LIF: error after each step), ``model_path``, ``cached`` (read from the cache).
    """
    if network not in NETWORKS:
        raise InvalidArgument(f"unknown network {network!r}; known: {', '.join(NETWORKS)}")
    if activation not in ACTIVATIONS:
        raise InvalidArgument(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
    row = ACTIVATIONS[activation]
    key = {"network": network, "activation": activation, "data": data.digest(), **settings.cell_settings(row)}
    entry = cache_entry(cache_dir, CACHE_KIND, f"{network}-{activation}", key)
    result = entry.load()
    cached = result is not None
    if not cached:
        compute = _spiking_cell if row.spiking_pipeline else _keras_cell
        label = f"{network} · {activation}" if progress else None
        result = entry.store(compute(network, row, data, settings, entry.workdir(), label))
    spiking = row.spiking_pipeline and RECIPE_NEURONS[row.neuron]
    return {"network": network, "activation": activation, "spiking": spiking, **result,
            "model_path": str(entry.folder / MODEL_FILE), "cached": cached}
