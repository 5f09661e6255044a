"""Tell ML, DL and SNN models apart from an ONNX file, by reading the graph (never running it).

The paper this reproduces (Kim, Han & Heo 2021, Sec. V) looked at the *model-level* ``domain``
string (``ai.onnx`` for scikit-learn, ``onnx`` for Keras), which only records what two converters
happened to write. Here the operators decide; the model-level domain and the producer are kept
as evidence. The rules, first match wins (`RULES`):

1. ``SNN`` — a spiking neuron op: any node in the ONNX-SNN domain, or a legacy file with neuron
   op types in the default domain (the original ONNX-SNN tool's encoding).
2. ``ML`` — any ONNX-ML operator (domain ``ai.onnx.ml``: trees, linear models, label encoders...).
3. ``ML`` — no ONNX-ML operator, but written by a classical-ML converter (`ML_PRODUCERS`):
   skl2onnx writes KMeans and some neighbours models with standard ops only.
4. ``DL`` — everything else.

Mixed models get the first matching kind, and `Evidence.also` names the other kind their
operators show: a scikit-learn pipeline ending in an MLP, or a network with a tree-ensemble
head, is ``ML`` with ``also == ["DL"]`` (`Evidence.nn_ops` lists its MatMul/Relu); a spiking
network with an ONNX-ML head is ``SNN`` with ``also == ["ML"]``. ML and DL run on the same engine (ONNX Runtime), so for routing the
choice between them never matters; ``SNN`` is the one that changes the engine.

Every node is visited: the main graph, subgraphs of control flow (If/Loop/Scan bodies), and the
bodies of model-local functions.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Iterator

import onnx

from onnxlab.formats import ONNX_ML_DOMAIN, ONNX_SNN_DOMAIN, read_model

#: The model kinds, in the order the rules try them.
KINDS = ("SNN", "ML", "DL")
#: Default domain, as written in reports (the empty string in files).
DEFAULT_DOMAIN = "ai.onnx"
#: Producers (``producer_name``) of converters for classical ML libraries.
ML_PRODUCERS = ("skl2onnx", "onnxmltools", "sparkml", "OnnxMLTools")
#: Nengo neuron types the original ONNX-SNN tool wrote as default-domain op types (none is a
#: standard ONNX op; Nengo's ``Sigmoid`` is left out because ONNX has its own). Kept free of Nengo
#: imports so that classifying stays cheap; a test checks it covers `onnxlab.snn.NEURONS`.
SPIKING_OP_TYPES = ("LIF", "LIFRate", "SoftLIFRate", "RectifiedLinear", "SpikingRectifiedLinear", "Izhikevich",
                    "AdaptiveLIF", "AdaptiveLIFRate")
#: Default-domain ops that mark a neural network (shown as evidence in mixed models).
NN_OPS = frozenset({
    "Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "Gemm", "MatMul", "MatMulInteger", "QLinearMatMul",
    "LSTM", "GRU", "RNN", "BatchNormalization", "InstanceNormalization", "LayerNormalization",
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Gelu", "Sigmoid", "HardSigmoid", "Tanh", "Softmax",
    "LogSoftmax", "Softplus", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Dropout",
    "LRN", "Attention",
})
#: Domains an engine here implements: ONNX, ONNX-ML, ONNX Runtime's contrib ops, ONNX-SNN.
KNOWN_DOMAINS = frozenset({"", DEFAULT_DOMAIN, ONNX_ML_DOMAIN, ONNX_SNN_DOMAIN, "com.microsoft",
                           "com.microsoft.nchwc", "com.microsoft.experimental", "ai.onnx.preview.training",
                           "ai.onnx.training"})
#: What the paper's rule reads from the model-level ``domain`` field.
PAPER_DOMAIN_RULE = {"ai.onnx": "ML", "onnx": "DL"}


@dataclass(frozen=True)
class Evidence:
    """What `classify` decided and why.

    Attributes
    ----------
    kind
        ``"ML"``, ``"DL"`` or ``"SNN"``.
    rule
        The rule that decided, in words.
    domains
        Operator domain -> number of nodes using it (all graphs and function bodies).
    opset_imports
        Domain -> imported opset version.
    spiking_ops, ml_ops, nn_ops
        Sorted op types found of each family (``nn_ops``: default-domain network ops).
    unknown_domains
        Domains used by nodes that no engine here implements (and no local function defines).
    legacy_snn
        Neuron ops in the default domain (the original ONNX-SNN tool's files).
    producer
        ``producer_name`` and ``producer_version``.
    model_domain
        The model-level ``domain`` string, and ``paper_rule_kind`` what the paper's rule made of it
        (None when it says nothing).
    n_nodes
        Nodes counted, including subgraphs and function bodies.
    also
        The other kind a mixed model's operators show (``["DL"]`` for an ML model with network
        ops, ``["ML"]`` for a spiking network with ONNX-ML ops); empty otherwise.
    """

    kind: str
    rule: str
    domains: dict[str, int]
    opset_imports: dict[str, int]
    spiking_ops: list[str]
    ml_ops: list[str]
    nn_ops: list[str]
    unknown_domains: list[str]
    legacy_snn: bool
    producer: str
    model_domain: str
    paper_rule_kind: str | None
    n_nodes: int
    also: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def iter_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``model``: main graph, control-flow subgraphs, model-local function bodies."""
    stack: list[onnx.NodeProto] = list(model.graph.node)
    for function in model.functions:
        stack.extend(function.node)
    while stack:
        node = stack.pop()
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                stack.extend(attr.g.node)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for graph in attr.graphs:
                    stack.extend(graph.node)


