"""Nengo -> ONNX-SNN -> Nengo: every weight bit for bit, and the same outputs."""
import numpy as np
import onnx
import pytest

from onnxlab.errors import SNNError
from onnxlab.runtime import ort_session, run_single
from onnxlab.snn import to_snn
from onnxlab.snn.from_nengo import from_nengo
from onnxlab.snn.parameters import max_abs_difference, nengo_parameters as parameters
from onnxlab.snn.to_nengo import to_nengo
from tests.onnx_models import branching, mlp

nengo = pytest.importorskip("nengo")
RNG = np.random.default_rng(5)


def f32(*shape, low=None, high=None):
    """Random float32 values, as NengoDL's trained parameters are (ONNX-SNN stores float32)."""
    values = RNG.uniform(low, high, shape) if low is not None else RNG.normal(size=shape)
    return values.astype(np.float32).astype(np.float64)


def nengo_conv_net():
    """A NengoDL-example-style net built in Nengo directly: channels-last strided convs, LIF, dense."""
    lif = nengo.LIF(amplitude=0.01)
    gain, bias = (v.astype(np.float32) for v in lif.gain_bias(np.array([100.0]), np.array([0.0])))
    with nengo.Network(label="convnet") as net:
        inp = nengo.Node(np.zeros(8 * 8 * 1), label="image")
        conv1 = nengo.Convolution(4, (8, 8, 1), kernel_size=(3, 3), strides=(1, 1), channels_last=True,
                                  init=f32(3, 3, 1, 4))
        e1 = nengo.Ensemble(conv1.output_shape.size, 1, neuron_type=lif, gain=np.full(conv1.output_shape.size, gain[0]),
                            bias=np.full(conv1.output_shape.size, bias[0]), label="e1")
        nengo.Connection(inp, e1.neurons, transform=conv1, synapse=None)
        conv2 = nengo.Convolution(6, conv1.output_shape.shape, kernel_size=(3, 3), strides=(2, 2), channels_last=True,
                                  padding="same", init=f32(3, 3, 4, 6))
        e2 = nengo.Ensemble(conv2.output_shape.size, 1, neuron_type=lif, gain=f32(conv2.output_shape.size, low=1, high=2),
                            bias=f32(conv2.output_shape.size), label="e2")
        nengo.Connection(e1.neurons, e2.neurons, transform=conv2, synapse=None)
        out = nengo.Node(size_in=5, label="logits")
        nengo.Connection(e2.neurons, out, transform=f32(5, conv2.output_shape.size), synapse=None)
        one = nengo.Node([1.0], label="one")
        nengo.Connection(one, out, transform=f32(5, 1), synapse=None)
    return net, inp, out


def test_nengo_net_round_trip_keeps_every_weight_bit_for_bit():
    net, inp, out = nengo_conv_net()
    exported = from_nengo(net, {"image": inp}, {"logits": out}, input_shapes={"image": (8, 8, 1)})
    onnx.checker.check_model(exported, full_check=True)
    before, after = parameters(net), parameters(to_nengo(exported).network)
    assert sorted(before) == sorted(after) == ["bias0", "conv0.kernel", "conv1.kernel", "dense0.weight",
                                               "ensemble0.bias", "ensemble0.gain", "ensemble1.bias", "ensemble1.gain"]
    for key, value in before.items():
        np.testing.assert_array_equal(after[key].reshape(value.shape), value, err_msg=key)
    assert max_abs_difference(before, after) == 0.0


def _branching_round_trip():
    """(ONNX-SNN source, its Nengo network, that network exported back to ONNX-SNN)."""
    source = to_snn(branching(), "LIF", params={"amplitude": 0.05}, max_rates=200, intercepts=-0.5)
    built = to_nengo(source)
    exported = from_nengo(built)  # inputs, outputs, shapes and simulation from the NengoModel
    return source, built, exported


def test_onnx_to_nengo_to_onnx_gives_the_same_outputs():
    source, _, exported = _branching_round_trip()
    x = RNG.normal(size=(3, 2, 6, 6)).astype(np.float32)
    logits = run_single(ort_session(exported), x)[0]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)  # the Softmax was dropped on the way into Nengo
    np.testing.assert_allclose(probs, run_single(ort_session(source), x)[0], rtol=1e-4, atol=1e-6)


