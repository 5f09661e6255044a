"""The inference system: classify a model, then run it on the engine its kind needs.

ML and DL models run in ONNX Runtime; SNN models run in Nengo (NengoDL simulator) by default, or compiled to a
plain ONNX time loop in ONNX Runtime (``engine="onnxruntime-spiking"``), with the number of steps and the output
synapse read from the file (`onnxlab.snn.Simulation`) unless overridden. Engines are objects (`ENGINES`) that say
which model kinds they run. Before anything runs, the file is checked for what would otherwise surface as a
crash or a cryptic engine error: missing external-data files, tensors whose declared size does
not match their data or cannot be allocated, operators of unknown domains, an opset newer than
the installed ONNX Runtime, and inputs whose names, dtypes or shapes differ from the model's.
Each is one `OnnxlabError` naming the file, tensor, node or input.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import onnx
from onnx import helper

from onnxlab.classify import DEFAULT_DOMAIN, Evidence, classify, iter_nodes
from onnxlab.errors import OnnxlabError
from onnxlab.formats import read_model

#: Largest total of declared tensor bytes `check_resources` lets an engine try to allocate
#: (a quarter of this machine's memory, at least 1 GiB).
MAX_TENSOR_BYTES_FRACTION = 0.25
#: Element types numpy cannot hold natively (bfloat16, float8, 4-bit): inputs of these types cannot be fed.
NON_NUMPY_TYPES = frozenset(getattr(onnx.TensorProto, name) for name in (
    "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "UINT4", "INT4", "FLOAT4E2M1")
    if hasattr(onnx.TensorProto, name))
#: Signals "use the file's value" for `run`'s synapse (None already means "no filter").
FROM_FILE = "from file"


@dataclass
class RunResult:
    """What `run` returns.

    Attributes
    ----------
    outputs
        Output name -> array, (N, ...) as the model declares it. For SNN models: the output at
        the last time step, read through the file's synapse (the network's answer).
    kind, engine
        The model's kind (``ML``/``DL``/``SNN``) and the engine that ran it.
    seconds
        Wall time of the engine run (session creation or network build included).
    evidence
        The classifier's `Evidence`.
    series
        SNN only: output name -> (N, n_steps, ...) over simulation time.
    notes
        What the engine changed or assumed (legacy upgrade, dropped Softmax, ...).
    """

    outputs: dict[str, np.ndarray]
    kind: str
    engine: str
    seconds: float
    evidence: Evidence
    series: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SpikingOptions:
    """Settings of a spiking run, for the engines that run SNN models.

    Attributes
    ----------
    n_steps, synapse
        Simulation steps per sample and output synapse (seconds; None = unfiltered); default: the file's.
    minibatch_size
        Samples simulated together; None: the engine's own default.
    progress_bar
        NengoDL's progress bar.
    initial_state
        ``onnxruntime-spiking``: ``"nengo"`` (default) starts the neurons where Nengo's seeded build starts them,
        as the ``nengo-dl`` engine does; ``"rest"`` starts them at 0.
    """

    n_steps: int | None = None
    synapse: float | None | str = FROM_FILE
    minibatch_size: int | None = None
    progress_bar: bool = False
    initial_state: str = "nengo"


@dataclass
class LoadedModel:
    """A model as the engines receive it: the parsed file, its path, its name and its classification.

    ``resolved`` is the proto with its external data read in (once, on first use).
    """

    proto: onnx.ModelProto
    path: Path | None
    name: str
    evidence: Evidence

    @functools.cached_property
    def resolved(self) -> onnx.ModelProto:
        from onnxlab.formats import with_external_data

        return with_external_data(self.proto, self.path)


@dataclass
class EngineOutput:
    """What an engine's run returns: outputs (N, ...), SNN series (N, n_steps, ...) and notes."""

    outputs: dict[str, np.ndarray]
    series: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class InferenceEngine:
    """An inference engine: which model kinds it runs and how.

    Subclasses set `name`, `kinds` (``ML``/``DL``/``SNN``) and implement `run`; options are typed (`SpikingOptions`
    for SNN engines). A new engine is one subclass added to `ENGINES`.
    """

    name: ClassVar[str]
    kinds: ClassVar[frozenset[str]]

    def run(self, model: LoadedModel, inputs: dict[str, np.ndarray], options: SpikingOptions) -> EngineOutput:
        raise NotImplementedError


