"""Compile an ONNX-SNN model to a plain ONNX time loop: spiking inference with nothing but ONNX Runtime.

``to_spiking_onnx(model)`` returns a model in the default ONNX domain only (no custom ops, no functions) that
presents each input for ``n_steps`` steps of ``dt`` seconds and simulates the network as ``nengo.Simulator``
does: an ONNX ``Loop`` whose body is the model's graph with every neuron op replaced by its step
(`onnxlab.snn.neurons.NeuronOp.step`, Nengo's own discretisation in float32), carrying each neuron layer's
state (LIF: voltage and refractory time) and the output probe's lowpass filter from one step to the next. A file's
``layer_synapse`` (`onnxlab.snn.Simulation`) is a lowpass on each neuron layer's output, read by the next layers as
it stood after the previous step: Nengo filters each connection out of the layer after its weights, which is the
same linear map applied in the other order (float32 rounding apart), with the same one-step lag.

Outputs, for each model output ``y`` (a final Softmax is dropped, as `to_nengo` drops it — Nengo outputs logits):

- ``y``: shape (N, n_steps, ...), the output filtered by the probe's synapse as Nengo's filtered probe reads it
  (the filter at step t has seen the raw outputs up to step t − 1); the raw output if the synapse is None;
- for each neuron node named in ``record``: ``<node>/spikes``, (N, n_steps, *neurons), its output per step.

Every neuron starts at rest (voltage and refractory time 0), which is what `nengo.Simulator` does when the
initial voltages are set to 0 (Nengo's default draws them uniformly in [0, 1) from the ensemble's seed).
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxlab.errors import SNNError
from onnxlab.formats import ONNX_SNN_DOMAIN, as_model
from onnxlab.graph import attributes, default_opset, is_default_domain
from onnxlab.snn.neurons import StepBody, neuron
from onnxlab.snn.simulation import Simulation
from onnxlab.snn.to_nengo import DROPPED_OUTPUT_OPS

#: Oldest ai.onnx opset of a source model: the loop uses Slice with inputs, and Equal on floats (opset 11).
MIN_OPSET = 11
#: Name prefix of the loop body's own tensors (unique against the outer graph's names).
BODY_PREFIX = "step"
#: Suffix of a recorded layer's output.
SPIKES_SUFFIX = "/spikes"
#: Samples per ONNX Runtime call in `run_spiking`: a small batch keeps the neuron states in the CPU's cache, which
#: measured faster than batches of 100 on the K4 network (the elementwise neuron updates are memory-bound)
SPIKING_BATCH = 10
#: ONNX Runtime graph rewrites that change float32 results, left out of every session `SpikingRunner` builds. In the
#: unrolled Table K4 network (table snn_spiking_forms): ``MatMulAddFusion`` (MatMul + Add as one Gemm, which starts
#: its sum from the bias) changes the rounding of the outputs; ``NchwcTransformer`` (convolutions in a blocked channel
#: layout, summed in another order) moved a spike by a step over 2000 images in an exploratory run, not over the 1000
#: the table uses. Without both, the unrolled graph's outputs equal the Loop's bit for bit; ONNX Runtime applies
#: neither inside a Loop body, whose weights are outer-scope values, so the Loop is exact at every optimisation level.
EXACT_DISABLED_OPTIMIZERS = ("NchwcTransformer", "MatMulAddFusion")
#: The two renderings of the same time loop (`to_spiking_onnx`'s ``form``).
FORMS = ("loop", "unrolled")
#: Suffix of an unrolled step's copy of a loop-body tensor: ``<name>@<step>``.
STEP_SUFFIX = "@{}"


def _sample_dims(model: onnx.ModelProto, name: str, what: str) -> list[int]:
    """The static per-sample dimensions of tensor ``name`` (its batch dimension may be symbolic)."""
    graph = model.graph
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if info.name == name:
            dims = info.type.tensor_type.shape.dim
            if len(dims) >= 1 and all(d.HasField("dim_value") for d in dims[1:]):
                return [d.dim_value for d in dims[1:]]
    raise SNNError(f"{what}: the shape of {name!r} is not known (the spiking loop needs fixed sample dimensions)")


def _drop_final_softmax(graph: onnx.GraphProto) -> tuple[list[onnx.NodeProto], dict[str, str]]:
    """Nodes without a final Softmax/LogSoftmax, and output name -> the tensor that now holds it."""
    nodes, outputs = list(graph.node), {o.name: o.name for o in graph.output}
    for name in list(outputs):
        producer = next((n for n in nodes if name in n.output), None)
        if producer is not None and producer.op_type in DROPPED_OUTPUT_OPS:
            nodes.remove(producer)
            outputs[name] = producer.input[0]
    return nodes, outputs


#: What `to_spiking_onnx` can do with a MaxPool node.
MAX_POOL_CHOICES = ("average", "max", "error")
#: MaxPool attributes AveragePool takes as they are.
_POOL_ATTRIBUTES = ("auto_pad", "ceil_mode", "kernel_shape", "pads", "strides")


def _max_pools(nodes: list[onnx.NodeProto], choice: str, what: str) -> tuple[list[onnx.NodeProto], list[str]]:
    """``nodes`` with each MaxPool as ``choice`` says, and a note per replacement."""
    if choice not in MAX_POOL_CHOICES:
        raise SNNError(f"max_pool must be one of {', '.join(MAX_POOL_CHOICES)}, got {choice!r}")
    out, notes = [], []
    for node in nodes:
        if node.op_type != "MaxPool" or not is_default_domain(node.domain) or choice == "max":
            out.append(node)
            continue
        label = node.name or node.output[0]
        if choice == "error":
            raise SNNError(f"{what}: node {label!r} (MaxPool): Nengo averages instead (max_pool='average')")
        if len(node.output) > 1 and node.output[1]:
            raise SNNError(f"{what}: node {label!r} (MaxPool): its Indices output has no spiking counterpart")
        kept = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute if a.name in _POOL_ATTRIBUTES}
        out.append(helper.make_node("AveragePool", [node.input[0]], [node.output[0]], name=node.name, **kept))
        notes.append(f"node {label!r}: max pooling replaced by average pooling, as to_nengo builds it")
    return out, notes


#: Where the neuron states start: at rest, or where Nengo's seeded build starts them.
INITIAL_STATES = ("rest", "nengo")


def _nengo_initial_state(model: onnx.ModelProto) -> dict[str, dict[str, np.ndarray]]:
    """Neuron node name -> state variable -> initial values (flat, the ONNX tensor's order) of Nengo's build.

    The ensembles' seeds come from the file, so Nengo's builder draws the same values NengoDL starts from; a layer
    `to_nengo` holds channels-last is put back in ONNX order (`NengoModel.in_onnx_order`).
    """
    import nengo

    from onnxlab.snn.to_nengo import to_nengo

    built = to_nengo(model)
    with nengo.Simulator(built.network, dt=Simulation.read(model).dt, progress_bar=False, optimize=False) as sim:
        return {name: {var: built.in_onnx_order(name, np.array(sim.signals[sim.model.sig[ens.neurons][var]],
                                                                np.float32))
                       for var in neuron(ens.neuron_type.__class__.__name__).state}
                for name, ens in built.ensembles.items()}


def _lowpass(tau: float | None, dt: float) -> tuple[float, float]:
    """Nengo's zero-order-hold discretisation of Lowpass(tau): x <- a x + b u, with a = exp(-dt/tau), b = 1 - a."""
    if tau is None or tau == 0:
        return 0.0, 1.0
    a = float(np.exp(-dt / tau))
    return a, 1.0 - a


def _lowpass_step(body: StepBody, a: float, b: float, state: str, value: str) -> str:
    """One step of `_lowpass`'s filter in the loop body: a * state + b * value."""
    return body.op("Add", body.op("Mul", body.const(a), state), body.op("Mul", body.const(b), value))


def to_spiking_onnx(model: onnx.ModelProto | str | os.PathLike, *, n_steps: int | None = None,
                    dt: float | None = None, synapse: float | None | str = "file",
                    record: Sequence[str] = (), max_pool: str = "average",
                    time_varying_input: bool = False, initial_state: str = "rest",
                    form: str = "loop") -> onnx.ModelProto:
    """Compile an ONNX-SNN model to a default-domain ONNX model that simulates it over time.

    Parameters
    ----------
    model
        An ONNX-SNN model (proto or path), ai.onnx opset >= `MIN_OPSET`, one input with fixed sample
        dimensions.
    n_steps, dt
        Steps each input is presented for and the step in seconds (default: the file's ``onnxsnn.*`` metadata).
    synapse
        Time constant (s) of the output probe's lowpass filter; None: raw outputs; ``"file"``: the file's.
    record
        Names of neuron nodes whose output per step to add as ``<name>/spikes`` outputs.
    time_varying_input
        False (default): each sample (N, *sample) is presented unchanged at every step, as a Nengo ``Node``
        with a constant output; True: the input is (N, n_steps, *sample), step t reading ``x[:, t]``.
    initial_state
        ``"rest"`` (default): every state variable starts at 0; ``"nengo"``: the initial voltages Nengo draws
        from the file's seed (uniform in [0, 1) per neuron, the same for every sample, as nengo.Simulator and
        NengoDL start them), read from Nengo's build of `to_nengo` (needs Nengo when compiling, not when running).
    max_pool
        ``"average"`` (default): MaxPool becomes average pooling over the same windows, as `to_nengo` builds it,
        so the loop computes the Nengo network (said in the model's doc string); ``"max"``: the max of the
        spike trains, as the file says; ``"error"``: refuse.
    form
        ``"loop"`` (default): one ONNX ``Loop`` (compact, a session in a fraction of a second); ``"unrolled"``: the
        step written out ``n_steps`` times (`unroll`): ONNX Runtime optimises across steps and runs it somewhat
        faster, but takes seconds to create a session (both measured in table "snn_spiking_forms"). Run either with
        `EXACT_DISABLED_OPTIMIZERS` left out (as `SpikingRunner` does) to keep every spike.

    Returns
    -------
    onnx.ModelProto
        Valid under ``onnx.checker.check_model(full_check=True)``; runs in ONNX Runtime alone.

    Raises
    ------
    SNNError
        For a model without neuron ops, a neuron type without an exact step (Izhikevich), an unknown ``record``
        name, an opset below `MIN_OPSET`, or unknown shapes.
    """
    model = as_model(model)
    what = model.graph.name or "model"
    settings = Simulation.read(model)
    n_steps = int(n_steps or settings.n_steps)
    dt = float(dt or settings.dt)
    synapse = settings.synapse if synapse == "file" else synapse
    opset = default_opset(model)
    if opset < MIN_OPSET:
        raise SNNError(f"{what}: ai.onnx opset {opset}; the spiking loop needs >= {MIN_OPSET} "
                       "(convert it first: onnx.version_converter)")
    if len(model.graph.input) - len({t.name for t in model.graph.initializer} & {i.name for i in model.graph.input}) != 1:
        raise SNNError(f"{what}: the spiking loop takes exactly one input")
    neurons = [n for n in model.graph.node if n.domain == ONNX_SNN_DOMAIN]
    if not neurons:
        raise SNNError(f"{what}: no ONNX-SNN neuron op to simulate")
    unknown = sorted(set(record) - {n.name for n in neurons})
    if unknown:
        raise SNNError(f"{what}: record names no neuron node: {', '.join(unknown)}; neuron nodes: "
                       f"{', '.join(n.name for n in neurons)}")

    if form not in FORMS:
        raise SNNError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    if initial_state not in INITIAL_STATES:
        raise SNNError(f"initial_state must be one of {', '.join(INITIAL_STATES)}, got {initial_state!r}")
    seeded = _nengo_initial_state(model) if initial_state == "nengo" else {}
    inferred = onnx.shape_inference.infer_shapes(model)
    initializers = {t.name for t in model.graph.initializer}
    (x_info,) = [i for i in model.graph.input if i.name not in initializers]
    nodes, outputs = _drop_final_softmax(model.graph)
    nodes, notes = _max_pools(nodes, max_pool, what)
    out_dims = {name: _sample_dims(inferred, source, what) for name, source in outputs.items()}

    # ----- the loop body: the graph, neuron ops replaced by their steps
    outer = set(initializers) if time_varying_input else initializers | {x_info.name}
    rename = {x_info.name: f"{BODY_PREFIX}/{x_info.name}"} if time_varying_input else {}

    def body_name(name: str) -> str:
        return name if name in outer or name == "" else rename.setdefault(name, f"{BODY_PREFIX}/{name}")

    body_nodes: list[onnx.NodeProto] = []
    if time_varying_input:  # this step's slice of the (N, T, ...) input
        body_nodes.append(helper.make_node("Gather", [x_info.name, "iteration"], [rename[x_info.name]], axis=1))
    state_inputs, state_outputs, initial_states = [], [], []
    spikes, raw_of = {}, {}  # recorded layers; a filtered neuron output -> its raw spikes
    layer_a, layer_b = _lowpass(settings.layer_synapse, dt)

    def carried(name: str, dims: list[int], start: np.ndarray | None = None) -> tuple[str, str]:
        """A tensor carried from step to step: its name in this step (input) and the name to give the next (output)."""
        state_inputs.append(helper.make_tensor_value_info(f"{name}/in", TensorProto.FLOAT, None))
        state_outputs.append(helper.make_tensor_value_info(f"{name}/out", TensorProto.FLOAT, None))
        initial_states.append((dims, start))
        return f"{name}/in", f"{name}/out"

    for index, node in enumerate(nodes):
        if node.domain != ONNX_SNN_DOMAIN:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            del copy.input[:], copy.output[:]
            copy.input.extend(body_name(i) for i in node.input)
            copy.output.extend(body_name(o) for o in node.output)
            body_nodes.append(copy)
            continue
        op = neuron(node.op_type)
        label = node.name or f"{node.op_type}_{index}"
        dims = _sample_dims(inferred, node.output[0], what)
        params = {k: v for k, v in attributes(node).items() if isinstance(v, float)}
        body = StepBody(f"{BODY_PREFIX}/{label}", {**op.attributes, **params}, body_nodes, opset)
        x, gain, bias = (body_name(i) for i in node.input)
        current = body.op("Add", body.op("Mul", x, gain), bias)
        state, state_out = {}, {}
        for var in op.state:
            start = seeded.get(node.name, {}).get(var)
            state[var], state_out[var] = carried(f"{BODY_PREFIX}/{label}/{var}", dims,
                                                 None if start is None else start.reshape(1, *dims))
        output, new_state = op.step(body, current, state, dt)
        for var in op.state:
            body_nodes.append(helper.make_node("Identity", [new_state[var]], [state_out[var]]))
        consumers_read = body_name(node.output[0])
        if settings.layer_synapse is None:
            body_nodes.append(helper.make_node("Identity", [output], [consumers_read]))
        else:  # Nengo's connection lowpass: the next layers read it as it stood after the previous step
            previous, updated = carried(f"{BODY_PREFIX}/{label}/layer_synapse", dims)
            body_nodes.append(helper.make_node("Identity", [previous], [consumers_read]))
            body_nodes.append(helper.make_node("Identity", [_lowpass_step(body, layer_a, layer_b, previous, output)],
                                               [updated]))
            raw_of[consumers_read] = output
        if label in record:
            spikes[label] = (raw_of.get(consumers_read, consumers_read), dims)

    # ----- the output probes: Nengo's filtered probe sees the raw output of the previous step
    a, b = _lowpass(synapse, dt)
    filter_inputs, filter_outputs, scan_outputs = [], [], []
    for name in outputs:
        raw = raw_of.get(body_name(outputs[name]), body_name(outputs[name]))  # a neuron layer probed directly: unfiltered
        if synapse is None:
            scan_outputs.append(raw)
            continue
        filt_in, prev_in = f"{BODY_PREFIX}/{name}/filter/in", f"{BODY_PREFIX}/{name}/previous/in"
        filt_out, prev_out = f"{BODY_PREFIX}/{name}/filter/out", f"{BODY_PREFIX}/{name}/previous/out"
        fb = StepBody(f"{BODY_PREFIX}/{name}/filter", {}, body_nodes, opset)
        filtered = _lowpass_step(fb, a, b, filt_in, prev_in)
        body_nodes += [helper.make_node("Identity", [filtered], [filt_out]),
                       helper.make_node("Identity", [raw], [prev_out])]
        filter_inputs += [filt_in, prev_in]
        filter_outputs += [filt_out, prev_out]
        scan_outputs.append(filt_out)
    scan_outputs += [tensor for tensor, _ in spikes.values()]

    body_nodes.append(helper.make_node("Identity", ["cond_in"], ["cond_out"]))
    value = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, None)  # noqa: E731
    body_graph = helper.make_graph(
        body_nodes, "time_step",
        [helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []), *state_inputs,
         *map(value, filter_inputs)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), *state_outputs,
         *map(value, filter_outputs), *[value(f"{s}/scan") for s in scan_outputs]])
    for tensor in scan_outputs:  # scan outputs need their own names
        body_graph.node.append(helper.make_node("Identity", [tensor], [f"{tensor}/scan"]))

    # ----- the outer graph: zero states, the loop, (T, N, ...) -> (N, T, ...)
    outer_nodes = [
        helper.make_node("Shape", [x_info.name], ["input_shape"]),
        helper.make_node("Slice", ["input_shape", "zero_i64", "one_i64"], ["batch"]),
    ]
    constants = [numpy_helper.from_array(np.array([0], np.int64), "zero_i64"),
                 numpy_helper.from_array(np.array([1], np.int64), "one_i64"),
                 numpy_helper.from_array(np.array(n_steps, np.int64), "n_steps")]

    def zeros(dims: list[int], name: str, start: np.ndarray | None = None) -> str:
        """(N, *dims) zeros, or ``start`` (1, *dims) repeated for every sample."""
        constants.append(numpy_helper.from_array(np.array(dims, np.int64), f"{name}/dims"))
        outer_nodes.append(helper.make_node("Concat", ["batch", f"{name}/dims"], [f"{name}/shape"], axis=0))
        if start is None:
            outer_nodes.append(helper.make_node("ConstantOfShape", [f"{name}/shape"], [name],
                                                value=numpy_helper.from_array(np.zeros(1, np.float32))))
        else:
            constants.append(numpy_helper.from_array(start.astype(np.float32), f"{name}/start"))
            outer_nodes.append(helper.make_node("Expand", [f"{name}/start", f"{name}/shape"], [name]))
        return name

    loop_inputs = ["n_steps", ""]
    loop_inputs += [zeros(d, f"initial/{i}", start) for i, (d, start) in enumerate(initial_states)]
    for name in outputs:
        if synapse is not None:
            loop_inputs += [zeros(out_dims[name], f"initial/{name}/filter"),
                            zeros(out_dims[name], f"initial/{name}/previous")]
    n_carried = len(state_outputs) + len(filter_outputs)
    loop_outputs = [f"final/{i}" for i in range(n_carried)] + [f"{s}/steps" for s in scan_outputs]
    outer_nodes.append(helper.make_node("Loop", loop_inputs, loop_outputs, body=body_graph))
    graph_outputs = []
    final_names = list(outputs) + [f"{label}{SPIKES_SUFFIX}" for label in spikes]
    final_dims = [out_dims[n] for n in outputs] + [d for _, d in spikes.values()]
    for scanned, name, dims in zip(loop_outputs[n_carried:], final_names, final_dims):
        perm = [1, 0, *range(2, 2 + len(dims))]
        outer_nodes.append(helper.make_node("Transpose", [scanned], [name], perm=perm))
        graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", n_steps, *dims]))

    if time_varying_input:
        x_info = helper.make_tensor_value_info(x_info.name, TensorProto.FLOAT,
                                               ["N", n_steps, *_sample_dims(model, x_info.name, what)])
    graph = helper.make_graph(outer_nodes, f"{what}_spiking", [x_info], graph_outputs,
                              [*model.graph.initializer, *constants])
    compiled = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                 producer_name="onnxlab.to_spiking_onnx")
    compiled.ir_version = model.ir_version
    compiled.doc_string = "\n".join([f"Spiking simulation of {what} over {n_steps} steps of {dt} s (onnxlab)", *notes])
    Simulation(dt=dt, n_steps=n_steps, synapse=synapse, seed=settings.seed,
               layer_synapse=settings.layer_synapse).write(compiled)
    return unroll(compiled) if form == "unrolled" else compiled


