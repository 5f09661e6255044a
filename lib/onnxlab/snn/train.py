"""Train a `NengoModel` in NengoDL (spiking neurons through their rate approximation), as a classifier."""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from onnxlab.errors import SNNError
from onnxlab.snn.simulate import dl_settings, single_input
from onnxlab.snn.to_nengo import NengoModel


def optimizers() -> dict[str, Callable[..., Any]]:
    """Optimizer name -> Keras optimizer class, for `train_classifier`."""
    import tensorflow as tf

    return {"adam": tf.optimizers.Adam, "rmsprop": tf.optimizers.RMSprop, "sgd": tf.optimizers.SGD}


def schedules() -> dict[str, Callable[[float, int], Any]]:
    """Schedule name -> (initial learning rate, total steps) -> learning rate or Keras schedule."""
    import tensorflow as tf

    return {
        "constant": lambda lr, steps: lr,
        # cosine decay to zero over the whole run: large steps early, fine ones at the end
        "cosine": lambda lr, steps: tf.keras.optimizers.schedules.CosineDecay(lr, steps),
    }


#: Default smoothing of the LIF rate curve in training (NengoDL ``lif_smoothing``): the exact curve's infinite
#: slope at the firing threshold makes gradients erratic; on the Kim 2021 CNN smoothing made each epoch count more.
LIF_SMOOTHING = 0.01


@dataclass(frozen=True)
class TrainingRun:
    """What `train_classifier` did.

    Attributes
    ----------
    loss
        Mean training loss of each epoch.
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


def train_classifier(model: NengoModel, x: np.ndarray, y: np.ndarray, *, epochs: int, minibatch_size: int = 200,
                     optimizer: str = "rmsprop", learning_rate: float = 1e-3, schedule: str = "constant",
                     lif_smoothing: float | None = LIF_SMOOTHING, seed: int = 0) -> TrainingRun:
    """Train ``model`` in NengoDL on labelled samples, one simulation step per sample, and keep the weights.

    NengoDL trains spiking neurons through their rate approximation; the trained parameters are
    written back into the network (``freeze_params``), so `simulate`, `from_nengo` and
    `to_nengo_code` see them.

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

    Returns
    -------
    TrainingRun
    """
    import nengo_dl
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
    if len(x) != len(y) or len(x) < minibatch_size:
        raise SNNError(f"need as many labels as samples and at least one minibatch ({minibatch_size}); "
                       f"got {len(x)} samples and {len(y)} labels")
    rate = schedules()[schedule](learning_rate, epochs * (len(x) // minibatch_size))
    tf.get_logger().setLevel("ERROR")
    tf.random.set_seed(seed)
    with dl_settings(model.network, stateful=False, lif_smoothing=lif_smoothing), \
            nengo_dl.Simulator(model.network, minibatch_size=minibatch_size, seed=seed, progress_bar=False) as sim:
        sim.compile(optimizer=optimizers()[optimizer](rate),
                    loss={probe: tf.losses.SparseCategoricalCrossentropy(from_logits=True)})
        started = time.perf_counter()
        with warnings.catch_warnings():  # about the synapse-filtered probes; the loss reads unfiltered outputs
            warnings.filterwarnings("ignore", message="Running for one timestep")
            history = sim.fit({node: x.reshape(len(x), 1, -1)}, {probe: np.asarray(y).reshape(-1, 1, 1)},
                              epochs=epochs, verbose=0)
        seconds = time.perf_counter() - started
        sim.freeze_params(model.network)
    return TrainingRun([float(v) for v in history.history["loss"]], seconds, optimizer, learning_rate, schedule,
                       lif_smoothing, epochs, minibatch_size)
