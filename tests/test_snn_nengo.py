"""ONNX-SNN -> Nengo: Nengo's rate outputs equal ONNX Runtime's for dense, conv and branching nets; clear errors."""
import numpy as np
import onnx
import pytest
from onnx import helper

from onnxlab.errors import SNNError
from onnxlab.runtime import ort_session, run_single
from onnxlab.snn import to_snn
from onnxlab.snn.simulate import VERIFY_RTOL, simulate, verify
from onnxlab.graph import fold_batch_norm
from onnxlab.snn.to_nengo import to_nengo
from tests.onnx_models import branching, keras_style_cnn, legacy_model, mlp, shared_linear

pytest.importorskip("nengo_dl")
RNG = np.random.default_rng(3)


def _images(n=4):
    return RNG.normal(size=(n, 2, 6, 6)).astype(np.float32)


@pytest.mark.parametrize("neuron, params", [("LIF", {"amplitude": 0.01}), ("SoftLIFRate", {"sigma": 0.5}),
                                            ("SpikingRectifiedLinear", {})])
def test_dense_net_matches_onnxruntime(neuron, params):
    snn = to_snn(mlp(), neuron, params=params, max_rates=100, intercepts=0)
    report = verify(snn, RNG.normal(size=(6, 6)).astype(np.float32))
    assert report["y"].max_rel_err <= VERIFY_RTOL and report["y"].n == 6


def test_branching_conv_net_matches_onnxruntime():
    """Residual Add, channel Concat, 'same' and asymmetric padding, average pooling, Gemm, dropped Softmax."""
    snn = to_snn(branching(), "LIF", params={"amplitude": 0.05}, max_rates=200, intercepts=-0.5)
    report = verify(snn, _images())
    assert report["y"].label_agreement == 1.0


def _passthrough_nodes(network):
    return [n for n in network.all_nodes if n.output is None]


def test_keras_style_cnn_has_no_copies_and_matches_onnxruntime():
    """Conv feeds the neurons directly, channels-last: the NHWC -> NCHW Transpose in front of it and the one back
    before the flatten only relabel (`to_nengo(channels_last=True)`, the default). Built channels-first, the
    input's transpose is a copy and the one before the flatten is folded into the dense matrix."""
    import nengo

    snn = to_snn(keras_style_cnn(), "LIF", params={"amplitude": 0.05}, max_rates=200, intercepts=-0.5)
    report = verify(snn, RNG.normal(size=(5, 6, 5, 2)).astype(np.float32))
    assert report["y"].max_rel_err <= VERIFY_RTOL
    built = to_nengo(snn)
    assert not [c for c in built.network.all_connections if isinstance(c.transform, nengo.Sparse)]
    assert [n.label for n in _passthrough_nodes(built.network)] == ["fc_bias"]  # the probed output
    (conv,) = [c for c in built.network.all_connections if isinstance(c.transform, nengo.Convolution)]
    assert conv.post_obj.ensemble is built.ensembles["r"] and conv.transform.channels_last
    assert built.channels_last_layers == {"r": (3, 6, 5)}  # (C, H, W): a 'same' conv of 6x5 NHWC images

    first = to_nengo(snn, channels_last=False)
    sparse = [c for c in first.network.all_connections if isinstance(c.transform, nengo.Sparse)]
    assert [c.transform.shape for c in sparse] == [(60, 60)]  # only the input's NHWC -> NCHW transpose
    # left: the transposed input (a Convolution cannot absorb a permutation) and the probed output
    assert [n.label for n in _passthrough_nodes(first.network)] == ["to_nchw", "fc_bias"]
    assert not first.channels_last_layers


def test_a_linear_result_read_twice_is_built_once():
    import nengo

    snn = to_snn(shared_linear(), "RectifiedLinear")
    verify(snn, RNG.normal(size=(4, 6)).astype(np.float32))
    built = to_nengo(snn)
    assert sorted(n.label for n in _passthrough_nodes(built.network)) == ["mm", "sum"]
    assert sum(isinstance(c.transform, nengo.Dense) for c in built.network.all_connections) == 1


def test_batch_norm_is_folded_into_the_conv_and_matches():
    model = branching(batch_norm=True)
    folded = fold_batch_norm(model)
    assert "BatchNormalization" not in [n.op_type for n in folded.graph.node]
    x = _images()
    np.testing.assert_allclose(run_single(ort_session(folded), x)[0], run_single(ort_session(model), x)[0],
                               rtol=1e-5, atol=1e-6)
    verify(to_snn(model, "RectifiedLinear"), x)


def test_max_pool_becomes_average_pool_with_a_warning():
    snn = to_snn(branching(pool="MaxPool"), "RectifiedLinear")
    with pytest.warns(UserWarning, match="max pooling replaced by average pooling"):
        built = to_nengo(snn)
    assert any("MaxPool" in note for note in built.notes)
    with pytest.raises(SNNError, match=r"node 'pool' \(MaxPool\): NengoDL cannot spike through max pooling"):
        to_nengo(snn, max_pool="error")


def test_network_structure_mirrors_the_file():
    import nengo

    snn = to_snn(branching(), "LIF", params={"amplitude": 0.01}, max_rates=100, intercepts=0)
    built = to_nengo(snn)
    assert set(built.ensembles) == {"r1", "r2", "r3"}
    ens = built.ensembles["r2"]
    assert isinstance(ens.neuron_type, nengo.LIF) and ens.neuron_type.amplitude == pytest.approx(0.01)
    assert ens.n_neurons == 3 * 6 * 6
    gain = onnx.numpy_helper.to_array(next(i for i in snn.graph.initializer if i.name == "r2.gain"))
    np.testing.assert_array_equal(ens.gain, np.full(ens.n_neurons, gain, np.float64))
    assert built.input_shapes == {"x": (2, 6, 6)} and built.output_shapes == {"y": (4,)}
    assert built.softmax_dropped == {"y"}
    rate = to_nengo(snn, rate=True).ensembles["r2"]
    assert type(rate.neuron_type) is nengo.LIFRate


