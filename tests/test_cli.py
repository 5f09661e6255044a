"""The command line: one clear error line and exit 1 for bad input, no partial output."""
import subprocess
import sys

import numpy as np
import pytest

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
    keras = pytest.importorskip("keras")
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
