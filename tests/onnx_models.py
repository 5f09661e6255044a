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


def _conv(name, x, c_in, c_out, k=3, pads=(1, 1, 1, 1)):
    w = numpy_helper.from_array(RNG.normal(scale=0.4, size=(c_out, c_in, k, k)).astype(np.float32), f"{name}.w")
    b = numpy_helper.from_array(RNG.normal(scale=0.1, size=c_out).astype(np.float32), f"{name}.b")
    node = helper.make_node("Conv", [x, w.name, b.name], [name], name=name, pads=list(pads), kernel_shape=[k, k])
    return node, [w, b]


def branching(pool="AveragePool", batch_norm=False):
    """x (N, 2, 6, 6) -> conv/relu -> [residual block: conv/relu + skip] ++ [conv branch] -> pool -> flatten -> Gemm -> softmax.

    Exercises Add of two tensors (residual) and Concat on the channel axis; optionally a
    BatchNormalization after the first conv, and MaxPool instead of AveragePool.
    """
    nodes, inits = [], []
    n, i = _conv("c1", "x", 2, 3); nodes.append(n); inits += i
    first = "c1"
    if batch_norm:
        stats = [RNG.uniform(0.5, 1.5, 3), RNG.normal(size=3), RNG.normal(size=3), RNG.uniform(0.5, 2, 3)]
        names = ["bn.scale", "bn.B", "bn.mean", "bn.var"]
        inits += [numpy_helper.from_array(v.astype(np.float32), nm) for v, nm in zip(stats, names)]
        nodes.append(helper.make_node("BatchNormalization", ["c1", *names], ["bn"], name="bn"))
        first = "bn"
    nodes.append(helper.make_node("Relu", [first], ["r1"], name="r1"))
    n, i = _conv("c2", "r1", 3, 3); nodes.append(n); inits += i
    nodes += [helper.make_node("Relu", ["c2"], ["r2"], name="r2"),
              helper.make_node("Add", ["r2", "r1"], ["res"], name="res")]
    n, i = _conv("c3", "r1", 3, 2, k=2, pads=(0, 0, 1, 1)); nodes.append(n); inits += i  # 'same' for k=2
    nodes += [helper.make_node("Relu", ["c3"], ["r3"], name="r3"),
              helper.make_node("Concat", ["res", "r3"], ["cat"], name="cat", axis=1),
              helper.make_node(pool, ["cat"], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
              helper.make_node("Flatten", ["pool"], ["flat"], name="flat")]
    inits += [numpy_helper.from_array(RNG.normal(scale=0.3, size=(4, 45)).astype(np.float32), "fc.w"),
              numpy_helper.from_array(RNG.normal(scale=0.1, size=4).astype(np.float32), "fc.b")]
    nodes += [helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
              helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=-1)]
    graph = helper.make_graph(nodes, "branching", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], inits)
    return finalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)]))


def keras_style_cnn():
    """x (N, 6, 5, 2) channels-last -> Transpose -> Conv/relu -> Transpose back -> Reshape -> MatMul + Add -> y (N, 4).

    The shape of a tf2onnx-converted Keras CNN: the Transpose before the flatten is a pure
    permutation that `to_nengo` folds into the dense matrix. H != W so a wrong axis cannot pass.
    """
    conv, inits = _conv("conv", "nchw", 2, 3)
    inits += [numpy_helper.from_array(RNG.normal(scale=0.3, size=(90, 4)).astype(np.float32), "fc.w"),
              numpy_helper.from_array(RNG.normal(scale=0.1, size=4).astype(np.float32), "fc.b"),
              numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape")]
    nodes = [helper.make_node("Transpose", ["x"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]), conv,
             helper.make_node("Relu", ["conv"], ["r"], name="r"),
             helper.make_node("Transpose", ["r"], ["nhwc"], name="to_nhwc", perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["nhwc", "flat_shape"], ["flat"], name="flatten"),
             helper.make_node("MatMul", ["flat", "fc.w"], ["mm"], name="fc"),
             helper.make_node("Add", ["mm", "fc.b"], ["y"], name="fc_bias")]
    graph = helper.make_graph(nodes, "keras_style_cnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 6, 5, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], inits)
    return finalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)]))


