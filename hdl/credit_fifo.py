"""A first-in first-out queue in LUT RAM for a writer that holds a credit: no write is refused.

The core's result FIFO takes the PPU's result beats, which cannot wait (the issuer's credit
guarantees room, proven in flow/formal_core.py). Amaranth's ``SyncFIFO`` ands every write with
its ``w_rdy``, compared from its level, and that net reached the write enables of all the FIFO's
LUT-RAM cells across the die (the default build's critical path at two nextpnr seeds,
docs/performance.md). Here the write enable is the writer's ``valid`` alone, and ``w_stream.ready``
(not full) is a register the writer may look at (a stream handshake that can wait) or prove.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["CreditFIFO"]


class CreditFIFO(wiring.Component):
    """First-in first-out queue of ``depth`` entries of ``width`` bits; writes are never refused.

    A payload written in one cycle is readable (``r_stream.valid``) from the next; ``r_stream``'s
    payload is the oldest entry, read combinationally from LUT RAM (first word fall-through), and
    leaves with the ``r_stream`` handshake. A write (``w_stream.valid``) while the queue holds
    ``depth`` entries and none leaves overwrites the oldest entry: the writer keeps count.

    Parameters
    ----------
    width : int
        Bits per entry.
    depth : int
        Entries (at least 1).

    Members
    -------
    w_stream : In(stream.Signature(width))
        Writes: ``valid`` writes ``payload`` this cycle; ``ready`` (a register) is 1 while the
        queue is not full and gates nothing.
    r_stream : Out(stream.Signature(width))
        The oldest entry (``valid`` a comparison of the level register with 0).
    level : Out(range(depth + 1))
        Entries held.
    """

    def __init__(self, width: int, depth: int):
        for name, value in (("width", width), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self._MustUse__silence = True  # refused: never elaborated, no "unused" warning
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.width, self.depth = width, depth
        super().__init__({"w_stream": In(stream.Signature(width)), "r_stream": Out(stream.Signature(width)),
                          "level": Out(range(depth + 1))})

    @property
    def w_rdy(self):
        """Not full (``w_stream.ready``), as ``SyncFIFO.w_rdy``."""
        return self.w_stream.ready

    @property
    def r_rdy(self):
        """Not empty (``r_stream.valid``), as ``SyncFIFO.r_rdy``."""
        return self.r_stream.valid

    def elaborate(self, platform):
        m = Module()
        # A power-of-two number of slots, so that the pointers wrap by themselves (the LUT RAM is
        # built from 16-entry cells: up to 16 entries cost what 16 do).
        slots = 1 << (self.depth - 1).bit_length()
        m.submodules.storage = storage = Memory(shape=self.width, depth=slots, init=[],
                                                attrs={"ram_style": "distributed"})
        write, read = storage.write_port(), storage.read_port(domain="comb")
        head, tail = Signal(range(slots)), Signal(range(slots))
        writes = self.w_stream.valid
        reads = self.r_stream.valid & self.r_stream.ready
        m.d.comb += [write.addr.eq(tail), write.data.eq(self.w_stream.payload), write.en.eq(writes),
                     read.addr.eq(head), self.r_stream.payload.eq(read.data),
                     self.r_stream.valid.eq(self.level != 0)]
        level_after = Signal.like(self.level)
        not_full = Signal(init=1)
        m.d.comb += [level_after.eq(self.level + writes - reads), self.w_stream.ready.eq(not_full)]
        m.d.sync += [self.level.eq(level_after), not_full.eq(level_after != self.depth)]
        with m.If(writes):
            m.d.sync += tail.eq(tail + 1)
        with m.If(reads):
            m.d.sync += head.eq(head + 1)
        return m
