"""The ``microscopiq`` console command.

Each area contributes its subcommands through an ``add_commands(subparsers)`` function in its own
module (listed in :data:`COMMAND_MODULES`); a subcommand sets ``func(args) -> int``.

Errors a user can cause (bad parameters, bad files, unwritable output) are ``ValueError``
subclasses: they print one line ``microscopiq: error: …`` and exit with status 2. Anything else is
a bug and keeps its traceback.

SIGINT (Ctrl-C) and SIGTERM (``kill``, ``timeout``, a cancelled CI job) unwind the command like an
exception, so every staging folder is removed (:mod:`microscopiq.outputs`); they print one line
``microscopiq: interrupted by SIGINT|SIGTERM`` and exit with ``128 + signal``
(130, 143), as a shell reports a process the signal killed.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

#: Modules that add subcommands, in the order they appear in ``--help``.
COMMAND_MODULES = [
    "microscopiq.flow.generate",
    "microscopiq.tb.sim_cli",
    "microscopiq.flow.synth_cli",
    "microscopiq.quant.cli",
]

EXIT_USAGE = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, like ``KeyboardInterrupt`` for SIGINT."""


def _raise_terminated(signum, frame):
    raise Terminated()


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
    # signal.signal works in the main thread only (main() may be called from a worker's).
    handles_term = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if handles_term else None
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as interrupt:
        signum = signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT
        print(f"microscopiq: interrupted by {signum.name}", file=sys.stderr)
        return 128 + signum
    except ValueError as error:
        # ConfigError, LayerError, FormatError, OutputError, ...: the user's input, not a bug.
        print(f"microscopiq: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        print(f"microscopiq: error: {error.strerror or error}: {error.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return EXIT_USAGE
    finally:
        if handles_term:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
