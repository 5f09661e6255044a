"""Every step an ONNX file takes through onnxlab, checked one by one, with the reason when one fails.

The foreign-models table (`notebooks/foreign_models.ipynb`) runs `check_file` on each file that
another producer wrote. The steps (`STEPS`), in order:

1. ``classify`` — `onnxlab.classify` gives the expected kind (DL; SNN for a legacy ONNX-SNN file);
2. ``onnxruntime`` — `onnxlab.run` on ONNX Runtime equals the producer's own outputs (legacy files:
   upgraded in memory, then run on ONNX Runtime; the original tool stored no outputs to compare);
3. ``to_snn`` — `onnxlab.to_snn` (legacy files: `onnxlab.upgrade`) writes an ONNX-SNN file;
4. ``checker`` — ``onnx.checker.check_model(full_check=True)`` accepts that file, read from disk;
5. ``nengo_rate`` — the Nengo network in rate mode equals ONNX Runtime (`onnxlab.snn.simulate.verify`);
6. ``spiking`` — a spiking NengoDL simulation runs and gives finite outputs;
7. ``codegen`` — the script `onnxlab.snn.codegen.to_nengo_code` writes runs and its network gives the
   same spiking outputs as `onnxlab.to_nengo`'s, bit for bit;
8. ``round_trip`` — `onnxlab.from_nengo` of that network gives back every Nengo parameter bit for bit,
   and ONNX Runtime computes the same outputs from the exported file.

A step that raises fails with the exception's message; the steps that need its result then fail
with "needs <step>". Every cell of the table thus carries its reason.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from onnxlab.foreign import ForeignFile

#: The steps, in the order `check_file` runs them.
STEPS = ("classify", "onnxruntime", "to_snn", "checker", "nengo_rate", "spiking", "codegen", "round_trip")
#: What each step needs to have passed first.
NEEDS = {"checker": "to_snn", "nengo_rate": "to_snn", "spiking": "to_snn", "codegen": "to_snn",
         "round_trip": "to_snn"}
#: Tolerance of the ``onnxruntime`` step: |onnxruntime - producer| <= ATOL + RTOL * |producer|.
OUTPUT_ATOL, OUTPUT_RTOL = 1e-5, 1e-4


@dataclass
class Outcome:
    """One cell: passed or not, what was measured or why it failed, and the step's main measure if it has one
    (largest output difference, or seconds of simulation)."""

    passed: bool
    detail: str
    value: float | None = None

    def cell(self) -> str:
        return ("pass: " if self.passed else "FAIL: ") + self.detail


@dataclass
class Settings:
    """How the spiking steps run: `onnxlab.to_snn`'s neuron and parameters, and the simulation sizes."""

    neuron: str = "LIF"
    params: dict[str, float] = field(default_factory=lambda: {"amplitude": 0.01})
    max_rates: float = 100.0
    intercepts: float = 0.0
    n_steps: int = 10
    n_spiking: int = 4
    verify_rtol: float = 1e-4


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def check_file(case: ForeignFile, workdir: str | os.PathLike, settings: Settings | None = None) -> dict[str, Outcome]:
    """Run every step of `STEPS` on ``case``; writes its ONNX-SNN file and script into ``workdir``.

    Returns
    -------
    dict
        Step name -> `Outcome`, in `STEPS` order.
    """
    settings = settings or Settings()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"snn_path": workdir / f"{case.path.stem}-snn.onnx"}
    outcomes: dict[str, Outcome] = {}
    for step in STEPS:
        need = NEEDS.get(step)
        if need and not outcomes[need].passed:
            outcomes[step] = Outcome(False, f"needs {need}")
            continue
        try:
            outcomes[step] = STEP_FUNCTIONS[step](case, settings, state)
        except Exception as exc:  # the table records the reason instead of stopping
            outcomes[step] = Outcome(False, _first_line(exc))
    return outcomes


def _classify(case: ForeignFile, settings: Settings, state: dict) -> Outcome:
    from onnxlab import classify

    evidence = classify(case.path)
    expected = "SNN" if case.legacy else "DL"
    return Outcome(evidence.kind == expected, f"{evidence.kind} ({evidence.rule})")


def _onnxruntime(case: ForeignFile, settings: Settings, state: dict) -> Outcome:
    from onnxlab.equivalence import compare_outputs
    from onnxlab.runtime import ort_session

    if case.legacy:
        from onnxlab import upgrade

        upgraded, _ = upgrade(case.path)
        session = ort_session(upgraded)
        (y,) = session.run(None, {session.get_inputs()[0].name: case.x})
        return Outcome(bool(np.all(np.isfinite(y))), f"upgraded in memory, ran: output {y.shape} (the original "
                                                     "tool stored no outputs to compare with)")
    from onnxlab import run

    result = run(case.path, case.x)
    (y,) = result.outputs.values()
    agreement = compare_outputs(case.reference, y)
    ok = agreement.within(atol=OUTPUT_ATOL, rtol=OUTPUT_RTOL) and agreement.label_agreement == 1.0
    return Outcome(ok, f"{result.engine}: max |Δ| vs producer {agreement.max_abs_err:.2g}, "
                       f"labels agree {agreement.label_agreement:.0%}", agreement.max_abs_err)


def _to_snn(case: ForeignFile, settings: Settings, state: dict) -> Outcome:
    from onnxlab import to_snn, upgrade
    from onnxlab.formats import save_model
    from onnxlab.graph import default_opset
    from onnxlab.snn.neurons import neuron_nodes

    if case.legacy:
        snn, changes = upgrade(case.path)
        how = f"upgraded ({len(changes)} changes)"
    else:
        snn = to_snn(case.path, settings.neuron, params=settings.params, max_rates=settings.max_rates,
                     intercepts=settings.intercepts)
        how = f"{len(neuron_nodes(snn))} {settings.neuron} ops"
    save_model(snn, state["snn_path"])
    source = onnx.load(str(case.path), load_external_data=False)
    return Outcome(True, f"{how}; opset {default_opset(source)} -> {default_opset(snn)}, "
                         f"IR {source.ir_version} -> {snn.ir_version}")