def _domain(name: str) -> str:
    return name or DEFAULT_DOMAIN


def classify(model: onnx.ModelProto | str | os.PathLike) -> Evidence:
    """Classify an ONNX model as ML, DL or SNN from its operators (see the module docstring).

    Parameters
    ----------
    model
        A model proto, or the path of an ``.onnx`` file. Files are parsed, not checked or run;
        external data files are not read.

    Raises
    ------
    OnnxlabError
        If the file is missing or is not an ONNX model.
    """
    proto = model if isinstance(model, onnx.ModelProto) else read_model(model)
    functions = {(f.domain, f.name) for f in proto.functions}
    domains: Counter[str] = Counter()
    spiking, ml_ops, nn_ops, unknown = set(), set(), set(), set()
    legacy = False
    n_nodes = 0
    for node in iter_nodes(proto):
        n_nodes += 1
        domain = _domain(node.domain)
        domains[domain] += 1
        if domain == ONNX_SNN_DOMAIN:
            spiking.add(node.op_type)
        elif domain == DEFAULT_DOMAIN and node.op_type in SPIKING_OP_TYPES:
            spiking.add(node.op_type)
            legacy = True
        elif domain == ONNX_ML_DOMAIN:
            ml_ops.add(node.op_type)
        elif domain == DEFAULT_DOMAIN and node.op_type in NN_OPS:
            nn_ops.add(node.op_type)
        if node.domain not in KNOWN_DOMAINS and (node.domain, node.op_type) not in functions:
            unknown.add(node.domain)
    producer = " ".join(p for p in (proto.producer_name, proto.producer_version) if p)
    if spiking:
        kind, rule = "SNN", ("spiking neuron ops in the default domain (legacy ONNX-SNN file)" if legacy
                             else f"spiking neuron ops in {ONNX_SNN_DOMAIN}")
    elif ml_ops:
        kind, rule = "ML", f"ONNX-ML operators ({ONNX_ML_DOMAIN})"
    elif proto.producer_name in ML_PRODUCERS:
        kind, rule = "ML", f"no ONNX-ML operator, but produced by {proto.producer_name} (a classical-ML converter)"
    else:
        kind, rule = "DL", "no spiking or ONNX-ML operator"
    also = {"SNN": ["ML"] if ml_ops else [], "ML": ["DL"] if nn_ops else [], "DL": []}[kind]
    return Evidence(
        kind=kind, rule=rule, domains=dict(sorted(domains.items())),
        opset_imports={_domain(o.domain): int(o.version) for o in proto.opset_import},
        spiking_ops=sorted(spiking), ml_ops=sorted(ml_ops), nn_ops=sorted(nn_ops), unknown_domains=sorted(unknown),
        legacy_snn=legacy, producer=producer, model_domain=proto.domain,
        paper_rule_kind=PAPER_DOMAIN_RULE.get(proto.domain), n_nodes=n_nodes,
        also=also)
