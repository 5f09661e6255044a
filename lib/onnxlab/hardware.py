"""What this CPU can do, to turn a latency into an efficiency.

- `theoretical_peak`: fp32 multiply-add throughput from the CPU's flags and clock —
  cores × FMA units × vector lanes × 2 flops × clock. The FMA-unit count is not in /proc/cpuinfo;
  it is an assumption (two per core, as on Xeon Scalable and AMD Zen server cores) stated beside it.
- `measured_matmul_peak`: the best GFLOP/s of a large square fp32 matmul in ONNX Runtime, numpy's BLAS and
  OpenVINO, all cores — the ceiling a framework reaches in practice, taken in the same run as the models.
- `count_macs`: multiply-adds of an ONNX model's Conv / ConvTranspose / Gemm / MatMul nodes at a given
  batch size, from ONNX shape inference, so achieved GFLOP/s = 2 × MACs / seconds.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import onnx

from onnxlab.errors import InvalidArgument, OnnxlabError

#: fp32 lanes per vector register by the widest extension present (checked in this order).
FP32_LANES = (("avx512f", 16), ("avx2", 8), ("avx", 8), ("sse2", 4))
#: Assumed FMA units per core (two on Xeon Scalable and AMD Zen server cores; not readable from the OS).
ASSUMED_FMA_UNITS = 2
#: Side of the square matrices of the measured peak.
MATMUL_SIZE = 2048


def _clock_ghz() -> tuple[float, str]:
    """The clock the peak assumes, and where it was read: the maximum frequency if the OS exposes it,
    else the current ``cpu MHz`` of /proc/cpuinfo (often the nominal clock in a virtual machine)."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            return int(f.read()) / 1e6, "cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":", 1)[1]) for line in f if line.startswith("cpu MHz")]
        if mhz:
            return max(mhz) / 1e3, "/proc/cpuinfo cpu MHz"
    except (OSError, ValueError):
        pass
    raise OnnxlabError("the CPU clock cannot be read (no cpufreq, no 'cpu MHz' in /proc/cpuinfo)")


@dataclass(frozen=True)
class Peak:
    """A theoretical fp32 peak and its factors."""

    cores: int
    fma_units: int
    lanes: int
    clock_ghz: float
    clock_source: str
    extension: str

    @property
    def gflops(self) -> float:
        """cores × FMA units × lanes × 2 × clock (GHz) — GFLOP/s."""
        return self.cores * self.fma_units * self.lanes * 2 * self.clock_ghz

    def formula(self) -> str:
        return (f"{self.cores} cores × {self.fma_units} FMA units (assumed) × {self.lanes} fp32 lanes "
                f"({self.extension}) × 2 × {self.clock_ghz:.2f} GHz ({self.clock_source}) = {self.gflops:.0f} GFLOP/s")


def theoretical_peak(cores: int | None = None, fma_units: int = ASSUMED_FMA_UNITS) -> Peak:
    """The theoretical fp32 `Peak` of this CPU (``cores``: physical cores by default)."""
    import psutil

    from onnxlab.reproducibility import cpu_flags

    flags = cpu_flags()
    extension, lanes = next(((name, n) for name, n in FP32_LANES if name in flags), ("scalar", 1))
    clock, source = _clock_ghz()
    cores = cores or psutil.cpu_count(logical=False) or os.cpu_count() or 1
    return Peak(cores, fma_units, lanes, clock, source, extension)


def _matmul_model(size: int) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    from onnxlab.formats import finalize

    spec = [size, size]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, spec) for n in ("a", "b")],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, spec)])
    return finalize(helper.make_model(graph))


