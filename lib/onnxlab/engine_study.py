"""Table E's recipe: the same model on every inference engine that runs on this machine, fp32 and int8.

`ENGINE_ROWS` says which file each engine × precision reads (the files come from
`onnxlab.quantization_study.make_variants`); `runnable_rows` drops the engines not installed here and says
why (ONNX Runtime's CUDA and TensorRT providers run where the onnxruntime build and a GPU have them, and
are reported as skipped otherwise); `achieved_gflops` and `efficiency` turn a latency into a share of the
CPU's peak (`onnxlab.hardware`).
"""
from __future__ import annotations

from dataclasses import dataclass

from onnxlab.engines import ENGINES


@dataclass(frozen=True)
class EngineRow:
    """One row of Table E: an engine, the precision it runs, and the file family it reads
    (a `onnxlab.quantization_study.Variant.family`)."""

    engine: str
    precision: str
    family: str


#: Every engine × precision of Table E, in table order.
ENGINE_ROWS: tuple[EngineRow, ...] = (
    EngineRow("keras-predict", "fp32", "keras"),
    EngineRow("keras-tf.function", "fp32", "keras"),
    EngineRow("onnxruntime", "fp32", "onnx"),
    EngineRow("onnxruntime", "int8", "onnx-int8"),
    EngineRow("openvino", "fp32", "onnx"),
    EngineRow("openvino", "int8", "onnx-int8"),
    EngineRow("tflite", "fp32", "tflite"),
    EngineRow("tflite", "int8", "tflite-int8"),
    EngineRow("tflite-builtin", "fp32", "tflite"),
    EngineRow("tflite-builtin", "int8", "tflite-int8"),
    EngineRow("onnxruntime-cuda", "fp32", "onnx"),
    EngineRow("onnxruntime-tensorrt", "fp32", "onnx"),
)
def runnable_rows(rows: tuple[EngineRow, ...] = ENGINE_ROWS) -> tuple[list[EngineRow], list[str]]:
    """The rows whose engine runs here, and one sentence per engine that does not (for the table notes)."""
    runnable, skipped = [], {}
    for row in rows:
        reason = ENGINES[row.engine].unavailable()
        if reason:
            skipped[row.engine] = f"{row.engine}: not run ({reason})"
        else:
            runnable.append(row)
    return runnable, list(skipped.values())


def achieved_gflops(macs_per_sample: int, batch: int, seconds: float) -> float:
    """GFLOP/s of a run: 2 × multiply-adds × batch / seconds / 1e9."""
    return 2.0 * macs_per_sample * batch / seconds / 1e9


def efficiency(gflops: float, peak_gflops: float) -> float:
    """``gflops`` as a fraction of ``peak_gflops`` (above 1 means the peak was measured wrong)."""
    return gflops / peak_gflops
