"""Train a `NengoModel` in NengoDL (spiking neurons through their rate approximation), as a classifier."""
from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from onnxlab.errors import SNNError
from onnxlab.training import epoch_logger, optimizers, schedules
from onnxlab.snn.simulate import dl_planner, dl_settings, single_input, temporary_probes
from onnxlab.snn.to_nengo import NengoModel


#: Default smoothing of the LIF rate curve in training (NengoDL ``lif_smoothing``): the exact curve's infinite
#: slope at the firing threshold makes gradients erratic; on the Kim 2021 CNN smoothing made each epoch count more.
LIF_SMOOTHING = 0.01


def low_rate_penalty(threshold: float) -> Callable[[Any, Any], Any]:
    """Keras loss that penalises firing rates between zero and ``threshold``, not silence nor faster firing.

    ``mean(u * relu(1 - u))`` with ``u = rate / threshold``: zero for a silent neuron and for one at or above the
    threshold, at most 0.25 (at half the threshold). Its gradient pushes a rate below half the threshold to zero
    and one above it up to the threshold, so after training most neurons either stay silent or fire often enough
    that a short spiking simulation resolves their rate, instead of emitting at most one spike.

    Parameters
    ----------
    threshold
        The rate (in the probe's units: amplitude x spikes/s) below which a firing neuron is penalised.
    """
    import tensorflow as tf

    def loss(_target, rates):
        u = rates / threshold
        return tf.reduce_mean(u * tf.nn.relu(1.0 - u))

    return loss


@dataclass(frozen=True)
class TrainingRun:
    """What `train_classifier` did.

    Attributes
    ----------
    loss
        Mean training loss of each epoch (classification loss plus any rate penalty).
    seconds
        Wall-clock time of ``fit`` (s), graph building excluded.
    """

    loss: list[float]
    seconds: float
    optimizer: str
    learning_rate: float
    schedule: str
    lif_smoothing: float | None
    epochs: int
    minibatch_size: int
    rate_floor_hz: float | None = None
    rate_floor_weight: float = 0.0


@contextmanager
def trainable(network: Any, objects: Iterable[Any]) -> Iterator[None]:
    """Mark ``objects`` (ensembles, connections of ``network``) trainable in NengoDL inside the block only."""
    from onnxlab.reproducibility import import_nengo_dl

    import nengo

    objects = list(objects)
    if not objects:
        yield
        return
    if "trainable" not in network.config[nengo.Ensemble].extra_params:
        with network:
            import_nengo_dl().configure_settings(trainable=None)
    before = {obj: network.config[obj].trainable for obj in objects}
    for obj in objects:
        network.config[obj].trainable = True
    try:
        yield
    finally:
        for obj, value in before.items():
            network.config[obj].trainable = value


@contextmanager
def without_synapses(network: Any) -> Iterator[None]:
    """Every connection of ``network`` instantaneous (``synapse=None``) inside the block; restored after.

    `train_classifier` presents each sample for one step, where a lowpass between layers would only scale the
    signal down by dt/tau: it trains the instantaneous network, which is what a layer synapse smooths in time.
    """
    filtered = {conn: conn.synapse for conn in network.all_connections if conn.synapse is not None}
    for conn in filtered:
        conn.synapse = None
    try:
        yield
    finally:
        for conn, synapse in filtered.items():
            conn.synapse = synapse


