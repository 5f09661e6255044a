"""ONNX-SNN neuron operators: one class per Nengo neuron type, in the domain `ONNX_SNN_DOMAIN`.

Every op takes three inputs and has one output::

    y = Op(x, gain, bias)        # J = gain * x + bias;  y = rate(J)   (Hz × amplitude)

``x`` is the layer's input current, shape (N, *neurons); ``gain`` and ``bias`` are the Nengo
ensemble's per-neuron gain and bias, broadcastable to ``neurons`` (stored explicitly in every
file, never assumed). The op's attributes are the Nengo neuron type's parameters, always
written out in full.

Each op ships as a model-local ONNX function computing its *rate* response from standard ONNX
operators, so an ONNX-SNN file passes ``onnx.checker``, runs in ONNX Runtime (the rate
approximation of the spiking network) and opens in Netron. Spiking types subclass their rate
twin (``LIF(LIFRate)``), as in Nengo, and share its rate function.

``Izhikevich`` has no closed-form rate. ONNX Runtime gets Nengo's own rate curve for the node's
parameters (``nengo.Izhikevich.rates``, which simulates each current for 1 s), tabulated when
the file is written and stored in two *derived* attributes (``rate_current_max``, a float, and
``rate_table``, a float32 tensor), interpolated linearly by the function; currents beyond the table
saturate.
Derived attributes are written by `NeuronOp.node_attributes` and ignored when reading.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import onnx
from onnx import AttributeProto, helper, numpy_helper

from onnxlab.errors import SNNError
from onnxlab.formats import ONNX_OPSET, ONNX_SNN_DOMAIN

#: Names of the three inputs of every neuron op and of its output.
INPUTS = ("x", "gain", "bias")
OUTPUT = "y"


def float32_decimal(value: float) -> float:
    """The shortest decimal that round-trips through float32 (ONNX stores attributes as float32).

    0.02 written to a file reads back as 0.019999999552965164; both map to 0.02 here, so a value
    means the same in the file, in Nengo and in generated code.
    """
    return float(np.format_float_positional(np.float32(value), unique=True))


#: First ai.onnx opset whose Constant takes a float attribute (``value_float``), so a function body can
#: turn the calling node's float attribute into a tensor directly; older bodies use `Selu` (y = gamma * x
#: for x > 0, exact at x = 1) with ``gamma`` taken from the attribute.
CONSTANT_VALUE_FLOAT_OPSET = 12


class FunctionBody:
    """Builds the node list of a function body for one ai.onnx ``opset``; every intermediate gets a unique name.

    The bodies use only operators whose meaning is the same in every opset from
    `onnxlab.graph.MIN_SUPPORTED_OPSET` to `onnxlab.graph.MAX_SUPPORTED_OPSET` (elementwise
    arithmetic, Where, Greater, Log, Softplus, Min/Max, Gather, Cast, Size), and literal constants
    as tensors (``Constant(value=...)``, valid in every opset). Only reading a float attribute
    differs by version (see `CONSTANT_VALUE_FLOAT_OPSET`).
    """

    def __init__(self, opset: int = ONNX_OPSET) -> None:
        self.opset = int(opset)
        self.nodes: list[onnx.NodeProto] = []

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        """Append ``op_type(inputs)`` and return the name of its output."""
        output = f"{op_type.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def const(self, value: float, dtype: type = np.float32) -> str:
        """A scalar constant (float32 unless ``dtype`` says otherwise)."""
        return self.op("Constant", value=numpy_helper.from_array(np.array(value, dtype)))

    def _referencing(self, op_type: str, inputs: list[str], output: str, reference: AttributeProto) -> str:
        node = helper.make_node(op_type, inputs, [output])
        node.attribute.append(reference)
        self.nodes.append(node)
        return output

    def attr(self, name: str) -> str:
        """A float32 scalar taken from the calling node's float attribute ``name`` (computed once)."""
        output = f"attr_{name}"
        if any(output in n.output for n in self.nodes):
            return output
        if self.opset >= CONSTANT_VALUE_FLOAT_OPSET:
            reference = AttributeProto(name="value_float", ref_attr_name=name, type=AttributeProto.FLOAT)
            return self._referencing("Constant", [], output, reference)
        reference = AttributeProto(name="gamma", ref_attr_name=name, type=AttributeProto.FLOAT)
        return self._referencing("Selu", [self.const(1.0)], output, reference)

    def tensor_attr(self, name: str) -> str:
        """The calling node's tensor attribute ``name`` (``Constant(value=...)``: every opset)."""
        output = f"attr_{name}"
        if not any(output in n.output for n in self.nodes):
            reference = AttributeProto(name="value", ref_attr_name=name, type=AttributeProto.TENSOR)
            self._referencing("Constant", [], output, reference)
        return output


