"""Nengo's LIF rate curve as a Keras activation: train a spiking network's weights in Keras, run it in Nengo.

The rate-based training of Hunsberger & Eliasmith (2015, "Spiking deep networks with LIF neurons"): a conventional
network whose activation is the (smoothed) firing-rate curve of the LIF neurons that will replace it. Trained in
Keras, exported to ONNX with a ReLU placeholder in place of the activation (`with_relu_placeholders`), and turned
into ONNX-SNN by `to_snn` with the same LIF parameters, the Nengo network's rate mode computes what Keras trained;
its spiking mode approximates it.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np


def lif_gain_bias(max_rate: float, intercept: float, *, tau_rc: float = 0.02,
                  tau_ref: float = 0.002) -> tuple[float, float]:
    """Gain and bias that Nengo gives a LIF neuron with this ``max_rate`` (spikes/s at input 1) and ``intercept``."""
    import nengo

    gain, bias = nengo.LIFRate(tau_rc=tau_rc, tau_ref=tau_ref).gain_bias(np.array([max_rate]), np.array([intercept]))
    return float(gain[0]), float(bias[0])


def lif_rate_activation(*, amplitude: float = 1.0, max_rate: float = 200.0, intercept: float = 0.0,
                        tau_rc: float = 0.02, tau_ref: float = 0.002,
                        sigma: float | None = 0.01, training_noise: float = 0.0) -> Callable[[Any], Any]:
    """Keras activation ``x -> amplitude * rate(gain * x + bias)``, the rate of Nengo's LIF neuron.

    Parameters
    ----------
    amplitude, max_rate, intercept, tau_rc, tau_ref
        As the ``LIF`` op of ONNX-SNN and `to_snn` (``max_rates``, ``intercepts``): the same values give the
        Nengo network the same rate curve. ``tau_rc``, ``tau_ref`` in s, ``max_rate`` in spikes/s.
    sigma
        Smoothing of the curve at the firing threshold, as NengoDL's SoftLIFRate (``lif_smoothing``);
        None for the exact LIFRate curve, whose slope is infinite at the threshold.
    training_noise
        Standard deviation (output units: amplitude x spikes/s) of Gaussian noise added to the rate while Keras
        trains (``fit``; never in ``predict``): the noise training of Hunsberger & Eliasmith (2015), which stands
        for the variability of a spike train read over a short window, so the trained weights tolerate it.

    Returns
    -------
    callable
        Tensor of any shape -> tensor of the same shape (amplitude x spikes/s).
    """
    import tensorflow as tf

    gain, bias = lif_gain_bias(max_rate, intercept, tau_rc=tau_rc, tau_ref=tau_ref)
    if training_noise < 0:
        from onnxlab.errors import InvalidArgument

        raise InvalidArgument(f"training_noise must be >= 0, got {training_noise}")

    def lif_rate(x):
        rate = _rate(x)
        if training_noise and _training():
            rate = rate + tf.random.normal(tf.shape(rate), stddev=training_noise, dtype=rate.dtype)
        return rate

    def _rate(x):
        j = gain * x + (bias - 1.0)  # input current above the firing threshold
        if sigma is None:
            safe = tf.where(j > 0, j, tf.ones_like(j))
            return tf.where(j > 0, amplitude / (tau_ref + tau_rc * tf.math.log1p(1.0 / safe)), tf.zeros_like(j))
        # SoftLIFRate as NengoDL computes it, including its asymptote far below the threshold
        js = j / sigma
        valid = js > -20
        z = tf.nn.softplus(tf.where(valid, js, tf.zeros_like(js))) * sigma
        q = tf.where(valid, tf.math.log1p(1.0 / z), -js - np.log(sigma))
        return amplitude / (tau_ref + tau_rc * q)

    return lif_rate


def _training() -> bool:
    """True while Keras calls a layer in training mode (``fit``): the flag Keras passes the layer's ``call``."""
    from keras.engine.base_layer_utils import call_context

    return call_context().training is True


def with_relu_placeholders(model: Any, activation: Callable[[Any], Any]) -> Any:
    """A copy of a Keras ``model`` in which every layer using ``activation`` uses ReLU instead; same weights.

    tf2onnx cannot name a rate curve: it would write its arithmetic (Log1p, Div, ...). The copy exports
    each such activation as one ``Relu`` node, which `to_snn` then replaces by the spiking neuron op with the
    parameters that ``activation`` was built with.
    """
    import keras

    def clone(layer):
        config = layer.get_config()
        if getattr(layer, "activation", None) is activation:
            config["activation"] = "relu"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
