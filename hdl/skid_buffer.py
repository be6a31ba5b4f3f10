"""A two-entry stream buffer with registered output and registered ``i.ready`` (a skid buffer).

The core's loader puts row beats through one on their way into the array's shadow banks: the
array may refuse a row for a while (row 0 of a tile waits for the tile before to start), and the
buffer keeps taking one row per cycle meanwhile, up to two, without any path from ``o.ready`` to
``i.ready``.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Two-entry first-in first-out stream buffer.

    Latency 1 cycle (a payload taken on ``i`` is on ``o`` in the next cycle), throughput one
    payload per cycle. ``i.ready`` is a register (1 while the buffer holds fewer than two
    payloads) and ``o.payload`` comes from a register; ``o.ready`` reaches only the head register's
    enable and the spare's valid flag.

    Parameters
    ----------
    layout : data.Layout
        Payload layout of both streams.

    Members
    -------
    i : In(stream.Signature(layout))
        Payloads in.
    o : Out(stream.Signature(layout))
        The same payloads, in order.
    """

    #: Payloads held.
    DEPTH = 2
    #: Cycles from ``i`` to ``o``.
    LATENCY = 1

    def __init__(self, layout):
        if not isinstance(layout, data.Layout):
            self._MustUse__silence = True  # refused: never elaborated, no "unused" warning
            raise TypeError(f"layout must be an amaranth.lib.data.Layout, not {layout!r}")
        self.layout = layout
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        spare = Signal(self.layout)
        spare_valid = Signal()
        taken = self.i.valid & self.i.ready
        leaves = self.o.valid & self.o.ready
        m.d.comb += self.i.ready.eq(~spare_valid)
        # The spare takes the input in every cycle it is empty (what it holds then is never read):
        # its enable is the register ``spare_valid``, so ``o.ready`` reaches only the head's enable
        # and ``spare_valid``, not the spare's payload (in the core the buffers are wide and their
        # payload registers spread across the chip: a handshake there was a long net).
        with m.If(~spare_valid):
            m.d.sync += spare.eq(self.i.payload)
        with m.If(self.o.valid & ~leaves):
            # The head stays; a payload taken now waits behind it (the spare was empty).
            with m.If(taken):
                m.d.sync += spare_valid.eq(1)
        with m.Else():
            # The head is empty or leaves: the older of spare and input moves up.
            m.d.sync += [self.o.payload.eq(Mux(spare_valid, spare.as_value(), self.i.payload.as_value())),
                         self.o.valid.eq(spare_valid | taken), spare_valid.eq(0)]
        return m
