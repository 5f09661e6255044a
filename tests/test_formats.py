import onnx
import pytest
from onnx import helper

from onnxlab.errors import OnnxlabError
from onnxlab.formats import IR_VERSION, ONNX_ML_DOMAIN, ONNX_ML_OPSET, ONNX_OPSET, finalize
from onnxlab.graph import MAX_SUPPORTED_OPSET


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


def _relu(opset):
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [9, 11, 13, 17, 18, 20, MAX_SUPPORTED_OPSET])
def test_finalize_keeps_the_opset_and_stamps_the_ir_version_it_needs(opset):
    model = finalize(_relu(opset))
    assert model.opset_import[0].version == opset
    assert model.ir_version == max(IR_VERSION, helper.find_min_ir_version_for(list(model.opset_import)))


def test_finalize_can_keep_a_newer_ir_version():
    model = _relu(20)
    model.ir_version = 10
    assert finalize(model, keep_ir_version=True).ir_version == 10
    assert finalize(model).ir_version == 9  # what opset 20 needs


def test_finalize_rejects_an_opset_newer_than_onnx_knows():
    with pytest.raises(OnnxlabError, match=f"opset {MAX_SUPPORTED_OPSET + 1}, newer than the installed onnx"):
        finalize(_relu(MAX_SUPPORTED_OPSET + 1))


def test_finalize_rejects_an_invalid_graph():
    node = helper.make_node("Relu", ["missing"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])
    with pytest.raises(onnx.checker.ValidationError):
        finalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)]))