class StepBody(FunctionBody):
    """A `FunctionBody` for one neuron node's time step, inlined in a graph: the node's parameters are literal
    constants, and every output is named under ``prefix`` (unique in the graph)."""

    def __init__(self, prefix: str, params: dict[str, float], nodes: list[onnx.NodeProto],
                 opset: int = ONNX_OPSET) -> None:
        super().__init__(opset)
        self.prefix, self.params, self.nodes = prefix, params, nodes

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        output = f"{self.prefix}/{op_type.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def attr(self, name: str) -> str:
        return self.const(self.params[name])

    def value(self, name: str) -> float:
        """The parameter ``name`` as a number."""
        return float(self.params[name])


def accurate_expm1(body: FunctionBody, x: str) -> str:
    """``expm1(x)`` to float32 accuracy in ONNX ops (which have no Expm1).

    ``Exp(x) - 1`` loses the digits a spike decision turns on; this is the compensated form
    ``u = exp(x)``: ``x`` where ``u == 1``, else ``(u - 1) * x / log(u)``.
    """
    u = body.op("Exp", x)
    one = body.const(1.0)
    is_one = body.op("Equal", u, one)
    safe_u = body.op("Where", is_one, body.const(2.0), u)  # keeps the branch not taken finite
    ratio = body.op("Div", body.op("Mul", body.op("Sub", safe_u, one), x), body.op("Log", safe_u))
    return body.op("Where", is_one, x, ratio)


def accurate_log1p(body: FunctionBody, x: str) -> str:
    """``log1p(x)`` to float32 accuracy: ``u = 1 + x``; ``x`` where ``u == 1``, else ``log(u) * x / (u - 1)``."""
    one = body.const(1.0)
    u = body.op("Add", one, x)
    is_one = body.op("Equal", u, one)
    safe_u = body.op("Where", is_one, body.const(2.0), u)
    ratio = body.op("Div", body.op("Mul", body.op("Log", safe_u), x), body.op("Sub", safe_u, one))
    return body.op("Where", is_one, x, ratio)


