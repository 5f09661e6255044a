"""Pictures of ONNX graphs, drawn with Graphviz: the papers' Netron figures, reproducible in CI.

A model becomes one `Drawing` (boxes and edges: what to draw, nothing about how); `collapse_chains` and `crop`
turn a large network (ResNet50, DenseNet121) into a readable summary; `to_dot` renders one or more drawings side
by side as Graphviz source, coloured by op category the way Netron colours them, with the ONNX-SNN neuron ops
(and, in a pair figure, the activations they replaced) highlighted; `render` runs Graphviz's ``dot``.

Graphviz comes from the Debian package ``graphviz`` (``make system-packages``); without it `render` raises one
`OnnxlabError` saying how to install it.
"""
from __future__ import annotations

import html
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from onnxlab.errors import OnnxlabError
from onnxlab.formats import ONNX_SNN_DOMAIN
from onnxlab.graph import constant_value, is_constant_node

#: Graphviz's layout program.
DOT = "dot"
#: Resolution of PNG renderings (dots per inch).
PNG_DPI = 110
#: Domain of the ONNX-ML operators (scikit-learn models).
ML_DOMAIN = "ai.onnx.ml"
#: Array attributes of an ONNX-ML op listed in its box (the rest are counted).
MAX_ATTRIBUTE_LINES = 3
#: Ops per line in a collapsed chain's box.
CHAIN_OPS_PER_LINE = 3
#: How a symbolic first (batch) dimension is written on an edge.
BATCH_DIM = "N"
#: Prefix of the dimension names shape inference and tf2onnx make up (``unk__25``): shown as ``?``.
GENERATED_DIM_PREFIX = "unk__"
#: Drawings with more boxes than this get no shape labels on their edges (they would crowd the picture).
MAX_LABELLED_EDGES_BOXES = 30

#: Op category -> op types (default domain); a node's domain decides first (`category_of`).
OP_CATEGORIES: dict[str, frozenset[str]] = {
    "layer": frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "MatMulInteger", "QLinearConv",
                        "QLinearMatMul", "LSTM", "GRU", "RNN"}),
    "activation": frozenset({"Relu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "LeakyRelu", "Elu", "Selu",
                             "HardSigmoid", "Softplus", "Clip", "PRelu", "Gelu", "HardSwish"}),
    "pool": frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool"}),
    "normalization": frozenset({"BatchNormalization", "LayerNormalization", "InstanceNormalization", "Dropout",
                                "LRN"}),
    "shape": frozenset({"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice",
                        "Gather", "Pad", "Shape", "Expand", "Tile", "Identity", "Cast"}),
}

#: Category -> (fill colour, font colour): Netron's palette where it has one.
CATEGORY_STYLES: dict[str, tuple[str, str]] = {
    "layer": ("#335588", "white"),
    "activation": ("#702828", "white"),
    "pool": ("#335533", "white"),
    "normalization": ("#334455", "white"),
    "shape": ("#6c4f47", "white"),
    "ml": ("#5b3f8c", "white"),
    "neuron": ("#f28e00", "black"),
    "other": ("#404040", "white"),
    "chain": ("#d9d9d9", "black"),
    "io": ("#ffffff", "black"),
    "ellipsis": ("#ffffff", "#555555"),
}
#: Border of a highlighted box (neuron ops; in a pair figure also the activations they replaced).
HIGHLIGHT_COLOR = "#e05a00"
HIGHLIGHT_PENWIDTH = 4


@dataclass(frozen=True)
class Box:
    """One drawn node: a graph input or output, an op, a collapsed chain of ops, or an ellipsis."""

    id: str
    title: str
    category: str
    details: tuple[str, ...] = ()
    #: op types this box stands for (one for an op, several for a collapsed chain)
    op_types: tuple[str, ...] = ()
    highlight: bool = False


@dataclass
class Drawing:
    """What to draw of one model: boxes in topological order, edges ``(from id, to id, label)``."""

    title: str
    boxes: list[Box]
    edges: list[tuple[str, str, str]]
    n_ops: int
    notes: list[str] = field(default_factory=list)

    def box(self, box_id: str) -> Box:
        return next(b for b in self.boxes if b.id == box_id)

    @property
    def op_types(self) -> list[str]:
        """Every op type drawn, in order, collapsed chains expanded."""
        return [t for b in self.boxes for t in b.op_types]


