"""onnxlab.engine_study: which file each engine reads, engines missing here reported, efficiency arithmetic."""
import pytest

from onnxlab import engine_study
from onnxlab.engines import ENGINES


def test_every_row_names_a_known_engine_and_a_file_family_the_study_writes():
    families = {"keras", "onnx", "onnx-int8", "tflite", "tflite-int8"}
    for row in engine_study.ENGINE_ROWS:
        assert row.engine in ENGINES and row.family in families and row.precision in ("fp32", "int8")
        assert ENGINES[row.engine].reads == {"keras": ".h5", "onnx": ".onnx", "onnx-int8": ".onnx",
                                             "tflite": ".tflite", "tflite-int8": ".tflite"}[row.family]


def test_an_engine_that_is_not_installed_is_skipped_with_its_reason(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None if name == "openvino" else object())
    runnable, skipped = engine_study.runnable_rows()
    assert all(r.engine != "openvino" for r in runnable)
    assert "openvino: not run (the openvino package is not installed)" in skipped


def test_gpu_engines_are_reported_as_skipped_without_a_gpu():
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has a CUDA build of onnxruntime")
    runnable, skipped = engine_study.runnable_rows()
    assert not any("cuda" in r.engine or "tensorrt" in r.engine for r in runnable)
    assert "onnxruntime-cuda: not run (this onnxruntime build has no CUDAExecutionProvider (CPU-only build, " \
           "or no GPU))" in skipped
    assert {r.engine for r in runnable} == {"keras-predict", "keras-tf.function", "onnxruntime", "openvino",
                                            "tflite", "tflite-builtin"}


def test_efficiency_arithmetic():
    # 1 G multiply-adds per image, 64 images in 0.5 s: 256 GFLOP/s, half of a 512 GFLOP/s peak
    assert engine_study.achieved_gflops(10 ** 9, 64, 0.5) == pytest.approx(256.0)
    assert engine_study.efficiency(256.0, 512.0) == pytest.approx(0.5)
