"""Two-entry stream buffers with registered ``o.valid`` and ``i.ready``: a skid buffer (payload in
registers, ``o.payload`` a register) and a slot buffer (payload in LUT RAM, written without any
handshake in its enable).

The core's loader puts row beats through a skid buffer on their way into the array's shadow banks:
the array may refuse a row for a while (row 0 of a tile waits for the tile before to start), and
the buffer keeps taking one row per cycle meanwhile, up to two, without any path from ``o.ready``
to ``i.ready``. The weight front end's merge and the loader take from slot buffers, whose
consumers' ``ready`` reaches no payload enable.
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .bits import REPLICA

__all__ = ["SkidBuffer", "SlotBuffer"]


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


class SlotBuffer(SkidBuffer):
    """Two-entry first-in first-out stream buffer whose payloads sit in LUT RAM and whose
    handshakes reach no payload enable: a credit link.

    The same ports, :attr:`~SkidBuffer.DEPTH`, :attr:`~SkidBuffer.LATENCY`, throughput and
    cycle-by-cycle behaviour as :class:`SkidBuffer` (``i.ready`` and ``o.valid`` are registers:
    ``i.ready`` is the registered count of free slots, the sender's credit, above zero). The
    payloads sit in a :data:`SLOTS`-entry LUT RAM, written in every cycle at the write pointer
    (that slot never holds a payload not yet read: at most :attr:`~SkidBuffer.DEPTH` do) and read
    asynchronously at the read pointer. So ``i.valid`` and ``o.ready`` reach only the two
    pointers and the count, never the payload's storage: in the core the front end's output
    buffer feeds the loader, whose ``ready`` made a handshake loop through a skid buffer's payload
    enables spread across the chip (the whole build's critical path, docs/performance.md), and the
    merge's ``take`` the same through the decoded-row buffer's. Per payload bit it costs a quarter
    of a ``TRELLIS_DPR16X4`` (ECP5) instead of two flip-flops and a multiplexer.
    """

    #: Entries of the LUT RAM: more than :attr:`~SkidBuffer.DEPTH`, so that the slot written in
    #: every cycle is free; a power of two, so that the pointers wrap by themselves.
    SLOTS = 4

    def __init__(self, layout, *, fast=()):
        """``fast``: names of ``layout``'s fields (a :class:`~amaranth.lib.data.StructLayout`) held
        in flip-flops with a read pointer of their own, not in the LUT RAM: a field the consumer
        decides from at once (an error flag) is then read from a register placed by the consumer,
        not from a LUT RAM placed with the rest of a wide payload and its pointer's fan-out."""
        super().__init__(layout)
        self.fast = tuple(fast)
        if self.fast and not (isinstance(layout, data.StructLayout) and set(self.fast) <= set(layout.members)):
            self._MustUse__silence = True  # refused: never elaborated, no "unused" warning
            raise ValueError(f"fast fields {self.fast!r} are not all fields of {layout!r}")

    def elaborate(self, platform):
        m = Module()
        m.submodules.slots = slots = Memory(shape=self.layout, depth=self.SLOTS, init=[],
                                            attrs={"ram_style": "distributed"})
        write, read = slots.write_port(), slots.read_port(domain="comb")
        count = Signal(range(self.DEPTH + 1))
        room = Signal(init=1)
        taken = self.i.valid & self.i.ready
        leaves = self.o.valid & self.o.ready
        after = count + taken - leaves
        m.d.comb += [self.i.ready.eq(room), write.en.eq(1), write.data.eq(self.i.payload),
                     self.o.payload.eq(read.data)]
        m.d.sync += [write.addr.eq(write.addr + taken), read.addr.eq(read.addr + leaves), count.eq(after),
                     self.o.valid.eq(after != 0), room.eq(after != self.DEPTH)]
        if self.fast:
            self._fast_fields(m, write.addr, read.addr, leaves)
        return m

    def _fast_fields(self, m, write_addr, read_addr, leaves):
        """The :attr:`fast` fields: flip-flop slots written as the LUT RAM is, read at a copy of
        the read pointer that counts for itself (over ``o.payload``'s LUT-RAM bits)."""
        read_addr.attrs[REPLICA] = 1
        fast_read = Signal.like(read_addr, name="fast_read_addr", attrs={REPLICA: 1})
        m.d.sync += fast_read.eq(fast_read + leaves)
        for name in self.fast:
            value = Value.cast(self.i.payload[name])
            slots = Array(Signal.like(value, name=f"{name}_slot{k}") for k in range(self.SLOTS))
            m.d.sync += slots[write_addr].eq(value)
            m.d.comb += Value.cast(self.o.payload[name]).eq(slots[fast_read])