def _checker(case: ForeignFile, settings: Settings, state: dict) -> Outcome:
    onnx.checker.check_model(str(state["snn_path"]), full_check=True)
    return Outcome(True, "valid (full check)")


def _nengo_rate(case: ForeignFile, settings: Settings, state: dict) -> Outcome:
    from onnxlab.snn.simulate import verify

    report = verify(state["snn_path"], case.x, rtol=settings.verify_rtol)
    (agreement,) = report.values()
    return Outcome(True, f"max |Δ| {agreement.max_abs_err:.2g} (max |y| {agreement.scale:.2g}), "
                         f"labels agree {agreement.label_agreement:.0%}", agreement.max_abs_err)


def _spiking(case: ForeignFile, settings: Settings, state: dict) -> Outcome:
    from onnxlab import to_nengo
    from onnxlab.snn.simulate import simulate

    built = state["nengo"] = to_nengo(state["snn_path"])
    started = time.perf_counter()
    (series,) = simulate(built, case.x[:settings.n_spiking], n_steps=settings.n_steps, filtered=True).values()
    state["spiking"] = series
    seconds = time.perf_counter() - started
    ok = bool(np.all(np.isfinite(series)))
    return Outcome(ok, f"{len(series)} inputs x {settings.n_steps} steps in {seconds:.1f} s, "
                       f"{len(built.ensembles)} ensembles, {'finite' if ok else 'NON-FINITE'} outputs", seconds)


def _codegen(case: ForeignFile, settings: Settings, state: dict) -> Outcome:
    from onnxlab.snn.codegen import run_script, to_nengo_code
    from onnxlab.snn.simulate import simulate
    script = state["snn_path"].with_suffix(".py")
    script.write_text(to_nengo_code(state["snn_path"]))
    built = state.get("nengo")
    if built is None:
        from onnxlab import to_nengo

        built = to_nengo(state["snn_path"])
    generated = run_script(script, built)
    x = case.x[:settings.n_spiking]
    (ours,) = simulate(built, x, n_steps=settings.n_steps).values()
    (theirs,) = simulate(generated, x, n_steps=settings.n_steps).values()
    same = bool(np.array_equal(ours, theirs))
    lines = script.read_text().count("\n")
    diff = float(np.abs(ours - theirs).max())
    return Outcome(same, f"{lines}-line script; spiking outputs {'identical' if same else 'DIFFER'} "
                         f"(max |Δ| {diff:.2g})", diff)


def _weights(network: Any) -> list[np.ndarray]:
    """The network's trainable connection weights (Conv, Dense), then every ensemble's gain and bias, in order."""
    import nengo

    arrays = [np.asarray(c.transform.init) for c in network.all_connections
              if isinstance(c.transform, (nengo.Convolution, nengo.Dense)) and np.ndim(c.transform.init) >= 2
              and network.config[c].trainable is not False]
    for ens in network.all_ensembles:
        arrays += [np.asarray(ens.gain), np.asarray(ens.bias)]
    return arrays


def _in_order(wanted: list[np.ndarray], found: list[np.ndarray]) -> int:
    """How many of ``wanted`` appear bit for bit in ``found``, in order (extra arrays in ``found`` allowed)."""
    position, matched = 0, 0
    for array in wanted:
        while position < len(found) and not (found[position].shape == array.shape
                                             and np.array_equal(found[position], array)):
            position += 1
        if position == len(found):
            break
        matched, position = matched + 1, position + 1
    return matched


def _round_trip(case: ForeignFile, settings: Settings, state: dict) -> Outcome:
    """ONNX-SNN -> Nengo -> ONNX-SNN -> Nengo: every weight comes back bit for bit, and the outputs agree.

    Structural transforms that are not selections (pooling, reductions) come back as MatMul weights,
    so the second network may have more dense connections than the first; the first's weights must
    all appear in it, in order.
    """
    from onnxlab import from_nengo, to_nengo
    from onnxlab.runtime import ort_session
    from onnxlab.snn.simulate import softmax

    built = state.get("nengo") or to_nengo(state["snn_path"])
    exported = from_nengo(built)
    before, after = _weights(built.network), _weights(to_nengo(exported).network)
    matched = _in_order(before, after)
    original, back = ort_session(str(state["snn_path"])), ort_session(exported)
    (y0,) = original.run(None, {original.get_inputs()[0].name: case.x})
    (y1,) = back.run(None, {back.get_inputs()[0].name: case.x})
    y0 = y0.reshape(len(y0), -1)
    if built.softmax_dropped:  # Nengo (and so the export) ends at the logits
        y1 = softmax(y1)
    diff = float(np.abs(y0 - y1.reshape(y0.shape)).max())
    ok = matched == len(before) and diff <= OUTPUT_ATOL + OUTPUT_RTOL * float(np.abs(y0).max())
    return Outcome(ok, f"{matched}/{len(before)} weight tensors back bit for bit; ONNX Runtime outputs differ "
                       f"by {diff:.2g}", diff)


#: Step name -> function(case, settings, state) -> Outcome.
STEP_FUNCTIONS: dict[str, Callable[[ForeignFile, Settings, dict], Outcome]] = {
    "classify": _classify, "onnxruntime": _onnxruntime, "to_snn": _to_snn, "checker": _checker,
    "nengo_rate": _nengo_rate, "spiking": _spiking, "codegen": _codegen, "round_trip": _round_trip,
}
