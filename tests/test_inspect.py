"""onnxlab.inspect: every intermediate tensor of a run, node by node or at once; weight edits that change exactly
one tensor, propagate downstream and never touch the source file."""
import numpy as np
import onnx
import pytest

from onnxlab import data, inspect as ins, zoo
from onnxlab.convert import to_onnx
from onnxlab.errors import InvalidArgument, OnnxlabError
from onnxlab.formats import save_model
from onnxlab.runtime import ort_session

#: Stepping node by node and running the graph at once agree within this (same kernels, other fusion boundaries).
STEP_ATOL = 1e-5


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    split = data.load_mnist(n_train=500, n_test=16)
    x = data.images_as_float(split.x_train)
    model = zoo.lenet5("relu")
    zoo.train_keras_classifier(model, x, split.y_train, epochs=1, seed=0)
    path = tmp_path_factory.mktemp("inspect") / "lenet5.onnx"
    save_model(to_onnx(model, x[:1]), path)
    return path, data.images_as_float(split.x_test)


def test_trace_ends_in_the_models_output_and_has_every_node(lenet):
    path, x = lenet
    records = ins.trace(path, x)
    model = onnx.load(str(path))
    assert list(records) == ins.node_names(model) and len(records) == len(model.graph.node)
    expected = ort_session(path).run(None, {model.graph.input[0].name: x})[0]
    last = records[next(reversed(records))]
    np.testing.assert_allclose(last.output, expected, atol=STEP_ATOL)
    conv = next(r for r in records.values() if r.op_type == "Conv")
    stats = conv.stats
    assert stats.min <= stats.mean <= stats.max and stats.counts.sum() == np.asarray(conv.output).size
    assert 0 <= stats.zero_fraction <= 1 and len(stats.edges) == ins.HISTOGRAM_BINS + 1


