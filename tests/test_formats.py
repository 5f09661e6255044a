import onnx
import pytest
from onnx import helper

from onnxlab.formats import IR_VERSION, ONNX_ML_DOMAIN, ONNX_ML_OPSET, ONNX_OPSET, finalize


def test_ir_version_is_the_minimum_the_target_opsets_need():
    needed = helper.find_min_ir_version_for(
        [helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid(ONNX_ML_DOMAIN, ONNX_ML_OPSET)])
    assert IR_VERSION == needed


def test_ir_version_is_loadable_by_onnxruntime():
    import onnxruntime as ort

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])
    model = finalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)]))
    assert model.ir_version == IR_VERSION
    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_finalize_rejects_a_newer_opset_than_the_target():
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET + 1)])
    with pytest.raises(ValueError, match=f"opset {ONNX_OPSET + 1}"):
        finalize(model)


def test_finalize_rejects_an_invalid_graph():
    node = helper.make_node("Relu", ["missing"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])
    with pytest.raises(onnx.checker.ValidationError):
        finalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)]))
