"""What every training loop here shares: optimizers and learning-rate schedules by name, and one progress line
per epoch (epoch, loss, accuracy, seconds)."""
from __future__ import annotations

import time
from typing import Any, Callable


def optimizers() -> dict[str, Callable[..., Any]]:
    """Optimizer name -> Keras optimizer class, for `onnxlab.zoo.train_keras_classifier` and `onnxlab.snn.train.train_classifier`."""
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


def epoch_logger(prefix: str, epochs: int) -> Any:
    """A Keras callback printing ``"<prefix> epoch i/epochs: loss …, accuracy …, … s"`` after every epoch.

    Works with ``keras.Model.fit`` and ``nengo_dl.Simulator.fit`` (which passes callbacks to Keras).
    NengoDL names its metrics after probes (``probe_loss``, ...); only ``loss`` and keys ending in ``accuracy``
    are printed.
    """
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            shown = [f"loss {logs['loss']:.4f}"] if "loss" in logs else []
            shown += [f"{key} {value:.4f}" for key, value in logs.items() if key.endswith("accuracy")]
            print(f"{prefix} epoch {epoch + 1}/{epochs}: {', '.join(shown)}, "
                  f"{time.perf_counter() - self.started:.0f} s", flush=True)

    return EpochLogger()
