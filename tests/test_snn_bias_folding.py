"""Biases folded into ensembles (`to_nengo(fold_biases=True)`, the default): same outputs, fewer connections.

A neuron computes J = gain * (x + c) + bias. `build_neuron` writes bias + gain * c into the ensemble instead of
connecting the constant c from a node at every step. Each case compares the folded network with the unfolded one
(rate mode within 1e-5 relative, spiking identical from the same initial state) and with ONNX Runtime, for every
builder that can put a constant in front of neurons: Conv, Gemm, MatMul + Add, an Add of two branches, and a
BatchNormalization (folded into its Conv, or standalone).
"""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlab.formats import ONNX_OPSET, ONNX_SNN_DOMAIN, finalize
from onnxlab.runtime import ort_session, run_single
from onnxlab.snn import to_snn
from onnxlab.snn.from_nengo import from_nengo
from onnxlab.snn.parameters import nengo_parameters
from onnxlab.snn.simulate import simulate, softmax, verify
from onnxlab.snn.to_nengo import to_nengo
from tests.onnx_models import branching, mlp

nengo = pytest.importorskip("nengo")
pytest.importorskip("nengo_dl")
RNG = np.random.default_rng(17)


def _init(name, value):
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def matmul_add_net():
    """x (N, 6) -> MatMul -> Add(bias) -> Relu -> MatMul -> Add -> y (N, 3): a tf2onnx-style dense layer."""
    inits = [_init("w1", RNG.normal(size=(6, 5))), _init("b1", RNG.normal(size=5)),
             _init("w2", RNG.normal(size=(5, 3))), _init("b2", RNG.normal(size=3))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"], name="mm1"),
             helper.make_node("Add", ["m1", "b1"], ["a1"], name="bias1"),
             helper.make_node("Relu", ["a1"], ["h"], name="relu"),
             helper.make_node("MatMul", ["h", "w2"], ["m2"], name="mm2"),
             helper.make_node("Add", ["m2", "b2"], ["y"], name="bias2")]
    graph = helper.make_graph(nodes, "matmul_add", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])], inits)
    return finalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)]))


def standalone_batch_norm_net():
    """x (N, 3, 4, 5) -> BatchNormalization (not after a Conv: an affine map) -> Relu -> y."""
    inits = [_init("scale", RNG.uniform(0.5, 1.5, 3)), _init("B", RNG.normal(size=3)),
             _init("mean", RNG.normal(size=3)), _init("var", RNG.uniform(0.5, 2, 3))]
    nodes = [helper.make_node("BatchNormalization", ["x", "scale", "B", "mean", "var"], ["bn"], name="bn"),
             helper.make_node("Relu", ["bn"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "standalone_bn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3, 4, 5])], inits)
    return finalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)]))


#: name -> (ONNX model, per-sample input shape)
CASES = {
    "gemm": (mlp, (6,)),
    "matmul_add": (matmul_add_net, (6,)),
    "conv_add_of_branches_concat_pool": (branching, (2, 6, 6)),
    "conv_with_batch_norm": (lambda: branching(batch_norm=True), (2, 6, 6)),
    "standalone_batch_norm": (standalone_batch_norm_net, (3, 4, 5)),
}


def _constant_inputs_of_neurons(network):
    """Connections from the constant node ``one`` into ``ensemble.neurons``."""
    return [c for c in network.all_connections
            if isinstance(c.pre_obj, nengo.Node) and c.pre_obj.label == "one"
            and isinstance(c.post_obj, nengo.ensemble.Neurons)]


@pytest.mark.parametrize("case", CASES)
def test_folded_biases_compute_what_the_connections_computed(case):
    make, shape = CASES[case]
    snn = to_snn(make(), mapping={"Relu": "RectifiedLinear"})
    x = RNG.normal(size=(5, *shape)).astype(np.float32)
    folded, unfolded = to_nengo(snn, rate=True), to_nengo(snn, rate=True, fold_biases=False)
    assert not _constant_inputs_of_neurons(folded.network)
    assert _constant_inputs_of_neurons(unfolded.network), "the case must have a bias in front of neurons"
    assert len(folded.network.all_connections) < len(unfolded.network.all_connections)
    (a,), (b,) = simulate(folded, x, n_steps=1).values(), simulate(unfolded, x, n_steps=1).values()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
    verify(snn, x, rtol=1e-5)  # and both equal ONNX Runtime (verify builds the folded network)


@pytest.mark.parametrize("case", ["conv_add_of_branches_concat_pool", "matmul_add"])
def test_folded_biases_give_the_same_spikes(case):
    make, shape = CASES[case]
    snn = to_snn(make(), "LIF", params={"amplitude": 0.05}, max_rates=200, intercepts=-0.5)
    x = RNG.normal(size=(4, *shape)).astype(np.float32)
    (a,), (b,) = (simulate(to_nengo(snn, fold_biases=fold), x, n_steps=40).values() for fold in (True, False))
    assert np.abs(a).max() > 0
    np.testing.assert_array_equal(a, b)


def test_output_biases_still_come_from_one_constant_node():
    built = to_nengo(to_snn(branching(), "LIF"))
    constants = [n for n in built.network.all_nodes if n.size_in == 0 and n.label == "one"]
    assert len(constants) == 1
    assert [c.post_obj.label for c in built.network.all_connections if c.pre_obj is constants[0]] == ["fc"]


def test_folded_network_round_trips_bit_for_bit_and_writes_the_bias_into_the_neuron_op():
    """The exported file carries bias + gain * c as the neuron op's bias input; no Add before neuron ops."""
    source = to_snn(branching(batch_norm=True), "LIF", params={"amplitude": 0.05}, max_rates=200, intercepts=-0.5)
    built = to_nengo(source)
    exported = from_nengo(built)
    onnx.checker.check_model(exported, full_check=True)
    producers = {o: n for n in exported.graph.node for o in n.output}
    for node in exported.graph.node:
        if node.domain == ONNX_SNN_DOMAIN:
            assert producers[node.input[0]].op_type != "Add", node.name
    before, after = nengo_parameters(built.network), nengo_parameters(to_nengo(exported).network)
    assert sorted(before) == sorted(after)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key].reshape(value.shape), value, err_msg=key)
    x = RNG.normal(size=(3, 2, 6, 6)).astype(np.float32)
    probs = softmax(run_single(ort_session(exported), x)[0])  # the Softmax was dropped on the way into Nengo
    np.testing.assert_allclose(probs, run_single(ort_session(source), x)[0], rtol=1e-4, atol=1e-6)


def test_generated_script_folds_the_same_way(tmp_path):
    from onnxlab.formats import save_model
    from onnxlab.snn.codegen import run_script, to_nengo_code

    snn = to_snn(matmul_add_net(), mapping={"Relu": "RectifiedLinear"})
    path = tmp_path / "m.onnx"
    save_model(snn, path)
    script = to_nengo_code(snn, onnx_path=path)
    assert "folded_bias(" in script
    (tmp_path / "m.py").write_text(script)
    built = to_nengo(snn)
    scripted = run_script(tmp_path / "m.py", built)
    for key, value in nengo_parameters(built.network).items():
        np.testing.assert_array_equal(nengo_parameters(scripted.network)[key], value, err_msg=key)