def shared_linear():
    """x (N, 6) -> MatMul -> m; y = relu(m) + m: a linear result read twice (by the neurons and the Add)."""
    w = numpy_helper.from_array(RNG.normal(size=(6, 5)).astype(np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
             helper.make_node("Relu", ["m"], ["h"], name="act"),
             helper.make_node("Add", ["h", "m"], ["y"], name="sum")]
    graph = helper.make_graph(nodes, "shared_linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 5])], [w])
    return finalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)]))


def legacy_lenet1(rng=None):
    """LeNet-1 exactly as the original ONNX-SNN tool wrote it (Park 2019: keras2onnx 1.6 + onnx 1.6, then snn2onnx).

    IR 6, opset 11, producer ``snn2onnx``; a Keras model, so NHWC input ``conv2d_input`` (N, 28, 28, 1),
    a Transpose to NCHW before the first Conv and back to NHWC before the Flatten (Keras' flatten order),
    ``auto_pad="VALID"`` as keras2onnx wrote it; ``LIF`` nodes in the default domain where the Relu
    activations were, with no attributes and no gain/bias inputs.
    """
    rng = rng or np.random.default_rng(5)
    w = lambda *shape, scale=0.3: rng.normal(scale=scale, size=shape).astype(np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("conv2d/kernel:0", w(4, 1, 5, 5)), ("conv2d/bias:0", w(4, scale=0.1)),
        ("conv2d_1/kernel:0", w(12, 4, 5, 5, scale=0.2)), ("conv2d_1/bias:0", w(12, scale=0.1)),
        ("dense/kernel:0", w(192, 10, scale=0.1)), ("dense/bias:0", w(10, scale=0.1))]]
    nodes = [
        helper.make_node("Transpose", ["conv2d_input"], ["adjusted_input"], name="Transpose", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["adjusted_input", "conv2d/kernel:0", "conv2d/bias:0"], ["conv2d"], name="conv2d",
                         auto_pad="VALID", kernel_shape=[5, 5], strides=[1, 1], dilations=[1, 1], group=1),
        helper.make_node("LIF", ["conv2d"], ["activation"], name="activation"),
        helper.make_node("AveragePool", ["activation"], ["average_pooling2d"], name="average_pooling2d",
                         auto_pad="VALID", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["average_pooling2d", "conv2d_1/kernel:0", "conv2d_1/bias:0"], ["conv2d_1"],
                         name="conv2d_1", auto_pad="VALID", kernel_shape=[5, 5], strides=[1, 1], dilations=[1, 1],
                         group=1),
        helper.make_node("LIF", ["conv2d_1"], ["activation_1"], name="activation_1"),
        helper.make_node("AveragePool", ["activation_1"], ["average_pooling2d_1"], name="average_pooling2d_1",
                         auto_pad="VALID", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["average_pooling2d_1"], ["average_pooling2d_1_nhwc"], name="Transpose1",
                         perm=[0, 2, 3, 1]),
        helper.make_node("Flatten", ["average_pooling2d_1_nhwc"], ["flatten"], name="flatten", axis=1),
        helper.make_node("MatMul", ["flatten", "dense/kernel:0"], ["dense_matmul"], name="dense"),
        helper.make_node("Add", ["dense_matmul", "dense/bias:0"], ["dense_add"], name="dense_add"),
        helper.make_node("Softmax", ["dense_add"], ["dense_softmax"], name="dense_softmax", axis=-1),
    ]
    graph = helper.make_graph(nodes, "sequential", [helper.make_tensor_value_info("conv2d_input", TensorProto.FLOAT,
                                                                                  ["N", 28, 28, 1])],
                              [helper.make_tensor_value_info("dense_softmax", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="snn2onnx",
                              producer_version="", domain="onnx")
    model.ir_version = 6
    return model


def pytorch_style_cnn(opset=20, ir_version=10, rng=None):
    """A small residual CNN in PyTorch's conventions, built with onnx.helper (torch.onnx.export's TorchScript path).

    NCHW input ``input`` (N, 2, 7, 6), node names like ``/features/features.0/Conv``, initializers
    ``features.0.weight``, a residual Add, GlobalAveragePool, ``Flatten -> Gemm(transB=1)``; H != W.
    """
    rng = rng or np.random.default_rng(6)
    w = lambda *shape, scale=0.4: rng.normal(scale=scale, size=shape).astype(np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("features.0.weight", w(4, 2, 3, 3)), ("features.0.bias", w(4, scale=0.1)),
        ("features.2.weight", w(4, 4, 3, 3)), ("features.2.bias", w(4, scale=0.1)),
        ("classifier.1.weight", w(5, 4)), ("classifier.1.bias", w(5, scale=0.1))]]
    conv = dict(dilations=[1, 1], group=1, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    nodes = [
        helper.make_node("Conv", ["input", "features.0.weight", "features.0.bias"], ["/features/features.0/Conv_output_0"],
                         name="/features/features.0/Conv", **conv),
        helper.make_node("Relu", ["/features/features.0/Conv_output_0"], ["/features/features.1/Relu_output_0"],
                         name="/features/features.1/Relu"),
        helper.make_node("Conv", ["/features/features.1/Relu_output_0", "features.2.weight", "features.2.bias"],
                         ["/features/features.2/Conv_output_0"], name="/features/features.2/Conv", **conv),
        helper.make_node("Add", ["/features/features.2/Conv_output_0", "/features/features.1/Relu_output_0"],
                         ["/Add_output_0"], name="/Add"),
        helper.make_node("Relu", ["/Add_output_0"], ["/relu/Relu_output_0"], name="/relu/Relu"),
        helper.make_node("GlobalAveragePool", ["/relu/Relu_output_0"], ["/pool/GlobalAveragePool_output_0"],
                         name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["/pool/GlobalAveragePool_output_0"], ["/classifier/classifier.0/Flatten_output_0"],
                         name="/classifier/classifier.0/Flatten", axis=1),
        helper.make_node("Gemm", ["/classifier/classifier.0/Flatten_output_0", "classifier.1.weight",
                                  "classifier.1.bias"], ["output"], name="/classifier/classifier.1/Gemm",
                         alpha=1.0, beta=1.0, transB=1),
    ]
    graph = helper.make_graph(nodes, "main_graph",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 2, 7, 6])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="pytorch",
                              producer_version="2.13.0")
    model.ir_version = ir_version
    return model


