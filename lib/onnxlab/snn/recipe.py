"""The spiking training recipe of Tables K4 and P1: Keras → ONNX → ONNX-SNN → Nengo, trained in NengoDL, evaluated
spiking, exported back to ONNX-SNN and evaluated again.

One implementation for every notebook that trains a spiking classifier:

1. `pretrain_snn`: the Keras network, optionally pre-trained with the neuron's own rate curve as its activation
   (`onnxlab.snn.keras_rates`, the rate-based training of Hunsberger & Eliasmith 2015), exported to ONNX with a
   ``Relu`` placeholder per activation and turned into ONNX-SNN by `to_snn` with the same neuron parameters;
2. `train_snn`: that file built in Nengo (`to_nengo`) and trained in NengoDL (`train_classifier`; LIF through its
   smoothed rate curve, rate neurons as themselves);
3. `evaluate`: accuracy at every simulation step (spiking networks, output read through the file's synapse) or
   from one step (rate networks);
4. `round_trip`: `from_nengo` → file on disk → read back → `to_nengo`, with the largest parameter difference.

`SpikingRecipe` holds every setting; `SpikingRecipe.settings` is what a notebook records in its table's JSON.
"""
from __future__ import annotations

import dataclasses
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from onnxlab.errors import SNNError
from onnxlab.snn.simulation import Simulation
from onnxlab.snn.to_nengo import NengoModel

#: Neuron ops the recipe trains, and whether each is simulated with spikes. LIF trains through its rate curve
#: smoothed with ``lif_smoothing`` (NengoDL's SoftLIFRate); SoftLIFRate is that smoothed curve as a rate neuron.
RECIPE_NEURONS = {"LIF": True, "SoftLIFRate": False}

#: Settings added after results were cached, each with the value that gives the recipe as it was before: left out of
#: `SpikingRecipe.key_settings` while they hold it, so earlier cache entries (`onnxlab.cache`) stay valid.
LATER_SETTINGS = {"keras_training_noise": 0.0}

#: Images per ONNX Runtime / Keras prediction batch.
PREDICT_BATCH = 500


