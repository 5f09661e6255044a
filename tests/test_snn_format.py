"""ONNX-SNN format: valid files, ONNX Runtime rates equal Nengo's, to_snn keeps every weight, legacy files upgrade."""
import inspect

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlab.errors import SNNError
from onnxlab.formats import ONNX_OPSET, ONNX_SNN_DOMAIN, ONNX_SNN_OPSET, finalize
from onnxlab.runtime import ort_session, run_single
from onnxlab.snn import NEURONS, Simulation, is_legacy, to_snn, upgrade
from onnxlab.snn.neurons import (IZHIKEVICH_CURRENT_MAX, LIF, Izhikevich, LIFRate, RectifiedLinear,
                                 SpikingRectifiedLinear)
from tests.onnx_models import legacy_model, mlp

#: ONNX Runtime (float32) vs Nengo (float64) rates: relative error bound.
RATE_RTOL = 2e-5
RNG = np.random.default_rng(0)


def single_op_model(op_type, params, gain, bias, n):
    node = helper.make_node(op_type, ["x", "gain", "bias"], ["y"], domain=ONNX_SNN_DOMAIN, **params)
    graph = helper.make_graph([node], "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
                              [numpy_helper.from_array(gain, "gain"), numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET),
                                                    helper.make_opsetid(ONNX_SNN_DOMAIN, ONNX_SNN_OPSET)],
                              functions=[NEURONS[op_type].function()])
    return finalize(model)


CLOSED_FORM = [t for t, op in NEURONS.items() if not op.derived]


@pytest.mark.parametrize("op_type", CLOSED_FORM)
def test_rate_function_matches_nengo(op_type):
    op = NEURONS[op_type]
    params = op.parameters({"amplitude": 0.01, "tau_rc": 0.03} if "tau_rc" in op.attributes else {"amplitude": 0.01})
    x = np.linspace(-5, 60, 4001, dtype=np.float32)
    gain, bias = np.float32(1.3), np.float32(0.2)
    model = single_op_model(op_type, params, np.full(x.size, gain), np.full(x.size, bias), x.size)
    onnx.checker.check_model(model, full_check=True)
    ours = run_single(ort_session(model), x[None])[0].ravel()
    ref = op.nengo_type(params).rates(x.astype(np.float64), np.array([gain], np.float64),
                                      np.array([bias], np.float64)).ravel()
    np.testing.assert_allclose(ours, ref, rtol=RATE_RTOL, atol=1e-6 * ref.max())
    assert ref.max() > 0


@pytest.mark.parametrize("op_type", list(NEURONS))
def test_attribute_defaults_are_nengos(op_type):
    op = NEURONS[op_type]
    nengo_type = op.nengo_type(op.parameters())
    signature = inspect.signature(type(nengo_type).__init__).parameters
    for name, default in op.attributes.items():
        nengo_default = signature[name].default if name in signature else getattr(nengo_type, name)
        assert default == nengo_default, name


def test_izhikevich_rate_is_nengos_tabulated_curve():
    """No closed form: ONNX Runtime interpolates Nengo's own rates (exact on the grid), and saturates beyond it."""
    params = Izhikevich.parameters({"reset_recovery": 6.0})
    currents, rates = Izhikevich.rate_table(params)
    between = (currents[:-1] + currents[1:]) / 2
    x = np.concatenate([[-3.0], currents[::7], between[::11], [IZHIKEVICH_CURRENT_MAX * 1.5]]).astype(np.float32)
    model = single_op_model("Izhikevich", Izhikevich.node_attributes(params), np.ones(x.size, np.float32),
                            np.zeros(x.size, np.float32), x.size)
    onnx.checker.check_model(model, full_check=True)
    ours = run_single(ort_session(model), x[None])[0].ravel()
    grid = slice(1, 1 + len(currents[::7]))
    np.testing.assert_allclose(ours[grid], rates[::7], rtol=1e-6)
    mid = ours[grid.stop:-1]
    left, right = rates[:-1][::11], rates[1:][::11]
    np.testing.assert_allclose(mid, (left + right) / 2, rtol=1e-5, atol=1e-4)
    assert ours[0] == 0 and ours[-1] == rates[-1] and rates.max() > 500
    ref = Izhikevich.nengo_type(params).rates(x[grid].astype(np.float64), np.ones(1), np.zeros(1)).ravel()
    np.testing.assert_allclose(ours[grid], ref, rtol=1e-6)