def category_of(node: onnx.NodeProto) -> str:
    """Key of `CATEGORY_STYLES` for ``node``: neuron ops and ONNX-ML ops by domain, the rest by op type."""
    if node.domain == ONNX_SNN_DOMAIN:
        return "neuron"
    if node.domain == ML_DOMAIN:
        return "ml"
    return next((c for c, ops in OP_CATEGORIES.items() if node.op_type in ops), "other")


def _shape_text(dims: Iterable) -> str:
    return "×".join(str(d) for d in dims)


def _input_roles(node: onnx.NodeProto, functions: dict[tuple[str, str], onnx.FunctionProto]) -> list[str]:
    """Names of the op's inputs (``X``, ``W``, ``B`` for Conv): from its schema, or its model-local function."""
    function = functions.get((node.domain, node.op_type))
    if function is not None:
        names = list(function.input)
    else:
        try:
            names = [p.name for p in onnx.defs.get_schema(node.op_type, domain=node.domain).inputs]
        except onnx.defs.SchemaError:
            names = []
    return [names[i] if i < len(names) else f"input {i}" for i in range(len(node.input))]


def _details(node: onnx.NodeProto, weights: dict[str, np.ndarray],
             functions: dict[tuple[str, str], onnx.FunctionProto]) -> tuple[str, ...]:
    """The lines under a box's title: weight shapes (as Netron shows them; scalars by value), neuron parameters,
    ONNX-ML attribute sizes."""
    lines = []
    for role, name in zip(_input_roles(node, functions), node.input):
        if name in weights:
            value = weights[name]
            lines.append(f"{role} = {value.item():.4g}" if value.size == 1 and value.dtype.kind == "f"
                         else f"{role}: {_shape_text(value.shape)}")
    attributes = [onnx.helper.get_attribute_value(a) for a in node.attribute]
    if node.domain == ONNX_SNN_DOMAIN:
        lines += [f"{a.name} = {value:.4g}" for a, value in zip(node.attribute, attributes)
                  if isinstance(value, float)]
    elif node.domain == ML_DOMAIN:
        arrays = [(a.name, len(value)) for a, value in zip(node.attribute, attributes)
                  if isinstance(value, (list, tuple)) and len(value) > 1]
        lines += [f"{name}: {size}" for name, size in arrays[:MAX_ATTRIBUTE_LINES]]
        if len(arrays) > MAX_ATTRIBUTE_LINES:
            lines.append(f"+ {len(arrays) - MAX_ATTRIBUTE_LINES} more arrays")
    return tuple(lines)


def _dim_text(dim: onnx.TensorShapeProto.Dimension, position: int) -> str:
    """A dimension as text: its size, ``N`` for a symbolic batch dimension, ``?`` for other unnamed ones."""
    if dim.HasField("dim_value"):
        return str(dim.dim_value)
    if position == 0:
        return BATCH_DIM
    return dim.dim_param if dim.dim_param and not dim.dim_param.startswith(GENERATED_DIM_PREFIX) else "?"


def _value_shapes(model: onnx.ModelProto) -> dict[str, str]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 — a picture without edge shapes is still a picture
        inferred = model
    shapes = {}
    graph = inferred.graph
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor = info.type.tensor_type
        if tensor.HasField("shape"):
            shapes[info.name] = _shape_text(_dim_text(d, i) for i, d in enumerate(tensor.shape.dim))
    return shapes


def _constant_or_empty(node: onnx.NodeProto) -> np.ndarray:
    """A Constant node's value; an empty array where onnxlab cannot read it (the picture still shows the node's use)."""
    try:
        return constant_value(node)
    except OnnxlabError:
        return np.zeros((0,))


