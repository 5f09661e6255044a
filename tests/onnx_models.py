"""Small ONNX models built by hand for the tests (no TensorFlow needed)."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from onnxlab.formats import ONNX_OPSET, finalize

RNG = np.random.default_rng(0)


def mlp(sizes=(6, 5, 4), activation="Relu"):
    """x (N, 6) -> MatMul + Add -> activation -> MatMul + Add -> y (N, 4), random weights."""
    nodes, inits, prev = [], [], "x"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        inits += [numpy_helper.from_array(RNG.normal(size=(n_in, n_out)).astype(np.float32), f"W{i}"),
                  numpy_helper.from_array(RNG.normal(size=n_out).astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"W{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        prev = f"a{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node(activation, [prev], [f"h{i}"], name=f"act{i}"))
            prev = f"h{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, sizes[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, sizes[-1]])], inits)
    return finalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)]))


def legacy_model():
    """As the original tool wrote it: LIF in the default domain, one input, only some attributes."""
    model = mlp()
    model.graph.node[2].CopyFrom(helper.make_node("LIF", ["a0"], ["h0"], name="act0", amplitude=0.01))
    return model
