"""scikit-learn -> ONNX: ONNX Runtime reproduces scikit-learn for every model kind, and bad input fails clearly."""
import numpy as np
import onnx
import pytest

from onnxlab import to_onnx
from onnxlab.data import load_tabular
from onnxlab.errors import ConversionError
from onnxlab.formats import IR_VERSION, ONNX_ML_DOMAIN, ONNX_ML_OPSET, ONNX_OPSET
from onnxlab.runtime import ort_session, run_single
from onnxlab.zoo import ML_MODELS

#: float32 conversion: regression outputs within this relative error of scikit-learn's.
FLOAT32_RTOL = 1e-5
#: float64 conversion of a linear model: outputs within this relative error.
FLOAT64_RTOL = 1e-12
#: class probabilities within this absolute error.
PROBA_ATOL = 1e-5


def _ort(model, x):
    return run_single(ort_session(model), x)


@pytest.mark.parametrize("name", list(ML_MODELS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zoo_model_matches_sklearn(name, dtype):
    spec = ML_MODELS[name]
    split = load_tabular(spec.dataset, seed=0)
    model = spec.make(0).fit(split.x_train, split.y_train)
    x = split.x_test.astype(dtype)
    onx = to_onnx(model, x)
    onnx.checker.check_model(onx, full_check=True)
    outputs = _ort(onx, x)
    expected = model.predict(split.x_test)
    if spec.metric == "r2":
        np.testing.assert_allclose(outputs[0].ravel(), expected, rtol=FLOAT32_RTOL, atol=0)
    else:
        np.testing.assert_array_equal(outputs[0].ravel(), expected)
    if hasattr(model, "predict_proba") and dtype is np.float32:
        # float32 is the exact path: scikit-learn's trees compare thresholds in float32 too. With
        # float64 input a few borderline samples of RandomForest go the other way in some trees
        # (probabilities off by ~0.02, labels unchanged) — the notebook's variant check catches that.
        np.testing.assert_allclose(outputs[1], model.predict_proba(split.x_test), atol=PROBA_ATOL)


def test_float64_linear_regression_is_exact(boston):
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(boston.x_train, boston.y_train)
    out = _ort(to_onnx(model, boston.x_test), boston.x_test)[0].ravel()
    np.testing.assert_allclose(out, model.predict(boston.x_test), rtol=FLOAT64_RTOL)


def test_files_are_stamped_with_the_target_opsets_and_ir(iris):
    model = ML_MODELS["RandomForest"].make(0).fit(iris.x_train, iris.y_train)
    onx = to_onnx(model, iris.x_test.astype(np.float32))
    opsets = {o.domain: o.version for o in onx.opset_import}
    assert onx.ir_version == IR_VERSION
    assert opsets[""] == ONNX_OPSET
    assert opsets[ONNX_ML_DOMAIN] <= ONNX_ML_OPSET
    assert onx.graph.name == "RandomForestClassifier"


def test_classifier_outputs_are_plain_tensors_not_zipmap(iris):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=500).fit(iris.x_train, iris.y_train)
    onx = to_onnx(model, iris.x_test)
    assert "ZipMap" not in {n.op_type for n in onx.graph.node}
    label, proba = _ort(onx, iris.x_test)
    assert proba.shape == (len(iris.x_test), 3)


def test_pipeline_with_classifier(iris):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    model = make_pipeline(StandardScaler(), SVC()).fit(iris.x_train, iris.y_train)
    label, scores = _ort(to_onnx(model, iris.x_test), iris.x_test)
    np.testing.assert_array_equal(label, model.predict(iris.x_test))


def test_knn_cdist_option_replaces_the_scan_loop(iris):
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier().fit(iris.x_train, iris.y_train)
    plain = to_onnx(model, iris.x_test)
    fused = to_onnx(model, iris.x_test, model_options={"optim": "cdist"})
    assert "Scan" in {n.op_type for n in plain.graph.node}
    ops = {n.op_type for n in fused.graph.node}
    assert "CDist" in ops and "Scan" not in ops
    np.testing.assert_array_equal(_ort(fused, iris.x_test)[0], model.predict(iris.x_test))


def test_unfitted_estimator_is_named_in_the_error(iris):
    from sklearn.ensemble import RandomForestClassifier

    with pytest.raises(ConversionError, match="RandomForestClassifier is not fitted"):
        to_onnx(RandomForestClassifier(), iris.x_test)


def test_unsupported_object_names_its_type(iris):
    with pytest.raises(ConversionError, match=r"numpy\.ndarray.*supported frameworks are keras, sklearn"):
        to_onnx(np.zeros(3), iris.x_test)

    class Custom:
        pass

    with pytest.raises(ConversionError, match="Custom"):
        to_onnx(Custom(), iris.x_test)


def test_bad_example_input_shape_is_reported(iris):
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(iris.x_train, iris.y_train)
    with pytest.raises(ConversionError, match=r"shape \(N, n_features\).*got \(4,\)"):
        to_onnx(model, iris.x_test[0])


def test_unknown_converter_option_is_reported(iris):
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(iris.x_train, iris.y_train)
    with pytest.raises(ConversionError, match="skl2onnx could not convert LinearRegression"):
        to_onnx(model, iris.x_test, model_options={"no_such_option": 1})


def test_variants_start_with_the_default_and_cover_the_options():
    variants = ML_MODELS["KNN"].variants()
    assert variants[0].convert_options == {"dtype": np.float32} and variants[0].intra_op_threads == 0
    assert len(variants) == 2 * 2 * 2
    assert sum("cdist" in v.name for v in variants) == 4
    assert len({v.name for v in variants}) == len(variants)
