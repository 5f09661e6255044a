"""Files this project did not write: the original tool's legacy files, PyTorch's conventions (external data, IR 9-10,
opset 18-20), PyTorch itself; the public names; errors that exit 1; a quiet command line."""
import importlib
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxlab
from onnxlab.errors import InvalidArgument, OnnxlabError
from onnxlab.foreign import ForeignFile, as_legacy, export_pytorch, pytorch_python, version_converted
from onnxlab.formats import save_model
from onnxlab.graph import default_opset
from onnxlab.portability import STEPS, check_file
from onnxlab.runtime import ort_session
from tests.onnx_models import legacy_lenet1, mlp, pytorch_style_cnn

pytest.importorskip("nengo_dl")
RNG = np.random.default_rng(17)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "onnxlab.cli", *map(str, args)], capture_output=True, text=True,
                          env=env)


def _all_pass(outcomes):
    assert list(outcomes) == list(STEPS)
    failed = {step: o.detail for step, o in outcomes.items() if not o.passed}
    assert not failed, failed


# --------------------------------------------------------------------------- the original tool's files

def test_legacy_lenet1_upgrades_to_valid_onnx_snn_and_runs_everywhere(tmp_path):
    legacy = legacy_lenet1()
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(legacy)  # LIF in the default domain is not ONNX
    path = tmp_path / "lenet1-legacy.onnx"
    onnx.save(legacy, path)

    upgraded, changes = onnxlab.upgrade(path)
    assert default_opset(upgraded) == 11 and upgraded.ir_version == 8  # opset kept, IR raised for functions
    assert any("IR version 6 raised to 8" in c for c in changes)
    onnx.checker.check_model(upgraded, full_check=True)
    assert {f.name: f.opset_import[0].version for f in upgraded.functions} == {"LIF": 11}

    x = RNG.uniform(size=(3, 28, 28, 1)).astype(np.float32)
    outcomes = check_file(ForeignFile("legacy LeNet-1", path, x, legacy=True), tmp_path / "work")
    _all_pass(outcomes)
    assert outcomes["classify"].detail.startswith("SNN")

    proc = _cli("upgrade", path, tmp_path / "up.onnx")
    assert proc.returncode == 0, proc.stderr
    assert "upgraded: node 'activation': LIF moved from the default domain" in proc.stdout
    np.save(tmp_path / "x.npy", x)
    proc = _cli("run", path, "--input", tmp_path / "x.npy", "--n-steps", "5", "--output", tmp_path / "y.npy")
    assert proc.returncode == 0, proc.stderr
    assert "SNN model, ran on nengo-dl" in proc.stdout and np.load(tmp_path / "y.npy").shape == (3, 10)


def test_as_legacy_writes_the_tools_encoding():
    model = mlp()
    model.opset_import[0].version = 11
    legacy = as_legacy(model)
    (node,) = [n for n in legacy.graph.node if n.op_type == "LIF"]
    assert node.domain == "" and not node.attribute and len(node.input) == 1
    assert legacy.ir_version == 6 and legacy.producer_name == "snn2onnx"
    with pytest.raises(OnnxlabError, match="opset 11 at most"):
        as_legacy(mlp())  # opset 17


# --------------------------------------------------------------------------- PyTorch's conventions

@pytest.mark.parametrize("opset, ir_version", [(18, 9), (19, 9), (20, 10)])
def test_pytorch_style_file_with_external_data_in_another_folder(tmp_path, opset, ir_version):
    """Weights in `<file>.data`, the folder moved after writing: every step finds the side file beside the model."""
    model = pytorch_style_cnn(opset, ir_version)
    onnx.checker.check_model(model, full_check=True)
    x = RNG.normal(size=(4, 2, 7, 6)).astype(np.float32)
    (reference,) = ort_session(model).run(None, {"input": x})
    written = tmp_path / "export"
    written.mkdir()
    save_model(model, written / "cnn.onnx", external_data=True)
    assert (written / "cnn.onnx.data").is_file()
    moved = shutil.move(str(written), str(tmp_path / "elsewhere"))
    path = Path(moved) / "cnn.onnx"

    _all_pass(check_file(ForeignFile("pytorch style", path, x, reference), tmp_path / "work"))
    snn = onnxlab.to_snn(path, "LIF")
    assert default_opset(snn) == opset and snn.ir_version == ir_version
    proc = _cli("to-snn", path, tmp_path / "snn.onnx")
    assert proc.returncode == 0, proc.stderr


