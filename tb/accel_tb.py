"""cocotb testbench of the generated accelerator top level (:class:`~microscopiq.hdl.top.Accelerator`).

:class:`TB` is the usual cocotbext-axi arrangement: it starts the clock, drives ``s_axis_weights``
and ``s_axis_act`` with :class:`~cocotbext.axi.AxiStreamSource`, takes ``m_axis_result`` with an
:class:`~cocotbext.axi.AxiStreamSink` (all built by prefix with
:meth:`AxiStreamBus.from_prefix`), and offers :meth:`TB.reset`, pause generators for idle cycles
and back-pressure, and :meth:`TB.run_layer`, which streams one :class:`~microscopiq.tb.stimulus.Case`
(encoded by the host driver :mod:`microscopiq.host.stream_format`) and returns its decoded results
and the cycles it took.

:class:`Scoreboard` compares every result integer with the golden model
(:func:`~microscopiq.quant.golden.msq_matmul`, :func:`~microscopiq.quant.golden.uniform_raw`), never
with a re-derivation, and reports the layer, the index, the expected and actual integers and the seed.
"""

from __future__ import annotations

import itertools
import logging
import random
from dataclasses import dataclass, field

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from ..config import AccelConfig
from ..host import stream_format
from ..hdl.layouts import StreamLayouts
from ..hdl.soc import SocPorts
from ..quant.golden import msq_matmul, uniform_raw
from .stimulus import Case

__all__ = ["TB", "TB_CYCLES", "Scoreboard", "Mismatch", "LayerRun", "PAUSES", "PAUSE_PATTERNS",
           "pause_generator", "timeout_cycles", "frames_of", "beats_of", "saturation"]

CLOCK_PERIOD_NS = 10
#: :func:`~microscopiq.host.stream_format.predict_cycles` counts the cycle of the first weights
#: handshake as 0 and adds 2 after the last result leaves; the rising edges from the first weights
#: handshake to the last result handshake, plus this, give the same count.
TB_CYCLES = 1
#: Cycles of slack over :func:`~microscopiq.host.stream_format.predict_cycles` before a layer is
#: declared hung, and the factor covering pause generators (at most 3 cycles in 4 paused each).
TIMEOUT_SLACK_CYCLES = 2000
TIMEOUT_FACTOR = 8


# -- pause generators ------------------------------------------------------------------------------

def _random_pauses(seed: int, probability: float):
    rng = random.Random(seed)
    while True:
        yield rng.random() < probability


#: Pause patterns by name, as data (the native harness draws the same ones, tb/native.py): None,
#: a tuple of pause bits repeated for ever, or the probability of a pause in each cycle, drawn
#: from ``random.Random(seed)``.
PAUSE_PATTERNS = {
    "none": None,
    "cycle": (1, 1, 1, 0),   # cocotbext-axi's own test pattern
    "random": 0.3,
    "heavy": 0.5,
}


def _pause_factory(pattern):
    if pattern is None:
        return None
    if isinstance(pattern, tuple):
        return lambda seed: itertools.cycle(pattern)
    return lambda seed: _random_pauses(seed, pattern)


#: Pause patterns by name: ``fn(seed) -> iterator of bool`` (True = pause this cycle).
PAUSES = {name: _pause_factory(pattern) for name, pattern in PAUSE_PATTERNS.items()}


def pause_generator(name: str, seed: int):
    """The pause iterator called ``name`` in :data:`PAUSES` (``None`` for "none")."""
    try:
        factory = PAUSES[name]
    except KeyError:
        raise ValueError(f"pause must be one of {', '.join(PAUSES)}, not {name!r}") from None
    return None if factory is None else factory(seed)


def timeout_cycles(cfg: AccelConfig, layer, tokens: int) -> int:
    """Cycle limit for one layer: the predicted cycles, stretched for pauses, plus slack."""
    return stream_format.predict_cycles(cfg, layer, tokens) * TIMEOUT_FACTOR + TIMEOUT_SLACK_CYCLES


# -- beats <-> cocotbext-axi frames --------------------------------------------------------------

def frames_of(beats) -> list[list[int]]:
    """Split :class:`~microscopiq.host.stream_format.Beat` s into frames (lists of ``tdata``), one
    per ``tlast``.

    cocotbext-axi raises ``tlast`` on the last word of each frame, so the beats must end in one.
    """
    frames, current = [], []
    for beat in beats:
        current.append(int(beat.data))
        if beat.last:
            frames.append(current)
            current = []
    if current:
        raise ValueError(f"stream ends with {len(current)} beat(s) after the last tlast")
    return frames