def describe(model: onnx.ModelProto, title: str, *, highlight: Callable[[onnx.NodeProto], bool] | None = None) -> Drawing:
    """The drawing of ``model``'s main graph: inputs, every op (constants folded into their consumers), outputs.

    Parameters
    ----------
    highlight
        Which ops get a highlighted border; default: the neuron ops (`ONNX_SNN_DOMAIN`).
    """
    highlight = highlight or (lambda node: node.domain == ONNX_SNN_DOMAIN)
    graph = model.graph
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    weights.update({n.output[0]: _constant_or_empty(n) for n in graph.node if is_constant_node(n)})
    functions = {(f.domain, f.name): f for f in model.functions}
    shapes = _value_shapes(model)
    boxes, edges, producer = [], [], {}
    for info in graph.input:
        if info.name not in weights:
            boxes.append(Box(f"in:{info.name}", info.name, "io"))
            producer[info.name] = f"in:{info.name}"
    ops = [n for n in graph.node if not is_constant_node(n)]
    for i, node in enumerate(ops):
        box_id = f"op{i}"
        boxes.append(Box(box_id, node.op_type, category_of(node), _details(node, weights, functions), (node.op_type,),
                         bool(highlight(node))))
        for name in dict.fromkeys(node.input):
            if name in producer:
                edges.append((producer[name], box_id, shapes.get(name, "")))
        for name in node.output:
            producer[name] = box_id
    for info in graph.output:
        boxes.append(Box(f"out:{info.name}", info.name, "io"))
        if info.name in producer:
            edges.append((producer[info.name], f"out:{info.name}", shapes.get(info.name, "")))
    return Drawing(title, boxes, edges, len(ops))


