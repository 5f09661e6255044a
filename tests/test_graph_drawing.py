"""onnxlab.graph_drawing and onnxlab.graph_figures: what a picture of a graph shows, on our files and others'.

Every op is drawn once (constants folded into their consumers), summaries keep every op accounted for, the
neuron ops and the activations they replaced are highlighted, Graphviz writes the files, and a missing Graphviz
gives one clear error.
"""
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlab import graph_drawing as gd
from onnxlab import graph_figures
from onnxlab.errors import InvalidArgument, OnnxlabError
from onnxlab.formats import ONNX_SNN_DOMAIN
from onnxlab.snn import to_snn
from tests import onnx_models


def _ops(model):
    return Counter(n.op_type for n in model.graph.node if n.op_type != "Constant")


def _chain(n_blocks=6):
    """x -> [MatMul -> Relu] x n_blocks -> y: one linear chain."""
    nodes, inits, prev = [], [], "x"
    for i in range(n_blocks):
        inits.append(numpy_helper.from_array(np.eye(3, dtype=np.float32), f"W{i}"))
        nodes += [helper.make_node("MatMul", [prev, f"W{i}"], [f"m{i}"]), helper.make_node("Relu", [f"m{i}"], [f"r{i}"])]
        prev = f"r{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_every_op_is_one_box_with_its_weight_shapes_and_edges_carry_shapes():
    model = onnx_models.mlp()
    drawing = gd.describe(model, "mlp")
    assert Counter(drawing.op_types) == _ops(model) and drawing.n_ops == len(model.graph.node)
    assert [b.title for b in drawing.boxes if b.category == "io"] == ["x", "y"]
    matmul = next(b for b in drawing.boxes if b.title == "MatMul")
    assert matmul.details == ("B: 6×5",) and matmul.category == "layer"
    assert ("in:x", "op0", "N×6") in drawing.edges  # a symbolic batch dimension is written N
    assert all(not b.highlight for b in drawing.boxes)


def test_neuron_ops_are_highlighted_with_their_parameters_and_the_replaced_activations_can_be():
    model = onnx_models.mlp(sizes=(6, 5, 5, 4), activation="Tanh")
    before = gd.describe(model, "onnx", highlight=lambda n: n.op_type == "Tanh")
    after = gd.describe(to_snn(model, "LIF", gain=2.0), "snn")
    assert [b.title for b in before.boxes if b.highlight] == ["Tanh", "Tanh"]
    lif = [b for b in after.boxes if b.highlight]
    assert [b.title for b in lif] == ["LIF", "LIF"] and {b.category for b in lif} == {"neuron"}
    # the function's input names label its gain and bias; float attributes are listed
    assert "gain = 2" in lif[0].details and "tau_rc = 0.02" in lif[0].details
    assert graph_figures.neuron_ops(after) == 2


def test_constants_are_folded_into_the_op_that_uses_them():
    model = onnx_models.mlp()
    node = model.graph.node[0]
    const = helper.make_node("Constant", [], ["W0c"], value=numpy_helper.from_array(np.ones((6, 5), np.float32)))
    node.input[1] = "W0c"
    model.graph.node.insert(0, const)
    drawing = gd.describe(model, "with a Constant")
    assert "Constant" not in drawing.op_types and drawing.box("op0").details == ("B: 6×5",)


@pytest.mark.parametrize("make", [onnx_models.pytorch_style_cnn, onnx_models.legacy_lenet1, onnx_models.branching],
                         ids=["pytorch-opset20", "original-onnx-snn-tool", "branching"])
def test_files_other_producers_wrote_are_drawn_whole(make, tmp_path):
    model = make()
    drawing = gd.describe(model, "foreign")
    assert Counter(drawing.op_types) == _ops(model)
    paths = gd.render(gd.to_dot([drawing]), tmp_path / "foreign")
    assert [p.suffix for p in paths] == [".svg", ".png"] and paths[1].read_bytes()[:4] == b"\x89PNG"
    svg = paths[0].read_text()
    assert all(f">{op}<" in svg for op in _ops(model))


