"""`onnxlab.graph`'s maps of who writes and who reads each tensor."""
from onnx import helper

from onnxlab.graph import producers, readers, use_counts


def _graph():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r"),
             helper.make_node("Add", ["a", "a"], ["b"], name="add"),  # reads one tensor twice
             helper.make_node("Clip", ["b", "", "hi"], ["c"], name="clip")]  # an empty optional input
    return helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info("b", 1, None)])


def test_readers_lists_each_reading_node_once_in_graph_order_and_skips_empty_names():
    found = readers(_graph())
    assert {name: [n.name for n in nodes] for name, nodes in found.items()} == {
        "x": ["r"], "a": ["add"], "b": ["clip"], "hi": ["clip"]}


def test_producers_and_use_counts_agree_with_readers():
    graph = _graph()
    assert {name: n.name for name, n in producers(graph).items()} == {"a": "r", "b": "add", "c": "clip"}
    assert use_counts(graph)["a"] == 2 and use_counts(graph)["b"] == 2  # read by clip, and a graph output
