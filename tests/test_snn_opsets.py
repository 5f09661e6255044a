"""Every opset boundary that changes an op's signature: the Nengo network computes what ONNX Runtime computes.

Each case is a tiny graph at one opset, ``x -> <op under test> -> Relu -> y`` (asymmetric shapes), made
spiking with the exact ``RectifiedLinear`` neuron: `verify` then compares Nengo's rate mode with ONNX
Runtime, which implements the op as that opset defines it. So a builder that reads an attribute where
the opset has an input (or ignores a new attribute) fails here.
"""
import runpy

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlab.errors import SNNError
from onnxlab.graph import MAX_SUPPORTED_OPSET, MIN_SUPPORTED_OPSET
from onnxlab.snn import to_snn
from onnxlab.snn.builders import BUILDERS
from onnxlab.snn.codegen import to_nengo_code
from onnxlab.snn.simulate import verify
from onnxlab.snn.to_nengo import to_nengo

pytest.importorskip("nengo_dl")
RNG = np.random.default_rng(21)
SHAPE = (3, 6, 5)  # per-sample (C, H, W): no two sizes equal


def _init(name, value):
    value = np.asarray(value)
    return numpy_helper.from_array(value.astype(np.int64 if value.dtype.kind in "iu" else np.float32), name)


def _model(opset, nodes, inits=(), out_shape=None, in_shape=SHAPE, ir_version=None, name="case"):
    """``nodes`` read ``x`` and write ``t``; a Relu makes ``y`` from ``t``."""
    nodes = [*nodes, helper.make_node("Relu", ["t"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version or helper.find_min_ir_version_for(list(model.opset_import))
    if out_shape is None:  # declare the output as shape inference finds it, batch axis symbolic
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph.output[0]
        model.graph.output[0].CopyFrom(inferred)
    onnx.checker.check_model(model, full_check=True)
    return model


def _check(model, in_shape=SHAPE):
    snn = to_snn(model, mapping={"Relu": "RectifiedLinear"})
    assert snn.opset_import[0].version == model.opset_import[0].version  # the opset is never converted
    onnx.checker.check_model(snn, full_check=True)
    report = verify(snn, RNG.normal(size=(4, *in_shape)).astype(np.float32), rtol=1e-5)
    assert report["y"].n == 4
    return snn


def _node(op, inputs, **attrs):
    return helper.make_node(op, inputs, ["t"], name=op.lower(), **attrs)


# --------------------------------------------------------------------------- axes: attribute -> input

@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_and_unsqueeze(opset):
    """x -> ReduceMean(H, W) keepdims -> Squeeze(H, W) -> Unsqueeze(last) -> t of shape (N, 3, 1)."""
    axes_in = opset >= 13
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=1),
             helper.make_node("Squeeze", ["m", "sq_axes"] if axes_in else ["m"], ["s"],
                              **({} if axes_in else {"axes": [2, 3]})),
             _node("Unsqueeze", ["s", "un_axes"] if axes_in else ["s"], **({} if axes_in else {"axes": [-1]}))]
    inits = [_init("sq_axes", [-2, -1]), _init("un_axes", [-1])] if axes_in else []
    _check(_model(opset, nodes, inits))


@pytest.mark.parametrize("opset", [13, 17, 18, 20])
def test_reduce_mean_axes_attribute_before_18_input_from_18(opset):
    if opset < 18:
        nodes, inits = [_node("ReduceMean", ["x"], axes=[1, 3], keepdims=0)], []
    else:
        nodes, inits = [_node("ReduceMean", ["x", "axes"], keepdims=0)], [_init("axes", [1, -1])]
    snn = _check(_model(opset, nodes, inits))
    assert to_nengo(snn).output_shapes == {"y": (6,)}


@pytest.mark.parametrize("opset", [12, 13])
def test_reduce_sum_axes_attribute_before_13_input_from_13(opset):
    if opset < 13:
        nodes, inits = [_node("ReduceSum", ["x"], axes=[2])], []
    else:
        nodes, inits = [_node("ReduceSum", ["x", "axes"])], [_init("axes", [2])]
    _check(_model(opset, nodes, inits))


def test_global_average_pool():
    _check(_model(9, [_node("GlobalAveragePool", ["x"])]))


# --------------------------------------------------------------------------- Pad, Split, Clip

@pytest.mark.parametrize("opset, mode", [(9, "reflect"), (10, "edge"), (11, "constant"), (13, "reflect"),
                                         (18, "constant"), (19, "wrap")])
def test_pad_attributes_before_11_inputs_from_11_axes_from_18(opset, mode):
    pads = [0, 0, 1, 2, 0, 0, 2, 1]  # (N, C, H, W) begins, then ends
    if opset < 11:
        nodes, inits = [_node("Pad", ["x"], pads=pads, mode=mode)], []
    elif opset < 18:
        nodes, inits = [_node("Pad", ["x", "pads", "value"], mode=mode)], [_init("pads", pads), _init("value", 0.5)]
    else:  # pads only for the axes named (H, W), in that order
        nodes = [_node("Pad", ["x", "pads", "value", "axes"], mode=mode)]
        inits = [_init("pads", [1, 2, 2, 1]), _init("value", -0.25), _init("axes", [2, 3])]
    _check(_model(opset, nodes, inits))


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_split_sizes_attribute_input_or_num_outputs(opset):
    """Split C=3 into (2, 1) [or equal parts of H=6 at 18], and add the parts back by Concat."""
    if opset < 13:
        split = [helper.make_node("Split", ["x"], ["a", "b"], axis=1, split=[2, 1])]
        inits = []
    elif opset < 18:
        split = [helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1)]
        inits = [_init("sizes", [2, 1])]
    else:
        split = [helper.make_node("Split", ["x"], ["a", "b"], axis=2, num_outputs=2)]
        inits = []
    nodes = [*split, _node("Concat", ["b", "a"], axis=1 if opset < 18 else 2)]
    _check(_model(opset, nodes, inits))