def test_an_snn_file_with_external_data_runs_on_nengo_from_another_folder(tmp_path):
    snn = onnxlab.to_snn(pytorch_style_cnn(), "LIF", max_rates=100, intercepts=0)
    (tmp_path / "a").mkdir()
    save_model(snn, tmp_path / "a" / "snn.onnx", external_data=True)
    path = Path(shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))) / "snn.onnx"
    x = RNG.normal(size=(2, 2, 7, 6)).astype(np.float32)
    result = onnxlab.run(path, x, n_steps=5)
    assert result.kind == "SNN" and result.outputs["output"].shape == (2, 5)
    from onnxlab.snn.codegen import to_nengo_code

    script = tmp_path / "net.py"
    script.write_text(to_nengo_code(path))
    assert runpy.run_path(str(script))["net"].all_ensembles


def test_save_model_writes_a_side_file_only_when_asked_or_large(tmp_path):
    model = pytorch_style_cnn()
    save_model(model, tmp_path / "small.onnx")
    assert not (tmp_path / "small.onnx.data").exists()
    save_model(model, tmp_path / "big.onnx", external_data=True)
    loaded = onnx.load(str(tmp_path / "big.onnx"))
    assert [t.name for t in loaded.graph.initializer] == [t.name for t in model.graph.initializer]
    assert (tmp_path / "big.onnx.data").stat().st_size > 0


def test_version_converter_output_goes_through_every_step(tmp_path):
    model = pytorch_style_cnn(opset=13, ir_version=7)
    x = RNG.normal(size=(2, 2, 7, 6)).astype(np.float32)
    (reference,) = ort_session(model).run(None, {"input": x})
    converted = version_converted(model, 21)
    save_model(converted, tmp_path / "c.onnx")
    _all_pass(check_file(ForeignFile("converted", tmp_path / "c.onnx", x, reference), tmp_path / "work"))
    with pytest.raises(OnnxlabError, match="cannot take 'main_graph' from opset 13 to 99"):
        version_converted(model, 99)


def test_a_failing_step_names_the_node_and_later_steps_say_why(tmp_path):
    from onnx import helper

    model = mlp()
    model.graph.node.insert(3, helper.make_node("Clip", ["h0", "lo", "hi"], ["clipped"], name="relu6"))
    model.graph.node[4].input[0] = "clipped"
    model.graph.initializer.extend([onnx.numpy_helper.from_array(np.array(v, np.float32), n)
                                    for n, v in (("lo", 0.0), ("hi", 6.0))])
    save_model(model, tmp_path / "m.onnx")
    x = RNG.normal(size=(2, 6)).astype(np.float32)
    (reference,) = ort_session(model).run(None, {"x": x})
    outcomes = check_file(ForeignFile("clip", tmp_path / "m.onnx", x, reference), tmp_path / "work")
    assert outcomes["to_snn"].passed and outcomes["checker"].passed
    assert not outcomes["nengo_rate"].passed
    assert "node 'relu6' (Clip): clips to [0.0, 6.0]" in outcomes["nengo_rate"].detail


# --------------------------------------------------------------------------- PyTorch itself

def _pytorch_available():
    try:
        pytorch_python()
        return True
    except OnnxlabError:
        if os.environ.get("ONNXLAB_REQUIRE_PYTORCH"):
            raise
        return False


