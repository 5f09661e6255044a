"""The ``onnxlab`` command line. Each subcommand is one entry of `COMMANDS`.

Errors raised on purpose (`onnxlab.errors.OnnxlabError`) and missing input files are printed as
one ``error: ...`` line with exit status 1 — never a traceback — and no partial output is left.
TensorFlow's, NengoDL's and TF-TRT's warnings are silenced (`onnxlab.reproducibility.quiet`)
unless ``--verbose`` is given.
Unexpected exceptions (bugs) also print one line, with exit status 3; ``ONNXLAB_DEBUG=1`` shows
their traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from onnxlab.errors import OnnxlabError

#: Environment variable that makes unexpected errors show their traceback.
DEBUG_ENV = "ONNXLAB_DEBUG"
#: File suffixes `onnxlab convert` accepts, by framework.
KERAS_SUFFIXES = (".h5", ".keras")


def _convert(args: argparse.Namespace) -> int:
    from onnxlab.convert.keras import convert_file

    source, target = Path(args.model), Path(args.output)
    if source.suffix not in KERAS_SUFFIXES:
        raise OnnxlabError(f"{source}: expected a Keras model file ({', '.join(KERAS_SUFFIXES)})")
    if not source.is_file():
        raise OnnxlabError(f"{source}: no such file")
    if target.suffix != ".onnx":
        raise OnnxlabError(f"{target}: the output file must end in .onnx")
    target.parent.mkdir(parents=True, exist_ok=True)
    convert_file(source, target)
    print(f"wrote {target}")
    return 0


def _add_convert(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="Keras model file (.h5 or .keras)")
    parser.add_argument("output", help="ONNX file to write")


def _parse_params(pairs: list[str]) -> dict[str, float]:
    params = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            params[name] = float(value)
        except ValueError:
            name = ""
        if not name:
            raise OnnxlabError(f"--param {pair!r}: expected NAME=NUMBER, e.g. amplitude=0.01")
    return params


def _to_snn(args: argparse.Namespace) -> int:
    from onnxlab.formats import save_model
    from onnxlab.snn import Simulation, to_snn

    simulation = Simulation(dt=args.dt, n_steps=args.n_steps,
                            synapse=None if args.synapse < 0 else args.synapse, layer_synapse=args.layer_synapse)
    snn = to_snn(args.model, args.neuron, params=_parse_params(args.param), max_rates=args.max_rates,
                 intercepts=args.intercepts, simulation=simulation)
    save_model(snn, args.output)
    replaced = sum(1 for n in snn.graph.node if n.op_type == args.neuron)
    print(f"wrote {args.output}: {replaced} activation(s) replaced by {args.neuron}")
    return 0


def _add_to_snn(parser: argparse.ArgumentParser) -> None:
    from onnxlab.snn import NEURONS, Simulation

    defaults = Simulation()
    parser.add_argument("model", help="ONNX file")
    parser.add_argument("output", help="ONNX-SNN file to write")
    parser.add_argument("--neuron", default="LIF", help=f"neuron op: {', '.join(NEURONS)} (default LIF)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="neuron parameter, repeatable (e.g. --param amplitude=0.01)")
    parser.add_argument("--max-rates", type=float, default=None, help="ensemble max firing rate, Hz")
    parser.add_argument("--intercepts", type=float, default=None, help="ensemble intercept")
    parser.add_argument("--dt", type=float, default=defaults.dt, help="simulation time step, s")
    parser.add_argument("--n-steps", type=int, default=defaults.n_steps, help="steps per input")
    parser.add_argument("--synapse", type=float, default=defaults.synapse,
                        help="output probe synapse, s (negative: none)")
    parser.add_argument("--layer-synapse", type=float, default=None,
                        help="lowpass on every connection out of a neuron layer, s (default: none)")


def _to_spiking_onnx(args: argparse.Namespace) -> int:
    from onnxlab.formats import load_model, save_model
    from onnxlab.snn import is_legacy, to_spiking_onnx, upgrade

    model = load_model(args.model, check=False)  # checked after any upgrade, by to_spiking_onnx
    if is_legacy(model):  # as `onnxlab run --engine onnxruntime-spiking` does
        model, changes = upgrade(model)
        for change in changes:
            print(f"legacy ONNX-SNN file upgraded in memory: {change}")
    synapse = "file" if args.synapse is None else (None if args.synapse < 0 else args.synapse)
    compiled = to_spiking_onnx(model, n_steps=args.n_steps, dt=args.dt, synapse=synapse, record=args.record,
                               initial_state=args.initial_state, time_varying_input=args.time_varying_input,
                               form=args.form)
    save_model(compiled, args.output)
    outputs = ", ".join(f"{o.name} {[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]}"
                        for o in compiled.graph.output)
    what = "a plain ONNX time loop" if args.form == "loop" else f"the time loop unrolled ({args.form})"
    print(f"wrote {args.output}: {what}, ONNX Runtime alone runs it; outputs {outputs}")
    return 0


def _add_to_spiking_onnx(parser: argparse.ArgumentParser) -> None:
    from onnxlab.snn.spiking_onnx import EXACT_DISABLED_OPTIMIZERS, FORMS, INITIAL_STATES

    parser.add_argument("model", help="ONNX-SNN file")
    parser.add_argument("output", help="ONNX file to write")
    parser.add_argument("--n-steps", type=int, default=None, help="steps per input (default: the file's)")
    parser.add_argument("--dt", type=float, default=None, help="time step, s (default: the file's)")
    parser.add_argument("--synapse", type=float, default=None,
                        help="output probe synapse, s (negative: raw outputs; default: the file's)")
    parser.add_argument("--record", nargs="+", default=[], metavar="NODE",
                        help="neuron nodes whose spikes to output as NODE/spikes")
    parser.add_argument("--initial-state", choices=INITIAL_STATES, default="rest",
                        help="neurons start at rest, or where Nengo's seeded build starts them")
    parser.add_argument("--time-varying-input", action="store_true",
                        help="the input is (N, n_steps, ...), one slice per step (default: constant presentation)")
    parser.add_argument("--form", choices=FORMS, default="loop",
                        help="one ONNX Loop (compact, fast to load) or the step written out n_steps times (runs "
                             "somewhat faster, loads slowly; disable ONNX Runtime's "
                             f"{' and '.join(EXACT_DISABLED_OPTIMIZERS)} to keep every spike)")


def _upgrade(args: argparse.Namespace) -> int:
    from onnxlab.formats import save_model
    from onnxlab.snn import upgrade

    model, changes = upgrade(args.model)
    save_model(model, args.output)
    for change in changes:
        print(f"upgraded: {change}")
    print(f"wrote {args.output}")
    return 0


def _add_upgrade(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX-SNN file of the original tool (neuron ops in the default domain)")
    parser.add_argument("output", help="upgraded ONNX-SNN file to write")


def _to_nengo_code(args: argparse.Namespace) -> int:
    from onnxlab.snn.codegen import to_nengo_code

    code = to_nengo_code(args.model, max_pool=args.max_pool)
    if args.output:
        from onnxlab.formats import save_text

        save_text(code, args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(code)
    return 0


def _add_to_nengo_code(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX-SNN file")
    parser.add_argument("-o", "--output", help="write the script here instead of standard output")
    parser.add_argument("--max-pool", choices=["average", "error"], default="average",
                        help="MaxPool: replace by average pooling (default) or refuse")


def _classify(args: argparse.Namespace) -> int:
    import json

    from onnxlab.classify import classify

    rows, failed = [], 0
    for file in args.files:
        try:
            evidence = classify(file)
        except OnnxlabError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        rows.append(dict(file=file, **evidence.as_dict()))
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        header = ("file", "kind", "rule", "domains", "spiking ops", "producer")
        table = [(r["file"], r["kind"] + (f" (also {'/'.join(r['also'])})" if r["also"] else ""), r["rule"],
                  ", ".join(f"{d}:{n}" for d, n in r["domains"].items()), ", ".join(r["spiking_ops"]) or "-",
                  r["producer"] or "-") for r in rows]
        widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
        for row in [header, *table]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 1 if failed else 0


def _add_classify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="ONNX files")
    parser.add_argument("--json", action="store_true", help="print the evidence as JSON")


def _load_inputs(specs: list[str]) -> dict[str, object] | object:
    """``--input x.npy`` (the only input) or ``--input name=x.npy`` (repeatable); .npz gives names."""
    import numpy as np

    named, single = {}, None
    for spec in specs:
        name, _, file = spec.rpartition("=") if "=" in spec else ("", "", spec)
        path = Path(file)
        if not path.is_file():
            raise OnnxlabError(f"--input {spec}: no such file {path}")
        try:
            loaded = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise OnnxlabError(f"--input {spec}: not a .npy/.npz array file ({type(exc).__name__})") from None
        if isinstance(loaded, np.lib.npyio.NpzFile):
            named.update({k: loaded[k] for k in loaded.files})
        elif name:
            named[name] = loaded
        elif single is None and len(specs) == 1:
            single = loaded
        else:
            raise OnnxlabError(f"--input {spec}: with several inputs, name each one (--input NAME=FILE.npy)")
    return single if single is not None else named


def _run(args: argparse.Namespace) -> int:
    from onnxlab.inference import FROM_FILE, run

    if args.output and Path(args.output).suffix not in (".npy", ".npz"):
        raise OnnxlabError(f"--output {args.output}: must end in .npy (one output) or .npz (all outputs)")
    synapse = FROM_FILE if args.synapse is None else (None if args.synapse < 0 else args.synapse)
    result = run(args.model, _load_inputs(args.input), engine=args.engine, n_steps=args.n_steps, synapse=synapse,
                 progress_bar=sys.stderr.isatty() or args.progress)
    print(f"{args.model}: {result.kind} model, ran on {result.engine} in {result.seconds:.3g} s")
    for note in result.notes:
        print(f"note: {note}")
    for name, value in result.outputs.items():
        print(f"  {name}: {value.dtype} {tuple(value.shape)}")
    if args.output:
        from onnxlab.formats import save_arrays

        if Path(args.output).suffix == ".npy" and len(result.outputs) != 1:
            raise OnnxlabError(f"--output {args.output}: the model has {len(result.outputs)} outputs; use a .npz file")
        save_arrays(result.outputs, args.output)
        print(f"wrote {args.output}")
    return 0


def _add_run(parser: argparse.ArgumentParser) -> None:
    from onnxlab.inference import DEFAULT_ENGINES, ENGINES

    parser.add_argument("model", help="ONNX or ONNX-SNN file")
    parser.add_argument("--engine", choices=list(ENGINES), default=None,
                        help="; ".join(f"{e.name}: {'/'.join(sorted(e.kinds))}" for e in ENGINES.values())
                        + " (default: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_ENGINES.items()) + ")")
    parser.add_argument("--input", action="append", required=True, metavar="[NAME=]FILE",
                        help="input array (.npy; NAME=FILE.npy per input, or one .npz with every input)")
    parser.add_argument("--output", help="write the outputs: .npy (single output) or .npz")
    parser.add_argument("--n-steps", type=int, default=None, help="SNN: simulation steps per sample (default: file)")
    parser.add_argument("--synapse", type=float, default=None,
                        help="SNN: output synapse in s, negative for none (default: file)")
    parser.add_argument("--progress", action="store_true", help="SNN: show a progress bar even when not on a tty")


def _info(args: argparse.Namespace) -> int:
    import json

    from onnxlab.inference import info

    summary = info(args.model)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['file']}: {summary['kind']} ({summary['rule']})")
    print(f"  producer {summary['producer'] or '-'}, IR version {summary['ir_version']}, opsets "
          + ", ".join(f"{d} {v}" for d, v in summary["opsets"].items()))
    for role in ("inputs", "outputs"):
        for v in summary[role]:
            print(f"  {role[:-1]:6} {v['name']}: {v['type']} {v['dims']}")
    size = "-" if summary["size_bytes"] is None else f"{summary['size_bytes'] / 2**20:.3g} MiB"
    print(f"  {summary['nodes']} nodes, {summary['parameters']:,} parameters, {size} on disk")
    return 0


def _add_info(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX file")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _view(args: argparse.Namespace) -> int:
    import netron as _netron

    from onnxlab.viz import netron

    view = netron(args.model, port=args.port)
    print(f"Netron is serving {view.path} at {view.url} (Ctrl-C stops it)", flush=True)
    if args.no_wait:
        return 0
    try:
        _netron.wait()
    except KeyboardInterrupt:
        pass
    finally:
        view.stop()
    return 0


def _add_view(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX file (ONNX-SNN files show their neuron ops)")
    parser.add_argument("--port", type=int, default=None, help="localhost port (default: a free one)")
    parser.add_argument("--no-wait", action="store_true", help=argparse.SUPPRESS)  # tests: serve and return


def _quantize(args: argparse.Namespace) -> int:
    import numpy as np

    from onnxlab.quantize import QUANTIZATION_MODES, QuantizationSettings, quantize

    calibration = None
    if QUANTIZATION_MODES[args.mode].needs_calibration:
        if args.calibration_data is None:
            raise OnnxlabError(f"--mode {args.mode} needs --calibration-data FILE.npy (samples for the model's input)")
        calibration = _load_inputs([args.calibration_data])
        if not isinstance(calibration, np.ndarray):
            raise OnnxlabError(f"--calibration-data {args.calibration_data}: expected one array (.npy)")
    settings = QuantizationSettings(mode=args.mode, calibration=args.calibration, per_channel=args.per_channel,
                                    n_calibration=args.n_calibration, reduce_range=args.reduce_range,
                                    op_types=tuple(args.op_types) if args.op_types else None,
                                    nodes_to_exclude=tuple(args.exclude))
    result = quantize(args.model, args.output, calibration, settings)
    source_size = Path(args.model).stat().st_size
    print(f"wrote {result.path} ({result.settings.label}): {result.size_bytes / 1e6:.3f} MB, "
          f"{source_size / result.size_bytes:.2f}x smaller than {args.model}")
    print(f"ONNX Runtime kernels: {result.kernels.summary()}")
    for note in result.notes:
        print(f"  - {note}")
    return 0


def _add_quantize(parser: argparse.ArgumentParser) -> None:
    from onnxlab.quantize import CALIBRATION_METHODS, QUANTIZATION_MODES, QuantizationSettings

    defaults = QuantizationSettings()
    parser.add_argument("model", help="float ONNX file")
    parser.add_argument("output", help="ONNX file to write (never the input)")
    parser.add_argument("--mode", choices=list(QUANTIZATION_MODES), default=defaults.mode,
                        help="; ".join(f"{m.name}: {m.description}" for m in QUANTIZATION_MODES.values()))
    parser.add_argument("--calibration", choices=list(CALIBRATION_METHODS), default=defaults.calibration,
                        help="how activation ranges are chosen (static mode)")
    parser.add_argument("--calibration-data", metavar="FILE.npy",
                        help="samples for the model's input, shape (N, ...) (static mode)")
    parser.add_argument("--n-calibration", type=int, default=defaults.n_calibration,
                        help=f"samples of the calibration data used (default {defaults.n_calibration})")
    parser.add_argument("--per-channel", action="store_true", help="one weight scale per output channel")
    parser.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None,
                        help="7-bit weights (default: on exactly where the CPU lacks VNNI)")
    parser.add_argument("--op-types", nargs="+", metavar="OP", help="op types to quantize (default: all "
                        "supported; dynamic mode: MatMul Gemm)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="NODE", help="node names to keep in float")


@dataclass(frozen=True)
class Command:
    """A subcommand: its help line, how it declares its arguments, and what it runs."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "convert": Command("convert a saved Keras model to ONNX (in a child process)", _add_convert, _convert),
    "to-snn": Command("replace the activations of an ONNX model by spiking neuron ops (ONNX-SNN)",
                      _add_to_snn, _to_snn),
    "to-spiking-onnx": Command("compile an ONNX-SNN model to a plain ONNX time loop that spikes in ONNX Runtime",
                               _add_to_spiking_onnx, _to_spiking_onnx),
    "upgrade": Command("upgrade a legacy ONNX-SNN file to the valid encoding", _add_upgrade, _upgrade),
    "classify": Command("tell ML, DL and SNN models apart (reads the graph, runs nothing)", _add_classify, _classify),
    "run": Command("run a model on an engine for its kind (ONNX Runtime; SNN: NengoDL or ONNX Runtime spiking)",
                   _add_run, _run),
    "info": Command("opsets, inputs/outputs, parameter count and size of a model", _add_info, _info),
    "view": Command("serve a model in Netron on localhost and print its address", _add_view, _view),
    "quantize": Command("post-training quantization with ONNX Runtime (dynamic or static QDQ int8)",
                        _add_quantize, _quantize),
    "to-nengo-code": Command("print a Python script that builds the ONNX-SNN model's network with the nengo API",
                             _add_to_nengo_code, _to_nengo_code),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onnxlab", description="Move models between frameworks through ONNX.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        subparser = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(subparser)
        subparser.add_argument("--verbose", action="store_true",
                               help="show the warnings and logs of TensorFlow, NengoDL and ONNX Runtime")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:  # before any framework is imported: their import-time warnings are noise here
        from onnxlab.reproducibility import quiet

        quiet()
    try:
        return COMMANDS[args.command].run(args)
    except OnnxlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug, not bad input: still one line, traceback on request
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"error: internal error in `onnxlab {args.command}`: {type(exc).__name__}: {exc} "
              f"(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