def test_izhikevich_network_spikes_in_nengo_and_has_no_rate_mode():
    from onnxlab.snn.simulate import simulate, verify
    from onnxlab.snn.to_nengo import to_nengo

    snn = to_snn(mlp(), "Izhikevich", max_rates=150, intercepts=0)
    built = to_nengo(snn)
    (ensemble,) = built.ensembles.values()
    assert type(ensemble.neuron_type).__name__ == "Izhikevich" and ensemble.neuron_type.reset_recovery == 8.0
    out = simulate(built, RNG.normal(size=(2, 6)).astype(np.float32), n_steps=200,
                   extra_probes={"spikes": ensemble.neurons})
    assert (out["spikes"] > 0).any()
    with pytest.raises(SNNError, match="Izhikevich has no rate twin in Nengo"):
        verify(snn, RNG.normal(size=(2, 6)).astype(np.float32))


def test_izhikevich_survives_export_and_legacy_upgrade():
    from onnxlab.snn.from_nengo import from_nengo
    from onnxlab.snn.to_nengo import to_nengo

    snn = to_snn(mlp(), "Izhikevich", params={"coupling": 0.25}, max_rates=150, intercepts=0)
    built = to_nengo(snn)
    exported = from_nengo(built)
    (node,) = [n for n in exported.graph.node if n.op_type == "Izhikevich"]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(attrs["rate_table"]),  # a float32 tensor attribute
                                  Izhikevich.rate_table(Izhikevich.parameters({"coupling": 0.25}))[1])
    assert attrs["coupling"] == pytest.approx(0.25)
    legacy = mlp()
    legacy.graph.node[2].CopyFrom(helper.make_node("Izhikevich", ["a0"], ["h0"], name="act0"))
    upgraded, changes = upgrade(legacy)
    assert any("rate_table" in c for c in changes)
    np.testing.assert_allclose(run_single(ort_session(upgraded), RNG.normal(size=(3, 6)).astype(np.float32))[0].shape,
                               (3, 4))


def test_spiking_types_subclass_their_rate_twin():
    assert issubclass(LIF, LIFRate) and LIF.spiking and not LIFRate.spiking
    assert issubclass(SpikingRectifiedLinear, RectifiedLinear) and SpikingRectifiedLinear.spiking


def test_to_snn_with_rectified_linear_reproduces_the_relu_network_exactly():
    source = mlp()
    snn = to_snn(source, "RectifiedLinear")
    x = RNG.normal(size=(8, 6)).astype(np.float32)
    np.testing.assert_array_equal(run_single(ort_session(snn), x)[0], run_single(ort_session(source), x)[0])


def test_to_snn_keeps_every_weight_and_replaces_every_activation():
    source = mlp(activation="Tanh")
    snn = to_snn(source, "LIF", params={"amplitude": 0.01}, max_rates=100, intercepts=0)
    onnx.checker.check_model(snn, full_check=True)
    before = {i.name: numpy_helper.to_array(i) for i in source.graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in snn.graph.initializer}
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value)
    ops = [(n.op_type, n.domain) for n in snn.graph.node]
    assert ("Tanh", "") not in ops and ("LIF", ONNX_SNN_DOMAIN) in ops
    lif = next(n for n in snn.graph.node if n.op_type == "LIF")
    attrs = {a.name: helper.get_attribute_value(a) for a in lif.attribute}
    assert attrs["amplitude"] == pytest.approx(0.01) and attrs["tau_rc"] == pytest.approx(0.02)
    gain, bias = (after[name] for name in lif.input[1:])
    ref_gain, ref_bias = LIF.nengo_type(LIF.parameters()).gain_bias(np.array([100.0]), np.array([0.0]))
    assert gain == pytest.approx(ref_gain[0]) and bias == pytest.approx(ref_bias[0])
    assert {f.name for f in snn.functions} == {"LIF"}
    assert {o.domain: o.version for o in snn.opset_import}[ONNX_SNN_DOMAIN] == ONNX_SNN_OPSET
    assert run_single(ort_session(snn), RNG.normal(size=(2, 6)).astype(np.float32))[0].shape == (2, 4)


