"""The ipywidgets debugger panel, driven without a browser: it builds, follows the selected node, steps, switches a
layer to int8 and shows its error, edits weights and reports what changed downstream."""
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from onnxlab import cross_inference as ci, data, zoo  # noqa: E402
from onnxlab.convert import to_onnx  # noqa: E402
from onnxlab.debugger_panel import DebuggerPanel  # noqa: E402
from onnxlab.formats import save_model  # noqa: E402


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    split = data.load_mnist(n_train=300, n_test=32)
    x = data.images_as_float(split.x_train)
    model = zoo.lenet5("relu")
    zoo.train_keras_classifier(model, x, split.y_train, epochs=1, seed=0)
    folder = tmp_path_factory.mktemp("panel")
    save_model(to_onnx(model, x[:1]), folder / "lenet5.onnx")
    float_path, qdq_path = ci.quantization_pair(folder / "lenet5.onnx", x[:64], folder)
    return DebuggerPanel(float_path, data.images_as_float(split.x_test), qdq_model=qdq_path)


def _conv(panel):
    return next(name for name, r in panel.reference.items() if r.op_type == "Conv")


def test_the_panel_follows_the_selected_node_and_steps(panel):
    conv = _conv(panel)
    panel.layer.value = conv
    assert conv in panel.summary.value and "Conv" in panel.summary.value and "weight" in panel.summary.value
    titles = [ax.get_title() for ax in panel.figure.axes]  # the figure shown in the output area
    assert titles[0] == "output histogram" and titles[1] == "weight histogram" and "feature maps" in titles[2]
    panel.step_button.click()
    assert panel.layer.value == panel.names[panel.names.index(conv) + 1]


def test_switching_a_layer_to_int8_shows_its_error(panel):
    panel.layer.value = _conv(panel)
    panel.precision.value = "int8"
    try:
        assert "int8 vs float at this node: SQNR" in panel.summary.value
        assert not np.array_equal(panel.record().output, panel.reference[_conv(panel)].output)
    finally:
        panel.precision.value = "float"


def test_editing_weights_reruns_and_reports_the_downstream_change(panel):
    conv = _conv(panel)
    panel.layer.value = conv
    panel.factor.value = 0.5
    panel.apply_button.click()
    assert "scaled" in panel.summary.value and "node outputs changed" in panel.summary.value
    assert not np.array_equal(panel.current[conv].output, panel.reference[conv].output)
    panel.reset_button.click()
    assert panel.current is panel.reference