#: Opset from which Unsqueeze takes its axes as an input rather than an attribute.
UNSQUEEZE_AXES_INPUT_OPSET = 13
#: The unrolled graph's constant [0] for Unsqueeze's axes input.
AXIS0 = "unrolled/axis0"


def _unsqueeze0(name: str, output: str, opset: int) -> onnx.NodeProto:
    """Unsqueeze ``name`` at axis 0 (the axes are an attribute before `UNSQUEEZE_AXES_INPUT_OPSET`, then an input)."""
    if opset < UNSQUEEZE_AXES_INPUT_OPSET:
        return helper.make_node("Unsqueeze", [name], [output], axes=[0])
    return helper.make_node("Unsqueeze", [name, AXIS0], [output])


def unroll(model: onnx.ModelProto) -> onnx.ModelProto:
    """The time loop of a `to_spiking_onnx` model written out step by step: the same computation, no ``Loop``.

    Each step is a copy of the loop body (its tensors renamed ``<name>@<step>``, its constants kept once), fed the
    previous step's state; the per-step outputs are stacked to the (n_steps, N, ...) tensors the ``Loop`` scans
    out, so the rest of the graph is unchanged. The file grows with ``n_steps``; ONNX Runtime then optimises
    across steps.
    """
    graph = model.graph
    loops = [n for n in graph.node if n.op_type == "Loop"]
    if len(loops) != 1:
        raise SNNError(f"{graph.name or 'model'}: unroll takes a to_spiking_onnx model (one Loop); "
                       f"this one has {len(loops)}")
    (loop,) = loops
    body = helper.get_attribute_value(next(a for a in loop.attribute if a.name == "body"))
    opset = default_opset(model)
    constants = {t.name: t for t in graph.initializer}
    n_steps = int(numpy_helper.to_array(constants[loop.input[0]]))
    iteration, _condition, *carried_in = [i.name for i in body.input]
    _, *outs = [o.name for o in body.output]
    carried_out, scanned = outs[:len(carried_in)], outs[len(carried_in):]
    steps = [numpy_helper.from_array(np.array(t, np.int64), f"unrolled/iteration{STEP_SUFFIX.format(t)}")
             for t in range(n_steps)]
    reads_iteration = any(iteration in n.input for n in body.node)  # a time-varying input's Gather
    extra = [*(steps if reads_iteration else []),
             *([numpy_helper.from_array(np.array([0], np.int64), AXIS0)] if opset >= UNSQUEEZE_AXES_INPUT_OPSET else [])]
    local = {o for n in body.node for o in n.output}
    hoisted = [n for n in body.node if n.op_type == "Constant"]
    per_step = [n for n in body.node if n.op_type != "Constant" and "cond_out" not in n.output]

    nodes, state = list(hoisted), dict(zip(carried_in, loop.input[2:]))
    stacked: dict[str, list[str]] = {name: [] for name in scanned}
    hoisted_names = {c.output[0] for c in hoisted}
    for t in range(n_steps):
        suffix = STEP_SUFFIX.format(t)
        names = {**state, iteration: steps[t].name}
        renamed = lambda n: names.get(n, f"{n}{suffix}" if n in local - hoisted_names else n)  # noqa: E731
        for node in per_step:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            del copy.input[:], copy.output[:]
            copy.input.extend(renamed(i) for i in node.input)
            copy.output.extend(renamed(o) for o in node.output)
            copy.name = f"{node.name}{suffix}" if node.name else ""
            nodes.append(copy)
        state = {i: renamed(o) for i, o in zip(carried_in, carried_out)}
        for name in scanned:
            nodes.append(_unsqueeze0(renamed(name), f"{name}{suffix}/stacked", opset))
            stacked[name].append(f"{name}{suffix}/stacked")
    scan_results = loop.output[len(carried_in):]
    nodes += [helper.make_node("Concat", stacked[name], [result], axis=0)
              for name, result in zip(scanned, scan_results)]

    outer = []
    for node in graph.node:
        outer.extend(nodes if node is loop else [node])
    unrolled = onnx.ModelProto()
    unrolled.CopyFrom(model)
    del unrolled.graph.node[:]
    unrolled.graph.node.extend(outer)
    kept = [t for t in unrolled.graph.initializer if t.name != loop.input[0]]  # the trip count
    del unrolled.graph.initializer[:]
    unrolled.graph.initializer.extend([*kept, *extra])
    unrolled.doc_string = model.doc_string + f"\nunrolled: {n_steps} copies of the time step, no Loop"
    return unrolled


