"""The ``onnxlab`` command line. Each subcommand is one entry of `COMMANDS`.

Errors raised on purpose (`onnxlab.errors.OnnxlabError`) and missing input files are printed as
one ``error: ...`` line with exit status 1 — never a traceback — and no partial output is left.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from onnxlab.errors import OnnxlabError

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


@dataclass(frozen=True)
class Command:
    """A subcommand: its help line, how it declares its arguments, and what it runs."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "convert": Command("convert a saved Keras model to ONNX (in a child process)", _add_convert, _convert),
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


if __name__ == "__main__":
    sys.exit(main())