@pytest.mark.skipif(not _pytorch_available(), reason="no PyTorch environment (make pytorch-env; make test requires it)")
def test_real_pytorch_exports_go_through_every_step(tmp_path):
    shapes = [(6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (120, 400), (120,), (84, 120), (84,), (10, 84), (10,)]
    weights = [RNG.normal(scale=0.2, size=s).astype(np.float32) for s in shapes]
    x = RNG.uniform(size=(3, 1, 28, 28)).astype(np.float32)
    jobs = [dict(network="lenet5", exporter="dynamo", opset=20, path=str(tmp_path / "dynamo.onnx")),
            dict(network="lenet5", exporter="torchscript", opset=18, path=str(tmp_path / "ts.onnx"))]
    outputs = export_pytorch({"lenet5": weights}, x, jobs)
    assert (tmp_path / "dynamo.onnx.data").is_file()  # PyTorch's own external data
    for job in jobs:
        proto = onnx.load(job["path"], load_external_data=False)
        assert proto.producer_name == "pytorch" and default_opset(proto) == job["opset"]
        _all_pass(check_file(ForeignFile(job["exporter"], Path(job["path"]), x, outputs["lenet5"]),
                             tmp_path / job["exporter"]))


# --------------------------------------------------------------------------- the public face

def test_public_names_are_the_functions():
    path_model = mlp()
    assert onnxlab.classify(path_model).kind == "DL"
    result = onnxlab.run(path_model, RNG.normal(size=(2, 6)).astype(np.float32))
    assert result.engine == "onnxruntime" and result.outputs["y"].shape == (2, 4)
    snn = onnxlab.to_snn(path_model, "RectifiedLinear")
    assert onnxlab.classify(snn).kind == "SNN"
    assert onnxlab.from_nengo(onnxlab.to_nengo(snn)).graph.node
    importlib.import_module("onnxlab.classify")  # importing the submodule must not shadow the function
    assert callable(onnxlab.classify) and onnxlab.classify.__module__ == "onnxlab.classify"
    from onnxlab.classify import KINDS

    assert KINDS == ("SNN", "ML", "DL")
    assert set(onnxlab.__all__) >= {"classify", "run", "to_onnx", "to_snn", "to_nengo", "from_nengo", "upgrade"}


def test_importing_onnxlab_stays_light():
    code = ("import sys, onnxlab; heavy = [m for m in ('tensorflow', 'nengo', 'nengo_dl', 'sklearn', 'torch', "
            "'onnxruntime') if m in sys.modules]; print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


# --------------------------------------------------------------------------- errors and a quiet CLI

FORMER_VALUE_ERRORS = [
    (lambda: __import__("onnxlab.bench", fromlist=["compare"]).compare({}), "no candidates"),
    (lambda: __import__("onnxlab.runtime", fromlist=["ort_session"]).ort_session(mlp(), optimization="max"),
     "optimization must be one of"),
    (lambda: __import__("onnxlab.equivalence", fromlist=["x"]).compare_outputs(np.zeros(2), np.zeros(3)),
     "cannot compare outputs of shapes"),
    (lambda: __import__("onnxlab.zoo", fromlist=["x"]).keras_application("VGG99"), "unknown application"),
    (lambda: __import__("onnxlab.snn.layout", fromlist=["x"]).conv_kernel_to_onnx(np.zeros(3)), "expected a conv"),
    (lambda: __import__("onnxlab.formats", fromlist=["x"]).save_arrays({"a": 1, "b": 2}, "/tmp/two.npy"),
     "a .npy file holds one array"),
]


@pytest.mark.parametrize("call, message", FORMER_VALUE_ERRORS)
def test_former_value_errors_are_onnxlab_errors(call, message):
    with pytest.raises(InvalidArgument, match=message) as info:
        call()
    assert isinstance(info.value, OnnxlabError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("call, message", FORMER_VALUE_ERRORS)
def test_former_value_errors_exit_1_with_their_message_in_the_cli(call, message, monkeypatch, capsys):
    """Whichever command reaches one of them, the CLI prints one `error:` line and exits 1 (not 3, a bug)."""
    from onnxlab import cli

    command = cli.COMMANDS["info"]
    monkeypatch.setitem(cli.COMMANDS, "info", cli.Command(command.help, command.add_arguments,
                                                          lambda args: call()))
    assert cli.main(["info", "any.onnx"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("opset, message", [(8, "imports ai.onnx opset 8; to_snn supports opsets 9 to"),
                                            (23, "imports ai.onnx opset 23; to_snn supports opsets 9 to")])
def test_cli_refuses_an_unsupported_opset_with_exit_1(tmp_path, opset, message):
    model = mlp()
    model.opset_import[0].version = opset
    onnx.save(model, tmp_path / "m.onnx")
    proc = _cli("to-snn", tmp_path / "m.onnx", tmp_path / "out.onnx")
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.onnx").exists()


def test_to_nengo_code_prints_no_library_warnings(tmp_path):
    onnx.save(onnxlab.to_snn(mlp(), "SoftLIFRate"), tmp_path / "m.onnx")  # SoftLIFRate imports nengo_dl
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = _cli("to-nengo-code", tmp_path / "m.onnx", env=env)
    assert proc.returncode == 0 and proc.stdout.startswith('"""Nengo network')
    assert proc.stderr == "", proc.stderr