# --------------------------------------------------------------------------- checks


def _elem_type_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type).lower()


def _numpy_dtype(elem_type: int, where: str) -> np.dtype:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        raise OnnxlabError(f"{where}: element type {elem_type} has no numpy equivalent") from None


def declared_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs a caller must feed (initializers listed as inputs have defaults)."""
    initializers = {i.name for i in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in initializers]


def _dims(value: onnx.ValueInfoProto) -> list[int | str | None] | None:
    """Declared dims: int (fixed), str (symbolic), None (unknown); None if no shape is declared."""
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim]


def check_inputs(model: onnx.ModelProto, inputs: np.ndarray | Mapping[str, np.ndarray],
                 name: str = "model") -> dict[str, np.ndarray]:
    """Match ``inputs`` to the model's declared inputs: names, dtypes and shapes.

    Parameters
    ----------
    inputs
        One array (for a single-input model) or input name -> array.

    Returns
    -------
    dict
        Input name -> array, ready for an engine.

    Raises
    ------
    OnnxlabError
        Naming the input and what differs (missing or unexpected name, dtype, rank, dimension).
    """
    wanted = declared_inputs(model)
    if not isinstance(inputs, Mapping):
        if len(wanted) != 1:
            raise OnnxlabError(f"{name} has {len(wanted)} inputs ({', '.join(v.name for v in wanted)}): "
                               "give them by name")
        inputs = {wanted[0].name: inputs}
    missing = [v.name for v in wanted if v.name not in inputs]
    extra = sorted(set(inputs) - {v.name for v in model.graph.input})
    if missing or extra:
        raise OnnxlabError(f"{name}: inputs do not match: missing {missing}, unexpected {extra}; "
                           f"the model takes {[v.name for v in wanted]}")
    checked = {}
    for value in model.graph.input:
        if value.name not in inputs:
            continue
        array = np.asarray(inputs[value.name])
        where = f"{name}: input {value.name!r}"
        if not value.type.HasField("tensor_type"):
            raise OnnxlabError(f"{where} is not a tensor (sequences and maps are not supported)")
        elem_type = value.type.tensor_type.elem_type
        if elem_type in NON_NUMPY_TYPES:
            raise OnnxlabError(f"{where} is {_elem_type_name(elem_type)}, which has no numpy dtype to feed")
        dtype = _numpy_dtype(elem_type, where)
        if array.dtype != dtype:
            raise OnnxlabError(f"{where} expects {_elem_type_name(value.type.tensor_type.elem_type)} "
                               f"({dtype}), got {array.dtype}")
        dims = _dims(value)
        if dims is not None:
            if array.ndim != len(dims):
                raise OnnxlabError(f"{where} expects {len(dims)} dimensions {_show(dims)}, got shape {array.shape}")
            for axis, (want, got) in enumerate(zip(dims, array.shape)):
                if isinstance(want, int) and want != got:
                    raise OnnxlabError(f"{where} expects shape {_show(dims)}, got {array.shape} "
                                       f"(axis {axis}: {got} != {want})")
        checked[value.name] = array
    return checked


def _show(dims: list) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _available_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _itemsize(tensor: onnx.TensorProto, where: str) -> int:
    if tensor.data_type == onnx.TensorProto.STRING:
        return 0
    return _numpy_dtype(tensor.data_type, where).itemsize


def _tensors(model: onnx.ModelProto):
    """(where, tensor) for every initializer and Constant-node value, subgraphs included."""
    for tensor in model.graph.initializer:
        yield f"initializer {tensor.name!r}", tensor
    for node in iter_nodes(model):
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield f"node {node.name or node.op_type!r} attribute {attr.name!r}", attr.t


def check_resources(model: onnx.ModelProto, path: Path | None, name: str = "model",
                    max_bytes: int | None = None) -> None:
    """Refuse files whose tensors would crash or exhaust an engine before it starts.

    Checks every initializer and constant: external-data files exist (relative to the model
    file), stored bytes match the declared dims, and the declared sizes add up to at most
    ``max_bytes`` (default: `MAX_TENSOR_BYTES_FRACTION` of physical memory).

    Raises
    ------
    OnnxlabError
        Naming the tensor and the problem.
    """
    limit = max_bytes or max(1 << 30, int(_available_memory() * MAX_TENSOR_BYTES_FRACTION))
    total = 0
    for where, tensor in _tensors(model):
        if any(d < 0 for d in tensor.dims):
            raise OnnxlabError(f"{name}: {where} declares negative dimensions {list(tensor.dims)}")
        n = 1
        for d in tensor.dims:
            n *= int(d)
        declared = n * _itemsize(tensor, f"{name}: {where}")
        total += declared
        if total > limit:
            raise OnnxlabError(f"{name}: {where} declares dims {list(tensor.dims)} ({declared / 2**30:.4g} GiB); "
                               f"the model's tensors exceed {limit / 2**30:.4g} GiB, more than this machine can "
                               "safely allocate")
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            info = {e.key: e.value for e in tensor.external_data}
            location = info.get("location", "")
            if path is None:
                raise OnnxlabError(f"{name}: {where} keeps its data in an external file {location!r}; "
                                   "pass the model's path so it can be found")
            data_file = (path.parent / location).resolve()
            if not location or not data_file.is_file():
                raise OnnxlabError(f"{name}: {where} keeps its data in {location!r}, which is missing "
                                   f"(looked for {data_file})")
            length = int(info.get("length", data_file.stat().st_size - int(info.get("offset", 0))))
            if int(info.get("offset", 0)) + length > data_file.stat().st_size or (declared and length != declared):
                raise OnnxlabError(f"{name}: {where} needs {declared} bytes from {location!r}, "
                                   "which is shorter or inconsistent (truncated?)")
        elif tensor.HasField("raw_data") and declared and len(tensor.raw_data) != declared:
            raise OnnxlabError(f"{name}: {where} declares dims {list(tensor.dims)} ({declared} bytes) but stores "
                               f"{len(tensor.raw_data)} bytes (truncated or corrupt file)")


@functools.lru_cache(maxsize=1)
def onnxruntime_max_opset() -> int:
    """Newest default-domain opset the installed ONNX Runtime loads (probed once with an Identity model)."""
    import onnxruntime as ort

    def loads(version: int) -> bool:
        value = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [value],
                                  [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", version)])
        model.ir_version = 8
        options = ort.SessionOptions()
        options.log_severity_level = 4
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            return True
        except Exception:
            return False

    version = onnx.defs.onnx_opset_version()
    while loads(version + 1):
        version += 1
    return version


def check_engine_support(model: onnx.ModelProto, evidence: Evidence, name: str = "model") -> None:
    """Refuse operators of domains no engine implements, and opsets newer than ONNX Runtime's."""
    import onnxruntime as ort

    if evidence.unknown_domains:
        functions = {(f.domain, f.name) for f in model.functions}
        node = next(n for n in iter_nodes(model)
                    if n.domain in evidence.unknown_domains and (n.domain, n.op_type) not in functions)
        raise OnnxlabError(f"{name}: node {node.name or node.op_type!r} uses op {node.op_type!r} of the custom "
                           f"domain {node.domain!r}, which no engine here implements")
    version = evidence.opset_imports.get(DEFAULT_DOMAIN)
    if evidence.kind != "SNN" and version is not None and version > onnxruntime_max_opset():
        raise OnnxlabError(f"{name}: imports {DEFAULT_DOMAIN} opset {version}, newer than onnxruntime "
                           f"{ort.__version__} supports (up to {onnxruntime_max_opset()})")


