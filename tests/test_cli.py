"""The command line: one clear error line and exit 1 for bad input, no partial output."""
import subprocess
import sys

import numpy as np
import pytest

from onnxlab.bad_inputs import BAD_INPUTS
from onnxlab.cli import main


def _run(*args):
    return subprocess.run([sys.executable, "-m", "onnxlab.cli", *map(str, args)], capture_output=True, text=True)


def test_missing_input_file(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nope.h5"), str(tmp_path / "out.onnx")]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope.h5'}: no such file"


def test_wrong_suffixes(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "m.pkl"), str(tmp_path / "out.onnx")]) == 1
    assert "expected a Keras model file (.h5, .keras)" in capsys.readouterr().err
    (tmp_path / "m.h5").write_text("x")
    assert main(["convert", str(tmp_path / "m.h5"), str(tmp_path / "out.txt")]) == 1
    assert "must end in .onnx" in capsys.readouterr().err


def test_corrupt_model_gives_one_error_and_no_output(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    proc = _run("convert", bad, tmp_path / "out.onnx")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: converting") and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == [bad]


def test_convert_writes_a_valid_model(tmp_path):
    pytest.importorskip("keras")
    import onnx

    from onnxlab.runtime import ort_session, run_single
    from onnxlab.zoo import lenet1

    model = lenet1()
    model.save(tmp_path / "lenet.h5")
    proc = _run("convert", tmp_path / "lenet.h5", tmp_path / "sub" / "lenet.onnx")
    assert proc.returncode == 0, proc.stderr
    onnx.checker.check_model(str(tmp_path / "sub" / "lenet.onnx"), full_check=True)
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    out = run_single(ort_session(tmp_path / "sub" / "lenet.onnx"), x)[0]
    np.testing.assert_allclose(out, model.predict(x, verbose=0), atol=1e-5)


def test_usage_error_exits_2():
    assert _run().returncode == 2


def _mlp_file(tmp_path):
    import onnx

    from tests.onnx_models import mlp

    path = tmp_path / "mlp.onnx"
    onnx.save(mlp(), path)
    return path


def test_to_snn_writes_a_valid_snn_file(tmp_path):
    import onnx

    from onnxlab.snn import Simulation

    out = tmp_path / "snn.onnx"
    proc = _run("to-snn", _mlp_file(tmp_path), out, "--neuron", "SoftLIFRate", "--param", "sigma=0.5",
                "--n-steps", "40", "--synapse", "-1")
    assert proc.returncode == 0, proc.stderr
    assert "1 activation(s) replaced by SoftLIFRate" in proc.stdout
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    assert Simulation.read(model) == Simulation(n_steps=40, synapse=None)


@pytest.mark.parametrize("args, message", [
    (["--neuron", "Foo"], "error: unknown neuron 'Foo'"),
    (["--param", "amplitude"], "error: --param 'amplitude': expected NAME=NUMBER"),
    (["--param", "amplitude=x"], "error: --param 'amplitude=x': expected NAME=NUMBER"),
    (["--param", "tau_rc=-1"], "error: LIF: invalid parameters"),
    (["--n-steps", "0"], "error: simulation n_steps must be a positive integer"),
])
def test_to_snn_bad_options_give_one_line_and_no_file(tmp_path, args, message):
    out = tmp_path / "snn.onnx"
    proc = _run("to-snn", _mlp_file(tmp_path), out, *args)
    assert proc.returncode == 1 and proc.stderr.startswith(message), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("content, message", [
    (b"", "empty file, not an ONNX model"), (b"\x00\xff\x13garbage" * 10, "not an ONNX model"), (b"hello, I am text\n", "not an ONNX model"),
])
def test_to_snn_malformed_input(tmp_path, content, message):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    proc = _run("to-snn", bad, tmp_path / "out.onnx")
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_upgrade_reports_its_changes(tmp_path):
    import onnx

    from tests.onnx_models import legacy_model

    legacy = tmp_path / "legacy.onnx"
    onnx.save(legacy_model(), legacy)
    proc = _run("upgrade", legacy, tmp_path / "new.onnx")
    assert proc.returncode == 0, proc.stderr
    assert "upgraded: node 'act0': LIF moved from the default domain" in proc.stdout
    onnx.checker.check_model(str(tmp_path / "new.onnx"), full_check=True)
    again = _run("upgrade", tmp_path / "new.onnx", tmp_path / "again.onnx")
    assert again.returncode == 1 and "has no legacy ONNX-SNN node" in again.stderr


def test_to_nengo_code_writes_a_file(tmp_path):
    import onnx

    from onnxlab.snn import to_snn
    from tests.onnx_models import mlp

    onnx.save(to_snn(mlp()), tmp_path / "m.onnx")
    proc = _run("to-nengo-code", tmp_path / "m.onnx", "-o", tmp_path / "net.py")
    assert proc.returncode == 0, proc.stderr
    compile((tmp_path / "net.py").read_text(), "net.py", "exec")
    assert not list(tmp_path.glob("*.partial"))


def _models(tmp_path):
    import onnx

    from onnxlab.snn import to_snn
    from tests.onnx_models import legacy_model, mlp

    paths = {"dnn": tmp_path / "dnn.onnx", "snn": tmp_path / "snn.onnx", "legacy": tmp_path / "legacy.onnx"}
    onnx.save(mlp(), paths["dnn"])
    onnx.save(to_snn(mlp(), "LIF", params={"amplitude": 0.01}), paths["snn"])
    onnx.save(legacy_model(), paths["legacy"])
    return paths


def test_classify_prints_a_table_and_json(tmp_path, capsys):
    import json

    paths = _models(tmp_path)
    assert main(["classify", *map(str, paths.values())]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["file", "kind", "rule"]
    assert [line.split()[1] for line in lines[1:]] == ["DL", "SNN", "SNN"]
    assert main(["classify", "--json", str(paths["legacy"])]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["kind"] == "SNN" and row["legacy_snn"] and row["spiking_ops"] == ["LIF"]


def test_classify_reports_bad_files_and_exits_1(tmp_path, capsys):
    paths = _models(tmp_path)
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert main(["classify", str(paths["dnn"]), str(tmp_path / "empty.onnx")]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == f"error: {tmp_path / 'empty.onnx'}: empty file, not an ONNX model"
    assert "DL" in captured.out


def test_run_writes_outputs_and_names_the_engine(tmp_path):
    from onnxlab.runtime import ort_session, run_single

    paths = _models(tmp_path)
    x = np.random.default_rng(1).normal(size=(3, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = _run("run", paths["dnn"], "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert proc.returncode == 0, proc.stderr
    assert "DL model, ran on onnxruntime" in proc.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), run_single(ort_session(paths["dnn"]), x)[0])
    proc = _run("run", paths["snn"], "--input", f"x={tmp_path / 'x.npy'}", "--output", tmp_path / "s.npz",
                "--n-steps", "5")
    assert proc.returncode == 0, proc.stderr
    assert "SNN model, ran on nengo-dl" in proc.stdout and np.load(tmp_path / "s.npz")["y"].shape == (3, 4)


@pytest.mark.parametrize("array, message", [
    (np.zeros((3, 5), np.float32), r"input 'x' expects shape \(\?, 6\), got \(3, 5\)"),
    (np.zeros((3, 6), np.int64), r"input 'x' expects float \(float32\), got int64"),
])
def test_run_refuses_wrong_inputs_without_output(tmp_path, array, message):
    import re

    paths = _models(tmp_path)
    np.save(tmp_path / "x.npy", array)
    proc = _run("run", paths["dnn"], "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert proc.returncode == 1 and re.search(message, proc.stderr) and "Traceback" not in proc.stderr
    assert not (tmp_path / "y.npy").exists() and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage\xff" * 50, b"just text\n"])
def test_run_and_info_on_bad_files(tmp_path, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    np.save(tmp_path / "x.npy", np.zeros((1, 6), np.float32))
    for args in (("run", bad, "--input", tmp_path / "x.npy"), ("info", bad)):
        proc = _run(*args)
        assert proc.returncode == 1 and proc.stderr.startswith(f"error: {bad}: ") and "Traceback" not in proc.stderr


def test_info_prints_the_summary(tmp_path):
    paths = _models(tmp_path)
    proc = _run("info", paths["snn"])
    assert proc.returncode == 0, proc.stderr
    assert "SNN (spiking neuron ops in org.onnxlab.snn)" in proc.stdout
    assert "input  x: float (?, 6)" in proc.stdout and "parameters" in proc.stdout


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_every_bad_input_gives_one_clear_error(tmp_path, case):
    model, x = BAD_INPUTS[case].write(tmp_path)
    before = set(tmp_path.iterdir())
    proc = _run("run", model, "--input", x, "--output", tmp_path / "y.npy")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert BAD_INPUTS[case].message in proc.stderr and "Traceback" not in proc.stderr
    assert set(tmp_path.iterdir()) == before  # no output, no partial file