class NeuronOp:
    """Base of the ONNX-SNN neuron operators.

    Class attributes
    ----------------
    op_type
        Operator name in `ONNX_SNN_DOMAIN` (the Nengo class name).
    nengo_path
        Import path of the Nengo neuron type it mirrors.
    spiking
        True if Nengo simulates it with spikes; ONNX Runtime always computes the rate.
    attributes
        Parameter name -> Nengo's default value.
    derived
        Further attributes computed from the parameters when a node is written (see
        `node_attributes`), read only by the ONNX function.
    state
        The state one simulator step carries to the next (see `step`), each shaped like the current.
    """

    op_type: ClassVar[str]
    nengo_path: ClassVar[str]
    spiking: ClassVar[bool] = False
    attributes: ClassVar[dict[str, float]] = {}
    derived: ClassVar[tuple[str, ...]] = ()
    state: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def node_attributes(cls, params: dict[str, float]) -> dict[str, Any]:
        """Every attribute a node of this op carries: the parameters, plus any derived ones."""
        return dict(params)

    @classmethod
    def rate(cls, body: FunctionBody, current: str) -> str:
        """Append the nodes computing the rate response from ``current`` (J); return the output name."""
        raise NotImplementedError

    @classmethod
    def step(cls, body: StepBody, current: str, state: dict[str, str], dt: float) -> tuple[str, dict[str, str]]:
        """Append the nodes of one simulator step of ``dt`` seconds, as Nengo's ``step`` computes it (float32).

        ``body.attr(name)`` gives a parameter as a constant, ``body.value(name)`` as a number; ``state`` maps each name of `state` to the tensor
        holding it (all start at 0). Returns the output (Hz × amplitude: ``amplitude / dt`` per spike) and
        the new state. Rate types step as their rate.

        Raises
        ------
        SNNError
            For a spiking type without an exact ONNX step.
        """
        if cls.spiking:
            raise SNNError(f"{cls.op_type} has no exact ONNX time step; simulate it with NengoDL "
                           "(onnxlab.snn.simulate)")
        return cls.rate(body, current), {}

    @classmethod
    def function(cls, opset: int = ONNX_OPSET) -> onnx.FunctionProto:
        """The model-local ONNX function computing this op's rate response, for a model importing ai.onnx ``opset``.

        The function imports the model's own opset (``onnx.checker`` and ONNX Runtime require
        them to agree), and its body is valid in it: see `FunctionBody`.
        """
        body = FunctionBody(opset)
        current = body.op("Add", body.op("Mul", "x", "gain"), "bias")
        rate = cls.rate(body, current)
        body.nodes.append(helper.make_node("Identity", [rate], [OUTPUT]))
        return helper.make_function(
            ONNX_SNN_DOMAIN, cls.op_type, list(INPUTS), [OUTPUT], body.nodes,
            [helper.make_opsetid("", body.opset)], attributes=[*cls.attributes, *cls.derived],
            doc_string=f"Rate response of {cls.nengo_path}: y = rate(gain * x + bias).",
        )

    @classmethod
    def parameters(cls, given: dict[str, float] | None = None) -> dict[str, float]:
        """Nengo's defaults updated with ``given`` (as `float32_decimal`), validated by constructing the Nengo type.

        Raises
        ------
        SNNError
            Naming the op and the unknown or invalid parameter.
        """
        given = {k: v for k, v in (given or {}).items() if k not in cls.derived}
        unknown = sorted(set(given) - set(cls.attributes))
        if unknown:
            raise SNNError(f"{cls.op_type} has no parameter {', '.join(unknown)}; "
                           f"its parameters are {', '.join(cls.attributes)}")
        params = {**cls.attributes, **{k: float32_decimal(v) for k, v in given.items()}}
        cls.nengo_type(params)
        return params

    @classmethod
    def nengo_class(cls) -> type:
        """The Nengo neuron type class this op mirrors (imported on first use)."""
        import importlib

        from onnxlab.reproducibility import import_nengo_dl

        module, name = cls.nengo_path.rsplit(".", 1)
        if module.startswith("nengo_dl"):
            import_nengo_dl()
        return getattr(importlib.import_module(module), name)

    @classmethod
    def nengo_type(cls, params: dict[str, float]):
        """The Nengo neuron type object with these parameters."""
        try:
            return cls.nengo_class()(**params)
        except Exception as exc:  # nengo raises ValidationError (a ValueError) with a clear text
            raise SNNError(f"{cls.op_type}: invalid parameters {params}: {exc}") from exc


class RectifiedLinear(NeuronOp):
    """Rectified linear rate neuron: y = amplitude * max(J, 0)."""

    op_type = "RectifiedLinear"
    nengo_path = "nengo.RectifiedLinear"
    attributes = {"amplitude": 1.0}

    @classmethod
    def rate(cls, body, current):
        return body.op("Mul", body.attr("amplitude"), body.op("Relu", current))


class SpikingRectifiedLinear(RectifiedLinear):
    """Spiking rectified linear neuron (integrate to 1, fire, subtract); rate as `RectifiedLinear`."""

    op_type = "SpikingRectifiedLinear"
    nengo_path = "nengo.SpikingRectifiedLinear"
    spiking = True
    state = ("voltage",)

    @classmethod
    def step(cls, body, current, state, dt):
        """nengo.SpikingRectifiedLinear.step: integrate max(J, 0) dt, emit the whole spikes, keep the remainder."""
        voltage = body.op("Add", state["voltage"], body.op("Mul", body.op("Relu", current), body.const(dt)))
        n_spikes = body.op("Floor", voltage)
        output = body.op("Mul", body.const(body.value("amplitude") / dt), n_spikes)  # float64 quotient, as Nengo
        return output, {"voltage": body.op("Sub", voltage, n_spikes)}


class LIFRate(NeuronOp):
    """Leaky integrate-and-fire rate: y = amplitude / (tau_ref + tau_rc * log1p(1 / (J - 1))) for J > 1, else 0."""

    op_type = "LIFRate"
    nengo_path = "nengo.LIFRate"
    attributes = {"tau_rc": 0.02, "tau_ref": 0.002, "amplitude": 1.0}

    @classmethod
    def rate(cls, body, current):
        j = body.op("Sub", current, body.const(1.0))
        active = body.op("Greater", j, body.const(0.0))
        safe_j = body.op("Where", active, j, body.const(1.0))  # keeps log1p(1/j) finite where inactive
        log_term = body.op("Log", body.op("Add", body.const(1.0), body.op("Reciprocal", safe_j)))
        period = body.op("Add", body.attr("tau_ref"), body.op("Mul", body.attr("tau_rc"), log_term))
        return body.op("Where", active, body.op("Div", body.attr("amplitude"), period), body.const(0.0))