class SpikingRunner:
    """A compiled spiking model (`to_spiking_onnx`) in ONNX Runtime, data-parallel, sessions built once.

    Each of ``workers`` single-threaded sessions (default: one per CPU core) takes every ``workers``-th batch of
    ``batch_size`` samples; a time step's elementwise neuron updates are too small to split across threads
    profitably, whole batches are not. Call it with samples; build it once to time inference without session
    creation. Every session leaves out ``disabled_optimizers`` (default `EXACT_DISABLED_OPTIMIZERS`: the rewrites
    that move spikes).
    """

    def __init__(self, model: onnx.ModelProto | str | os.PathLike, *, batch_size: int = SPIKING_BATCH,
                 workers: int | None = None, disabled_optimizers: Sequence[str] = EXACT_DISABLED_OPTIMIZERS):
        from concurrent.futures import ThreadPoolExecutor

        from onnxlab.runtime import ort_session

        if batch_size < 1:
            raise SNNError(f"the spiking runner needs batch_size >= 1, got {batch_size}")
        self.batch_size = batch_size
        workers = max(1, workers or os.cpu_count() or 1)
        source = model if isinstance(model, onnx.ModelProto) else str(model)
        with ThreadPoolExecutor(workers) as pool:  # sessions of a large (unrolled) graph take seconds each
            self.sessions = list(pool.map(
                lambda _: ort_session(source, intra_op_threads=1, disabled_optimizers=tuple(disabled_optimizers)),
                range(workers)))
        (self.input_name,) = [i.name for i in self.sessions[0].get_inputs()]
        self.output_names = [o.name for o in self.sessions[0].get_outputs()]

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Output name -> (N, n_steps, ...) for samples ``x`` (N, ...) (or (N, n_steps, ...) if time-varying)."""
        from concurrent.futures import ThreadPoolExecutor

        if len(x) == 0:
            raise SNNError("the spiking runner needs at least one sample, got none")
        batches = [x[i:i + self.batch_size] for i in range(0, len(x), self.batch_size)]
        workers = min(len(self.sessions), len(batches))

        def work(worker: int) -> list[list[np.ndarray]]:
            session = self.sessions[worker]
            return [session.run(None, {self.input_name: batch}) for batch in batches[worker::workers]]

        with ThreadPoolExecutor(workers) as pool:
            done = list(pool.map(work, range(workers)))
        ordered = [done[i % workers][i // workers] for i in range(len(batches))]
        return {name: np.concatenate([out[k] for out in ordered]) for k, name in enumerate(self.output_names)}


def run_spiking(model: onnx.ModelProto | str | os.PathLike, x: np.ndarray, *, batch_size: int = SPIKING_BATCH,
                workers: int | None = None) -> dict[str, np.ndarray]:
    """Run a compiled spiking model (`to_spiking_onnx`) on ``x`` once: `SpikingRunner` ``(x)``.

    Returns
    -------
    dict
        Output name -> (N, n_steps, ...).
    """
    if len(x) == 0:
        raise SNNError("run_spiking needs at least one sample, got none")
    workers = min(max(1, workers or os.cpu_count() or 1), -(-len(x) // max(batch_size, 1)))
    return SpikingRunner(model, batch_size=batch_size, workers=workers)(x)
