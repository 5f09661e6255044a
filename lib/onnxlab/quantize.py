"""Post-training quantization of any ONNX model with ``onnxruntime.quantization``.

One function, `quantize`, behind the CLI's ``onnxlab quantize``. Two modes (`QUANTIZATION_MODES`):

- ``dynamic``: int8 weights, activations quantized on the fly at run time (paper R's "HYBRID").
  Restricted to MatMul/Gemm by default: ONNX Runtime's CPU ``ConvInteger`` kernel takes uint8
  weights only, so a dynamically quantized convolution with int8 weights has no kernel to run.
- ``static``: int8 weights and activations (paper R's "INT"), QDQ format, activation ranges from
  a calibration set through a `CalibrationDataReader`; calibration by MinMax, Entropy (KL
  divergence) or Percentile (`CALIBRATION_METHODS`), optionally with scales snapped to powers of
  two afterwards (paper R's log2 quantization; `snap_scales_to_powers_of_two`).

Every run starts with ONNX Runtime's recommended pre-processing (``quant_pre_process``: shape
inference and graph optimisation) — except for models with local functions (ONNX-SNN), which it would inline
(`FUNCTIONS_NOT_PREPROCESSED`) — writes the result atomically (the output appears only once
complete; the input path is refused as output), and returns a `QuantizationResult` that says
which kernels ONNX Runtime actually runs (the optimised graph: ``QLinearConv``, ``QGemm``,
``DynamicQuantizeMatMul``…) and which compute nodes stayed in float.

On x86 CPUs without VNNI, the u8s8 integer multiply-add (``vpmaddubsw``) sums pairs of products
into int16 and can saturate; ONNX Runtime's remedy is 7-bit weights (``reduce_range``). It is
switched on automatically where the CPU lacks VNNI (`onnxlab.reproducibility.has_vnni`).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx

from onnxlab.errors import InvalidArgument, OnnxlabError

#: Images per calibration batch fed to ONNX Runtime's calibrator.
CALIBRATION_BATCH = 32
#: The percentile of |activation| kept by Percentile calibration.
DEFAULT_PERCENTILE = 99.999
#: Op types dynamic mode quantizes by default (see the module docstring for Conv).
DYNAMIC_OP_TYPES = ("MatMul", "Gemm")

#: Why models with local functions (ONNX-SNN neuron ops) are quantized without ``quant_pre_process``.
FUNCTIONS_NOT_PREPROCESSED = (
    "pre-processing skipped: quant_pre_process inlines the model's local functions (ONNX-SNN neuron ops), and the "
    "quantizer would then quantize the neuron's inner arithmetic (measured on an ONNX-SNN LeNet-5 with LIF: "
    "accuracy 0.87 -> 0.20; kept as functions, the neuron ops stay float and accuracy holds)")
#: Op types in ONNX Runtime's optimised graph that compute in integers.
INTEGER_KERNELS = frozenset({
    "QLinearConv", "QLinearMatMul", "QGemm", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat", "QLinearAdd", "QLinearMul", "QLinearAveragePool", "QLinearGlobalAveragePool",
    "QLinearSigmoid", "QLinearLeakyRelu", "QLinearConcat", "QLinearSoftmax", "QLinearReduceMean",
    "DynamicQuantizeLSTM", "QAttention", "QEmbedLayerNormalization", "QLinearWhere",
})
#: Op types that carry a model's multiply-adds; left in float, they are what quantization missed.
FLOAT_COMPUTE_KERNELS = frozenset({"Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm", "FusedGemm",
                                   "ConvTranspose", "NhwcFusedConv", "Attention", "LSTM", "GRU"})
#: Converters between float and int8 that ONNX Runtime could not fuse away.
CONVERSION_KERNELS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})


# --------------------------------------------------------------------------- registries

@dataclass(frozen=True)
class CalibrationMethod:
    """One way of choosing activation ranges from a calibration set.

    Attributes
    ----------
    name, description
        Shown by the CLI and in table notes.
    ort_method
        Name of the ``onnxruntime.quantization.CalibrationMethod`` member.
    power_of_two
        Snap every scale to a power of two after calibration (paper R's log2 quantization).
    """

    name: str
    description: str
    ort_method: str
    power_of_two: bool = False


#: Calibration methods by name.
CALIBRATION_METHODS: dict[str, CalibrationMethod] = {m.name: m for m in (
    CalibrationMethod("minmax", "range = observed minimum and maximum", "MinMax"),
    CalibrationMethod("entropy", "range minimising the KL divergence between float and int8 histograms "
                      "(TensorRT's method; paper R's 'KL divergence')", "Entropy"),
    CalibrationMethod("percentile", f"range = the {DEFAULT_PERCENTILE}th percentile of |x|", "Percentile"),
    CalibrationMethod("power_of_two", "MinMax ranges, then every scale rounded up to a power of two, weights "
                      "requantized (paper R's log2 quantization: rescaling becomes a bit shift)", "MinMax",
                      power_of_two=True),
)}


@dataclass(frozen=True)
class QuantizationMode:
    """A quantization mode: what is integer, and whether it needs calibration data."""

    name: str
    description: str
    needs_calibration: bool


#: Quantization modes by name.
QUANTIZATION_MODES: dict[str, QuantizationMode] = {m.name: m for m in (
    QuantizationMode("dynamic", "int8 weights, activations quantized at run time (paper R's HYBRID)", False),
    QuantizationMode("static", "int8 weights and activations, QDQ format, calibrated ranges (paper R's INT)", True),
)}


# --------------------------------------------------------------------------- settings and result

@dataclass(frozen=True)
class QuantizationSettings:
    """What `quantize` does.

    Attributes
    ----------
    mode
        A key of `QUANTIZATION_MODES`.
    calibration
        A key of `CALIBRATION_METHODS` (static mode only).
    per_channel
        One weight scale per output channel instead of one per tensor.
    n_calibration
        Calibration samples used (the first ``n_calibration`` rows of the calibration array).
    reduce_range
        7-bit weights; None: on exactly where the CPU lacks VNNI.
    activation_type, weight_type
        ``"uint8"`` or ``"int8"``; u8 activations × s8 weights is ONNX Runtime's x86 default.
    op_types
        Op types to quantize; None: every supported one (static), `DYNAMIC_OP_TYPES` (dynamic).
    nodes_to_exclude
        Node names left in float (mixed precision).
    preprocess
        Run ``quant_pre_process`` first (ONNX Runtime's recommendation).
    """

    mode: str = "static"
    calibration: str = "minmax"
    per_channel: bool = False
    n_calibration: int = 256
    reduce_range: bool | None = None
    activation_type: str = "uint8"
    weight_type: str = "int8"
    op_types: tuple[str, ...] | None = None
    nodes_to_exclude: tuple[str, ...] = ()
    preprocess: bool = True

    def __post_init__(self) -> None:
        _check_choice("mode", self.mode, QUANTIZATION_MODES)
        _check_choice("calibration", self.calibration, CALIBRATION_METHODS)
        for name in ("activation_type", "weight_type"):
            _check_choice(name, getattr(self, name), _QUANT_TYPES)
        if self.n_calibration < 1:
            raise InvalidArgument(f"n_calibration must be >= 1, got {self.n_calibration}")
        if self.mode == "dynamic" and self.weight_type == "int8" and "Conv" in (self.op_types or ()):
            raise InvalidArgument("dynamic mode cannot quantize Conv with int8 weights: ONNX Runtime's CPU "
                                  "ConvInteger kernel takes uint8 weights only. Use mode='static' for "
                                  "convolutions, weight_type='uint8', or leave Conv out of op_types")

    @property
    def label(self) -> str:
        """Short name of the variant, e.g. ``static-entropy-per-channel``."""
        if self.mode == "dynamic":
            parts = ["dynamic"]
        else:
            parts = ["static", self.calibration]
        parts.append("per-channel" if self.per_channel else "per-tensor")
        return "-".join(parts)

    def resolved(self) -> "QuantizationSettings":
        """The settings with every automatic choice made (reduce_range, dynamic op types)."""
        from onnxlab.reproducibility import has_vnni

        settings = self
        if settings.reduce_range is None:
            settings = replace(settings, reduce_range=not has_vnni())
        if settings.mode == "dynamic" and settings.op_types is None:
            settings = replace(settings, op_types=DYNAMIC_OP_TYPES)
        return settings


_QUANT_TYPES = {"uint8": "QUInt8", "int8": "QInt8"}


def _check_choice(what: str, value: str, known: dict) -> None:
    if value not in known:
        raise InvalidArgument(f"unknown {what} {value!r}; known: {', '.join(known)}")


@dataclass
class KernelCensus:
    """Op types of the graph ONNX Runtime runs after its optimisations, sorted into kinds.

    Attributes
    ----------
    integer, float_compute, conversions, other
        Op type -> node count, for integer kernels, float multiply-add kernels, Q/DQ converters
        left unfused, and everything else (activations, reshapes, pooling…).
    """

    integer: dict[str, int] = field(default_factory=dict)
    float_compute: dict[str, int] = field(default_factory=dict)
    conversions: dict[str, int] = field(default_factory=dict)
    other: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, model: onnx.ModelProto) -> "KernelCensus":
        counts = Counter(node.op_type for node in model.graph.node)
        census = cls()
        for op, n in sorted(counts.items()):
            kind = ("integer" if op in INTEGER_KERNELS else "float_compute" if op in FLOAT_COMPUTE_KERNELS
                    else "conversions" if op in CONVERSION_KERNELS else "other")
            getattr(census, kind)[op] = n
        return census

    @staticmethod
    def _text(counts: dict[str, int]) -> str:
        return ", ".join(f"{op}×{n}" for op, n in counts.items()) or "none"

    def summary(self) -> str:
        """One line, e.g. ``integer: QLinearConv×2, QGemm×1; float: none; Q/DQ left: QuantizeLinear×1``."""
        return (f"integer: {self._text(self.integer)}; float: {self._text(self.float_compute)}; "
                f"Q/DQ left: {self._text(self.conversions)}")


@dataclass
class QuantizationResult:
    """What `quantize` wrote and what ONNX Runtime will run.

    Attributes
    ----------
    path
        The quantized model.
    settings
        The settings with automatic choices resolved.
    size_bytes
        File size (plus external data files, if any).
    kernels
        `KernelCensus` of the graph ONNX Runtime runs.
    notes
        The choices made and why (pre-processing, reduce_range, op types).
    seconds
        Wall time of pre-processing, calibration and quantization.
    """

    path: Path
    settings: QuantizationSettings
    size_bytes: int
    kernels: KernelCensus
    notes: list[str]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "settings": asdict(self.settings), "size_bytes": self.size_bytes,
                "kernels": asdict(self.kernels), "notes": self.notes, "seconds": self.seconds}


# --------------------------------------------------------------------------- calibration data

def _static_input(model: onnx.ModelProto, model_path: str) -> tuple[str, list[int | None]]:
    """Name and shape (None for symbolic dims) of the model's only graph input."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise InvalidArgument(f"{model_path}: static quantization calibrates models with one input; this one "
                              f"has {len(inputs)} ({', '.join(i.name for i in inputs)})")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    return inputs[0].name, dims


def check_calibration_data(model: onnx.ModelProto, model_path: str, data: Any) -> tuple[str, np.ndarray]:
    """The input name and the calibration array as float32, after checking its shape against the model.

    Raises
    ------
    InvalidArgument
        If ``data`` is not an array of samples whose shape fits the model's input (every fixed
        dimension after the batch one must match).
    """
    name, dims = _static_input(model, model_path)
    try:
        array = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"calibration data for {model_path} is not a numeric array: {exc}") from None
    expected = ["N" if d is None else d for d in dims]
    fits = array.ndim == len(dims) and all(d in (None, 0) or d == n for d, n in zip(dims[1:], array.shape[1:]))
    if not fits or len(array) == 0:
        raise InvalidArgument(f"calibration data of shape {list(array.shape)} does not fit input {name!r} of "
                              f"{model_path}, shape {expected} (samples along the first axis)")
    return name, array