#: Per-sample (C, H, W) of `one_channel_net`'s input: one channel, so `to_nengo` reads it channels-last at no cost.
ONE_CHANNEL_SHAPE = (1, 8, 7)


def _f32(name, value):
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def one_channel_net():
    """Every layout-aware builder and the ops that read ONNX order, after a one-channel input:
    Conv with explicit (asymmetric) pads -> Relu -> BatchNorm -> Mul -> 'same' Conv -> Add (residual) -> Relu,
    then an average pool as a convolution, one with pads left out of the count (sparse, ONNX order), a
    GlobalAveragePool, Flatten -> Gemm; the pooled map itself is an output too."""
    rng = np.random.default_rng(17)
    c = 4
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="c1", pads=[1, 0, 1, 1]),  # (4, 8, 6)
        helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
        helper.make_node("BatchNormalization", ["r1", "s", "o", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Mul", ["bn", "k"], ["mul"], name="mul"),
        helper.make_node("Conv", ["mul", "w2", "b2"], ["c2"], name="c2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["sum"], name="sum"),
        helper.make_node("Relu", ["sum"], ["r2"], name="r2"),
        helper.make_node("AveragePool", ["r2"], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["r2"], ["pool_padded"], name="pool_padded", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["pool"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["pool_padded"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "fc", "fc_b"], ["y"], name="fc", transB=1),
    ]
    inits = [_f32("w1", rng.normal(0, 0.5, (c, 1, 3, 3))), _f32("b1", rng.normal(0, 0.1, c)),
             _f32("s", rng.uniform(0.5, 1.5, c)), _f32("o", rng.normal(0, 0.1, c)),
             _f32("m", rng.normal(0, 0.1, c)), _f32("v", rng.uniform(0.5, 2, c)),
             _f32("k", rng.uniform(0.5, 2, (c, 1, 1))),
             _f32("w2", rng.normal(0, 0.3, (c, c, 3, 3))), _f32("b2", rng.normal(0, 0.1, c)),
             _f32("fc", rng.normal(0, 0.2, (5, c * 4 * 3))), _f32("fc_b", rng.normal(0, 0.1, 5))]
    graph = helper.make_graph(nodes, "one_channel", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                   ["N", *ONE_CHANNEL_SHAPE])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5]),
                               helper.make_tensor_value_info("gap", TensorProto.FLOAT, ["N", c, 1, 1]),
                               helper.make_tensor_value_info("pool", TensorProto.FLOAT, ["N", c, 4, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    return finalize(model)
