"""onnxlab's Keras -> ONNX -> ONNX-SNN -> Nengo path beside `nengo_dl.Converter` (Keras -> Nengo), same weights.

Both paths start from one trained Keras model whose hidden activations are ReLU. The Converter swaps each ReLU
for ``nengo.SpikingRectifiedLinear`` with ``scale_firing_rates``; onnxlab converts the model with `to_onnx`, then
`to_snn` makes each ReLU a ``SpikingRectifiedLinear`` neuron op with gain ``scale`` and amplitude ``1 / scale``
(the same firing-rate scaling), and `to_nengo` builds it. In rate mode both use ``nengo.RectifiedLinear``.

`Runner` simulates either network in NengoDL the same way (same settings, minibatch, input presentation), so
`compare_model` can time them interleaved, in one process, and compare their outputs. Outputs are read
unfiltered and then low-pass filtered here, identically for both (`filtered_scores`).
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from onnxlab.bench import Comparison, compare
from onnxlab.errors import InvalidArgument

#: Output lowpass (s) applied to both paths' spiking outputs before reading the class (K4's synapse).
OUTPUT_SYNAPSE = 0.1
#: Simulation time step (s).
DT = 0.001
#: The `to_nengo` settings that build a network as onnxlab built it before issue 17: every bias fed from a constant
#: node through its own connection, ensembles NengoDL may train, every tensor in ONNX order (convolutions
#: channels-first). The baseline of Table K4's evaluation speed. (Pooling as a fixed convolution has no setting;
#: Table K4's network has no pooling.)
BEFORE_ISSUE_17_BUILD: dict[str, bool] = {"fold_biases": False, "trainable_ensembles": True, "channels_last": False}
#: ... and the neuron steps it was simulated with then: NengoDL's own (`Runner`'s ``fused_steps``).
BEFORE_ISSUE_17_STEPS: dict[str, bool] = {"fused_steps": False}
#: The NengoDL settings a path is timed under: onnxlab's `simulate` settings (greedy planner, inference only, no
#: state kept between minibatches) and NengoDL's defaults (a trainable graph, the default planner).
TIMING_SETTINGS = ("simulate", "nengo_dl_defaults")


@dataclass(frozen=True)
class Mode:
    """How both networks are simulated: rate neurons, or spiking at a firing-rate ``scale`` (Hz per unit of
    activation) with an optional lowpass ``layer_synapse`` (s) on every connection out of a neuron layer."""

    spiking: bool
    scale: float = 1.0
    layer_synapse: float | None = None

    @property
    def label(self) -> str:
        if not self.spiking:
            return "rate"
        synapse = "" if self.layer_synapse is None else f", layer synapse {self.layer_synapse * 1000:g} ms"
        return f"spiking, scale {self.scale:g}{synapse}"


@dataclass
class Built:
    """One path's network: what to feed and what to read."""

    network: Any
    input_node: Any
    output_probe: Any


# --------------------------------------------------------------------------- the comparison's Keras models

def _keras():
    from onnxlab.reproducibility import quiet

    quiet()
    from keras import Model, Sequential, layers

    return Model, Sequential, layers


def dense_net():
    """784-64-32-10, ReLU hidden layers, logits out."""
    _, Sequential, layers = _keras()
    return Sequential([layers.Input((28, 28, 1), name="image"), layers.Flatten(),
                       layers.Dense(64, activation="relu"), layers.Dense(32, activation="relu"), layers.Dense(10)],
                      name="dense")


def small_cnn(batch_norm: bool = False):
    """conv 8@3x3 -> average pool 2 -> conv 16@3x3 stride 2 -> dense 10; with ``batch_norm``, each conv has no
    bias and is followed by BatchNormalization before its ReLU."""
    _, Sequential, layers = _keras()
    stack: list = [layers.Input((28, 28, 1), name="image")]
    for filters, strides in ((8, 1), (16, 2)):
        if batch_norm:
            stack += [layers.Conv2D(filters, 3, strides=strides, use_bias=False), layers.BatchNormalization(),
                      layers.Activation("relu")]
        else:
            stack.append(layers.Conv2D(filters, 3, strides=strides, activation="relu"))
        if filters == 8:
            stack.append(layers.AveragePooling2D(2))
    stack += [layers.Flatten(), layers.Dense(10)]
    return Sequential(stack, name="cnn_bn" if batch_norm else "cnn")


