"""Formal property harness of the PE (:mod:`microscopiq.hdl.pe`): the ping-pong weight banks.

:class:`PEProof` drives the PE with a free activation, free ``en``, ``load``, ``swap`` and free
slots to load in every cycle, and runs beside it a reference model of the load/swap semantics of
the PE's docstring that keeps the *raw* slots (code and role) in an active and a shadow bank:

* if ``swap``: the shadow becomes active and the active bank the shadow;
* if ``load``: the slot is written into the bank that is the shadow after the edge (the old
  shadow without ``swap``, the old active bank with it);
* if ``en``: the product of the activation and the bank that was active before the edge.

It asserts in every cycle that the PE's ``product`` equals the reference's
``pe_product(act, code, role, b)`` (SPEC §5, :func:`~microscopiq.quant.golden.pe_product`): the
PE decodes slots when they are loaded, the reference when they are used, so the proof also shows
that decoding at load time computes the same products.
"""

from __future__ import annotations

from amaranth import Elaboratable, Module, Mux, Signal, signed
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, ResetSignal

from ..config import FormatConfig
from ..hdl.pe import PE
from ..quant.layer import Role

__all__ = ["PEProof", "pe_product"]


def pe_product(m: Module, act, code, role, wbits: int):
    """``golden.pe_product`` as an Amaranth expression: ``x·q`` (INLIER, ``q`` the signed code),
    ``±x`` (OUT_HI, the code's MSB the sign), ``x·f`` (OUT_LO, the unsigned code), else 0."""
    hi = Mux(code[wbits - 1], -act, act)
    return Mux(role == Role.INLIER, act * code.as_signed(),
               Mux(role == Role.OUT_HI, hi, Mux(role == Role.OUT_LO, act * code, 0)))


class PEProof(Elaboratable):
    """The PE's product against the reference banks (module docstring), in every cycle.

    Parameters
    ----------
    fmt : FormatConfig
    pe : PE, optional
        The block under proof (default ``PE(fmt)``; the mutation tests pass a broken one).
    """

    def __init__(self, fmt: FormatConfig, *, pe=None):
        self.fmt = fmt
        self.pe = PE(fmt) if pe is None else pe

    def elaborate(self, platform):
        m = Module()
        m.d.comb += ResetSignal().eq(0)
        m.submodules.pe = pe = self.pe
        a, b = self.fmt.abits, self.fmt.wbits
        act, en, load, swap = AnySeq(signed(a)), AnySeq(1), AnySeq(1), AnySeq(1)
        code, role = AnySeq(b), AnySeq(2)
        m.d.comb += [pe.act.eq(act), pe.en.eq(en), pe.load.eq(load), pe.swap.eq(swap),
                     pe.load_code.eq(code), pe.load_role.eq(role)]

        # Reference banks of raw slots; reset (the initial state) holds the INLIER code 0 in both.
        active_code, active_role = Signal(b), Signal(2, init=Role.INLIER)
        shadow_code, shadow_role = Signal(b), Signal(2, init=Role.INLIER)
        product = Signal(signed(a + b))
        with m.If(swap):
            m.d.sync += [active_code.eq(shadow_code), active_role.eq(shadow_role)]
        with m.If(load):
            m.d.sync += [shadow_code.eq(code), shadow_role.eq(role)]
        with m.Elif(swap):
            m.d.sync += [shadow_code.eq(active_code), shadow_role.eq(active_role)]
        with m.If(en):
            m.d.sync += product.eq(pe_product(m, act, active_code, active_role, b))
        m.d.comb += Assert(pe.product == product)
        return m
