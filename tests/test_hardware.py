"""onnxlab.hardware: peaks from this CPU's flags and clock, a measured matmul peak below the theoretical one,
and multiply-adds counted exactly on layers whose count is known by hand."""
import numpy as np
import pytest

from onnxlab import hardware
from onnxlab.errors import InvalidArgument


def test_theoretical_peak_comes_from_the_flags():
    peak = hardware.theoretical_peak()
    from onnxlab.reproducibility import cpu_flags

    flags = cpu_flags()
    expected_lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags or "avx" in flags else 4
    assert peak.lanes == expected_lanes and peak.fma_units == hardware.ASSUMED_FMA_UNITS
    assert peak.gflops == pytest.approx(peak.cores * 2 * peak.lanes * 2 * peak.clock_ghz)
    assert f"{peak.gflops:.0f} GFLOP/s" in peak.formula()


def test_measured_peak_is_positive_and_below_the_theoretical_one():
    measured = hardware.measured_matmul_peak(size=512, repeats=3)
    assert {"onnxruntime", "numpy"} <= set(measured) <= {"onnxruntime", "numpy", "openvino"}
    # a matmul cannot beat cores x FMA units x lanes x 2 x clock; turbo above the read clock is allowed 50 %
    assert all(0 < v < 1.5 * hardware.theoretical_peak().gflops for v in measured.values())


def _keras_macs():
    from onnxlab import zoo

    model = zoo.lenet5("relu")
    return model, sum(
        int(np.prod(layer.output_shape[1:])) * int(np.prod(layer.kernel.shape[:-1]))
        for layer in model.layers if hasattr(layer, "kernel"))


def test_count_macs_matches_a_hand_count_of_lenet5():
    from onnxlab.convert import to_onnx

    model, expected = _keras_macs()
    onx = to_onnx(model, np.zeros((1, 28, 28, 1), np.float32))
    assert hardware.count_macs(onx, batch=1) == expected
    assert hardware.count_macs(onx, batch=8) == 8 * expected


def test_count_macs_needs_one_input():
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["c"])], "g",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1])])
    with pytest.raises(InvalidArgument, match="one input, got 2"):
        hardware.count_macs(helper.make_model(graph))
