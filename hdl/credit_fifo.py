"""A first-in first-out queue in LUT RAM for a writer that holds a credit: no write is refused.

The core's result FIFO takes the PPU's result beats, which cannot wait (the issuer's credit
guarantees room, proven in flow/formal_core.py). Amaranth's ``SyncFIFO`` ands every write with
its ``w_rdy``, compared from its level, and that net reached the write enables of all the FIFO's
LUT-RAM cells across the die (the default build's critical path at two nextpnr seeds,
docs/performance.md). Here the write enable is the writer's ``valid`` alone, and ``w_stream.ready``
(not full) is a register the writer may look at (a stream handshake that can wait) or prove.

With ``lanes`` > 1 the entry is split into that many memories, each written by its own copy of the
writer's ``valid`` (``w_lanes``) at its own copy of the write pointer: one write-enable net reaching
every LUT-RAM cell of a wide entry was a path across the die (docs/performance.md, session 25).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .bits import mirrored

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
    lanes : int
        Memories the entry is split into (1 to ``width``), :attr:`lane_bounds` their bits.

    Members
    -------
    w_stream : In(stream.Signature(width))
        Writes: ``valid`` writes ``payload`` this cycle; ``ready`` (a register) is 1 while the
        queue is not full and gates nothing.
    r_stream : Out(stream.Signature(width))
        The oldest entry (``valid`` a comparison of the level register with 0).
    level : Out(range(depth + 1))
        Entries held.
    w_lanes : In(lanes)
        (``lanes`` > 1) Lane ``i``'s write enable: the writer's copy of ``w_stream.valid`` for
        lane ``i``, equal to it in every cycle (a register of the writer's beside the lane).
    w_rdy_lanes : Out(lanes)
        (``lanes`` > 1) Copies of ``w_stream.ready``, one per lane, for the writer's lane enables.
    """

    def __init__(self, width: int, depth: int, lanes: int = 1):
        for name, value in (("width", width), ("depth", depth), ("lanes", lanes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self._MustUse__silence = True  # refused: never elaborated, no "unused" warning
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if lanes > width:
            self._MustUse__silence = True
            raise ValueError(f"lanes must be at most the width ({width}), not {lanes}")
        self.width, self.depth, self.lanes = width, depth, lanes
        split = {"w_lanes": In(lanes), "w_rdy_lanes": Out(lanes)} if lanes > 1 else {}
        super().__init__({"w_stream": In(stream.Signature(width)), "r_stream": Out(stream.Signature(width)),
                          "level": Out(range(depth + 1)), **split})

    @property
    def lane_bounds(self) -> list[tuple[int, int]]:
        """``(low, high)`` bits of the entry per lane, ``width`` split as evenly as it goes."""
        edges = [self.width * i // self.lanes for i in range(self.lanes + 1)]
        return list(zip(edges, edges[1:]))

    @property
    def w_rdy(self):
        """Not full (``w_stream.ready``), as ``SyncFIFO.w_rdy``."""
        return self.w_stream.ready

    @property
    def r_rdy(self):
        """Not empty (``r_stream.valid``), as ``SyncFIFO.r_rdy``."""
        return self.r_stream.valid

    def _differs(self, value: int):
        """``level != value``; 1 where ``level`` cannot hold ``value`` (a constant comparison
        Verilator's lint refuses)."""
        return self.level != value if value < 1 << len(self.level) else Const(1, 1)

    def elaborate(self, platform):
        m = Module()
        # A power-of-two number of slots, so that the pointers wrap by themselves (the LUT RAM is
        # built from 16-entry cells: up to 16 entries cost what 16 do).
        slots = 1 << (self.depth - 1).bit_length()
        head, tail = Signal(range(slots)), Signal(range(slots))
        writes = self.w_stream.valid
        reads = self.r_stream.valid & self.r_stream.ready
        split = self.lanes > 1
        # Per lane its own copies of the pointers (lane 0 the registers themselves).
        tail_next, tails = mirrored(m, tail, self.lanes - 1)
        head_next, heads = mirrored(m, head, self.lanes - 1)
        enables = list(self.w_lanes) if split else [writes]
        read_data = []
        for i, ((low, high), write_at, read_at, enable) in enumerate(
                zip(self.lane_bounds, [tail, *tails], [head, *heads], enables)):
            m.submodules[f"storage_{i}" if split else "storage"] = storage = Memory(
                shape=high - low, depth=slots, init=[], attrs={"ram_style": "distributed"})
            write, read = storage.write_port(), storage.read_port(domain="comb")
            m.d.comb += [write.addr.eq(write_at), write.data.eq(self.w_stream.payload[low:high]),
                         write.en.eq(enable), read.addr.eq(read_at)]
            read_data.append(read.data)
        m.d.comb += [self.r_stream.payload.eq(Cat(*read_data)), self.r_stream.valid.eq(self.level != 0)]
        level_after = Signal.like(self.level)
        not_full = Signal(init=1)
        not_full_next, not_full_copies = mirrored(m, not_full, self.lanes - 1)
        # ``level_after != depth`` by cases of the handshakes, each a comparison of the level
        # register with a constant: no adder in front of the not-full copies.
        m.d.comb += [level_after.eq(self.level + writes - reads), self.w_stream.ready.eq(not_full),
                     not_full_next.eq(Mux(writes & ~reads, self.level != self.depth - 1,
                                          Mux(reads & ~writes, self._differs(self.depth + 1),
                                              self.level != self.depth)))]
        if split:
            m.d.comb += self.w_rdy_lanes.eq(Cat(not_full, *not_full_copies))
        m.d.sync += self.level.eq(level_after)
        with m.If(writes):
            m.d.comb += tail_next.eq(tail + 1)
        with m.If(reads):
            m.d.comb += head_next.eq(head + 1)
        return m