def small_residual(batch_norm: bool = False):
    """conv 8@3x3 'same' -> conv 8@3x3 'same', their sum (Add) -> dense 10; with ``batch_norm``, BatchNormalization
    between each bias-free conv and its ReLU."""
    Model, _, layers = _keras()

    def conv(x):
        if batch_norm:
            x = layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same", use_bias=False)(x))
            return layers.Activation("relu")(x)
        return layers.Conv2D(8, 3, padding="same", activation="relu")(x)

    image = layers.Input((28, 28, 1), name="image")
    first = conv(image)
    summed = layers.Add()([first, conv(first)])
    return Model(image, layers.Dense(10)(layers.Flatten()(summed)), name="residual_bn" if batch_norm else "residual")


def kim2021_cnn():
    """Table K4's CNN with ReLU (`onnxlab.zoo.kim2021_snn_cnn`)."""
    from onnxlab.zoo import kim2021_snn_cnn

    return kim2021_snn_cnn("relu")


#: name -> (description, Keras model builder)
COMPARISON_MODELS: dict[str, tuple[str, Callable[[], Any]]] = {
    "dense": ("dense 784-64-32-10", dense_net),
    "cnn": ("CNN: conv 8 -> avg pool -> conv 16/2 -> dense 10", small_cnn),
    "residual": ("residual: two conv 8 'same' + Add -> dense 10", small_residual),
    "cnn_bn": ("CNN with BatchNormalization", lambda: small_cnn(batch_norm=True)),
    "residual_bn": ("residual with BatchNormalization", lambda: small_residual(batch_norm=True)),
    "kim2021": ("Table K4 CNN (Kim 2021): conv 32/64/128 -> dense 784 -> 10", kim2021_cnn),
}


# --------------------------------------------------------------------------- building both paths

def build_converter(keras_model: Any, mode: Mode, seed: int = 0) -> Built:
    """`nengo_dl.Converter` of ``keras_model``: ReLU -> RectifiedLinear, or SpikingRectifiedLinear at ``mode.scale``.

    Its ensembles get seeds ``seed``, ``seed + 1``, ... in the order they are built, as `to_nengo` seeds its own
    (`onnxlab.snn.Simulation.seed`): the seed fixes the neurons' random initial voltages."""
    import nengo

    from onnxlab.reproducibility import import_nengo_dl

    nengo_dl = import_nengo_dl()
    # the Converter maps Keras' ReLU to nengo.RectifiedLinear(); this swap then replaces that neuron type
    swap = {nengo.RectifiedLinear(): nengo.SpikingRectifiedLinear()} if mode.spiking else {}
    converter = nengo_dl.Converter(keras_model, swap_activations=swap,
                                   scale_firing_rates=mode.scale if mode.spiking else None,
                                   synapse=mode.layer_synapse if mode.spiking else None, inference_only=True)
    for i, ens in enumerate(converter.net.all_ensembles):
        ens.seed = seed + i
    (input_node,) = converter.inputs.dict.values()
    (probe,) = converter.outputs.dict.values()
    return Built(converter.net, input_node, probe)


def build_onnxlab(onnx_model: Any, mode: Mode, seed: int = 0, **to_nengo_options: Any) -> Built:
    """``onnx_model`` (a ReLU network) through `to_snn` (SpikingRectifiedLinear, gain ``scale``, amplitude
    ``1/scale``) and `to_nengo`; rate mode builds the rate twin, RectifiedLinear. ``seed``: the file's ensemble seed."""
    from onnxlab.snn.simulation import Simulation
    from onnxlab.snn.to_nengo import to_nengo
    from onnxlab.snn.to_snn import to_snn

    snn = to_snn(onnx_model, "SpikingRectifiedLinear", params={"amplitude": 1 / mode.scale}, gain=mode.scale,
                 simulation=Simulation(dt=DT, seed=seed, layer_synapse=mode.layer_synapse if mode.spiking else None))
    model = to_nengo(snn, rate=not mode.spiking, filtered_probes=False, **to_nengo_options)
    (input_node,) = model.inputs.values()
    (probe,) = model.outputs.values()
    return Built(model.network, input_node, probe)


def zero_initial_voltage(network: Any) -> None:
    """Start every spiking neuron of ``network`` (LIF, SpikingRectifiedLinear) at voltage 0 (Nengo's default is
    uniform in [0, 1), drawn in each network's own neuron order), so that two networks computing the same thing
    spike the same."""
    import nengo

    at_rest = {"voltage": nengo.dists.Choice([0.0])}
    for ens in network.all_ensembles:
        neuron = ens.neuron_type
        if isinstance(neuron, nengo.LIF):
            ens.neuron_type = type(neuron)(tau_rc=neuron.tau_rc, tau_ref=neuron.tau_ref,
                                           min_voltage=neuron.min_voltage, amplitude=neuron.amplitude,
                                           initial_state=at_rest)
        elif isinstance(neuron, nengo.SpikingRectifiedLinear):
            ens.neuron_type = type(neuron)(amplitude=neuron.amplitude, initial_state=at_rest)


