"""The ``onnxlab`` command line. Each subcommand is one entry of `COMMANDS`.

Errors raised on purpose (`onnxlab.errors.OnnxlabError`) and missing input files are printed as
one ``error: ...`` line with exit status 1 — never a traceback — and no partial output is left.
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
                            synapse=None if args.synapse < 0 else args.synapse)
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
    "upgrade": Command("upgrade a legacy ONNX-SNN file to the valid encoding", _add_upgrade, _upgrade),
    "to-nengo-code": Command("print a Python script that builds the ONNX-SNN model's network with the nengo API",
                             _add_to_nengo_code, _to_nengo_code),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onnxlab", description="Move models between frameworks through ONNX.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
