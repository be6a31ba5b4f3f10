"""The ``microscopiq`` console command.

Each area contributes its subcommands through an ``add_commands(subparsers)`` function in its own
module (listed in :data:`COMMAND_MODULES`); a subcommand sets ``func(args) -> int``.

Errors a user can cause (bad parameters, bad files, unwritable output) are ``ValueError``
subclasses: they print one line ``microscopiq: error: …`` and exit with status 2. Anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

#: Modules that add subcommands, in the order they appear in ``--help``.
COMMAND_MODULES = [
    "microscopiq.flow.generate",
    "microscopiq.tb.sim_cli",
    "microscopiq.tb.run_model",
    "microscopiq.flow.synth_cli",
    "microscopiq.quant.cli",
]

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="microscopiq",
        description="MicroScopiQ accelerator generator: generate Verilog, quantize models into the "
                    "accelerator's weight format, simulate and synthesise.",
        epilog="Run 'microscopiq COMMAND --help' for the options of one command.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as error:
        # ConfigError, LayerError, FormatError, OutputError, ...: the user's input, not a bug.
        print(f"microscopiq: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        print(f"microscopiq: error: {error.strerror or error}: {error.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