@dataclass(frozen=True)
class SpikingRecipe:
    """Every setting of the recipe.

    Attributes
    ----------
    neuron
        A key of `RECIPE_NEURONS`.
    amplitude, max_rate, intercept
        The neurons' output scale, firing rate (spikes/s) at input 1, and input at which they start firing
        (as NengoDL's spiking MNIST example: 0.01, 100, 0).
    keras_pretrain_epochs, keras_learning_rate, keras_batch_size, keras_schedule, keras_shift_pixels
        Keras pre-training with the neuron's rate curve as activation (Adam; ``keras_schedule`` a name in
        `onnxlab.training.schedules`; images randomly shifted by up to ``keras_shift_pixels``, see
        `onnxlab.zoo.train_keras_classifier`); 0 epochs: NengoDL trains from the Keras network's initial weights.
    keras_training_noise
        Gaussian noise (standard deviation, amplitude x spikes/s) added to every rate during Keras pre-training
        (`onnxlab.snn.keras_rates.lif_rate_activation`'s ``training_noise``); 0: none.
    epochs, minibatch_size, optimizer, learning_rate, lr_schedule
        NengoDL training (`onnxlab.snn.train.train_classifier`).
    lif_smoothing
        ``sigma`` of the smoothed LIF rate curve: LIF trains through it, and it is the SoftLIFRate neuron's
        ``sigma``. None: the exact LIF rate curve (LIF only).
    rate_floor_hz, rate_floor_weight
        Penalty on firing between 0 and ``rate_floor_hz`` spikes/s (spiking neurons only; None: off).
    seed
        Keras and NengoDL seed.
    """

    neuron: str = "LIF"
    amplitude: float = 0.01
    max_rate: float = 100.0
    intercept: float = 0.0
    keras_pretrain_epochs: int = 6
    keras_learning_rate: float = 1e-3
    keras_batch_size: int = 128
    keras_schedule: str = "constant"
    keras_shift_pixels: float = 0.0
    keras_training_noise: float = 0.0
    epochs: int = 1
    minibatch_size: int = 200
    optimizer: str = "rmsprop"
    learning_rate: float = 3e-4
    lr_schedule: str = "constant"
    lif_smoothing: float | None = 0.01
    rate_floor_hz: float | None = 100.0
    rate_floor_weight: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.neuron not in RECIPE_NEURONS:
            raise SNNError(f"SpikingRecipe: neuron must be one of {', '.join(RECIPE_NEURONS)}, got {self.neuron!r}")
        if self.keras_pretrain_epochs < 0 or self.epochs < 1:
            raise SNNError(f"SpikingRecipe: keras_pretrain_epochs must be >= 0 and epochs >= 1, got "
                           f"{self.keras_pretrain_epochs} and {self.epochs}")
        if self.neuron == "SoftLIFRate" and self.lif_smoothing is None:
            raise SNNError("SpikingRecipe: SoftLIFRate needs lif_smoothing (its sigma)")

    @property
    def spiking(self) -> bool:
        """True if the trained network is evaluated with spikes."""
        return RECIPE_NEURONS[self.neuron]

    @property
    def settings(self) -> dict[str, Any]:
        """The settings as a plain dict (for a table's JSON and a cache key)."""
        return dataclasses.asdict(self)

    @property
    def key_settings(self) -> dict[str, Any]:
        """`settings` without the `LATER_SETTINGS` that hold their earlier value (for a cache key)."""
        return {k: v for k, v in self.settings.items() if k not in LATER_SETTINGS or v != LATER_SETTINGS[k]}

    def replace(self, **changes: Any) -> "SpikingRecipe":
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def neuron_params(self) -> dict[str, float]:
        """The neuron op's parameters for `to_snn`."""
        params = {"amplitude": self.amplitude}
        if self.neuron == "SoftLIFRate":
            params["sigma"] = self.lif_smoothing
        return params

    def file_simulation(self, simulation: Simulation) -> Simulation:
        """The simulation settings this recipe's files store: ``simulation``, without a ``layer_synapse`` for a rate
        neuron (evaluated in one step, where a lowpass between layers would only scale the signal by dt/tau)."""
        return simulation if self.spiking else dataclasses.replace(simulation, layer_synapse=None)

    def rate_curve(self) -> Callable[[Any], Any]:
        """The Keras activation computing this neuron's rate (what pre-training trains through)."""
        from onnxlab.snn.keras_rates import lif_rate_activation

        return lif_rate_activation(amplitude=self.amplitude, max_rate=self.max_rate, intercept=self.intercept,
                                   sigma=self.lif_smoothing, training_noise=self.keras_training_noise)


@dataclass
class PretrainedSnn:
    """What `pretrain_snn` made.

    Attributes
    ----------
    snn
        The ONNX-SNN model (before NengoDL training).
    keras_accuracy
        Accuracy of the pre-trained Keras network (rate curve as activation) on the evaluation images, or None
        (no pre-training or no evaluation images).
    seconds
        Keras pre-training wall-clock time (s); 0 without pre-training.
    """

    snn: onnx.ModelProto
    keras_accuracy: float | None
    seconds: float


@dataclass
class TrainedSnn:
    """What `train_snn` made: the trained Nengo network and how it got there.

    Attributes
    ----------
    model
        The NengoDL-trained network (parameters frozen into it).
    pretrained
        The Keras stage.
    training
        The NengoDL stage (`onnxlab.snn.train.TrainingRun`).
    """

    model: NengoModel
    pretrained: PretrainedSnn
    training: Any

    @property
    def seconds(self) -> float:
        """Keras pre-training plus NengoDL training time (s)."""
        return self.pretrained.seconds + self.training.seconds