def test_external_data_files_are_drawn_from_their_shapes(tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save(onnx_models.pytorch_style_cnn(), str(path), save_as_external_data=True, size_threshold=0,
              location="ext.onnx.data")
    drawing = gd.describe(onnx.load(str(path)), "external data")
    assert drawing.box("op0").details == ("W: 4×2×3×3", "B: 4")


def test_chains_collapse_into_one_box_and_every_op_is_still_counted():
    drawing = gd.describe(_chain(6), "chain")
    collapsed = gd.collapse_chains(drawing)
    assert len(collapsed.boxes) == 3  # input, one chain, output
    chain = collapsed.boxes[1]
    assert chain.op_types == ("MatMul", "Relu") * 6 and chain.category == "chain"
    assert Counter(collapsed.op_types) == Counter(drawing.op_types)
    assert collapsed.edges == [("in:x", chain.id, ""), (chain.id, collapsed.boxes[2].id, "")]
    assert "12 ops in 3 boxes" in collapsed.notes[0]


def test_branch_points_are_kept_when_collapsing():
    model = onnx_models.branching()
    collapsed = gd.collapse_chains(gd.describe(model, "branching"))
    assert Counter(collapsed.op_types) == _ops(model)
    # the Add joins two branches and the Concat joins two: they close chains instead of being swallowed
    assert any(b.op_types[0] == "Add" for b in collapsed.boxes if b.op_types)
    assert any(b.op_types[0] == "Concat" for b in collapsed.boxes if b.op_types)


def test_a_cropped_drawing_says_how_many_ops_it_hides():
    drawing = gd.describe(_chain(20), "long")  # 40 ops + 2 io boxes
    cropped = gd.crop(drawing, 12, keep_last=3)
    assert len(cropped.boxes) == 12
    ellipsis = cropped.box("ellipsis")
    hidden = int(ellipsis.title.split()[1])
    assert len(cropped.op_types) + hidden == drawing.n_ops
    assert gd.crop(drawing, 100) is drawing


def test_summarize_leaves_small_drawings_alone():
    drawing = gd.describe(onnx_models.mlp(), "small")
    assert gd.summarize(drawing, 48) is drawing
    assert len(gd.summarize(gd.describe(_chain(40), "big"), 10).boxes) <= 10


def test_pairs_align_their_tops_and_highlight_with_a_thick_border():
    dot = gd.to_dot([gd.describe(onnx_models.mlp(), "a"), gd.describe(to_snn(onnx_models.mlp(), "LIF"), "b")], "pair")
    assert dot.count("subgraph cluster_") == 2 and "{ rank=same; p0_b0; p1_b0; }" in dot  # ids by position
    assert f'BORDER="{gd.HIGHLIGHT_PENWIDTH}" COLOR="{gd.HIGHLIGHT_COLOR}"' in dot


def test_missing_graphviz_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(gd.shutil, "which", lambda name: None)
    with pytest.raises(OnnxlabError, match=r"Graphviz's `dot` program is not installed: run `make system-packages`"):
        gd.render("digraph G {}", tmp_path / "x")


def test_graphviz_errors_are_reported_with_the_file_name(tmp_path):
    with pytest.raises(OnnxlabError, match=r"Graphviz could not draw broken.svg"):
        gd.render("digraph G { this is not dot", tmp_path / "broken")


def test_every_figure_panel_has_a_recipe_and_unknown_models_are_refused(tmp_path):
    assert {p for f in graph_figures.FIGURES.values() for p in f.panels} <= set(graph_figures.MODELS)
    with pytest.raises(InvalidArgument, match="unknown graph-figure model.*'AlexNet'"):
        graph_figures.build_models(["AlexNet"], tmp_path)


def test_a_pair_figure_draws_onnx_beside_onnx_snn_with_the_same_nodes_highlighted(tmp_path):
    figure = graph_figures.GraphFigure("pair", "test", "pair", ("toy",), pair=True)
    panels, paths = graph_figures.draw(figure, {"toy": onnx_models.mlp(sizes=(6, 5, 5, 4))}, tmp_path / "pair")
    onnx_panel, snn_panel = panels
    assert [b.title for b in onnx_panel.boxes if b.highlight] == ["Relu", "Relu"]
    assert [b.title for b in snn_panel.boxes if b.highlight] == ["LIF", "LIF"]
    assert {b.id for b in onnx_panel.boxes if b.highlight} == {b.id for b in snn_panel.boxes if b.highlight}
    assert all(p.is_file() for p in paths) and (tmp_path / "pair.dot").is_file()
    with pytest.raises(InvalidArgument, match="none of its models"):
        graph_figures.draw(figure, {}, tmp_path / "none")


def test_onnx_ml_ops_list_their_array_attributes(iris):
    from sklearn.ensemble import RandomForestClassifier

    from onnxlab.convert import to_onnx

    model = to_onnx(RandomForestClassifier(n_estimators=3, random_state=0).fit(iris.x_train, iris.y_train),
                    iris.x_train[:1].astype(np.float32))
    tree = next(b for b in gd.describe(model, "forest").boxes if b.title == "TreeEnsembleClassifier")
    assert tree.category == "ml" and len(tree.details) == gd.MAX_ATTRIBUTE_LINES + 1
    assert tree.details[-1].endswith("more arrays")