def object_counts(network: Any) -> dict[str, int]:
    """Ensembles, nodes and connections of ``network`` (sub-networks included)."""
    return {"ensembles": len(network.all_ensembles), "nodes": len(network.all_nodes),
            "connections": len(network.all_connections)}


# --------------------------------------------------------------------------- simulating

class Runner:
    """One path's NengoDL simulator, built once, run on image batches.

    ``fused_steps`` applies to the ``"simulate"`` settings (`onnxlab.snn.simulate.inference_simulator`); NengoDL's
    defaults always build NengoDL's own neuron steps.
    """

    def __init__(self, built: Built, settings: str, minibatch_size: int, n_steps: int, *, fused_steps: bool = True):
        from onnxlab.reproducibility import import_nengo_dl
        from onnxlab.snn.simulate import inference_simulator

        if settings not in TIMING_SETTINGS:
            raise InvalidArgument(f"settings must be one of {TIMING_SETTINGS}, got {settings!r}")
        self.built, self.n_steps, self.minibatch_size = built, n_steps, minibatch_size
        self._open = ExitStack()
        # the simulator is not entered as a context (that would hold NengoDL's device scope open while the other
        # path runs)
        if settings == "simulate":
            planned = self._open.enter_context(inference_simulator(built.network, dt=DT, minibatch_size=minibatch_size,
                                                                   fused_steps=fused_steps))
            self.sim, self.planner = planned.sim, planned.planner
        else:
            self.sim = import_nengo_dl().Simulator(built.network, dt=DT, minibatch_size=minibatch_size,
                                                   progress_bar=False)
            self.planner = "NengoDL's default"
            self._open.callback(self.sim.close)

    def feed(self, x: np.ndarray) -> dict[Any, np.ndarray]:
        """The simulator's input for images ``x`` (N, ...): each presented for ``n_steps``, the batch padded to a
        whole number of minibatches (`onnxlab.snn.simulate.presented`)."""
        from onnxlab.snn.simulate import presented

        return {self.built.input_node: presented(x, self.n_steps, self.minibatch_size)}

    def predict(self, feed: dict[Any, np.ndarray], n_images: int) -> np.ndarray:
        """Outputs (n_images, n_steps, n_out) of a prepared ``feed`` (`feed`); this is what `timed_pair` times."""
        return self.sim.predict(feed, verbose=0)[self.built.output_probe][:n_images]

    def run(self, x: np.ndarray) -> np.ndarray:
        """Outputs (N, n_steps, n_out) of images ``x`` (N, ...) presented for ``n_steps``."""
        return self.predict(self.feed(x), len(x))

    def close(self) -> None:
        self._open.close()


def filtered_scores_by_step(outputs: np.ndarray) -> np.ndarray:
    """Spiking outputs (N, n_steps, n_out) after the `OUTPUT_SYNAPSE` lowpass, at every step (N, n_steps, n_out)."""
    import nengo

    return nengo.Lowpass(OUTPUT_SYNAPSE).filt(outputs, axis=1, dt=DT, y0=0)


def filtered_scores(outputs: np.ndarray, spiking: bool) -> np.ndarray:
    """Class scores (N, n_out): the last step in rate mode; spiking, the last step after an `OUTPUT_SYNAPSE`
    lowpass (what `onnxlab.snn.simulate` reads from a file's filtered probe)."""
    if not spiking:
        return outputs[:, -1]
    return filtered_scores_by_step(outputs)[:, -1]


def timed_pair(runners: dict[str, Runner], x: np.ndarray, repeats: int, min_seconds: float = 0.0) -> Comparison:
    """Both runners timed on ``x`` by `onnxlab.bench.compare`: one untimed run each, then runs in turn (order
    rotated), ``repeats`` each at least and more until each has run ``min_seconds`` in total. Each runner's input
    is prepared once, before timing (`Runner.feed`), so only the simulation is timed."""
    feeds = {name: runner.feed(x) for name, runner in runners.items()}
    return compare({name: lambda runner=runner, feed=feeds[name]: runner.predict(feed, len(x))
                    for name, runner in runners.items()}, repeats=repeats, min_seconds=min_seconds)