@pytest.mark.parametrize("opset", [10, 11])
def test_clip_without_bounds_is_the_identity_and_with_bounds_is_refused(opset):
    _check(_model(opset, [_node("Clip", ["x"])]))
    if opset < 11:
        bounded, inits = _node("Clip", ["x"], min=0.0, max=6.0), []
    else:
        bounded, inits = _node("Clip", ["x", "lo", "hi"]), [_init("lo", 0.0), _init("hi", 6.0)]
    with pytest.raises(SNNError, match=r"node 'clip' \(Clip\): clips to \[0.0, 6.0\]"):
        to_nengo(to_snn(_model(opset, [bounded], inits), mapping={"Relu": "RectifiedLinear"}))


# --------------------------------------------------------------------------- shapes, batch norm, Gemm, pooling

@pytest.mark.parametrize("allowzero, shape", [(0, [0, 0, -1]), (1, [-1, 5, 18])])
def test_reshape_zero_copies_a_dimension_unless_allowzero(allowzero, shape):
    _check(_model(14, [_node("Reshape", ["x", "shape"], allowzero=allowzero)], [_init("shape", shape)]))


@pytest.mark.parametrize("opset", [9, 11, 13])
def test_flatten_axis_and_its_negative_form(opset):
    axis = -3 if opset >= 11 else 1
    _check(_model(opset, [_node("Flatten", ["x"], axis=axis)]))


@pytest.mark.parametrize("opset", [9, 14, 15])
def test_batch_norm_not_after_a_conv_is_an_affine_map(opset):
    stats = [RNG.uniform(0.5, 1.5, 3), RNG.normal(size=3), RNG.normal(size=3), RNG.uniform(0.5, 2, 3)]
    inits = [_init(n, v) for n, v in zip(["s", "b", "m", "v"], stats)]
    _check(_model(opset, [_node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)], inits))
    if opset >= 14:
        node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["t", "running_mean", "running_var"],
                                name="bn", training_mode=1)
        training = _model(opset, [node], inits)
        with pytest.raises(SNNError, match="training_mode=1"):
            to_nengo(to_snn(training, mapping={"Relu": "RectifiedLinear"}))


@pytest.mark.parametrize("opset, attrs", [(9, dict(alpha=0.5, beta=2.0, transB=1)), (11, dict(transB=0)),
                                          (13, dict(alpha=1.5))])
def test_gemm_alpha_beta_trans_b(opset, attrs):
    trans_b = attrs.get("transB", 0)
    w = RNG.normal(size=(7, 4) if trans_b else (4, 7))
    _check(_model(opset, [_node("Gemm", ["x", "w", "c"], **attrs)], [_init("w", w), _init("c", RNG.normal(size=7))],
                  in_shape=(4,)), in_shape=(4,))
    bad = _model(opset, [_node("Gemm", ["x", "w", "c"], transA=1)], [_init("w", RNG.normal(size=(1, 7))),
                                                                      _init("c", RNG.normal(size=7))], in_shape=(4,))
    with pytest.raises(SNNError, match=r"node 'gemm' \(Gemm\): transA=1"):
        to_nengo(to_snn(bad, mapping={"Relu": "RectifiedLinear"}))


@pytest.mark.parametrize("opset, attrs", [
    (9, dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], count_include_pad=1)),
    (9, dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1])),
    (10, dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
    (19, dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1)),
    (11, dict(kernel_shape=[2, 3], auto_pad="SAME_LOWER")),
    (13, dict(kernel_shape=[3, 3], strides=[1, 2])),  # strides default 1 per axis, not the kernel
])
def test_average_pool_padding_count_include_pad_and_ceil_mode(opset, attrs):
    _check(_model(opset, [_node("AveragePool", ["x"], **attrs)]))


