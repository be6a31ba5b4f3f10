"""Two-entry stream buffers with registered ``i.ready``: a skid buffer (registered output) and a
ping-pong buffer (payload registers whose enables never see ``o.ready``).

The core's loader puts row beats through one on their way into the array's shadow banks: the
array may refuse a row for a while (row 0 of a tile waits for the tile before to start), and the
buffer keeps taking one row per cycle meanwhile, up to two, without any path from ``o.ready`` to
``i.ready``.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer", "PingPongBuffer"]


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


class PingPongBuffer(SkidBuffer):
    """Two-entry first-in first-out stream buffer whose payload registers load without ``o.ready``.

    The same ports, :attr:`DEPTH`, :attr:`LATENCY` and throughput as :class:`SkidBuffer`, and
    ``o.valid`` and ``i.ready`` are registers too; the payloads sit in two slots, each loaded in
    every cycle it is empty (its enable is its own ``full`` flag, a register), and ``o.payload`` is
    the head slot's, through a multiplexer on the read pointer (a LUT per bit, the cost). So
    ``o.ready`` reaches only four one-bit registers (the read pointer, ``o.valid``, ``i.ready``
    and the head's ``full``), never the wide payload's enables: in the core the front end's output
    buffer feeds the loader, whose ``ready`` made a handshake loop through that buffer's enables
    spread across the chip (the whole build's critical path in two runs, docs/performance.md).
    """

    def elaborate(self, platform):
        m = Module()
        slots = [Signal(self.layout, name=f"slot_{k}") for k in range(2)]
        full = [Signal(name=f"full_{k}") for k in range(2)]
        write, read = Signal(), Signal()    # the slot the next payload enters / the head
        count = Signal(range(3))
        has, room = Signal(), Signal(init=1)    # o.valid, i.ready
        m.d.comb += [self.o.valid.eq(has), self.i.ready.eq(room)]
        taken = self.i.valid & self.i.ready
        leaves = self.o.valid & self.o.ready
        for k in range(2):
            with m.If(~full[k]):
                m.d.sync += slots[k].eq(self.i.payload)
            # (One slot cannot be entered and left in one cycle: it is entered only while empty.)
            with m.If(taken & (write == k)):
                m.d.sync += full[k].eq(1)
            with m.Elif(leaves & (read == k)):
                m.d.sync += full[k].eq(0)
        after = count + taken - leaves
        m.d.sync += [write.eq(write ^ taken), read.eq(read ^ leaves), count.eq(after),
                     has.eq(after != 0), room.eq(after != 2)]
        m.d.comb += self.o.payload.eq(Mux(read, slots[1].as_value(), slots[0].as_value()))
        return m
