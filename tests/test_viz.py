"""onnxlab.viz / `onnxlab view` / `make netron`: Netron serves a model on localhost; a missing or non-ONNX file gets
one clear error. The page itself is opened in a real browser by test_browser.py."""
import subprocess
import urllib.request
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from onnxlab import viz
from onnxlab.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]


def _tiny(path):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_netron_serves_the_model_on_localhost_and_stops(tmp_path):
    view = viz.netron(_tiny(tmp_path / "tiny.onnx"))
    try:
        assert view.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(view.url, timeout=10) as page:
            assert page.status == 200 and b"netron" in page.read().lower()
        assert f'src="{view.url}"' in view._repr_html_()
    finally:
        view.stop()


def test_a_proto_is_served_from_a_temporary_file():
    view = viz.netron(onnx.load(str(_tiny(Path(viz.tempfile.mkdtemp()) / "t.onnx"))))
    try:
        assert view.path.is_file() and view.path.suffix == ".onnx"
    finally:
        view.stop()


def test_view_refuses_missing_and_non_onnx_files_in_one_line(tmp_path, capsys):
    assert cli(["view", str(tmp_path / "missing.onnx"), "--no-wait"]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing.onnx'}: no such file"
    junk = tmp_path / "notes.onnx"
    junk.write_text("not a model")
    assert cli(["view", str(junk), "--no-wait"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {junk}: not an ONNX model") and "\n" not in err


def test_make_netron_gives_the_same_error(tmp_path):
    junk = tmp_path / "notes.onnx"
    junk.write_text("not a model")
    proc = subprocess.run(["make", "-s", "netron", f"MODEL={junk}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and f"error: {junk}: not an ONNX model" in proc.stderr


def test_make_lab_passes_allow_root_exactly_when_run_as_root():
    import os

    proc = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    command = next(line for line in proc.stdout.splitlines() if "jupyter lab" in line)
    assert ("--allow-root" in command) == (os.getuid() == 0)