class LIF(LIFRate):
    """Spiking leaky integrate-and-fire neuron; rate as `LIFRate` (min_voltage only affects spiking)."""

    op_type = "LIF"
    nengo_path = "nengo.LIF"
    spiking = True
    attributes = {"tau_rc": 0.02, "tau_ref": 0.002, "min_voltage": 0.0, "amplitude": 1.0}
    state = ("voltage", "refractory_time")

    @classmethod
    def step(cls, body, current, state, dt):
        """nengo.LIF.step: the voltage decays towards J over the non-refractory part of the step; a neuron above 1
        spikes, is reset to 0 and stays refractory for tau_ref from its exact sub-step spike time.

        Only the few neurons that need them get the costly parts (the update is memory-bound, and about 85 % of
        a spiking run): a neuron out of its refractory period decays by the constant ``expm1(-dt / tau_rc)``
        (computed here by numpy in float32, as Nengo computes it), and only the neurons partly refractory in this
        step (gathered with NonZero/GatherND, scattered back with ScatterND) get ``expm1`` of their own
        ``delta_t``; the spike time (a ``log1p``) is computed for the neurons that spiked only.
        """
        dt_c, one, zero = body.const(dt), body.const(1.0), body.const(0.0)
        tau_rc = body.attr("tau_rc")
        refractory = body.op("Sub", state["refractory_time"], dt_c)
        delta_t = body.op("Clip", body.op("Sub", dt_c, refractory), zero, dt_c)  # clip(dt - r, 0, dt)
        full_step = np.expm1(-np.float32(dt) / np.float32(body.value("tau_rc")))  # float32 numpy, as Nengo
        partial = body.op("Transpose", body.op("NonZero", body.op("Less", delta_t, dt_c)))  # (K, rank)
        partial_dt = body.op("GatherND", delta_t, partial)
        partial_decay = accurate_expm1(body, body.op("Div", body.op("Neg", partial_dt), tau_rc))  # Div, as Nengo
        decay = body.op("ScatterND", body.op("Expand", body.const(full_step), body.op("Shape", delta_t)),
                        partial, partial_decay)
        voltage = body.op("Sub", state["voltage"], body.op("Mul", body.op("Sub", current, state["voltage"]), decay))
        spiked = body.op("Greater", voltage, one)
        output = body.op("Where", spiked, body.const(body.value("amplitude") / dt), zero)  # float64 quotient
        # t_spike = dt + tau_rc * log1p(-(v - 1) / (J - 1)) for the neurons that spiked
        fired = body.op("Transpose", body.op("NonZero", spiked))
        fired_v, fired_j = body.op("GatherND", voltage, fired), body.op("GatherND", current, fired)
        fraction = body.op("Neg", body.op("Div", body.op("Sub", fired_v, one), body.op("Sub", fired_j, one)))
        t_spike = body.op("Add", dt_c, body.op("Mul", tau_rc, accurate_log1p(body, fraction)))
        voltage = body.op("Max", voltage, body.attr("min_voltage"))  # voltage[voltage < min_voltage] = min_voltage
        voltage = body.op("ScatterND", voltage, fired, body.op("Mul", fired_v, zero))  # voltage[spiked] = 0
        refractory = body.op("ScatterND", refractory, fired, body.op("Add", body.attr("tau_ref"), t_spike))
        return output, {"voltage": voltage, "refractory_time": refractory}


class SoftLIFRate(LIFRate):
    """LIF rate smoothed around threshold (Hunsberger & Eliasmith 2015), as `nengo_dl.SoftLIFRate`."""

    op_type = "SoftLIFRate"
    nengo_path = "nengo_dl.neurons.SoftLIFRate"
    attributes = {"sigma": 1.0, "tau_rc": 0.02, "tau_ref": 0.002, "amplitude": 1.0}

    @classmethod
    def rate(cls, body, current):
        sigma = body.attr("sigma")
        js = body.op("Div", body.op("Sub", current, body.const(1.0)), sigma)
        # z = sigma * softplus(js), with softplus(js) = js above 30 (as nengo_dl)
        soft = body.op("Where", body.op("Greater", js, body.const(30.0)), js, body.op("Softplus", js))
        z = body.op("Mul", soft, sigma)
        # q = log1p(1/z), or its asymptote -js - log(sigma) far below threshold (js <= -20)
        q_valid = body.op("Log", body.op("Add", body.const(1.0), body.op("Reciprocal", z)))
        q_far = body.op("Sub", body.op("Neg", js), body.op("Log", sigma))
        q = body.op("Where", body.op("Greater", js, body.const(-20.0)), q_valid, q_far)
        period = body.op("Add", body.attr("tau_ref"), body.op("Mul", body.attr("tau_rc"), q))
        return body.op("Div", body.attr("amplitude"), period)