def test_mapping_replaces_only_the_named_activations():
    snn = to_snn(mlp(sizes=(6, 5, 5, 4)), mapping={"Relu": "SoftLIFRate"}, params={"sigma": 0.5})
    assert [n.op_type for n in snn.graph.node].count("SoftLIFRate") == 2


def test_simulation_settings_round_trip_through_the_file():
    snn = to_snn(mlp(), simulation=Simulation(dt=0.002, n_steps=50, synapse=None))
    restored = Simulation.read(onnx.load_from_string(snn.SerializeToString()))
    assert restored == Simulation(dt=0.002, n_steps=50, synapse=None)
    assert Simulation.read(mlp()) == Simulation()


@pytest.mark.parametrize("kwargs, message", [
    (dict(neuron_type="Foo"), "unknown neuron 'Foo'; known: RectifiedLinear"),
    (dict(params={"tau_rc": -1}), r"LIF: invalid parameters .*tau_rc"),
    (dict(params={"sigmaa": 1}), r"no neuron in use \(LIF\) has parameter sigmaa"),
    (dict(max_rates=100), "give both max_rates and intercepts"),
    (dict(mapping={"Softmax": "LIF"}), "has no Softmax node to replace"),
])
def test_to_snn_errors(kwargs, message):
    with pytest.raises(SNNError, match=message):
        to_snn(mlp(), **kwargs)


def test_to_snn_refuses_an_snn_model():
    with pytest.raises(SNNError, match="already ONNX-SNN"):
        to_snn(to_snn(mlp()))


@pytest.mark.parametrize("settings, message", [
    (dict(dt=0), "dt must be > 0"), (dict(n_steps=0), "n_steps must be a positive integer"),
    (dict(synapse=-1.0), "synapse must be >= 0"),
])
def test_bad_simulation_settings(settings, message):
    with pytest.raises(SNNError, match=message):
        Simulation(**settings)


def test_legacy_file_is_rejected_by_the_checker_and_upgraded():
    legacy = legacy_model()
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(legacy)
    assert is_legacy(legacy)
    upgraded, changes = upgrade(legacy)
    onnx.checker.check_model(upgraded, full_check=True)
    assert not is_legacy(upgraded)
    text = "\n".join(changes)
    assert "moved from the default domain" in text and "wrote Nengo defaults for tau_rc, tau_ref, min_voltage" in text
    assert "max_rates=100, intercepts=0" in text and "simulation settings" in text
    node = next(n for n in upgraded.graph.node if n.op_type == "LIF")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["amplitude"] == pytest.approx(0.01)  # stored values are kept
    assert run_single(ort_session(upgraded), RNG.normal(size=(3, 6)).astype(np.float32))[0].shape == (3, 4)


def test_upgrade_refuses_a_non_legacy_model():
    with pytest.raises(SNNError, match="has no legacy ONNX-SNN node"):
        upgrade(mlp())


def test_upgrade_names_an_unknown_legacy_attribute():
    legacy = legacy_model()
    legacy.graph.node[2].attribute.append(helper.make_attribute("threshold", 1.0))
    with pytest.raises(SNNError, match="node 'act0' \\(LIF\\) has attributes threshold"):
        upgrade(legacy)


def test_parameters_read_back_from_a_file_equal_the_given_ones():
    from onnxlab.snn.neurons import float32_decimal

    snn = onnx.load_from_string(to_snn(mlp(), "LIF", params={"amplitude": 0.01, "tau_rc": 0.03}).SerializeToString())
    node = next(n for n in snn.graph.node if n.op_type == "LIF")
    params = LIF.parameters({a.name: helper.get_attribute_value(a) for a in node.attribute})
    assert params["amplitude"] == 0.01 and params["tau_rc"] == 0.03  # not 0.009999999776482582
    assert float32_decimal(float32_decimal(0.123456789)) == float32_decimal(0.123456789) == 0.12345679