def test_stepping_node_by_node_equals_the_trace(lenet):
    path, x = lenet
    whole = ins.trace(path, x)
    stepper = ins.Stepper(path, x)
    first = stepper.step()
    assert first.index == 0 and stepper.position == 1
    middle = list(whole)[len(whole) // 2]
    assert stepper.run_to(middle).name == middle and stepper.position == len(whole) // 2 + 1
    for name, record in stepper.run().items():
        for tensor, value in record.outputs.items():
            np.testing.assert_allclose(value, whole[name].outputs[tensor], atol=STEP_ATOL, err_msg=name)
    assert stepper.done
    with pytest.raises(OnnxlabError, match="has run every node"):
        stepper.step()
    with pytest.raises(InvalidArgument, match="no node 'nope'"):
        ins.Stepper(path, x).run_to("nope")


def test_an_onnx_snn_model_steps_in_rate_mode(lenet):
    from onnxlab.snn import to_snn

    path, x = lenet
    snn = to_snn(onnx.load(str(path)), "LIF", params={"amplitude": 0.01}, max_rates=100, intercepts=0)
    records = ins.Stepper(snn, x[:4]).run()
    assert any(r.op_type == "LIF" for r in records.values())
    expected = ort_session(snn).run(None, {snn.graph.input[0].name: x[:4]})[0]
    np.testing.assert_allclose(records[next(reversed(records))].output, expected, atol=STEP_ATOL)


def test_an_edit_changes_one_tensor_propagates_downstream_and_spares_the_source(lenet, tmp_path):
    path, x = lenet
    source_bytes = path.read_bytes()
    model = onnx.load(str(path))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    conv_name = ins.node_names(model)[list(model.graph.node).index(conv)]
    weights = ins.layer_weights(model, conv_name)
    kernel = next(name for name, w in weights.items() if w.ndim == 4)
    edited = ins.edit_weight(path, kernel, "scale", factor=0.5)
    before = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    after = {t.name: onnx.numpy_helper.to_array(t) for t in edited.graph.initializer}
    changed = [name for name in before if not np.array_equal(before[name], after[name])]
    assert changed == [kernel]
    np.testing.assert_array_equal(after[kernel], before[kernel] * np.float32(0.5))
    rows = ins.diff_traces(ins.trace(path, x[:4]), ins.trace(edited, x[:4]))
    by_node = {r["node"]: r["changed"] for r in rows}
    names = list(by_node)
    assert not any(by_node[n] for n in names[:names.index(conv_name)])  # upstream untouched
    assert by_node[conv_name] and by_node[names[-1]]                      # the layer and the output moved
    out = ins.save_edited(edited, tmp_path / "edited.onnx", source=path)
    onnx.checker.check_model(str(out))
    with pytest.raises(InvalidArgument, match="this is the source model"):
        ins.save_edited(edited, path, source=path)
    with pytest.raises(InvalidArgument, match="exists"):
        ins.save_edited(edited, out)
    assert path.read_bytes() == source_bytes


@pytest.mark.parametrize("edit, params, check", [
    ("set", {"index": (0, 0, 0, 0), "value": 3.0}, lambda old, new: new[0, 0, 0, 0] == 3.0),
    ("prune", {"threshold": 0.05}, lambda old, new: np.all(new[np.abs(old) < 0.05] == 0)),
    ("clip", {"low": -0.1, "high": 0.1}, lambda old, new: new.max() <= np.float32(0.1) and new.min() >= np.float32(-0.1)),
])
def test_each_edit(edit, params, check, lenet):
    path, _ = lenet
    model = onnx.load(str(path))
    kernel = next(t for t in model.graph.initializer if len(t.dims) == 4)
    old = onnx.numpy_helper.to_array(kernel)
    new = next(onnx.numpy_helper.to_array(t) for t in ins.edit_weight(model, kernel.name, edit, **params)
               .graph.initializer if t.name == kernel.name)
    assert new.shape == old.shape and new.dtype == old.dtype and check(old, new)


def test_bad_edits_are_named(lenet):
    path, _ = lenet
    with pytest.raises(InvalidArgument, match="unknown edit 'flip'; known: set, scale, prune, clip"):
        ins.edit_weight(path, "x", "flip")
    with pytest.raises(InvalidArgument, match="no initializer 'nope'"):
        ins.edit_weight(path, "nope", "scale", factor=2)
    kernel = next(t.name for t in onnx.load(str(path)).graph.initializer if len(t.dims) == 4)
    with pytest.raises(InvalidArgument, match="outside the tensor's shape"):
        ins.edit_weight(path, kernel, "set", index=(99, 0, 0, 0), value=1.0)
    with pytest.raises(InvalidArgument, match="clip needs low <= high"):
        ins.edit_weight(path, kernel, "clip", low=1, high=0)


def test_augmentations_are_the_five_of_paper_r():
    image = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    images = ins.augment(image)
    assert list(images) == ["original", "rotate", "blur", "flip", "flop"]
    np.testing.assert_array_equal(images["flip"][:, :, 0], image[::-1, :, 0])
    np.testing.assert_array_equal(images["flop"][:, :, 0], image[:, ::-1, 0])
    assert all(v.shape == image.shape and v.dtype == np.float32 for v in images.values())
    assert images["blur"].std() < image.std()
    with pytest.raises(InvalidArgument, match="one image"):
        ins.augment(np.zeros((2, 3, 4, 1)))


def test_augmentation_probe_reports_predictions_and_layer_statistics(lenet):
    path, x = lenet
    probe = ins.augmentation_probe(path, x[0])
    assert list(probe["predictions"]) == list(ins.AUGMENTATIONS)
    expected = ort_session(path).run(None, {onnx.load(str(path)).graph.input[0].name: x[:1]})[0]
    assert probe["predictions"]["original"] == int(expected.argmax())
    augmentations_per_node = {}
    for row in probe["layers"]:
        augmentations_per_node.setdefault(row["node"], set()).add(row["augmentation"])
    assert all(names == set(ins.AUGMENTATIONS) for names in augmentations_per_node.values())
    assert any(row["op_type"] == "Conv" for row in probe["layers"])