#: Izhikevich rate table: currents 0 .. IZHIKEVICH_CURRENT_MAX in IZHIKEVICH_TABLE_POINTS steps
#: (Nengo's gain_bias gives currents up to ~60 for 200 Hz; the table reaches ~1000 Hz).
IZHIKEVICH_CURRENT_MAX = 500.0
IZHIKEVICH_TABLE_POINTS = 2001


class Izhikevich(NeuronOp):
    """Izhikevich (2003) spiking neuron; ONNX Runtime interpolates Nengo's tabulated rate curve (Hz)."""

    op_type = "Izhikevich"
    nengo_path = "nengo.Izhikevich"
    spiking = True
    attributes = {"tau_recovery": 0.02, "coupling": 0.2, "reset_voltage": -65.0, "reset_recovery": 8.0}
    derived = ("rate_current_max", "rate_table")

    @classmethod
    def rate_table(cls, params: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """(currents, rates): Nengo's rate response on the table's grid, float32."""
        currents = np.linspace(0.0, IZHIKEVICH_CURRENT_MAX, IZHIKEVICH_TABLE_POINTS)
        rates = cls.nengo_type(params).rates(currents, np.ones(1), np.zeros(1))
        return currents.astype(np.float32), np.asarray(rates, np.float32).ravel()

    @classmethod
    def node_attributes(cls, params):
        _, rates = cls.rate_table(params)
        return {**params, "rate_current_max": IZHIKEVICH_CURRENT_MAX,
                "rate_table": numpy_helper.from_array(rates, "rate_table")}

    @classmethod
    def rate(cls, body, current):
        table = body.tensor_attr("rate_table")
        last = body.op("Sub", body.op("Cast", body.op("Size", table), to=onnx.TensorProto.FLOAT), body.const(1.0))
        position = body.op("Mul", body.op("Div", current, body.attr("rate_current_max")), last)
        position = body.op("Max", body.op("Min", position, last), body.const(0.0))  # Clip's signature changed at 11
        left = body.op("Min", body.op("Floor", position), body.op("Sub", last, body.const(1.0)))
        fraction = body.op("Sub", position, left)
        index = body.op("Cast", left, to=onnx.TensorProto.INT64)
        y0 = body.op("Gather", table, index)
        y1 = body.op("Gather", table, body.op("Add", index, body.const(1, np.int64)))
        return body.op("Add", y0, body.op("Mul", fraction, body.op("Sub", y1, y0)))


#: Every ONNX-SNN neuron op by op_type.
NEURONS: dict[str, type[NeuronOp]] = {cls.op_type: cls for cls in (
    RectifiedLinear, SpikingRectifiedLinear, LIFRate, LIF, SoftLIFRate, Izhikevich,
)}


def neuron(op_type: str) -> type[NeuronOp]:
    """The neuron op class named ``op_type``.

    Raises
    ------
    SNNError
        Listing the known neuron ops.
    """
    try:
        return NEURONS[op_type]
    except KeyError:
        raise SNNError(f"unknown neuron {op_type!r}; known: {', '.join(NEURONS)}") from None


def neuron_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The top-level graph nodes of ``model`` that are ONNX-SNN neuron ops."""
    return [n for n in model.graph.node if n.domain == ONNX_SNN_DOMAIN]


def install_functions(model: onnx.ModelProto) -> None:
    """Import the ONNX-SNN opset and add the rate function of every neuron op the graph uses.

    The functions are built for the ai.onnx opset the model imports (the model's opset is never
    changed); functions of the ONNX-SNN domain already in the model are replaced by these.
    """
    from onnxlab.formats import ONNX_SNN_OPSET
    from onnxlab.graph import check_opset_supported

    opset = check_opset_supported(model, "ONNX-SNN")
    used = sorted({n.op_type for n in neuron_nodes(model)})
    for op_type in used:
        neuron(op_type)  # unknown op types fail here, by name
    keep = [f for f in model.functions if f.domain != ONNX_SNN_DOMAIN]
    del model.functions[:]
    model.functions.extend(keep + [NEURONS[t].function(opset) for t in used])
    if not any(o.domain == ONNX_SNN_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(ONNX_SNN_DOMAIN, ONNX_SNN_OPSET))
