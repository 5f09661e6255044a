"""Neuron updates compiled by XLA into one kernel, for NengoDL inference simulators.

NengoDL updates a group of LIF neurons with about twenty TensorFlow ops per step (``LIFBuilder.step``: clip,
expm1, log1p, two selects, ...), each a separate pass over every neuron of the minibatch: for Table K4's CNN,
34 048 neurons x 200 images per pass, more than fits in a cache. In a TensorFlow profile of that network's
spiking simulation the LIF update was about 60 % of the op time. Here the same step function is handed to
XLA (``tf.function(jit_compile=True)``), which compiles it into one loop that reads the input current and the two
state arrays once and writes them once.

Numerics: XLA evaluates ``expm1`` and ``log1p`` with its own approximations and may contract ``a * b + c`` into
a fused multiply-add, so voltages can differ from NengoDL's in the last bit (about a quarter of them per step in
a test from random states) and, rarely, a neuron spikes one step earlier or later (1 spike in 6.8 million
neuron-steps in that test). Only LIF has one: it is what Tables K4 and P1 simulate for many steps. Rate neurons
(evaluated in one step) and SpikingRectifiedLinear (a few ops per step) keep NengoDL's steps; neither was measured.

`fused_neuron_steps` swaps the builders in for the simulators built inside its block (`onnxlab.snn.simulate` does,
unless told ``fused_steps=False``); `xla_step_builders` says which neuron types have one.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import cache
from typing import Iterator


@cache
def xla_step_builders() -> dict[type, type]:
    """Nengo neuron type -> NengoDL neuron builder whose ``step`` is NengoDL's own, compiled by XLA.

    Built on first use (it needs nengo_dl). Today: ``nengo.LIF`` only.
    """
    import nengo
    import tensorflow as tf

    from onnxlab.reproducibility import import_nengo_dl

    import_nengo_dl()
    from nengo_dl.neuron_builders import LIFBuilder

    class XlaLIFBuilder(LIFBuilder):
        """NengoDL's LIF step (``LIFBuilder.step``), compiled by XLA into one kernel."""

        def step(self, J, dt, voltage, refractory_time):
            return tf.function(super().step, jit_compile=True)(J, dt, voltage, refractory_time)

    return {nengo.LIF: XlaLIFBuilder}


@contextmanager
def fused_neuron_steps(enabled: bool = True) -> Iterator[None]:
    """NengoDL simulators built inside the block update neurons with `xla_step_builders` where one exists.

    The builders are chosen when a simulator is constructed, so a simulator built inside the block keeps them
    after it ends. ``enabled=False`` changes nothing (for building NengoDL's own step on the same code path).
    """
    from onnxlab.reproducibility import import_nengo_dl

    import_nengo_dl()
    from nengo_dl.neuron_builders import SimNeuronsBuilder

    table = SimNeuronsBuilder.TF_NEURON_IMPL
    replacements = xla_step_builders() if enabled else {}
    previous = {neuron_type: table[neuron_type] for neuron_type in replacements}
    table.update(replacements)
    try:
        yield
    finally:
        table.update(previous)
