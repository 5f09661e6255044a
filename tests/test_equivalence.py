import numpy as np
import pytest

from onnxlab.equivalence import compare_outputs


def test_identical_scores():
    x = np.array([[0.1, 0.9], [0.8, 0.2]])
    a = compare_outputs(x, x.copy())
    assert a.max_abs_err == 0 and a.label_agreement == 1.0 and a.n == 2 and a.within(0)


def test_errors_and_label_agreement():
    e = np.array([[0.1, 0.9], [0.6, 0.4], [0.3, 0.7]])
    a = np.array([[0.1, 0.9], [0.4, 0.6], [0.3, 0.7]])
    r = compare_outputs(e, a)
    assert r.max_abs_err == pytest.approx(0.2)
    assert r.max_rel_err == pytest.approx(0.2 / 0.9)
    assert r.label_agreement == pytest.approx(2 / 3)
    assert not r.within(atol=1.0)  # labels disagree, whatever the tolerance


def test_regression_uses_relative_tolerance():
    e = np.array([100.0, 200.0])
    r = compare_outputs(e, np.array([[100.001], [200.0]]))  # (N,) vs (N, 1) is the same shape
    assert r.label_agreement is None
    assert r.within(atol=0, rtol=1e-5) and not r.within(atol=0, rtol=1e-6)


def test_integer_labels_are_compared_as_labels():
    r = compare_outputs(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]))
    assert r.label_agreement == 0.75 and r.max_abs_err == 1


def test_incompatible_shapes():
    with pytest.raises(ValueError, match=r"shapes \(2, 3\) and \(3, 2\)"):
        compare_outputs(np.zeros((2, 3)), np.zeros((3, 2)))


def test_ratio_difference_note_names_the_side_that_moved():
    from onnxlab.paper import explain_ratio_difference

    assert explain_ratio_difference("m", (1.0, 0.5, 10), (1.0, 0.4, 10), "Keras") is None  # 2.0 vs 2.5
    note = explain_ratio_difference("m", (1.0, 0.01, 10), (1.0, 0.5, 10), "Keras")  # ORT got 50x faster
    assert note.startswith("m: our ratio 100 vs the paper's 2.") and "mostly from ONNX Runtime" in note
    note = explain_ratio_difference("m", (10.0, 1.0, 1000), (0.01, 0.01, 10), "scikit-learn")  # baseline 10x slower
    assert "mostly from scikit-learn" in note and "took 10 ms here vs 1 ms in the paper (10x)" in note