class ArrayCalibrationReader:
    """Feeds ``array`` (N, ...) to ONNX Runtime's calibrator, `CALIBRATION_BATCH` samples at a time."""

    def __init__(self, input_name: str, array: np.ndarray, batch_size: int = CALIBRATION_BATCH):
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {input_name: array[i:i + batch_size]} for i in range(0, len(array), batch_size))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def __iter__(self):
        return self

    def __next__(self):
        batch = self.get_next()
        if batch is None:
            raise StopIteration
        return batch


# --------------------------------------------------------------------------- QDQ arithmetic

def along_axis(parameter: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """A per-channel QDQ parameter (C,) shaped to broadcast along ``axis`` of an ``ndim``-D tensor
    (``DequantizeLinear``'s ``axis``); per-tensor parameters and 1-D tensors are returned as they are."""
    parameter = np.asarray(parameter)
    if parameter.ndim != 1 or ndim <= 1:
        return parameter
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return parameter.reshape(shape)


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int = 1) -> np.ndarray:
    """``DequantizeLinear`` in float64: (q − zero_point) × scale, per tensor or per channel along ``axis``."""
    zero = np.zeros_like(scale) if zero_point is None else zero_point
    return ((q.astype(np.float64) - along_axis(zero.astype(np.float64), q.ndim, axis))
            * along_axis(np.asarray(scale, np.float64), q.ndim, axis))