# --------------------------------------------------------------------------- engines


def _clean_ort_message(exc: Exception) -> str:
    """ONNX Runtime's message without its status prefix and C++ source locations."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"/onnxruntime_src/\S+:\d+ \S.*?\)\S* ", "", text)
    return text[:400]


class OnnxRuntimeEngine(InferenceEngine):
    """ML and DL models in ONNX Runtime (CPU)."""

    name = "onnxruntime"
    kinds = frozenset({"ML", "DL"})

    def run(self, model, inputs, options):
        from onnxlab.runtime import ort_session

        try:  # failures become one OnnxlabError, so ONNX Runtime's own error log is silenced
            session = ort_session(model.path if model.path is not None else model.proto, log_severity=4)
        except Exception as exc:
            raise OnnxlabError(f"{model.name}: onnxruntime cannot load it: {_clean_ort_message(exc)}") from None
        try:
            values = session.run(None, inputs)
        except Exception as exc:
            raise OnnxlabError(f"{model.name}: onnxruntime failed while running it: {_clean_ort_message(exc)}") from None
        return EngineOutput(dict(zip([o.name for o in session.get_outputs()], values)))


def _spiking_model(model: LoadedModel, inputs: dict[str, np.ndarray],
                   options: SpikingOptions) -> tuple[onnx.ModelProto, np.ndarray, int, float | None, list[str]]:
    """What every SNN engine starts from: (valid ONNX-SNN proto, the single input, n_steps, synapse, notes)."""
    from onnxlab.snn import Simulation, is_legacy, upgrade

    notes = []
    proto = model.resolved
    if is_legacy(proto):
        proto, changes = upgrade(proto)
        notes += [f"legacy ONNX-SNN file upgraded in memory: {c}" for c in changes]
    stored = Simulation.read(proto)
    synapse = stored.synapse if options.synapse == FROM_FILE else options.synapse
    n_steps = options.n_steps or stored.n_steps
    if (synapse, n_steps) != (stored.synapse, stored.n_steps):
        notes.append(f"simulation overridden: n_steps={n_steps}, synapse={synapse} "
                     f"(file: {stored.n_steps}, {stored.synapse})")
    if len(inputs) != 1:
        raise OnnxlabError(f"{model.name}: the spiking engines run single-input networks; this one has {list(inputs)}")
    (x,) = inputs.values()
    return proto, x, n_steps, synapse, notes


class NengoDLEngine(InferenceEngine):
    """SNN models built as Nengo networks (`to_nengo`) and simulated by NengoDL."""

    name = "nengo-dl"
    kinds = frozenset({"SNN"})
    #: Samples simulated together when the options leave it open.
    MINIBATCH_SIZE = 100

    def run(self, model, inputs, options):
        from onnxlab.snn import Simulation
        from onnxlab.snn.simulate import simulate
        from onnxlab.snn.to_nengo import to_nengo

        proto, x, n_steps, synapse, notes = _spiking_model(model, inputs, options)
        stored = Simulation.read(proto)
        if synapse != stored.synapse:
            copy = onnx.ModelProto()
            copy.CopyFrom(proto)
            dataclasses.replace(stored, synapse=synapse).write(copy)
            proto = copy
        network = to_nengo(proto)
        series = simulate(network, x, n_steps=n_steps, filtered=True, progress_bar=options.progress_bar,
                          minibatch_size=options.minibatch_size or self.MINIBATCH_SIZE)
        return EngineOutput({k: v[:, -1] for k, v in series.items()}, series, notes + network.notes)


class OnnxRuntimeSpikingEngine(InferenceEngine):
    """SNN models compiled to a plain ONNX time loop (`onnxlab.snn.to_spiking_onnx`) and run by ONNX Runtime."""

    name = "onnxruntime-spiking"
    kinds = frozenset({"SNN"})

    def run(self, model, inputs, options):
        from onnxlab.snn.spiking_onnx import SPIKING_BATCH, run_spiking, to_spiking_onnx

        proto, x, n_steps, synapse, notes = _spiking_model(model, inputs, options)
        compiled = to_spiking_onnx(proto, n_steps=n_steps, synapse=synapse, initial_state=options.initial_state)
        notes += [line for line in compiled.doc_string.splitlines()[1:]]
        series = run_spiking(compiled, x, batch_size=options.minibatch_size or SPIKING_BATCH)
        return EngineOutput({k: v[:, -1] for k, v in series.items()}, series, notes)


#: Every inference engine by name.
ENGINES: dict[str, InferenceEngine] = {e.name: e for e in (
    OnnxRuntimeEngine(), NengoDLEngine(), OnnxRuntimeSpikingEngine())}
#: The engine each model kind runs on unless another is asked for.
DEFAULT_ENGINES: dict[str, str] = {"ML": "onnxruntime", "DL": "onnxruntime", "SNN": "nengo-dl"}


def engine_for(kind: str, name: str | None = None, model_name: str = "model") -> InferenceEngine:
    """The engine called ``name`` (default: the kind's, `DEFAULT_ENGINES`), checked to run models of ``kind``.

    Raises
    ------
    OnnxlabError
        For an unknown engine, or one that does not run this kind of model (naming those that do).
    """
    name = name or DEFAULT_ENGINES[kind]
    if name not in ENGINES:
        raise OnnxlabError(f"unknown engine {name!r}; engines: {', '.join(ENGINES)}")
    engine = ENGINES[name]
    if kind not in engine.kinds:
        able = [e.name for e in ENGINES.values() if kind in e.kinds]
        raise OnnxlabError(f"{model_name} is a {kind} model; engine {name!r} runs {'/'.join(sorted(engine.kinds))} "
                           f"models (for {kind}: {', '.join(able)})")
    return engine


def load_for_inference(model: onnx.ModelProto | str | os.PathLike) -> tuple[onnx.ModelProto, Path | None, str]:
    """(proto, path or None, display name); files are parsed without reading external data."""
    if isinstance(model, onnx.ModelProto):
        return model, None, model.graph.name or "model"
    path = Path(model)
    return read_model(path), path, str(path)


def run(model: onnx.ModelProto | str | os.PathLike, inputs: np.ndarray | Mapping[str, np.ndarray], *,
        engine: str | None = None, n_steps: int | None = None, synapse: float | None | str = FROM_FILE,
        minibatch_size: int | None = None, progress_bar: bool = False, initial_state: str = "nengo") -> RunResult:
    """Classify ``model`` and run it on an engine that runs its kind (see `ENGINES`, `DEFAULT_ENGINES`).

    Parameters
    ----------
    model
        Proto or ``.onnx`` path (use a path for models with external data).
    inputs
        One array (single-input models) or input name -> array, checked by `check_inputs`.
    engine
        Engine name; default: the one of the model's kind (SNN: ``nengo-dl``; ``onnxruntime-spiking`` runs the
        same network in ONNX Runtime alone).
    n_steps, synapse, minibatch_size, progress_bar, initial_state
        SNN only: see `SpikingOptions`.

    Raises
    ------
    OnnxlabError
        For a file that cannot be read or run, inputs that do not match, or an engine that does not run this
        kind of model (one clear line).
    """
    proto, path, name = load_for_inference(model)
    evidence = classify(proto)
    chosen = engine_for(evidence.kind, engine, name)
    check_resources(proto, path, name)
    check_engine_support(proto, evidence, name)
    feed = check_inputs(proto, inputs, name)
    options = SpikingOptions(n_steps=n_steps, synapse=synapse, minibatch_size=minibatch_size,
                             progress_bar=progress_bar, initial_state=initial_state)
    started = time.perf_counter()
    result = chosen.run(LoadedModel(proto, path, name, evidence), feed, options)
    return RunResult(result.outputs, evidence.kind, chosen.name, time.perf_counter() - started, evidence,
                     result.series, result.notes)


def info(model: onnx.ModelProto | str | os.PathLike) -> dict[str, Any]:
    """A summary of a model file: kind, opsets, inputs/outputs, parameter count, size on disk.

    Returns
    -------
    dict
        ``file``, ``kind``, ``producer``, ``ir_version``, ``opsets``, ``inputs``/``outputs``
        (name, element type, dims), ``parameters`` (initializer elements), ``size_bytes``
        (model file plus external data files).
    """
    proto, path, name = load_for_inference(model)
    evidence = classify(proto)

    def describe(values):
        return [dict(name=v.name, type=_elem_type_name(v.type.tensor_type.elem_type)
                     if v.type.HasField("tensor_type") else "non-tensor",
                     dims=_show(_dims(v)) if _dims(v) is not None else "?") for v in values]

    parameters = 0
    for tensor in proto.graph.initializer:
        n = 1
        for d in tensor.dims:
            n *= int(d)
        parameters += n
    size = None
    if path is not None:
        size = path.stat().st_size
        for location in {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}:
            data_file = path.parent / location
            size += data_file.stat().st_size if data_file.is_file() else 0
    return dict(file=name, kind=evidence.kind, rule=evidence.rule, producer=evidence.producer,
                ir_version=int(proto.ir_version), opsets=evidence.opset_imports,
                inputs=describe(declared_inputs(proto)), outputs=describe(proto.graph.output),
                nodes=evidence.n_nodes, parameters=parameters, size_bytes=size)
