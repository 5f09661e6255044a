"""Weight remapping: every layout function against an independent reference, on asymmetric shapes."""
import numpy as np
import pytest

from onnxlab.snn import layout

RNG = np.random.default_rng(0)


def test_conv_kernel_matches_a_real_convolution():
    """A Keras-layout kernel remapped to ONNX layout computes the same convolution in ONNX Runtime."""
    from onnx import TensorProto, helper, numpy_helper

    from onnxlab.formats import ONNX_OPSET, finalize
    from onnxlab.runtime import ort_session, run_single

    kh, kw, cin, cout = 3, 2, 4, 5
    kernel = RNG.normal(size=(kh, kw, cin, cout)).astype(np.float32)
    x_hwc = RNG.normal(size=(6, 7, cin)).astype(np.float32)
    # reference: direct channels-last valid cross-correlation, as Keras/Nengo compute it
    ref = np.zeros((6 - kh + 1, 7 - kw + 1, cout), np.float32)
    for i in range(ref.shape[0]):
        for j in range(ref.shape[1]):
            ref[i, j] = np.tensordot(x_hwc[i:i + kh, j:j + kw], kernel, axes=3)
    w = numpy_helper.from_array(layout.conv_kernel_to_onnx(kernel), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 6, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, 6 - kh + 1, 7 - kw + 1])],
                              initializer=[w])
    model = finalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)]))
    out = run_single(ort_session(model), x_hwc.transpose(2, 0, 1)[None])[0][0]
    np.testing.assert_allclose(out.transpose(1, 2, 0), ref, rtol=1e-5, atol=1e-5)


def test_conv_kernel_round_trip_and_shape():
    kernel = RNG.normal(size=(3, 2, 4, 5))
    onnx_w = layout.conv_kernel_to_onnx(kernel)
    assert onnx_w.shape == (5, 4, 3, 2)
    assert onnx_w[4, 3, 2, 1] == kernel[2, 1, 3, 4]
    np.testing.assert_array_equal(layout.conv_kernel_from_onnx(onnx_w), kernel)


def test_dense_gemm_round_trip():
    w = RNG.normal(size=(7, 3))
    g = layout.dense_to_gemm(w)
    assert g.shape == (3, 7) and g[2, 6] == w[6, 2]
    np.testing.assert_array_equal(layout.dense_from_gemm(g), w)


def test_flatten_permutation_matches_numpy_transposes():
    c, h, w = 3, 4, 5
    fmap_hwc = RNG.normal(size=(h, w, c))
    flat_hwc = fmap_hwc.ravel()
    flat_chw = fmap_hwc.transpose(2, 0, 1).ravel()
    np.testing.assert_array_equal(flat_hwc[layout.flatten_permutation(c, h, w)], flat_chw)


def test_dense_after_flatten_gives_the_same_output_in_both_orders():
    c, h, w, out = 3, 4, 5, 6
    fmap_hwc = RNG.normal(size=(h, w, c))
    weight_hwc = RNG.normal(size=(c * h * w, out))
    expected = fmap_hwc.ravel() @ weight_hwc
    weight_chw = layout.dense_rows_hwc_to_chw(weight_hwc, c, h, w)
    np.testing.assert_allclose(fmap_hwc.transpose(2, 0, 1).ravel() @ weight_chw, expected)
    np.testing.assert_array_equal(layout.dense_rows_chw_to_hwc(weight_chw, c, h, w), weight_hwc)


@pytest.mark.parametrize("fn, shape, message", [
    (layout.conv_kernel_to_onnx, (3, 3, 1), r"conv kernel \(kh, kw, in, out\), got an array of shape \(3, 3, 1\)"),
    (layout.dense_to_gemm, (3,), r"dense weight \(in, out\)"),
])
def test_wrong_rank_is_reported(fn, shape, message):
    with pytest.raises(ValueError, match=message):
        fn(np.zeros(shape))


def test_wrong_row_count_is_reported():
    with pytest.raises(ValueError, match=r"60 rows \(C\*H\*W\), got shape \(59, 2\)"):
        layout.dense_rows_hwc_to_chw(np.zeros((59, 2)), 3, 4, 5)
