"""The model-type classifier: verdicts and evidence for each kind, legacy and mixed files; clear errors for bad files."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlab.classify import SPIKING_OP_TYPES, classify
from onnxlab.formats import parse_model, read_model
from onnxlab.errors import OnnxlabError
from onnxlab.formats import ONNX_ML_DOMAIN, ONNX_OPSET, ONNX_SNN_DOMAIN
from onnxlab.snn import NEURONS, to_snn
from tests.onnx_models import branching, legacy_model, mlp

RNG = np.random.default_rng(5)
X = RNG.normal(size=(40, 4)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int64)


def _sklearn(estimator, y=Y):
    from onnxlab import to_onnx

    return to_onnx(estimator.fit(X, y), X[:1])


def test_network_is_dl():
    evidence = classify(branching())
    assert evidence.kind == "DL" and evidence.rule == "no spiking or ONNX-ML operator"
    assert {"Conv", "Gemm", "Relu"} <= set(evidence.nn_ops) and evidence.also == []


def test_snn_and_legacy_snn():
    evidence = classify(to_snn(mlp(), "LIF", params={"amplitude": 0.01}))
    assert evidence.kind == "SNN" and evidence.spiking_ops == ["LIF"] and not evidence.legacy_snn
    assert ONNX_SNN_DOMAIN in evidence.domains and evidence.opset_imports[ONNX_SNN_DOMAIN] == 1
    legacy = classify(legacy_model())
    assert legacy.kind == "SNN" and legacy.legacy_snn and "legacy" in legacy.rule


def test_every_neuron_op_is_a_spiking_op_type():
    assert set(NEURONS) <= set(SPIKING_OP_TYPES)


@pytest.mark.parametrize("make, rule", [
    ("sklearn.linear_model.LogisticRegression", "ONNX-ML operators"),
    ("sklearn.ensemble.RandomForestClassifier", "ONNX-ML operators"),
    ("sklearn.svm.SVC", "ONNX-ML operators"),
    ("sklearn.cluster.KMeans", "produced by skl2onnx"),  # standard ops only: the producer decides
])
def test_scikit_learn_models_are_ml(make, rule):
    import importlib

    module, _, name = make.rpartition(".")
    options = {"n_init": 3, "n_clusters": 2} if name == "KMeans" else {}
    evidence = classify(_sklearn(getattr(importlib.import_module(module), name)(random_state=0, **options)))
    assert evidence.kind == "ML" and rule in evidence.rule
    assert evidence.producer.startswith("skl2onnx")
    assert evidence.paper_rule_kind == "ML"  # skl2onnx writes the model-level domain the paper read


def test_pipeline_with_a_network_is_ml_and_shows_both():
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    evidence = classify(_sklearn(make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=50, random_state=0))))
    assert evidence.kind == "ML" and evidence.also == ["DL"]
    assert "MatMul" in evidence.nn_ops and "Scaler" in evidence.ml_ops


def _wrap_in_if(inner: onnx.NodeProto) -> onnx.ModelProto:
    """y = If(cond) then inner(x) else x: the op only appears inside a subgraph."""
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    then = helper.make_graph([inner], "then", [], [helper.make_tensor_value_info(inner.output[0], TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "else", [],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                                            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])], [out])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET),
                                                   helper.make_opsetid(ONNX_ML_DOMAIN, 3)])


def test_operators_inside_subgraphs_and_functions_count():
    in_if = classify(_wrap_in_if(helper.make_node("Binarizer", ["x"], ["b"], domain=ONNX_ML_DOMAIN)))
    assert in_if.kind == "ML" and in_if.ml_ops == ["Binarizer"] and in_if.n_nodes == 3
    body = [helper.make_node("Normalizer", ["a"], ["b"], domain=ONNX_ML_DOMAIN)]
    function = helper.make_function("org.example", "Norm", ["a"], ["b"], body,
                                     [helper.make_opsetid(ONNX_ML_DOMAIN, 3)])
    graph = helper.make_graph([helper.make_node("Norm", ["x"], ["y"], domain="org.example")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, functions=[function], opset_imports=[
        helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid(ONNX_ML_DOMAIN, 3), helper.make_opsetid("org.example", 1)])
    evidence = classify(model)
    assert evidence.kind == "ML" and evidence.unknown_domains == []  # org.example:Norm is a local function


def test_unknown_domain_is_reported():
    graph = helper.make_graph([helper.make_node("Foo", ["x"], ["y"], domain="com.example")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET),
                                                    helper.make_opsetid("com.example", 1)])
    evidence = classify(model)
    assert evidence.kind == "DL" and evidence.unknown_domains == ["com.example"]


def test_classify_reads_files_without_external_data(tmp_path):
    model = mlp()
    onnx.save_model(model, tmp_path / "m.onnx", save_as_external_data=True, size_threshold=0,
                    location="m.data")
    (tmp_path / "m.data").unlink()  # classifying does not need the weights
    assert classify(tmp_path / "m.onnx").kind == "DL"


def _valid_bytes():
    return to_snn(mlp(), "LIF", params={"amplitude": 0.01}).SerializeToString()


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (bytes(RNG.integers(0, 256, 4096, dtype=np.uint8)), "not an ONNX model"),
    ("truncated", "not an ONNX model"),
    (b"# a README\nthis is text, not a model\n", "not an ONNX model"),
    (numpy_helper.from_array(np.ones((3, 2), np.float32), "t").SerializeToString(), "not an ONNX model"),
    (helper.make_graph([], "g", [], []).SerializeToString(), "not an ONNX model"),
])
def test_bad_files_give_one_clear_error(tmp_path, content, message):
    if content == "truncated":
        content = _valid_bytes()[:200]
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(OnnxlabError, match=message) as info:
        classify(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(OnnxlabError, match="no such file"):
        read_model(tmp_path / "nope.onnx")
    with pytest.raises(OnnxlabError, match="is a directory"):
        read_model(tmp_path)


def test_parse_model_round_trips_valid_bytes():
    assert classify(parse_model(_valid_bytes())).kind == "SNN"