def _openvino_matmul(model: onnx.ModelProto, threads: int):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU",
                                  {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return lambda a, b: request.infer([a, b])


def measured_matmul_peak(size: int = MATMUL_SIZE, repeats: int = 10, threads: int | None = None) -> dict[str, float]:
    """Best GFLOP/s of a ``size`` × ``size`` fp32 matmul in ONNX Runtime (MLAS), numpy's BLAS and, where it is
    installed, OpenVINO (oneDNN), with ``threads`` threads (all cores by default): ``{"onnxruntime": ..., ...}``."""
    import importlib.util

    from onnxlab.runtime import ort_session

    if size < 1 or repeats < 1:
        raise InvalidArgument(f"need size >= 1 and repeats >= 1, got {size}, {repeats}")
    threads = threads or os.cpu_count() or 1
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    model = _matmul_model(size)
    session = ort_session(model, intra_op_threads=threads)
    runs = {"onnxruntime": lambda: session.run(None, {"a": a, "b": b}), "numpy": lambda: a @ b}
    if importlib.util.find_spec("openvino"):
        openvino_matmul = _openvino_matmul(model, threads)
        runs["openvino"] = lambda: openvino_matmul(a, b)
    flops = 2.0 * size ** 3
    best = {}
    for name, run in runs.items():
        run()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        best[name] = flops / min(times) / 1e9
    return best


# --------------------------------------------------------------------------- counting multiply-adds

def _shape(values: dict[str, onnx.ValueInfoProto], name: str) -> list[int] | None:
    value = values.get(name)
    if value is None or not value.type.tensor_type.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in value.type.tensor_type.shape.dim]
    return dims if all(dims) else None


def _conv_macs(node, values, inits) -> int:
    out, weight = _shape(values, node.output[0]), _shape(values, node.input[1]) or inits.get(node.input[1])
    if out is None or weight is None:
        raise OnnxlabError(f"node {node.name or node.op_type}: shapes unknown after shape inference")
    # weight (C_out, C_in / group, k...) : every output element takes C_in/group × prod(k) multiply-adds
    return int(np.prod(out)) * int(np.prod(weight[1:]))


def _conv_transpose_macs(node, values, inits) -> int:
    x, weight = _shape(values, node.input[0]), _shape(values, node.input[1]) or inits.get(node.input[1])
    if x is None or weight is None:
        raise OnnxlabError(f"node {node.name or node.op_type}: shapes unknown after shape inference")
    # weight (C_in, C_out / group, k...): every input element scatters into C_out/group × prod(k) outputs
    return int(np.prod(x)) * int(np.prod(weight[1:]))


def _matmul_macs(node, values, inits) -> int:
    a, out = _shape(values, node.input[0]), _shape(values, node.output[0])
    if a is None or out is None:
        raise OnnxlabError(f"node {node.name or node.op_type}: shapes unknown after shape inference")
    trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
    inner = a[-2] if trans_a else a[-1]
    return int(np.prod(out)) * int(inner)


#: Op type -> multiply-adds of one node (from inferred shapes).
MAC_COUNTERS = {"Conv": _conv_macs, "ConvTranspose": _conv_transpose_macs, "Gemm": _matmul_macs,
                "MatMul": _matmul_macs}


def count_macs(model: onnx.ModelProto | str | os.PathLike, batch: int = 1) -> int:
    """Multiply-adds of one run of a float ONNX model on a batch of ``batch`` (Conv, ConvTranspose, Gemm, MatMul).

    The batch dimension of the (single) graph input is fixed to ``batch`` and shapes are inferred; elementwise
    ops, pooling and normalisation are not counted (a few percent of a CNN's arithmetic).
    """
    from onnx import shape_inference

    model = onnx.load(str(model), load_external_data=False) if not isinstance(model, onnx.ModelProto) else model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise InvalidArgument(f"count_macs needs a model with one input, got {len(inputs)}")
    inputs[0].type.tensor_type.shape.dim[0].dim_value = batch
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    values = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    for name, dims in inits.items():
        values.setdefault(name, onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims))
    return sum(MAC_COUNTERS[node.op_type](node, values, inits)
               for node in inferred.graph.node if node.op_type in MAC_COUNTERS)
