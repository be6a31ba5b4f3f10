"""On-chip exponent decoder: the packed stream's inlier exponents in, the PPU's shifts out.

The packed weight stream (:mod:`~microscopiq.host.packed_stream`) carries, per N-tile, the ``C`` row
minima ``E_min[n]`` and, at the last K-tile of every K-group ``g``, the ``C`` exponents ``E[n, g]``
(8-bit two's complement each). The PPU needs ``d = E[n, g] - E_min[n]`` (0 … 255), the shift of
``golden.mx_accumulate``; until now the host computed it (``stream_format``'s tile headers). This
block keeps the minima of the current N-tile and subtracts: one beat of ``C`` exponents per cycle.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import EXP_BITS

__all__ = ["ExpDecoder"]


class ExpDecoder(wiring.Component):
    """Row minima and group exponents -> PPU shifts ``d = E - E_min``.

    Latency 1 cycle (the output register), throughput one beat per cycle. A ``minimum`` beat loads
    the row minima and makes no output beat; every other beat makes one. A stalled output freezes
    the block; ``i.ready`` is ``~o.valid | o.ready`` (never depends on ``i.valid``). Reset clears
    the minima to 0.

    Parameters
    ----------
    width : int
        Columns ``C`` (output rows ``n`` of an N-tile), >= 1.

    Members
    -------
    i : In(stream.Signature(ExpDecoder.in_layout(width)))
        ``minimum`` (1: ``exps`` are the N-tile's ``E_min``; 0: a K-group's ``E``), ``exps``
        (``C`` signed 8-bit values, column ``c`` first).
    o : Out(stream.Signature(ExpDecoder.out_layout(width)))
        ``shifts`` (``C`` unsigned 8-bit ``d``), ``error`` (some ``E < E_min``: a malformed stream;
        that column's shift is 0).
    """

    #: Cycles from an exponent beat's handshake to its output beat (output always ready).
    latency = 1

    def __init__(self, width: int):
        if isinstance(width, bool) or not isinstance(width, int):
            raise TypeError(f"width must be an integer, not {width!r}")
        if width < 1:
            raise ValueError(f"width must be >= 1, not {width!r}")
        self.width = width
        super().__init__({
            "i": In(stream.Signature(self.in_layout(width))),
            "o": Out(stream.Signature(self.out_layout(width))),
        })

    @staticmethod
    def in_layout(width: int) -> data.StructLayout:
        return data.StructLayout({"minimum": unsigned(1), "exps": data.ArrayLayout(signed(EXP_BITS), width)})

    @staticmethod
    def out_layout(width: int) -> data.StructLayout:
        return data.StructLayout({"shifts": data.ArrayLayout(unsigned(EXP_BITS), width), "error": unsigned(1)})

    @staticmethod
    def _below_minimum(d):
        """Whether ``d = E - E_min`` flags an error (``E < E_min``; the formal tests' mutant changes
        only this)."""
        return d < 0

    def elaborate(self, platform):
        m = Module()
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        minima = Signal(data.ArrayLayout(signed(EXP_BITS), self.width))
        payload = self.i.payload
        shifts, errors = [], []
        for c in range(self.width):
            d = payload.exps[c] - minima[c]                  # -255 … 255: 10 bits signed
            errors.append(self._below_minimum(d))
            shifts.append(Mux(d < 0, 0, d[:EXP_BITS]))
        with m.If(advance):
            m.d.sync += self.o.valid.eq(self.i.valid & ~payload.minimum)
            m.d.sync += self.o.payload.as_value().eq(Cat(*shifts, Cat(*errors).any()))
            with m.If(self.i.valid & payload.minimum):
                m.d.sync += minima.eq(payload.exps)
        return m