def test_spiking_simulation_output_shape_and_activity():
    snn = to_snn(mlp(), "LIF", params={"amplitude": 0.01}, max_rates=100, intercepts=0)
    out = simulate(to_nengo(snn), RNG.normal(size=(3, 6)).astype(np.float32), n_steps=20, filtered=True)["y"]
    assert out.shape == (3, 20, 4)
    assert np.abs(out[:, -1]).max() > 0


def test_extra_probes_are_returned_and_removed_afterwards():
    built = to_nengo(to_snn(mlp(), "LIF", params={"amplitude": 0.01}, max_rates=100, intercepts=0))
    probes = list(built.network.all_probes)
    (ensemble,) = built.ensembles.values()
    out = simulate(built, RNG.normal(size=(3, 6)).astype(np.float32), n_steps=20,
                   extra_probes={"spikes": ensemble.neurons[:2]})
    spikes = out["spikes"]  # amplitude / dt at a spike, else 0
    assert spikes.shape == (3, 20, 2) and np.all(np.isclose(spikes, 0) | np.isclose(spikes, 0.01 / 0.001))
    assert list(built.network.all_probes) == probes


def test_unsupported_op_names_the_node():
    model = mlp()
    model.graph.node[2].CopyFrom(helper.make_node("LeakyRelu", ["a0"], ["h0"], name="leaky"))
    with pytest.raises(SNNError, match=r"node 'leaky' \(LeakyRelu\): no Nengo builder for this op; supported: .*Conv"):
        to_nengo(model)


def test_unsupported_conv_attributes_are_named():
    model = to_snn(branching())
    conv = next(n for n in model.graph.node if n.name == "c2")
    conv.attribute.append(helper.make_attribute("dilations", [2, 2]))
    with pytest.raises(SNNError, match=r"node 'c2' \(Conv\): dilations \[2, 2\]"):
        to_nengo(model)


def test_plain_activation_points_to_to_snn():
    with pytest.raises(SNNError, match=r"node 'act0' \(Relu\): .*convert the model with to_snn"):
        to_nengo(mlp())


def test_legacy_file_must_be_upgraded_first():
    with pytest.raises(SNNError, match="legacy ONNX-SNN file .* upgrade it first"):
        to_nengo(legacy_model())


def test_wrong_input_shape_is_reported():
    built = to_nengo(to_snn(mlp()))
    with pytest.raises(SNNError, match=r"input 'x' expects samples of shape \(6,\), got \(5,\)"):
        simulate(built, np.zeros((2, 5), np.float32))


def test_only_onnx_weights_are_trainable_in_nengo_dl():
    """Conv and dense weights train; transposes, pooling (a fixed convolution), concatenation and biases stay
    fixed."""
    import nengo

    from onnxlab.snn.transforms import is_pool_kernel

    built = to_nengo(to_snn(branching(), "LIF", max_rates=100, intercepts=0))
    trainable = {}
    for conn in built.network.all_connections:
        kind = type(conn.transform).__name__
        if isinstance(conn.transform, nengo.Dense) and conn.pre_obj.size_out == 1:
            kind = "bias"
        if isinstance(conn.transform, nengo.Convolution) and is_pool_kernel(conn.transform.init):
            kind = "pooling"
        trainable.setdefault(kind, set()).add(built.network.config[conn].trainable is not False)  # None: default
    assert trainable["Convolution"] == {True} and trainable["Dense"] == {True} and trainable["pooling"] == {False}
    assert trainable["Sparse"] == {False} and trainable["bias"] == {False} and trainable["NoTransform"] == {False}
    # the ensembles' biases (which hold the folded ONNX biases) are fixed unless asked for
    assert {built.network.config[e].trainable for e in built.network.all_ensembles} == {False}
    trainable_build = to_nengo(to_snn(branching(), "LIF", max_rates=100, intercepts=0), trainable_ensembles=True)
    assert {trainable_build.network.config[e].trainable is not False  # None: the default, trainable
            for e in trainable_build.network.all_ensembles} == {True}


def test_simulate_leaves_the_network_trainable():
    """simulate builds an inference-only graph; the network's own NengoDL settings come back unchanged."""
    import nengo
    import nengo_dl
    import tensorflow as tf

    built = to_nengo(to_snn(mlp(), "LIF", params={"amplitude": 0.01}, max_rates=100, intercepts=0))
    with built.network:
        nengo_dl.configure_settings(stateful=True)
    x = RNG.normal(size=(4, 6)).astype(np.float32)
    before = simulate(built, x, n_steps=3)["y"]
    params = built.network.config[nengo.Network]
    assert "inference_only" not in params.extra_params and params.stateful is True
    (node,), (probe,) = built.inputs.values(), built.outputs.values()
    with nengo_dl.Simulator(built.network, minibatch_size=4, progress_bar=False) as sim:  # trainable graph
        sim.compile(optimizer=tf.optimizers.SGD(1.0), loss={probe: tf.losses.mse})
        sim.fit({node: x[:, None]}, {probe: np.ones((4, 1, 4), np.float32)}, epochs=1, verbose=0)
        sim.freeze_params(built.network)
    assert not np.allclose(simulate(built, x, n_steps=3)["y"], before)
