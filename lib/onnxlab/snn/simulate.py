"""Run a `NengoModel` in NengoDL, and `verify` it against ONNX Runtime (like nengo-dl's Converter.verify)."""
from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import onnx

from onnxlab.equivalence import Agreement, compare_outputs
from onnxlab.errors import SNNError
from onnxlab.snn.fused_steps import fused_neuron_steps
from onnxlab.snn.to_nengo import NengoModel, to_nengo

#: NengoDL settings for every `simulate` call: each sample starts from rest (``stateful=False``), and the
#: graph is built for inference only (weights become constants: much faster on a CPU than a trainable graph).
SIMULATE_SETTINGS = {"stateful": False, "inference_only": True}

#: NengoDL's operator planner for every simulator built here (a name in ``nengo_dl.graph_optimizer``). The default
#: planner turned the bias connections of a Keras-trained network (a constant node into each layer) into a plan
#: that simulated the Kim 2021 LIF CNN 9-15x slower than without biases; the greedy planner does not.
PLANNER = "greedy_planner"

#: The planner `inference_simulator` falls back to when the `PLANNER`'s plan writes signals by scatter: it merges
#: no operators, so each writes a whole signal of its own. A lowpass between layers makes consecutive layers'
#: neuron updates independent within a step; the greedy planner then merges them into one operator over signals
#: that do not lie side by side, written back by ``tensor_scatter_nd`` with one index per element (a CNN with an
#: average pool and a 5 ms layer synapse ran 2.6x slower than unmerged, a residual net 18x; same outputs).
UNMERGED_PLANNER = "noop_planner"

#: Default relative tolerance of `verify`: max|nengo - onnxruntime| <= VERIFY_RTOL * max|onnxruntime|.
VERIFY_RTOL = 1e-4


@contextmanager
def dl_settings(network, **settings: Any) -> Iterator[None]:
    """Apply ``nengo_dl.configure_settings(**settings)`` to ``network`` inside the block only.

    NengoDL keeps its settings on the network's config, so a setting made for one simulator
    (e.g. ``inference_only``, which forbids training) would otherwise stay for every later one.
    """
    import nengo
    from onnxlab.reproducibility import import_nengo_dl

    nengo_dl = import_nengo_dl()

    with network:
        nengo_dl.configure_settings()  # makes sure config[nengo.Network] exists
    params = network.config[nengo.Network]
    previous = {name: params.get_param(name) for name in settings if name in params.extra_params}
    with network:
        nengo_dl.configure_settings(**settings)
    try:
        yield
    finally:
        for name in settings:
            if name in previous:
                params.set_param(name, previous[name])
            else:  # nengo has no public way to forget an extra parameter
                params._extra_params.pop(name, None)


@contextmanager
def temporary_probes(network, targets: dict[Any, Any]) -> Iterator[dict[Any, Any]]:
    """Unfiltered probes on ``targets`` (key -> Nengo object) in ``network``, removed when the block ends.

    For probes that serve one simulator only: `from_nengo` and later simulators must not see them.
    """
    import nengo

    with network:
        probes = {key: nengo.Probe(obj, synapse=None) for key, obj in targets.items()}
    try:
        yield probes
    finally:
        for probe in probes.values():
            network.probes.remove(probe)


def dl_planner(name: str = PLANNER) -> Any:
    """The planner function ``name`` (default `PLANNER`), for ``nengo_dl.configure_settings(planner=...)``."""
    from onnxlab.reproducibility import import_nengo_dl

    return getattr(import_nengo_dl().graph_optimizer, name)


def scatter_writes(sim: Any) -> int:
    """How many signal writes of NengoDL simulator ``sim``'s step update part of a base array by scatter
    (``tensor_scatter_nd_*``, one index per element) rather than assigning a whole one."""
    writes = sim.tensor_graph.signals.write_types
    return writes.get("scatter_update", 0) + writes.get("scatter_add", 0)


@dataclass
class PlannedSimulator:
    """A NengoDL simulator (built, not entered) and the name of the planner that planned it."""

    sim: Any
    planner: str