# --------------------------------------------------------------------------- power-of-two scales

def _round_up_to_power_of_two(scale: np.ndarray) -> np.ndarray:
    return np.exp2(np.ceil(np.log2(np.maximum(scale, np.finfo(np.float32).tiny)))).astype(np.float32)


def snap_scales_to_powers_of_two(model: onnx.ModelProto) -> onnx.ModelProto:
    """Round every QDQ scale of ``model`` up to a power of two and requantize the stored integers.

    Rounding a scale up only widens the representable range, so zero points stay valid. Integer
    initializers (weights, int32 biases) are dequantized with their old scale and quantized again
    with the new one; an int32 bias gets the product of its layer's new input and weight scales,
    which is what integer kernels assume. The model is changed in place and returned.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    dq_nodes = [n for n in model.graph.node if n.op_type in ("DequantizeLinear", "QuantizeLinear")]
    old = {n.input[1]: numpy_helper.to_array(inits[n.input[1]]) for n in dq_nodes if n.input[1] in inits}
    new = {name: _round_up_to_power_of_two(scale) for name, scale in old.items()}
    producer_scale = {n.output[0]: n.input[1] for n in model.graph.node if n.op_type == "DequantizeLinear"}

    def requantize(node: onnx.NodeProto, new_scale: np.ndarray) -> None:
        tensor = inits[node.input[0]]
        q = numpy_helper.to_array(tensor)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        zp = (numpy_helper.to_array(inits[node.input[2]]).astype(np.int64)
              if len(node.input) > 2 and node.input[2] in inits else np.zeros_like(old[node.input[1]], np.int64))
        real = dequantize(q, old[node.input[1]], zp, axis)
        info = np.iinfo(q.dtype)
        requantized = np.clip(np.round(real / along_axis(new_scale, q.ndim, axis)) + along_axis(zp, q.ndim, axis),
                              info.min, info.max)
        tensor.CopyFrom(numpy_helper.from_array(requantized.astype(q.dtype), tensor.name))

    # int32 biases: the scale is (input scale × weight scale) of the layer that adds them
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 3:
            continue
        bias_dq = next((n for n in dq_nodes if n.output[0] == node.input[2] and n.op_type == "DequantizeLinear"),
                       None)
        x_scale, w_scale = producer_scale.get(node.input[0]), producer_scale.get(node.input[1])
        if bias_dq is None or x_scale is None or w_scale is None or bias_dq.input[1] not in new:
            continue
        new[bias_dq.input[1]] = (new[x_scale] * new[w_scale]).astype(np.float32)
    for node in dq_nodes:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits and node.input[1] in new:
            requantize(node, new[node.input[1]])
    for name, scale in new.items():
        inits[name].CopyFrom(numpy_helper.from_array(scale.reshape(old[name].shape), name))
    return model


# --------------------------------------------------------------------------- quantize

def kernel_census(path: str | os.PathLike) -> KernelCensus:
    """`KernelCensus` of the graph ONNX Runtime builds from the model at ``path`` (all optimisations on)."""
    from onnxlab.runtime import ort_session

    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        ort_session(path, optimized_model_path=optimized)
        return KernelCensus.of(onnx.load(str(optimized), load_external_data=False))


def _file_size(path: Path) -> int:
    model = onnx.load(str(path), load_external_data=False)
    files = {entry.value for t in model.graph.initializer for entry in t.external_data if entry.key == "location"}
    return path.stat().st_size + sum((path.parent / f).stat().st_size for f in files)


def _preprocess(source: Path, target: Path, notes: list[str]) -> Path:
    from onnxruntime.quantization import quant_pre_process

    try:
        quant_pre_process(str(source), str(target))
    except Exception as exc:  # symbolic shape inference gives up on some graphs; quantizing still works
        notes.append(f"pre-processing skipped: quant_pre_process failed ({type(exc).__name__}: "
                     f"{str(exc).splitlines()[0] if str(exc) else ''})")
        return source
    notes.append("pre-processed with onnxruntime.quantization.quant_pre_process (shape inference, optimisation)")
    return target


def quantize(model: str | os.PathLike, output: str | os.PathLike, calibration_data: Any = None,
             settings: QuantizationSettings | None = None, **overrides: Any) -> QuantizationResult:
    """Quantize the ONNX model at ``model`` into ``output``.

    Parameters
    ----------
    model
        Path of a float ONNX model.
    output
        Path to write; must differ from ``model``. Written only once complete.
    calibration_data
        Static mode: samples for the model's only input, shape (N, ...) matching its fixed
        dimensions; the first ``settings.n_calibration`` are used. Ignored in dynamic mode.
    settings
        A `QuantizationSettings`; keyword ``overrides`` replace its fields (or build one).

    Returns
    -------
    QuantizationResult

    Raises
    ------
    OnnxlabError
        If the model does not load, a setting is unknown, the calibration data is missing or does
        not fit, or the output path is the input path. No file is written then.
    """
    from onnxruntime import quantization as ortq

    from onnxlab.formats import load_model

    requested = replace(settings or QuantizationSettings(), **overrides)
    settings = requested.resolved()
    source, target = Path(model), Path(output)
    if target.resolve() == source.resolve():
        raise InvalidArgument(f"{target}: the output would overwrite the input model; choose another path")
    proto = load_model(source)
    mode = QUANTIZATION_MODES[settings.mode]
    input_name, samples = None, None
    if mode.needs_calibration:
        if calibration_data is None:
            raise InvalidArgument(f"{settings.mode} quantization of {source} needs calibration data "
                                  f"(an array of samples for its input)")
        input_name, samples = check_calibration_data(proto, str(source), calibration_data)
        samples = samples[:settings.n_calibration]
    notes = [f"mode {mode.name}: {mode.description}"]
    if requested.reduce_range is not None:
        why = "as asked"
    elif settings.reduce_range:
        why = "this CPU has no VNNI, so u8s8 multiply-adds could saturate"
    else:
        why = "this CPU has VNNI"
    notes.append(f"reduce_range={settings.reduce_range} ({'7' if settings.reduce_range else '8'}-bit weights: {why})")
    start = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        work = Path(tmp)
        prepared = source
        if settings.preprocess and proto.functions:
            notes.append(FUNCTIONS_NOT_PREPROCESSED)
        elif settings.preprocess:
            prepared = _preprocess(source, work / "prepared.onnx", notes)
        quantized = work / target.name
        common = dict(per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                      weight_type=getattr(ortq.QuantType, _QUANT_TYPES[settings.weight_type]),
                      op_types_to_quantize=list(settings.op_types) if settings.op_types else None,
                      nodes_to_exclude=list(settings.nodes_to_exclude) or None)
        try:
            with _quiet_onnxruntime_quantization():
                _run_onnxruntime(mode, settings, prepared, quantized, samples, input_name, common, notes)
        except OnnxlabError:
            raise
        except Exception as exc:
            raise OnnxlabError(f"onnxruntime could not quantize {source} ({settings.label}): "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
        onnx.checker.check_model(str(quantized))
        census = kernel_census(quantized)
        os.replace(quantized, target)
    if census.float_compute:
        notes.append(f"left in float by ONNX Runtime: {KernelCensus._text(census.float_compute)}")
    return QuantizationResult(target, settings, _file_size(target), census, notes, time.perf_counter() - start)


@contextlib.contextmanager
def _quiet_onnxruntime_quantization():
    """Hide the calibrator's progress prints and the quantizer's warnings (their content goes into notes)."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _run_onnxruntime(mode: QuantizationMode, settings: QuantizationSettings, prepared: Path, quantized: Path,
                     samples: np.ndarray | None, input_name: str | None, common: dict, notes: list[str]) -> None:
    from onnxruntime import quantization as ortq

    if mode.name == "dynamic":
        notes.append(f"op types quantized: {', '.join(settings.op_types)} (Conv stays float: the CPU "
                     "ConvInteger kernel has no int8-weight version)")
        ortq.quantize_dynamic(str(prepared), str(quantized), **common)
        return
    method = CALIBRATION_METHODS[settings.calibration]
    notes.append(f"calibration {method.name} on {len(samples)} samples: {method.description}")
    extra = {"CalibPercentile": DEFAULT_PERCENTILE} if method.ort_method == "Percentile" else {}
    ortq.quantize_static(
        str(prepared), str(quantized), ArrayCalibrationReader(input_name, samples),
        quant_format=ortq.QuantFormat.QDQ,
        activation_type=getattr(ortq.QuantType, _QUANT_TYPES[settings.activation_type]),
        calibrate_method=getattr(ortq.CalibrationMethod, method.ort_method),
        extra_options=extra, **common)
    if method.power_of_two:
        onnx.save(snap_scales_to_powers_of_two(onnx.load(str(quantized))), str(quantized))