def beats_of(frames) -> list[stream_format.Beat]:
    """The inverse of :func:`frames_of`: ``tlast`` on the last word of every frame."""
    return [stream_format.Beat(int(data), index == len(frame) - 1)
            for frame in frames for index, data in enumerate(frame)]


# -- scoreboard ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mismatch:
    """One wrong result integer."""

    layer: str
    what: str          # "y", "overflow", "P" or "S"
    index: tuple
    expected: int
    actual: int

    def __str__(self) -> str:
        return f"{self.layer}: {self.what}{list(self.index)} expected {self.expected}, got {self.actual}"


def assert_every_integer_checked(records: list[dict]) -> None:
    """The layer records of a cocotb run (``stats`` lines): every layer returned all its result
    integers (``Case.result_integers``) and each equalled the golden model's."""
    for record in records:
        assert record["mismatches"] == 0 and record["checked"] == record["result_integers"], (
            f"{record['name']}: {record['checked']} integers checked of {record['result_integers']}, "
            f"{record['mismatches']} mismatches, first {record['first_mismatch']}")


@dataclass
class Scoreboard:
    """Checks decoded results against the golden model; counts integers checked and mismatches."""

    cfg: AccelConfig
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("cocotb.tb.scoreboard"))
    checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    def expected(self, case: Case) -> dict[str, np.ndarray]:
        """The golden results of ``case``, unpadded: ``y``/``overflow`` (M, n) for MicroScopiQ,
        ``P`` (M, n, groups) and ``S`` (M, groups) for uniform mode."""
        n = case.layer.n
        if case.uniform:
            partial, sums = uniform_raw(case.x, case.layer)
            return {"P": partial[:, :n], "S": sums}
        result = msq_matmul(case.x, case.layer, self.cfg.acc_bits)
        return {"y": result.y_int[:, :n], "overflow": result.overflow[:, :n]}

    def check(self, case: Case, actual: dict[str, np.ndarray]) -> list[Mismatch]:
        """Compare every integer of ``actual`` with :meth:`expected`; return (and keep) mismatches."""
        found = []
        for what, want in self.expected(case).items():
            got = np.asarray(actual[what])
            if got.shape != want.shape:
                found.append(Mismatch(case.name, f"{what}.shape", (), want.shape, got.shape))
                continue
            want_i, got_i = want.astype(object), got.astype(object)
            self.checked += want.size
            for index in np.argwhere(want_i != got_i):
                index = tuple(int(i) for i in index)
                found.append(Mismatch(case.name, what, index, int(want_i[index]), int(got_i[index])))
        for mismatch in found[:10]:
            self.log.error("MISMATCH %s", mismatch)
        if found:
            self.log.error("%d of the layer's result integers wrong; %s", len(found), _pattern(found))
        self.mismatches.extend(found)
        return found

    def assert_clean(self) -> None:
        """Raise ``AssertionError`` naming the first mismatch and how many there were."""
        if self.mismatches:
            raise AssertionError(f"{len(self.mismatches)} mismatching result integer(s) of "
                                 f"{self.checked} checked; first: {self.mismatches[0]}")


