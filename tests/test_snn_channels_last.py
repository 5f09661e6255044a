"""`to_nengo` holds (C, H, W) tensors channels-last where that costs no copy, and computes the same as in ONNX order."""
import numpy as np
import pytest

from onnxlab.snn import to_snn
from onnxlab.snn.converter_compare import zero_initial_voltage
from onnxlab.snn.from_nengo import from_nengo
from onnxlab.snn.parameters import nengo_parameters
from onnxlab.snn.simulate import simulate, verify
from onnxlab.snn.to_nengo import to_nengo
from onnxlab.snn.transforms import is_pool_kernel, sparse_product
from tests.onnx_models import ONE_CHANNEL_SHAPE as SHAPE, keras_style_cnn, one_channel_net

nengo = pytest.importorskip("nengo")
pytest.importorskip("nengo_dl")
RNG = np.random.default_rng(17)


@pytest.fixture(scope="module")
def snn():
    return to_snn(one_channel_net(), "SpikingRectifiedLinear", params={"amplitude": 0.01}, gain=100.0)


def test_every_output_matches_onnxruntime_with_the_convolutions_channels_last(snn):
    x = RNG.uniform(0, 1, (6, *SHAPE)).astype(np.float32)
    report = verify(snn, x)  # rate mode against ONNX Runtime, every output in ONNX order
    assert set(report) == {"y", "gap", "pool"} and all(r.n == 6 for r in report.values())
    built = to_nengo(snn)
    assert built.channels_last_layers == {"r1": (4, 8, 6), "r2": (4, 8, 6)}
    convolutions = [c.transform for c in built.network.all_connections if isinstance(c.transform, nengo.Convolution)]
    assert len(convolutions) == 3 and all(t.channels_last for t in convolutions)
    assert sum(is_pool_kernel(t.init) for t in convolutions) == 1


def test_spiking_outputs_equal_the_channels_first_build_from_the_same_initial_state(snn):
    """Same neurons, other order: started at rest they spike alike (the convolutions sum in another order, so a
    rare spike may move by a step)."""
    x = RNG.uniform(0, 1, (4, *SHAPE)).astype(np.float32)
    outputs = []
    for channels_last in (True, False):
        built = to_nengo(snn, channels_last=channels_last)
        zero_initial_voltage(built.network)
        outputs.append(simulate(built, x, n_steps=20)["y"])
    last, first = outputs
    assert np.abs(first).max() > 0
    assert np.isclose(last, first, rtol=0, atol=1e-5 * np.abs(first).max()).mean() >= 0.95


def test_neuron_values_come_back_in_onnx_order(snn):
    built = to_nengo(snn)
    c, h, w = built.channels_last_layers["r1"]
    values = np.arange(c * h * w).reshape(h, w, c).ravel()  # neuron i holds its (H, W, C) position
    np.testing.assert_array_equal(built.in_onnx_order("r1", values), np.arange(c * h * w).reshape(h, w, c)
                                  .transpose(2, 0, 1).ravel())
    assert built.in_onnx_order("y", values) is values  # not a channels-last layer: unchanged


def test_round_trip_through_from_nengo_rebuilds_the_same_channels_last_network(snn):
    built = to_nengo(snn)
    again = to_nengo(from_nengo(built))
    # from_nengo writes each neuron layer flat, in its ensemble's (H, W, C) order, and each channels-last
    # convolution between the Transposes it needs: those only relabel, so the same convolutions come back
    assert not again.channels_last_layers
    layouts = [[c.transform.channels_last for c in m.network.all_connections
                if isinstance(c.transform, nengo.Convolution)] for m in (built, again)]
    assert layouts[0] == layouts[1] == [True] * 3
    before, after = nengo_parameters(built.network), nengo_parameters(again.network)
    assert before.keys() == after.keys()
    for role, value in before.items():  # ONNX-SNN files are float32: a float64 bias (BatchNorm's) comes back rounded
        np.testing.assert_array_equal(np.asarray(after[role]).reshape(np.shape(value)),
                                      np.asarray(value, np.float32), err_msg=role)


def test_a_file_written_channels_first_builds_without_a_permutation(snn):
    """A file whose neuron layers are flat in ONNX order (from_nengo of a channels-first build, as files written
    before channels-last builds are): a free channels-last view of its one-channel input would make the first
    convolution's output channels-last and cost a permutation before its neurons, so that convolution stays
    channels-first, and the network is the channels-first build's."""
    flat = from_nengo(to_nengo(snn, channels_last=False))
    last, first = to_nengo(flat), to_nengo(flat, channels_last=False)
    assert not last.channels_last_layers
    kinds = [[(type(c.transform).__name__, c.transform.size_in, c.transform.size_out)
              for c in built.network.all_connections] for built in (last, first)]
    assert kinds[0] == kinds[1]  # no extra permutation (a square Sparse) and no extra node
    assert len(last.network.all_nodes) == len(first.network.all_nodes)
    assert [c.transform.channels_last for c in last.network.all_connections
            if isinstance(c.transform, nengo.Convolution)] == [False] * 3
    x = RNG.uniform(0, 1, (3, *SHAPE)).astype(np.float32)
    np.testing.assert_array_equal(simulate(last, x, n_steps=10)["y"], simulate(first, x, n_steps=10)["y"])


def test_keras_transposes_only_relabel_and_the_old_build_stays_available():
    """tf2onnx's NHWC -> NCHW Transpose in front of a Keras convolution and NCHW -> NHWC before its flatten cost
    nothing channels-last; ``channels_last=False`` builds both as before (a copy, a permutation in the dense)."""
    snn = to_snn(keras_style_cnn(), "RectifiedLinear")
    x = RNG.normal(size=(3, 6, 5, 2)).astype(np.float32)
    last, first = to_nengo(snn), to_nengo(snn, channels_last=False)
    sparse = {name: [c for c in m.network.all_connections if isinstance(c.transform, nengo.Sparse)]
              for name, m in (("last", last), ("first", first))}
    assert not sparse["last"] and len(sparse["first"]) == 1
    np.testing.assert_allclose(simulate(last, x, n_steps=1)["y"], simulate(first, x, n_steps=1)["y"],
                               rtol=0, atol=1e-5)


def test_a_selection_before_a_sparse_transform_is_folded_into_it():
    """`sparse_product`: one transform computes both, and NengoDL accepts a square one with fewer entries than
    rows (its identity test would fail on it without the explicit zero)."""
    select = nengo.Sparse((3, 4), indices=[[0, 2], [1, 0], [2, 3]], init=np.ones(3))  # out = in[[2, 0, 3]]
    place = nengo.Sparse((4, 3), indices=[[0, 0], [2, 1], [3, 2]], init=np.ones(3))  # rows 0, 2, 3 of 4
    product = sparse_product(place, select)
    x = RNG.normal(size=4)
    np.testing.assert_array_equal(product.init.toarray() @ x, place.init.toarray() @ (select.init.toarray() @ x))
    assert product.init.data.tolist().count(0.0) == 1  # square (4, 4), three ones: one explicit zero added
    with nengo.Network() as net:
        a = nengo.Node(x)
        b = nengo.Node(size_in=4)
        nengo.Connection(a, b, transform=product, synapse=None)
        probe = nengo.Probe(b)
    import nengo_dl

    with nengo_dl.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(1)
    np.testing.assert_allclose(sim.data[probe][-1], product.init.toarray() @ x, rtol=1e-6)