def test_trained_weights_are_exported():
    """A NengoDL training step changes the weights; freeze_params + from_nengo carries the new values."""
    nengo_dl = pytest.importorskip("nengo_dl")
    import tensorflow as tf

    built = to_nengo(to_snn(mlp(), "SoftLIFRate", max_rates=100, intercepts=0))
    before = parameters(built.network)
    with nengo_dl.Simulator(built.network, minibatch_size=4, progress_bar=False) as sim:
        sim.compile(optimizer=tf.optimizers.SGD(0.1), loss={built.outputs["y"]: tf.losses.mse})
        x = RNG.normal(size=(4, 1, 6)).astype(np.float32)
        sim.fit({built.inputs["x"]: x}, {built.outputs["y"]: np.ones((4, 1, 4), np.float32)}, epochs=2, verbose=0)
        sim.freeze_params(built.network)
    after = parameters(built.network)
    assert not np.array_equal(after["dense0.weight"], before["dense0.weight"])
    exported = from_nengo(built)
    np.testing.assert_array_equal(parameters(to_nengo(exported).network)["dense0.weight"], after["dense0.weight"])
    assert np.array_equal(parameters(built.network)["bias0"], before["bias0"]), "ONNX biases are not trainable"


def test_synapses_not_out_of_neurons_are_refused():
    with nengo.Network() as net:
        a = nengo.Node(np.zeros(2), label="a")
        b = nengo.Node(size_in=2, label="b")
        nengo.Connection(a, b)  # default synapse
    with pytest.raises(SNNError, match="has a synapse but does not leave neurons"):
        from_nengo(net, {"a": a}, {"b": b})


def test_decoded_connections_are_refused():
    with nengo.Network() as net:
        a = nengo.Node(np.zeros(2), label="a")
        ens = nengo.Ensemble(10, 2)
        nengo.Connection(a, ens, synapse=None)
    with pytest.raises(SNNError, match="decoded .* connections are not supported"):
        from_nengo(net, {"a": a}, {"e": ens.neurons})


def test_permutations_export_as_gather_and_come_back_as_the_same_sparse_transform():
    """A flatten-order permutation (Transpose in ONNX, Sparse in Nengo) must not become a dense matrix."""

    from onnxlab.snn import layout

    perm = layout.flatten_permutation(3, 2, 4)
    with nengo.Network() as net:
        inp = nengo.Node(np.zeros(24), label="x")
        out = nengo.Node(size_in=24, label="y")
        nengo.Connection(inp, out, transform=nengo.Sparse((24, 24), indices=np.stack([np.arange(24), perm], 1),
                                                           init=np.ones(24)), synapse=None)
    exported = from_nengo(net, {"x": inp}, {"y": out})
    assert "Gather" in [n.op_type for n in exported.graph.node] and "MatMul" not in [n.op_type for n in exported.graph.node]
    x = RNG.normal(size=(2, 24)).astype(np.float32)
    np.testing.assert_array_equal(run_single(ort_session(exported), x)[0], x[:, perm])
    back = to_nengo(exported).network
    sparse = [c.transform for c in back.all_connections if isinstance(c.transform, nengo.Sparse)]
    assert len(sparse) == 1
    np.testing.assert_array_equal(sparse[0].init.toarray(), net.connections[0].transform.init.toarray())


def test_pooling_exports_as_average_pool_and_comes_back_the_same():
    """A pooling convolution (`pool_kernel`) is no weight: it leaves as AveragePool, and to_nengo builds it again."""
    source, built, exported = _branching_round_trip()
    ops = [n.op_type for n in exported.graph.node]
    assert ops.count("AveragePool") == [n.op_type for n in source.graph.node].count("AveragePool") == 1
    assert ops.count("Conv") == [n.op_type for n in source.graph.node].count("Conv")
    before, after = parameters(built.network), parameters(to_nengo(exported).network)
    assert before.keys() == after.keys() and max_abs_difference(before, after) == 0.0


def test_max_abs_difference_counts_a_missing_tensor_as_zeros():
    before = {"bias0": np.zeros(3), "w": np.array([1.0, 2.0])}
    assert max_abs_difference(before, {"w": np.array([1.0, 2.0])}) == 0.0
    assert max_abs_difference({"b": np.array([0.5])}, {}) == 0.5
    with pytest.raises(ValueError, match=r"w: \(2,\) before, \(3,\) after"):
        max_abs_difference(before, {"w": np.zeros(3)})


def test_spiking_outputs_are_identical_after_the_round_trip():
    """Same weights and the same seeded initial state give the same spikes, step for step."""
    from onnxlab.snn.simulate import simulate

    _, built, exported = _branching_round_trip()
    x = RNG.normal(size=(4, 2, 6, 6)).astype(np.float32)
    before = simulate(built, x, n_steps=25)["y"]
    after = simulate(to_nengo(exported), x, n_steps=25)["y"]
    assert np.abs(before).max() > 0
    np.testing.assert_array_equal(after, before)


def test_from_nengo_needs_inputs_and_outputs_for_a_bare_network():
    import nengo

    with pytest.raises(SNNError, match="from_nengo needs `inputs` and `outputs`"):
        from_nengo(nengo.Network())