def train_classifier(model: NengoModel, x: np.ndarray, y: np.ndarray, *, epochs: int, minibatch_size: int = 200,
                     optimizer: str = "rmsprop", learning_rate: float = 1e-3, schedule: str = "constant",
                     lif_smoothing: float | None = LIF_SMOOTHING, rate_floor_hz: float | None = None,
                     rate_floor_weight: float = 1.0, train_biases: bool = True, seed: int = 0,
                     progress: str | None = None) -> TrainingRun:
    """Train ``model`` in NengoDL on labelled samples, one simulation step per sample, and keep the weights.

    NengoDL trains spiking neurons through their rate approximation, one step per sample, without the lowpass
    synapses between layers (`without_synapses`); the trained parameters are written back into the network
    (``freeze_params``), so `simulate`, `from_nengo` and `to_nengo_code` see them.

    Parameters
    ----------
    x
        Samples of shape (N, *input_shape) for the model's single input.
    y
        Integer class labels, shape (N,); the single output gives logits (softmax cross-entropy).
    optimizer, learning_rate, schedule
        A name from `optimizers`, its initial learning rate, a name from `schedules` (applied over
        all ``epochs * (N // minibatch_size)`` steps). The defaults are NengoDL's spiking MNIST example's.
    lif_smoothing
        ``sigma`` of the SoftLIFRate curve that stands in for LIF neurons during training (NengoDL's
        ``lif_smoothing`` setting); None trains through the exact LIFRate curve, whose slope is
        infinite at the firing threshold.
    rate_floor_hz, rate_floor_weight
        If set, every ensemble's neurons are also trained to be either silent or to fire at least
        ``rate_floor_hz`` spikes/s (`low_rate_penalty`, added to the loss with ``rate_floor_weight`` in all,
        split evenly over the ensembles).
        A neuron at a few Hz is the spiking network's main error in a short simulation: in 30 ms it fires once
        or not at all. None (default) trains on the classification loss alone.
    train_biases
        Train the ensembles' per-neuron biases too (they hold the ONNX biases folded into them), whatever
        `onnxlab.snn.to_nengo.to_nengo`'s ``trainable_ensembles`` left them as; afterwards the ensembles are fixed or
        trainable as before. False trains the ONNX weights only.
    progress
        If given, print one line per epoch (loss) prefixed with it (`onnxlab.training.epoch_logger`).

    Returns
    -------
    TrainingRun
    """
    from onnxlab.reproducibility import import_nengo_dl

    nengo_dl = import_nengo_dl()
    import tensorflow as tf

    node, x = single_input(model, x, "train_classifier")
    if len(model.outputs) != 1:
        raise SNNError(f"train_classifier supports one output; the model has {list(model.outputs)}")
    (probe,) = model.outputs.values()
    for name, value, known in (("optimizer", optimizer, optimizers()), ("schedule", schedule, schedules())):
        if value not in known:
            raise SNNError(f"unknown {name} {value!r}; known: {', '.join(known)}")
    if epochs < 1 or minibatch_size < 1:
        raise SNNError(f"epochs and minibatch_size must be positive, got {epochs} and {minibatch_size}")
    if lif_smoothing is not None and not lif_smoothing > 0:
        raise SNNError(f"lif_smoothing must be positive or None, got {lif_smoothing}")
    if rate_floor_hz is not None and not (rate_floor_hz > 0 and rate_floor_weight > 0):
        raise SNNError(f"rate_floor_hz and rate_floor_weight must be positive, got {rate_floor_hz} and "
                       f"{rate_floor_weight}")
    if len(x) != len(y) or len(x) < minibatch_size:
        raise SNNError(f"need as many labels as samples and at least one minibatch ({minibatch_size}); "
                       f"got {len(x)} samples and {len(y)} labels")
    rate = schedules()[schedule](learning_rate, epochs * (len(x) // minibatch_size))
    tf.get_logger().setLevel("ERROR")
    tf.random.set_seed(seed)
    losses = {probe: tf.losses.SparseCategoricalCrossentropy(from_logits=True)}
    weights = {probe: 1.0}
    targets = {probe: np.asarray(y).reshape(-1, 1, 1)}
    # unfiltered probes on every ensemble's neurons, for the penalty only (from_nengo must not see them)
    ensembles = model.ensembles.values() if rate_floor_hz is not None else ()
    with temporary_probes(model.network, {ens: ens.neurons for ens in ensembles}) as rate_probes, \
            trainable(model.network, model.ensembles.values() if train_biases else ()), \
            without_synapses(model.network), \
            dl_settings(model.network, planner=dl_planner(), stateful=False, lif_smoothing=lif_smoothing), \
            nengo_dl.Simulator(model.network, minibatch_size=minibatch_size, seed=seed, progress_bar=False) as sim:
        for ensemble, rate_probe in rate_probes.items():
            losses[rate_probe] = low_rate_penalty(getattr(ensemble.neuron_type, "amplitude", 1.0) * rate_floor_hz)
            weights[rate_probe] = rate_floor_weight / len(rate_probes)
            targets[rate_probe] = np.zeros((len(x), 1, 1), np.float32)  # the penalty ignores its target
        sim.compile(optimizer=optimizers()[optimizer](rate), loss=losses, loss_weights=weights)
        started = time.perf_counter()
        with warnings.catch_warnings():  # about the synapse-filtered probes; the loss reads unfiltered outputs
            warnings.filterwarnings("ignore", message="Running for one timestep")
            callbacks = [epoch_logger(progress, epochs)] if progress else []
            history = sim.fit({node: x.reshape(len(x), 1, -1)}, targets, epochs=epochs, verbose=0,
                              callbacks=callbacks)
        seconds = time.perf_counter() - started
        sim.freeze_params(model.network)
    return TrainingRun([float(v) for v in history.history["loss"]], seconds, optimizer, learning_rate, schedule,
                       lif_smoothing, epochs, minibatch_size, rate_floor_hz,
                       rate_floor_weight if rate_floor_hz is not None else 0.0)

