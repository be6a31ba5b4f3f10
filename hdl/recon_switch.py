"""The ReCoN 2×2 switch (SPEC §5): pass, swap, merge with a configured shift and sign, zero.

Combinational. With inputs ``in0``, ``in1``, merge weight ``m`` (``merge_shift``, ``b`` in ReCoN)
and the configured ``sign`` and ``shift``:

===========  ==========================================  ==========================================
command      ``out0``                                    ``out1``
===========  ==========================================  ==========================================
PASS         ``in0 << shift``                            ``in1 << shift``
SWAP         ``in1 << shift``                            ``in0 << shift``
MERGE_TO_0   ``((in0 << m) ± in1) << shift``             ``0``
MERGE_TO_1   ``0``                                       ``((in1 << m) ± in0) << shift``
ZERO         ``0``                                       ``0``
===========  ==========================================  ==========================================

``±`` is ``+`` for ``sign = 0`` and ``-`` for ``sign = 1``, so a merge is exactly
:func:`~microscopiq.quant.golden.recon_merge` of the two inputs. The unused encodings 5–7 output
zeros. Results are computed exactly (the merge sum is ``in_bits + m + 1`` bits wide) and then
truncated to ``out_bits`` (two's complement); ReCoN sizes ``out_bits`` so that every merge of two PE
products fits.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Command", "ReconSwitch"]


class Command(enum.Enum, shape=3):
    """Command of a :class:`ReconSwitch` (3 bits; 5–7 are unused and output zeros)."""

    PASS = 0
    SWAP = 1
    MERGE_TO_0 = 2
    MERGE_TO_1 = 3
    ZERO = 4


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value!r}")


class ReconSwitch(wiring.Component):
    """ReCoN 2×2 switch (combinational: latency 0, one result per cycle).

    Parameters
    ----------
    in_bits : int
        Signed width of each input, >= 2.
    out_bits : int
        Signed width of each output, >= ``in_bits`` (so PASS and SWAP are lossless).
    merge_shift : int
        ``m``: the left shift of the first merge operand, >= 0 (``b`` in ReCoN).
    max_shift : int
        Largest ``shift`` the switch must apply, >= 0. It sizes the ``shift`` port
        (``max_shift.bit_length()`` bits); a pure routing switch (``max_shift = 0``) has no
        ``shift`` port.

    Members
    -------
    in0, in1 : In(signed(in_bits))
        The two inputs.
    cmd : In(Command)
        The static command.
    sign : In(1)
        Merge sign (0: add, 1: subtract the second operand).
    shift : In(unsigned(max_shift.bit_length()))
        Left shift of every output (present when ``max_shift > 0``).
    out0, out1 : Out(signed(out_bits))
        The two outputs (see the module's table).
    """

    def __init__(self, in_bits: int, out_bits: int, *, merge_shift: int, max_shift: int):
        _check_int("in_bits", in_bits, 2)
        _check_int("out_bits", out_bits, 2)
        _check_int("merge_shift", merge_shift, 0)
        _check_int("max_shift", max_shift, 0)
        if out_bits < in_bits:
            raise ValueError(f"out_bits must be >= in_bits ({in_bits}) so PASS and SWAP are lossless, "
                             f"not {out_bits!r}")
        self.in_bits, self.out_bits = in_bits, out_bits
        self.merge_shift, self.max_shift = merge_shift, max_shift
        ports = {
            "in0": In(signed(in_bits)),
            "in1": In(signed(in_bits)),
            "cmd": In(Command),
            "sign": In(1),
            "out0": Out(signed(out_bits)),
            "out1": Out(signed(out_bits)),
        }
        if max_shift:
            ports["shift"] = In(unsigned(max_shift.bit_length()))
        super().__init__(ports)

    @property
    def merge_bits(self) -> int:
        """Exact signed width of a merge sum, ``in_bits + merge_shift + 1``."""
        return self.in_bits + self.merge_shift + 1

    def _shifted(self, value):
        return value << self.shift if self.max_shift else value

    def elaborate(self, platform):
        m = Module()
        # The first operand of a merge (and the value sent to out0 when passing) is in1 for SWAP and
        # MERGE_TO_1, in0 otherwise; one merge adder and one wide shifter serve the main path.
        first = Signal(signed(self.in_bits))
        second = Signal(signed(self.in_bits))
        merging = Signal()
        with m.Switch(self.cmd):
            with m.Case(Command.SWAP, Command.MERGE_TO_1):
                m.d.comb += [first.eq(self.in1), second.eq(self.in0)]
            with m.Default():
                m.d.comb += [first.eq(self.in0), second.eq(self.in1)]
        with m.Switch(self.cmd):
            with m.Case(Command.MERGE_TO_0, Command.MERGE_TO_1):
                m.d.comb += merging.eq(1)
            with m.Default():
                m.d.comb += merging.eq(0)
        # The merge operands at the exact width of the sum (|sum| <= 2^(in_bits + m)).
        scaled = Signal(signed(self.merge_bits))
        addend = Signal(signed(self.merge_bits))
        m.d.comb += [scaled.eq(first << self.merge_shift), addend.eq(second)]
        # One carry chain: a - b = a + ~b + 1, the sign selecting the inversion and the carry-in.
        flipped = Signal(signed(self.merge_bits))
        m.d.comb += flipped.eq(addend ^ self.sign.replicate(self.merge_bits))
        merged = scaled + flipped + self.sign
        main = Signal(signed(self.out_bits))
        other = Signal(signed(self.out_bits))
        m.d.comb += [main.eq(self._shifted(Mux(merging, merged, first))), other.eq(self._shifted(second))]
        with m.Switch(self.cmd):
            with m.Case(Command.PASS, Command.SWAP):
                m.d.comb += [self.out0.eq(main), self.out1.eq(other)]
            with m.Case(Command.MERGE_TO_0):
                m.d.comb += [self.out0.eq(main), self.out1.eq(0)]
            with m.Case(Command.MERGE_TO_1):
                m.d.comb += [self.out0.eq(0), self.out1.eq(main)]
            with m.Default():
                m.d.comb += [self.out0.eq(0), self.out1.eq(0)]
        return m