@contextmanager
def inference_simulator(network: Any, *, dt: float, minibatch_size: int, progress_bar: bool = False,
                        planners: tuple[str, ...] = (PLANNER, UNMERGED_PLANNER),
                        fused_steps: bool = True) -> Iterator[PlannedSimulator]:
    """A NengoDL simulator of ``network`` under `SIMULATE_SETTINGS`, closed when the block ends.

    With ``fused_steps`` (the default), neuron types that have one update through an XLA-compiled step
    (`onnxlab.snn.fused_steps`: LIF); ``False`` builds NengoDL's own step.

    Planned by the first of ``planners`` whose plan writes no signal by scatter (`scatter_writes`), else by the
    last: by default `PLANNER`, or `UNMERGED_PLANNER` where the greedy plan scatters (it computes the same numbers
    without the scatters). The simulator is not entered as a context, so several may be run in turn; the settings
    stay applied to ``network`` inside the block.
    """
    from onnxlab.reproducibility import import_nengo_dl

    nengo_dl = import_nengo_dl()
    for planner in planners:
        opened = ExitStack()
        opened.enter_context(dl_settings(network, planner=dl_planner(planner), **SIMULATE_SETTINGS))
        try:
            with fused_neuron_steps(fused_steps):
                sim = nengo_dl.Simulator(network, dt=dt, minibatch_size=minibatch_size, progress_bar=progress_bar)
        except BaseException:
            opened.close()
            raise
        opened.callback(sim.close)  # closed before the settings are restored
        if planner == planners[-1] or not scatter_writes(sim):
            break
        opened.close()
    with opened:
        yield PlannedSimulator(sim, planner)


def single_input(model: NengoModel, x: np.ndarray, caller: str) -> tuple[Any, np.ndarray]:
    """The model's one input node, and ``x`` as float32 after checking its sample shape.

    Raises
    ------
    SNNError
        If the model has several inputs, or the samples of ``x`` do not have the input's shape.
    """
    if len(model.inputs) != 1:
        raise SNNError(f"{caller} supports one input; the model has {list(model.inputs)}")
    (name, node), = model.inputs.items()
    x = np.asarray(x, np.float32)
    if x.shape[1:] != model.input_shapes[name]:
        raise SNNError(f"input {name!r} expects samples of shape {model.input_shapes[name]}, got {x.shape[1:]}")
    return node, x


def presented(x: np.ndarray, n_steps: int, minibatch_size: int) -> np.ndarray:
    """NengoDL input data presenting each sample of ``x`` (N, ...) unchanged for ``n_steps`` steps: shape
    (N', n_steps, prod(sample shape)), float32, zero samples appended up to a multiple N' of ``minibatch_size``."""
    flat = np.asarray(x, np.float32).reshape(len(x), -1)
    flat = np.concatenate([flat, np.zeros((-len(flat) % minibatch_size, flat.shape[1]), np.float32)])
    return np.repeat(flat[:, None, :], n_steps, axis=1)


@contextmanager
def predictor(model: NengoModel, *, n_steps: int | None = None, minibatch_size: int = 100, filtered: bool = False,
              progress_bar: bool = False, extra_probes: dict[str, Any] | None = None,
              fused_steps: bool = True) -> Iterator[Callable[[np.ndarray], dict[str, np.ndarray]]]:
    """A NengoDL simulator of ``model`` built once, as a function of the inputs (see `simulate` for the arguments).

    Inside the block, ``predict(x)`` returns what ``simulate(model, x, ...)`` returns, without building the
    simulator again: for timing inference apart from the build, or for many calls.
    """
    import tensorflow as tf

    n_steps = n_steps or model.simulation.n_steps
    probes = model.filtered_outputs if filtered else model.outputs
    tf.get_logger().setLevel("ERROR")
    with temporary_probes(model.network, extra_probes or {}) as extra, \
            inference_simulator(model.network, dt=model.simulation.dt, minibatch_size=minibatch_size,
                                progress_bar=progress_bar, fused_steps=fused_steps) as planned:
        sim = planned.sim

        def predict(x: np.ndarray) -> dict[str, np.ndarray]:
            node, x = single_input(model, x, "simulate")
            result = sim.predict({node: presented(x, n_steps, minibatch_size)}, verbose=int(progress_bar))
            out = {name: result[probe][:len(x)].reshape(len(x), n_steps, *model.output_shapes[name])
                   for name, probe in probes.items()}
            out.update({name: result[probe][:len(x)] for name, probe in extra.items()})
            return out

        yield predict