@dataclass(frozen=True)
class Score:
    """Classification accuracy of a Nengo network, by simulation step.

    Attributes
    ----------
    per_step
        Accuracy after each step, shape (n_steps,): read from the synapse-filtered output for spiking networks;
        a single step for rate networks.
    labels
        Predicted class of each image at the last step, shape (N,).
    seconds
        Simulation wall-clock time (s).
    """

    per_step: np.ndarray
    labels: np.ndarray
    seconds: float

    @property
    def accuracy(self) -> float:
        """Accuracy at the last step."""
        return float(self.per_step[-1])

    @property
    def error_rate(self) -> float:
        """1 - accuracy at the last step."""
        return 1.0 - self.accuracy


@dataclass
class RoundTrip:
    """What `round_trip` made.

    Attributes
    ----------
    model
        The network rebuilt from the file.
    proto
        The file as read back (checked with ``onnx.checker`` in full).
    path
        Where it was written.
    max_weight_abs_diff
        Largest |after - before| over every parameter tensor (must be 0).
    """

    model: NengoModel
    proto: onnx.ModelProto
    path: Path
    max_weight_abs_diff: float


def keras_accuracy(keras_model: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a Keras classifier on images ``x`` (N, ...) with labels ``y`` (N,)."""
    scores = keras_model.predict(x, batch_size=PREDICT_BATCH, verbose=0)
    return float(np.mean(scores.argmax(-1) == y))


def pretrain_snn(build_keras: Callable[[Any], Any], recipe: SpikingRecipe, x_train: np.ndarray, y_train: np.ndarray,
                 *, simulation: Simulation, x_eval: np.ndarray | None = None, y_eval: np.ndarray | None = None,
                 progress: str | None = None) -> PretrainedSnn:
    """Keras network → (pre-training with the rate curve) → ONNX → ONNX-SNN.

    Parameters
    ----------
    build_keras
        activation (a Keras activation name or callable) -> a new Keras classifier whose last layer outputs
        logits (e.g. ``lambda a: onnxlab.zoo.lenet5(a, logits=True)``); its activations become the neurons.
    x_train, y_train
        Training images (N, 28, 28, 1) float32 in [0, 1] and integer labels (N,).
    simulation
        Settings stored in the file (dt, n_steps, synapse, layer_synapse). A rate neuron's network (SoftLIFRate) is
        evaluated in one step, where a lowpass between layers would only scale the signal down by dt/tau: its file
        gets no ``layer_synapse`` (`SpikingRecipe.file_simulation`).
    x_eval, y_eval
        Images and labels to measure the pre-trained Keras network on (optional).
    progress
        If given, print one line per Keras epoch prefixed with it.
    """
    from onnxlab import to_onnx
    from onnxlab.snn.keras_rates import with_relu_placeholders
    from onnxlab.snn.to_snn import to_snn
    from onnxlab.zoo import train_keras_classifier

    import tensorflow as tf

    tf.random.set_seed(recipe.seed)
    accuracy, seconds = None, 0.0
    if recipe.keras_pretrain_epochs:
        curve = recipe.rate_curve()
        keras_model = build_keras(curve)
        started = time.perf_counter()
        train_keras_classifier(keras_model, x_train, y_train, epochs=recipe.keras_pretrain_epochs,
                    batch_size=recipe.keras_batch_size, learning_rate=recipe.keras_learning_rate, seed=recipe.seed,
                    schedule=recipe.keras_schedule, shift_pixels=recipe.keras_shift_pixels, from_logits=True,
                    progress=progress)
        seconds = time.perf_counter() - started
        if x_eval is not None:
            accuracy = keras_accuracy(keras_model, x_eval, y_eval)
        keras_model = with_relu_placeholders(keras_model, curve)  # one Relu node per rate curve in the file
    else:
        keras_model = build_keras("relu")
    snn = to_snn(to_onnx(keras_model, x_train[:1]), recipe.neuron, params=recipe.neuron_params(),
                 max_rates=recipe.max_rate, intercepts=recipe.intercept, simulation=recipe.file_simulation(simulation))
    return PretrainedSnn(snn, accuracy, seconds)


def train_snn(build_keras: Callable[[Any], Any], recipe: SpikingRecipe, x_train: np.ndarray, y_train: np.ndarray,
              *, simulation: Simulation, x_eval: np.ndarray | None = None, y_eval: np.ndarray | None = None,
              progress: str | None = None) -> TrainedSnn:
    """The whole training recipe: `pretrain_snn`, `to_nengo`, NengoDL training. Arguments as `pretrain_snn`."""
    from onnxlab.snn.to_nengo import to_nengo
    from onnxlab.snn.train import train_classifier

    pretrained = pretrain_snn(build_keras, recipe, x_train, y_train, simulation=simulation, x_eval=x_eval,
                              y_eval=y_eval, progress=progress)
    model = to_nengo(pretrained.snn)
    training = train_classifier(
        model, x_train, y_train, epochs=recipe.epochs, minibatch_size=recipe.minibatch_size,
        optimizer=recipe.optimizer, learning_rate=recipe.learning_rate, schedule=recipe.lr_schedule,
        lif_smoothing=recipe.lif_smoothing,
        rate_floor_hz=recipe.rate_floor_hz if recipe.spiking else None, rate_floor_weight=recipe.rate_floor_weight,
        seed=recipe.seed, progress=progress and f"{progress} NengoDL")
    return TrainedSnn(model, pretrained, training)


def is_spiking(model: NengoModel) -> bool:
    """True if any ensemble of ``model`` has spiking neurons."""
    return any(ensemble.neuron_type.spiking for ensemble in model.ensembles.values())


def evaluate(model: NengoModel, x: np.ndarray, y: np.ndarray, *, n_steps: int | None = None,
             minibatch_size: int = 200, progress_bar: bool = False) -> Score:
    """Accuracy of ``model`` on images ``x`` (N, ...) with labels ``y`` (N,), at every simulation step.

    A spiking network is simulated for ``n_steps`` steps (default: the file's) per image and read through the
    file's output synapse; a rate network needs one step, read unfiltered.
    """
    from onnxlab.snn.simulate import simulate

    spiking = is_spiking(model)
    if not spiking and (filtered := _layer_synapse_labels(model)):
        raise SNNError(f"evaluate: a rate network is scored from one step, but its connections out of "
                       f"{', '.join(filtered)} have synapses, which would only scale that step's signal down; build "
                       "it with to_nengo(..., layer_synapses=False)")
    started = time.perf_counter()
    with warnings.catch_warnings():  # a rate network's one step reads unfiltered probes: no synapse delay
        warnings.filterwarnings("ignore", message="Running for one timestep")
        out = simulate(model, x, n_steps=(n_steps or model.simulation.n_steps) if spiking else 1,
                       filtered=spiking, minibatch_size=minibatch_size, progress_bar=progress_bar)
    seconds = time.perf_counter() - started
    if len(out) != 1:
        raise SNNError(f"evaluate needs a model with one output; it has {list(out)}")
    (scores,) = out.values()
    per_step = (scores.argmax(-1) == np.asarray(y)[:, None]).mean(0)
    return Score(per_step, scores[:, -1].argmax(-1), seconds)


def _layer_synapse_labels(model: NengoModel) -> list[str]:
    """Labels of the ensembles of ``model`` whose outgoing neuron connections have a synapse."""
    import nengo

    return sorted({str(c.pre_obj.ensemble.label) for c in model.network.all_connections
                   if isinstance(c.pre_obj, nengo.ensemble.Neurons) and c.synapse is not None})


def round_trip(model: NengoModel, path: str | os.PathLike, *, name: str | None = None) -> RoundTrip:
    """Export ``model`` to ONNX-SNN at ``path`` (`from_nengo`), read it back, check it, rebuild it in Nengo."""
    from onnxlab.formats import load_model, save_model
    from onnxlab.snn.from_nengo import from_nengo
    from onnxlab.snn.parameters import max_abs_difference, nengo_parameters
    from onnxlab.snn.to_nengo import to_nengo

    written = save_model(from_nengo(model, name=name), path)
    proto = load_model(written)
    onnx.checker.check_model(proto, full_check=True)
    rebuilt = to_nengo(proto)
    diff = max_abs_difference(nengo_parameters(model.network), nengo_parameters(rebuilt.network))
    return RoundTrip(rebuilt, proto, Path(written), diff)