def compare_model(keras_model: Any, onnx_model: Any, x: np.ndarray, y: np.ndarray, modes: Iterable[Mode], *,
                  n_steps: int, minibatch_size: int, timed: Callable[[Mode], bool], n_timed: int, repeats: int,
                  n_matched: int, min_timed_seconds: float = 0.0, n_seeds: int = 1,
                  progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per mode: accuracies, max output difference, objects built, the planner each path got under
    `simulate`'s settings (`onnxlab.snn.simulate.inference_simulator`), and ms per image for both paths.

    Parameters
    ----------
    keras_model, onnx_model
        The trained Keras model and its `to_onnx` conversion.
    x, y
        Test images (N, 28, 28, 1) and labels (N,): every mode's accuracy, both paths under `simulate`'s settings.
    n_seeds
        Spiking accuracies are the mean (and min, max) over ensemble seeds 0 .. n_seeds - 1 on both paths: the seed
        draws the neurons' initial voltages, shared by every image, so one draw moves the accuracy of all images
        together (the Table K4 CNN at scale 100 with a layer synapse scored 0.68 to 0.88 over five seeds).
    timed
        Whether a mode is timed: on the first ``n_timed`` images, under each of `TIMING_SETTINGS`, both paths
        taking turns (`timed_pair`), ``repeats`` runs each at least and more until each has run
        ``min_timed_seconds``. Columns ``{path}_ms_per_image_{settings}`` (median run), ``ratio_{settings}``
        (median of the per-turn ratios onnxlab / Converter), ``ratio_{settings}_q25`` / ``_q75`` (their quartiles)
        and ``timed_runs_{settings}``.
    n_matched
        Images re-run from zero initial voltage on both paths for ``max_output_diff`` (spiking neurons start
        at random voltages, drawn in each network's neuron order, which differs between the two).
    """
    keras_accuracy = float(np.mean(keras_model.predict(x, batch_size=500, verbose=0).argmax(-1) == y))
    rows = []
    for mode in modes:
        steps = n_steps if mode.spiking else 1
        row: dict[str, Any] = {"mode": mode.label, "spiking": mode.spiking,
                               "firing_rate_scale": mode.scale if mode.spiking else None,
                               "layer_synapse_s": mode.layer_synapse, "n_steps": steps,
                               "keras_accuracy": keras_accuracy}
        accuracies: dict[str, list[float]] = {"converter": [], "onnxlab": []}
        for seed in range(n_seeds if mode.spiking else 1):  # rate neurons have no initial state
            built = {"converter": build_converter(keras_model, mode, seed),
                     "onnxlab": build_onnxlab(onnx_model, mode, seed)}
            time_it = timed(mode) and seed == 0
            if seed == 0:
                for name, b in built.items():
                    for kind, count in object_counts(b.network).items():
                        row[f"{name}_{kind}"] = count
            for settings in TIMING_SETTINGS if time_it else TIMING_SETTINGS[:1]:
                runners = {name: Runner(b, settings, minibatch_size, steps) for name, b in built.items()}
                try:
                    if time_it:
                        x_timed = x[:n_timed]
                        timing = timed_pair(runners, x_timed, repeats, min_timed_seconds)
                        for name in built:
                            row[f"{name}_ms_per_image_{settings}"] = 1000 * timing[name].median / len(x_timed)
                        (row[f"ratio_{settings}_q25"], row[f"ratio_{settings}"],
                         row[f"ratio_{settings}_q75"]) = timing.paired_ratio_quartiles("onnxlab", "converter")
                        row[f"timed_runs_{settings}"] = len(timing["onnxlab"].samples)
                    if settings == "simulate":  # every accuracy comes from simulate's settings
                        for name, runner in runners.items():
                            row.setdefault(f"{name}_planner_simulate", runner.planner)
                            out = runner.run(x)
                            scores = filtered_scores(out, mode.spiking)
                            accuracies[name].append(float(np.mean(scores.argmax(-1) == y)))
                finally:
                    for runner in runners.values():
                        runner.close()
        for name, values in accuracies.items():
            row[f"{name}_accuracy"] = float(np.mean(values))
            row[f"{name}_accuracy_min"], row[f"{name}_accuracy_max"] = min(values), max(values)
        row["max_output_diff"] = _matched_difference(keras_model, onnx_model, mode, x[:n_matched], steps)
        rows.append(row)
        if progress:
            progress(f"{mode.label}: converter {row['converter_accuracy']:.3f}, onnxlab {row['onnxlab_accuracy']:.3f} "
                     f"(mean of {len(accuracies['onnxlab'])} seed(s))")
    return rows


def accuracy_by_step(keras_model: Any, onnx_model: Any, x: np.ndarray, y: np.ndarray, mode: Mode, *, n_steps: int,
                     minibatch_size: int, seeds: Iterable[int] = (0,)) -> dict[str, np.ndarray]:
    """Spiking accuracy of both paths after every step of a simulation ``n_steps`` long.

    Parameters
    ----------
    keras_model, onnx_model
        The trained Keras model and its `to_onnx` conversion (as `compare_model`).
    x, y
        Test images (N, 28, 28, 1) and labels (N,).
    mode
        A spiking `Mode` (scale, layer synapse).
    seeds
        Ensemble seeds (each draws the neurons' initial voltages); one row per seed.

    Returns
    -------
    dict
        ``"converter"`` and ``"onnxlab"`` -> accuracy of shape (len(seeds), n_steps): the class read from the
        `OUTPUT_SYNAPSE`-filtered output at each step, both paths under `simulate`'s settings.
    """
    if not mode.spiking:
        raise InvalidArgument(f"accuracy_by_step needs a spiking mode, got {mode.label!r}")
    accuracies: dict[str, list[np.ndarray]] = {"converter": [], "onnxlab": []}
    for seed in seeds:
        built = {"converter": build_converter(keras_model, mode, seed), "onnxlab": build_onnxlab(onnx_model, mode, seed)}
        for name, b in built.items():
            runner = Runner(b, "simulate", minibatch_size, n_steps)
            try:
                scores = filtered_scores_by_step(runner.run(x))
            finally:
                runner.close()
            accuracies[name].append((scores.argmax(-1) == np.asarray(y)[:, None]).mean(0))
    return {name: np.array(rows) for name, rows in accuracies.items()}


def steps_to_reach(per_step: np.ndarray, target: float) -> int | None:
    """The first step count (1-based) from which ``per_step`` accuracy stays at or above ``target`` to the end of
    the simulation; None if the last step is below it."""
    per_step = np.asarray(per_step)
    below = np.nonzero(per_step < target)[0]
    if not len(below):
        return 1
    return None if below[-1] == len(per_step) - 1 else int(below[-1]) + 2


def _matched_difference(keras_model: Any, onnx_model: Any, mode: Mode, x: np.ndarray, steps: int) -> float:
    """Largest |converter - onnxlab| output over every step, both paths' neurons starting at voltage 0."""
    outputs = []
    for build in (lambda: build_converter(keras_model, mode), lambda: build_onnxlab(onnx_model, mode)):
        built = build()
        zero_initial_voltage(built.network)
        runner = Runner(built, "simulate", len(x), steps)
        try:
            outputs.append(runner.run(x))
        finally:
            runner.close()
    return float(np.abs(outputs[0] - outputs[1]).max())


#: Neuron ops whose evaluation times `evaluation_seconds_by_neuron` compares, with their `to_snn` settings:
#: Table K4's LIF, a spiking ReLU, and a rate ReLU (the linear part alone, plus the cheapest neuron step).
NEURON_TIME_CASES: dict[str, dict[str, Any]] = {
    "LIF": dict(neuron_type="LIF", params={"amplitude": 0.01}, max_rates=100, intercepts=0),
    "SpikingRectifiedLinear": dict(neuron_type="SpikingRectifiedLinear", params={"amplitude": 0.01}, gain=100.0),
    "RectifiedLinear": dict(neuron_type="RectifiedLinear"),
}


def evaluation_seconds_by_neuron(onnx_model: Any, x: np.ndarray, *, n_steps: int,
                                 minibatch_size: int) -> dict[str, float]:
    """Seconds of one spiking-style evaluation (`simulate`, ``n_steps`` per image) of the same network with each
    neuron op of `NEURON_TIME_CASES`: how much of an evaluation the neuron step costs."""
    from onnxlab.snn.simulate import simulate
    from onnxlab.snn.to_nengo import to_nengo
    from onnxlab.snn.to_snn import to_snn

    seconds = {}
    for name, settings in NEURON_TIME_CASES.items():
        model = to_nengo(to_snn(onnx_model, **settings))
        start = time.perf_counter()
        simulate(model, x, n_steps=n_steps, minibatch_size=minibatch_size)
        seconds[name] = time.perf_counter() - start
    return seconds