def simulate(model: NengoModel, x: np.ndarray, *, n_steps: int | None = None, minibatch_size: int = 100,
             filtered: bool = False, progress_bar: bool = False,
             extra_probes: dict[str, Any] | None = None, fused_steps: bool = True) -> dict[str, np.ndarray]:
    """Present each sample of ``x`` for ``n_steps`` steps and return every output over time.

    Parameters
    ----------
    x
        Inputs of shape (N, *input_shape) for the model's single input.
    n_steps
        Steps per sample (default: the file's ``n_steps``).
    minibatch_size
        Samples simulated in parallel; ``x`` is padded to a multiple of it.
    filtered
        Read the probes filtered with the file's synapse instead of the raw outputs.
    extra_probes
        Name -> Nengo object (e.g. ``ensemble.neurons[:20]``) to probe unfiltered as well;
        returned flat, shape (N, n_steps, size).
    fused_steps
        Update LIF neurons through an XLA-compiled step (`onnxlab.snn.fused_steps`; same arithmetic, last-bit
        differences); ``False``: NengoDL's own step.

    Every sample starts from the network's initial state (NengoDL ``stateful=False``): no state carries over. The
    network is simulated with `SIMULATE_SETTINGS`; its own NengoDL settings and probes are left as
    they were. Builds a simulator for this call (`predictor` keeps one for many).

    Returns
    -------
    dict
        Output name -> array of shape (N, n_steps, *output_shape), plus the extra probes.
    """
    single_input(model, x, "simulate")
    with predictor(model, n_steps=n_steps, minibatch_size=min(minibatch_size, len(x)), filtered=filtered,
                   progress_bar=progress_bar, extra_probes=extra_probes, fused_steps=fused_steps) as predict:
        return predict(x)


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (what a dropped output Softmax would have computed)."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def verify(model: onnx.ModelProto | str | os.PathLike, x: np.ndarray, *, rtol: float = VERIFY_RTOL,
           **to_nengo_options) -> dict[str, Agreement]:
    """Check that the Nengo network computes what ONNX Runtime computes, on inputs ``x``.

    The network is built in rate mode (spiking neurons replaced by their rate twins) and run
    for one step with no synapses (the file's ``layer_synapse`` too is left out), so its output must equal ONNX Runtime's rate approximation.

    Returns
    -------
    dict
        Output name -> `onnxlab.equivalence.Agreement`.

    Raises
    ------
    SNNError
        If any output differs by more than ``rtol * max|onnxruntime output|``.
    """
    from onnxlab.formats import as_model
    from onnxlab.runtime import ort_session

    proto = as_model(model, check=False)
    nengo_model = to_nengo(proto, rate=True, filtered_probes=False, layer_synapses=False, **to_nengo_options)
    nengo_out = simulate(nengo_model, x, n_steps=1)
    session = ort_session(proto)
    ort_out = dict(zip([o.name for o in session.get_outputs()],
                       session.run(None, {session.get_inputs()[0].name: np.asarray(x, np.float32)})))
    report = {}
    for name, values in nengo_out.items():
        ours = values[:, -1]
        if name in nengo_model.softmax_dropped:
            ours = softmax(ours)
        report[name] = agreement = compare_outputs(ort_out[name], ours.reshape(ort_out[name].shape))
        if not agreement.within(atol=0.0, rtol=rtol):
            raise SNNError(f"output {name!r}: Nengo and ONNX Runtime differ by {agreement.max_abs_err:.3g} "
                           f"(max |output| {agreement.scale:.3g}, rtol {rtol:g}, "
                           f"label agreement {agreement.label_agreement})")
    return report