def _chain_title(op_types: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """Run-length encoded op sequence (``Conv ×2 → Relu``), wrapped `CHAIN_OPS_PER_LINE` to a line."""
    runs: list[list] = []
    for op in op_types:
        if runs and runs[-1][0] == op:
            runs[-1][1] += 1
        else:
            runs.append([op, 1])
    parts = [op if n == 1 else f"{op} ×{n}" for op, n in runs]
    lines = [" → ".join(parts[i:i + CHAIN_OPS_PER_LINE]) for i in range(0, len(parts), CHAIN_OPS_PER_LINE)]
    return lines[0], tuple(lines[1:])


def collapse_chains(drawing: Drawing) -> Drawing:
    """Merge every linear run of ops (one edge in, one edge out, no branching between) into one box.

    The merged box lists its ops in order; it is highlighted if any op in it was.
    """
    incoming, outgoing = defaultdict(list), defaultdict(list)
    for edge in drawing.edges:
        outgoing[edge[0]].append(edge)
        incoming[edge[1]].append(edge)
    chain_of: dict[str, str] = {}  # box id -> id of the first box of its chain
    for box in drawing.boxes:
        preds = incoming[box.id]
        if box.category != "io" and len(preds) == 1:
            pred = preds[0][0]
            if drawing.box(pred).category != "io" and len(outgoing[pred]) == 1:
                chain_of[box.id] = chain_of.get(pred, pred)
    members = defaultdict(list)
    for box in drawing.boxes:
        members[chain_of.get(box.id, box.id)].append(box)
    boxes = []
    for box in drawing.boxes:
        if box.id in chain_of:
            continue
        group = members[box.id]
        if len(group) == 1:
            boxes.append(box)
            continue
        op_types = tuple(t for b in group for t in b.op_types)
        title, details = _chain_title(op_types)
        highlighted = any(b.highlight for b in group)
        boxes.append(Box(box.id, title, "chain", details, op_types, highlighted))
    edges = [(chain_of.get(a, a), chain_of.get(b, b), "") for a, b, _ in drawing.edges
             if chain_of.get(a, a) != chain_of.get(b, b)]
    notes = drawing.notes + [f"linear chains collapsed: {drawing.n_ops} ops in {len(boxes)} boxes"]
    return replace(drawing, boxes=boxes, edges=edges, notes=notes)


def crop(drawing: Drawing, max_boxes: int, keep_last: int = 4) -> Drawing:
    """At most ``max_boxes`` boxes: the first ones, an ellipsis box naming how many ops it hides, the last ones."""
    if len(drawing.boxes) <= max_boxes:
        return drawing
    head, tail = drawing.boxes[:max_boxes - keep_last - 1], drawing.boxes[-keep_last:]
    hidden = drawing.boxes[len(head):len(drawing.boxes) - keep_last]
    n_hidden_ops = sum(len(b.op_types) for b in hidden)
    ellipsis = Box("ellipsis", f"… {n_hidden_ops} more ops …", "ellipsis")
    kept = {b.id for b in head + tail}
    edges = [e for e in drawing.edges if e[0] in kept and e[1] in kept]
    edges += [(head[-1].id, ellipsis.id, ""), (ellipsis.id, tail[0].id, "")]
    notes = drawing.notes + [f"cropped: first {len(head)} and last {len(tail)} of {len(drawing.boxes)} boxes shown"]
    return replace(drawing, boxes=head + [ellipsis] + tail, edges=edges, notes=notes)


def summarize(drawing: Drawing, max_boxes: int) -> Drawing:
    """``drawing`` as it is if small enough, else chains collapsed, then cropped to ``max_boxes``."""
    if len(drawing.boxes) <= max_boxes:
        return drawing
    return crop(collapse_chains(drawing), max_boxes)


# --------------------------------------------------------------------------- rendering

def _label(box: Box) -> str:
    """An HTML-like table: the title on the category's colour, the details below, highlighted by its border."""
    fill, font = CATEGORY_STYLES[box.category]
    if box.highlight:
        border, color = HIGHLIGHT_PENWIDTH, HIGHLIGHT_COLOR
    else:
        border, color = 1, "#999999" if box.category in ("io", "ellipsis") else "#222222"
    rows = [f'<TR><TD BGCOLOR="{fill}"><FONT COLOR="{font}"><B>{html.escape(box.title)}</B></FONT></TD></TR>']
    rows += [f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="9">{html.escape(line)}</FONT></TD></TR>'
             for line in box.details]
    return (f'<<TABLE BORDER="{border}" COLOR="{color}" CELLBORDER="0" CELLSPACING="0" CELLPADDING="4" '
            f'BGCOLOR="white">{"".join(rows)}</TABLE>>')


def _node_ids(drawing: Drawing, index: int) -> dict[str, str]:
    """Graphviz node id of each box: ``p<panel>_b<position>`` (deterministic, unique across panels)."""
    return {box.id: f"p{index}_b{position}" for position, box in enumerate(drawing.boxes)}


def _cluster(drawing: Drawing, index: int) -> list[str]:
    ids = _node_ids(drawing, index)
    caption = html.escape(drawing.title) + "".join(f'<BR/><FONT POINT-SIZE="9">{html.escape(n)}</FONT>'
                                                   for n in drawing.notes)
    lines = [f"  subgraph cluster_{index} {{", f"    label=<{caption}>; labelloc=t; fontsize=14; color=\"#bbbbbb\";"]
    labelled = len(drawing.boxes) <= MAX_LABELLED_EDGES_BOXES
    for box in drawing.boxes:
        lines.append(f"    {ids[box.id]} [label={_label(box)}, shape=plain];")
    for a, b, label in drawing.edges:
        text = f' [label="{html.escape(label)}"]' if labelled and label else ""
        lines.append(f"    {ids[a]} -> {ids[b]}{text};")
    lines.append("  }")
    return lines


def to_dot(drawings: Sequence[Drawing], title: str = "") -> str:
    """Graphviz source drawing ``drawings`` side by side (top to bottom each, tops aligned)."""
    lines = ["digraph G {", "  newrank=true; rankdir=TB; nodesep=0.25; ranksep=0.3;",
             '  node [fontname="Helvetica", fontsize=11]; edge [fontname="Helvetica", fontsize=8, color="#555555"];',
             '  graph [fontname="Helvetica"];']
    if title:
        lines.append(f"  label=<<B>{html.escape(title)}</B>>; labelloc=t; fontsize=16;")
    for i, drawing in enumerate(drawings):
        lines += _cluster(drawing, i)
    firsts = [_node_ids(d, i)[d.boxes[0].id] for i, d in enumerate(drawings) if d.boxes]
    if len(firsts) > 1:
        lines.append("  { rank=same; " + "; ".join(firsts) + "; }")
    lines.append("}")
    return "\n".join(lines)


def render(dot_source: str, stem: str | Path, formats: Sequence[str] = ("svg", "png")) -> list[Path]:
    """Run Graphviz on ``dot_source``, writing ``stem.<format>`` for each format (and ``stem.dot``).

    Raises
    ------
    OnnxlabError
        If ``dot`` is not installed (with how to install it) or fails (with its message).
    """
    program = shutil.which(DOT)
    if program is None:
        raise OnnxlabError("Graphviz's `dot` program is not installed: run `make system-packages` as root, "
                           "or `apt-get install graphviz`")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".dot").write_text(dot_source)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        extra = [f"-Gdpi={PNG_DPI}"] if fmt == "png" else []
        proc = subprocess.run([program, f"-T{fmt}", *extra, "-o", str(path)], input=dot_source, text=True,
                              capture_output=True)
        if proc.returncode != 0:
            raise OnnxlabError(f"Graphviz could not draw {path.name}: {proc.stderr.strip()}")
        paths.append(path)
    return paths