@pytest.mark.parametrize("attrs, padding", [
    (dict(kernel_shape=[2, 2], strides=[2, 2]), "valid"),
    (dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER", count_include_pad=1), "same"),
    (dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"), None),  # padding left out of the count
    (dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), None),  # a last window smaller than the kernel
])
def test_average_pool_is_a_fixed_convolution_where_every_window_divides_by_its_size(attrs, padding):
    """NengoDL runs `pool_kernel`'s convolution faster than the sparse copy; both compute what ONNX Runtime does."""
    import nengo

    from onnxlab.snn.transforms import is_pool_kernel

    snn = _check(_model(11, [_node("AveragePool", ["x"], **attrs)]))
    network = to_nengo(snn).network
    (pool,) = [c for c in network.all_connections if not isinstance(c.transform, nengo.transforms.NoTransform)]
    if padding is None:
        assert isinstance(pool.transform, nengo.Sparse)
    else:
        assert is_pool_kernel(pool.transform.init) and pool.transform.padding == padding
        assert network.config[pool].trainable is False


@pytest.mark.parametrize("opset", [9, 12, 13])
def test_dropout_is_the_identity_at_inference(opset):
    inputs, inits = (["x", "ratio"], [_init("ratio", 0.3)]) if opset >= 12 else (["x"], [])
    _check(_model(opset, [_node("Dropout", inputs)], inits))


@pytest.mark.parametrize("op", ["Sub", "Mul", "Div"])
def test_arithmetic_with_per_channel_constants(op):
    value = RNG.uniform(0.5, 2.0, size=(3, 1, 1))
    _check(_model(13, [_node(op, ["x", "c"])], [_init("c", value)]))
    _check(_model(13, [_node("Sub", ["c", "x"])], [_init("c", value)]))


def test_conv_with_padding_nengo_cannot_express_goes_through_a_pad():
    w = RNG.normal(size=(4, 3, 3, 2))
    nodes = [_node("Conv", ["x", "w"], pads=[2, 0, 0, 1], strides=[1, 2])]
    _check(_model(11, nodes, [_init("w", w)]))


@pytest.mark.parametrize("opset", range(MIN_SUPPORTED_OPSET, MAX_SUPPORTED_OPSET + 1))
def test_every_opset_converts_and_matches(opset):
    """Conv -> Relu -> Flatten at each opset from 9 to the newest onnx knows, with a LIF neuron too."""
    w = RNG.normal(scale=0.5, size=(2, 3, 3, 3))
    model = _model(opset, [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                           _node("Flatten", ["c"])], [_init("w", w)])
    _check(model)
    snn = to_snn(model, "LIF", params={"amplitude": 0.02}, max_rates=120, intercepts=-0.3)
    assert {f.name: f.opset_import[0].version for f in snn.functions} == {"LIF": opset}
    verify(snn, RNG.normal(size=(3, *SHAPE)).astype(np.float32))


def test_a_builder_knows_the_opsets_it_covers():
    assert BUILDERS.versions("Squeeze") == [1, 13] and BUILDERS.versions("ReduceMean") == [1, 18]
    assert BUILDERS.lookup("Pad", 10).since == 2 and BUILDERS.lookup("Pad", 11).since == 11
    assert BUILDERS.lookup("Add", 6) is None  # broadcasting as numpy does only since opset 7


def test_every_builder_version_is_an_onnx_schema_version():
    """A builder starting at opset ``since`` starts where onnx changed the op (or at 1): none is invented."""
    for op_type in BUILDERS.op_types():
        history = {s.since_version for s in onnx.defs.get_all_schemas_with_history()
                   if s.name == op_type and s.domain == ""}
        for since in BUILDERS.versions(op_type):
            assert since == 1 or since in history, (op_type, since, sorted(history))


@pytest.mark.parametrize("opset", [11, 13, 15])
def test_reshape_target_computed_from_the_shape(opset, tmp_path):
    """PyTorch's ``x.view(x.size(0), -1)`` with a dynamic batch: Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
    axes_in = opset >= 13
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
             helper.make_node("Unsqueeze", ["batch", "axes"] if axes_in else ["batch"], ["batch1"],
                              **({} if axes_in else {"axes": [0]})),
             helper.make_node("Concat", ["batch1", "minus_one"], ["target"], axis=0),
             _node("Reshape", ["x", "target"])]
    inits = [_init("zero", np.array(0)), _init("minus_one", [-1])] + ([_init("axes", [0])] if axes_in else [])
    snn = _check(_model(opset, nodes, inits, out_shape=["N", int(np.prod(SHAPE))]))
    assert to_nengo(snn).output_shapes == {"y": (int(np.prod(SHAPE)),)}
    onnx.save(snn, tmp_path / "view.onnx")  # the generated script needs no shape-derived constant
    namespace = runpy.run_path(str(_write(tmp_path / "net.py", to_nengo_code(tmp_path / "view.onnx"))))
    assert namespace["net"].all_ensembles[0].n_neurons == int(np.prod(SHAPE))


def _write(path, text):
    path.write_text(text)
    return path