def _pattern(found: list[Mismatch]) -> str:
    """Where the mismatches are, per result array and index position (tokens m, outputs n, ...)."""
    parts = []
    for what in dict.fromkeys(m.what for m in found):
        indices = [m.index for m in found if m.what == what]
        axes = ", ".join(f"axis {axis}: {_ranges(sorted({i[axis] for i in indices}))}"
                         for axis in range(len(indices[0])))
        parts.append(f"{what} ({len(indices)}) at {axes or 'shape'}")
    return "; ".join(parts)


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``"0-2,5"``."""
    spans, start = [], None
    for index, value in enumerate(values):
        if start is None:
            start = value
        if index + 1 == len(values) or values[index + 1] != value + 1:
            spans.append(f"{start}" if start == value else f"{start}-{value}")
            start = None
    return ",".join(spans)


# -- the testbench ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerRun:
    """What :meth:`TB.run_layer` observed: decoded results, the cycles from the first weights
    handshake to the last result handshake counted as :func:`~microscopiq.host.stream_format.predict_cycles`
    counts them, and the result beats."""

    results: dict[str, np.ndarray]
    cycles: int
    beats: int


class TB:
    """Testbench of the accelerator top level.

    Parameters
    ----------
    dut
        The cocotb handle of the top module.
    cfg : AccelConfig
        The configuration the Verilog was generated with (from its manifest).
    ports : SocPorts
        Its port options (the manifest's ``soc_ports``): clock and reset names, reset polarity and
        ``tdata`` padding (the padding is driven as zeros and must come back as zeros).
    """

    def __init__(self, dut, cfg: AccelConfig, ports: SocPorts = SocPorts()):
        self.dut = dut
        self.cfg = cfg
        self.log = logging.getLogger("cocotb.tb")
        self.log.setLevel(logging.INFO)
        self.clock = getattr(dut, ports.clock)
        self.reset_port = getattr(dut, ports.reset)
        self.reset_levels = (0, 1) if ports.reset_active_low else (1, 0)  # (asserted, released)
        cocotb.start_soon(Clock(self.clock, CLOCK_PERIOD_NS, unit="ns").start())
        # tdata is one word per beat (byte_lanes=1), whatever its width.
        streams = {}
        for prefix, port_class in (("s_axis_weights", AxiStreamSource), ("s_axis_act", AxiStreamSource),
                                   ("m_axis_result", AxiStreamSink)):
            streams[prefix] = port_class(AxiStreamBus.from_prefix(dut, prefix), self.clock, self.reset_port,
                                         reset_active_level=not ports.reset_active_low, byte_lanes=1)
        self.weights, self.act, self.result = streams.values()
        widths = StreamLayouts(cfg)
        for port, width in ((self.weights, widths.weights_width), (self.act, widths.act_width),
                            (self.result, widths.result_width)):
            port.log.setLevel(logging.WARNING)  # one INFO line per frame would drown the log
            if port.width != ports.tdata_width(width):
                raise AssertionError(f"{port.bus._name}_tdata is {port.width} bits wide, the stream "
                                     f"format of this configuration says {ports.tdata_width(width)}")
        self.cycle = 0
        self.weight_handshakes = 0
        self.first_weights = self.last_result = None
        cocotb.start_soon(self._count_cycles())
        cocotb.start_soon(self._check_resolved())

    async def _count_cycles(self) -> None:
        """Count rising edges and note the first weights handshake and the last result handshake
        (signals read at the edge hold the values the edge samples)."""
        edge = RisingEdge(self.clock)
        dut = self.dut
        while True:
            await edge
            self.cycle += 1
            if _handshake(dut, "s_axis_weights"):
                self.weight_handshakes += 1
                if self.first_weights is None:
                    self.first_weights = self.cycle
            if _handshake(dut, "m_axis_result"):
                self.last_result = self.cycle

    async def _check_resolved(self) -> None:
        """Fail on a result beat with X or Z bits (4-state simulators): a valid result must not
        depend on input ``tdata`` sampled while ``tvalid`` was low (the sources drive X there
        until their first beat, as cocotbext-axi does)."""
        edge = RisingEdge(self.clock)
        dut = self.dut
        while True:
            await edge
            released = str(self.reset_port.value) == str(self.reset_levels[1])
            if (released and str(dut.m_axis_result_tvalid.value) == "1"
                    and not dut.m_axis_result_tdata.value.is_resolvable):
                text = str(dut.m_axis_result_tdata.value)
                bad = [len(text) - 1 - i for i, bit in enumerate(text) if bit not in "01"]
                raise AssertionError(f"m_axis_result_tdata has {len(bad)} X/Z bit(s) in a valid beat at "
                                     f"cycle {self.cycle}: bits {_ranges(sorted(bad))}")

    @property
    def free_running(self) -> bool:
        """True when no pause generator is installed: every stream always valid and ready, the
        condition :func:`~microscopiq.host.stream_format.predict_cycles` assumes."""
        return all(port._pause_generator is None for port in (self.weights, self.act, self.result))

    def set_idle_generator(self, generator=None, act_generator=None) -> None:
        """Idle cycles on the inputs: ``generator`` on the weight stream, ``act_generator`` on the
        activation stream (``None``: never idle)."""
        _set_pauses(self.weights, generator)
        _set_pauses(self.act, act_generator)

    def set_backpressure_generator(self, generator=None) -> None:
        """Back-pressure on the result stream (``tready`` low while the generator yields True;
        ``None``: always ready)."""
        _set_pauses(self.result, generator)

    async def cycles(self, count: int) -> None:
        for _ in range(count):
            await RisingEdge(self.clock)

    async def weight_beats_taken(self, count: int) -> None:
        """Wait for the edge at which the ``count``-th weights beat since the last reset is taken."""
        while self.weight_handshakes < count:
            await RisingEdge(self.dut.clk)

    async def reset(self, cycles: int = 4) -> None:
        """Synchronous reset (at the reset port's active level) for ``cycles`` cycles; beats still queued in the sources
        and results taken before or during the reset are dropped."""
        self.reset_port.value = self.reset_levels[0]
        await self.cycles(cycles)
        for port in (self.weights, self.act, self.result):
            port.clear()
        self.reset_port.value = self.reset_levels[1]
        await self.cycles(2)
        self.result.clear()
        self.weight_handshakes = 0

    def timeout_cycles(self, case: Case) -> int:
        """Cycle limit for one layer (:func:`timeout_cycles`)."""
        return timeout_cycles(self.cfg, case.layer, case.tokens)

    def start_layer(self, case: Case) -> int:
        """Queue ``case``'s weight and activation beats; return the number of result beats due."""
        weight_beats, act_beats = stream_format.encode_layer(self.cfg, case.layer, case.x)
        for source, beats in ((self.weights, weight_beats), (self.act, act_beats)):
            for frame in frames_of(beats):
                source.send_nowait(AxiStreamFrame(frame))
        return stream_format.result_beat_count(self.cfg, case.layer, case.tokens)

    async def run_malformed(self, case: Case, spoil) -> list:
        """Stream ``case`` (one pass) with its weight beats changed by ``spoil`` (a function of the
        list of :class:`~microscopiq.host.stream_format.Beat` and the case's layer) and return the
        pass's result beats read as :attr:`StreamLayouts.result` (one frame: up to its ``tlast``)."""
        weight_beats, act_beats = stream_format.encode_layer(self.cfg, case.layer, case.x)
        for source, beats in ((self.weights, spoil(weight_beats, case.layer)), (self.act, act_beats)):
            for frame in frames_of(beats):
                source.send_nowait(AxiStreamFrame(frame))
        frame = await with_timeout(self.result.recv(), self.timeout_cycles(case) * CLOCK_PERIOD_NS, "ns")
        layout = StreamLayouts(self.cfg).result
        return [layout.from_bits(word) for word in frame.tdata]

    async def _take_beats(self, count: int) -> list[stream_format.Beat]:
        frames = []
        while sum(map(len, frames)) < count:
            frames.append(list((await self.result.recv()).tdata))
        width = StreamLayouts(self.cfg).result_width
        padded = [index for index, word in enumerate(w for frame in frames for w in frame) if word >> width]
        if padded:
            raise AssertionError(f"result beat {padded[0]} has bits set above the payload's {width} "
                                 f"(tdata padding must be zero)")
        return beats_of(frames)

    async def run_layer(self, case: Case) -> LayerRun:
        """Stream one layer through the accelerator and return its decoded results.

        Raises ``cocotb.triggers.SimTimeoutError`` if the results are not all out within
        :meth:`timeout_cycles` and ``AssertionError`` if more beats arrive than are due.
        """
        self.first_weights = None
        due = self.start_layer(case)
        beats = await with_timeout(self._take_beats(due), self.timeout_cycles(case) * CLOCK_PERIOD_NS, "ns")
        cycles = self.last_result - self.first_weights + TB_CYCLES
        if len(beats) != due:
            raise AssertionError(f"{case.name}: {len(beats)} result beats, {due} due "
                                 f"(a frame runs past the last beat due)")
        decoded = stream_format.decode_results(self.cfg, case.layer, case.tokens, beats)
        return LayerRun(_result_dict(case, decoded), cycles, len(beats))

    async def drained(self) -> None:
        """Wait until the inputs are idle and no result beat is left over."""
        await self.weights.wait()
        await self.act.wait()
        await self.cycles(50)
        if not self.result.empty():
            extra = self.result.recv_nowait()
            raise AssertionError(f"unexpected extra result frame of {len(extra.tdata)} beat(s)")


def _handshake(dut, prefix: str) -> bool:
    return str(getattr(dut, f"{prefix}_tvalid").value) == "1" and str(getattr(dut, f"{prefix}_tready").value) == "1"


def _set_pauses(port, generator) -> None:
    """Install a pause generator; ``None`` also releases a pause the old generator left on
    (cocotbext-axi keeps the last value, which would stall the port for good)."""
    port.set_pause_generator(generator)
    if generator is None:
        port.pause = False


def _result_dict(case: Case, decoded) -> dict[str, np.ndarray]:
    """:func:`stream_format.decode_results`'s tuple as the scoreboard's named arrays."""
    first, second = decoded
    return {"P": first, "S": second} if case.uniform else {"y": first, "overflow": second}


def saturation(case: Case, results: dict[str, np.ndarray]) -> tuple[int, int]:
    """``(outputs, overflowed)``: the layer's result integers (``M x n``) and those the accelerator
    flagged as saturated (MicroScopiQ mode's sticky overflow flag; uniform mode has none). Saturated
    outputs are correct (the golden model saturates too), but the user must see them."""
    flags = results.get("overflow")
    return case.tokens * case.layer.n, 0 if flags is None else int(np.count_nonzero(flags))
