"""A signed multiplier in one ECP5 ``MULT18X18D`` with its input and output registers.

:class:`DspMult` is the PE's multiplier in a DSP build (``AccelConfig.dsp == "ecp5"``,
docs/hardware.md "DSP build"). It instantiates the Lattice ECP5 primitive with three of its
registers clocked by the ``sync`` domain, each with its own clock enable:

========  ===========  ==========  ==============================================================
register  parameter    enable      holds
========  ===========  ==========  ==============================================================
A         REG_INPUTA   CE0 (a_en)  the activation (the PE row's last activation stage, moved in)
B         REG_INPUTB   CE1 (b_en)  the weight operand (the PE's active bank, loaded at ``swap``)
P         REG_OUTPUT   CE2 (p_en)  the product (the PE's product register)
========  ===========  ==========  ==============================================================

``REG_PIPELINE`` is not used (the multiplier's own delay stays inside the A/B → P cycle) nor the C
input, the shift chains or the cascade. All three registers reset synchronously with the domain's
reset (``RST0``, ``RESETMODE = "SYNC"``) and not with the global set/reset (``GSR = "DISABLED"``),
like every other register of the design.

Simulation: Yosys' ECP5 library holds only a blackbox of the primitive and ``amaranth.sim`` cannot
run an ``Instance``, so ``DspMult(..., model=True)`` elaborates to three Amaranth registers of the
same enables and latency instead (the behavioural path of the ``amaranth.sim`` tests of the PE and
the array, never written to a generated file), and the Verilog simulations of a generated DSP build
use the project's model of the primitive, :data:`VERILOG_MODEL` (added to the sources by
:mod:`microscopiq.tb.runner`).
"""

from __future__ import annotations

from pathlib import Path

from amaranth import ClockSignal, Const, Instance, Module, ResetSignal, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DspMult", "DSP_PORT_BITS", "PRIMITIVE", "VERILOG_MODEL"]

#: The Lattice primitive.
PRIMITIVE = "MULT18X18D"
#: Width of each multiplier input of the primitive (signed operands up to this many bits).
DSP_PORT_BITS = 18
#: The project's behavioural Verilog model of the primitive's subset that :class:`DspMult` uses.
VERILOG_MODEL = Path(__file__).resolve().parent / "models" / f"{PRIMITIVE}.v"
_PRODUCT_BITS = 2 * DSP_PORT_BITS


class DspMult(wiring.Component):
    """Signed ``a_width × b_width`` multiplier with registered inputs and output (ECP5 MULT18X18D).

    Latency 2 enabled cycles from ``a``/``b`` to ``p`` (input register, then output register);
    throughput one product per cycle. Each register advances only when its enable is 1: at a clock
    edge ``A ← a`` if ``a_en``, ``B ← b`` if ``b_en``, ``p ← A · B`` (the values before the edge)
    if ``p_en``. Reset clears all three.

    Parameters
    ----------
    a_width, b_width : int
        Signed operand widths, 1 to :data:`DSP_PORT_BITS` (18).
    model : bool
        Elaborate the behavioural Amaranth registers instead of the ``Instance`` (for
        ``amaranth.sim`` only; see the module docstring).

    Members
    -------
    a : In(signed(a_width))
    a_en : In(1)
        Enable of the A input register.
    b : In(signed(b_width))
    b_en : In(1)
        Enable of the B input register.
    p_en : In(1)
        Enable of the output register.
    p : Out(signed(a_width + b_width))
        The output register.
    """

    #: Enabled cycles from ``a`` or ``b`` to ``p``.
    LATENCY = 2
    #: Of those, the input register stages (A and B).
    INPUT_STAGES = 1
    #: Products per cycle.
    THROUGHPUT = 1

    def __init__(self, a_width: int, b_width: int, *, model: bool = False):
        for name, width in (("a_width", a_width), ("b_width", b_width)):
            if not isinstance(width, int) or isinstance(width, bool):
                self._MustUse__silence = True  # refused: never elaborated, no "unused" warning
                raise TypeError(f"{name} must be an integer, not {width!r}")
            if not 1 <= width <= DSP_PORT_BITS:
                self._MustUse__silence = True
                raise ValueError(f"{name} must be between 1 and {DSP_PORT_BITS} (a {PRIMITIVE} "
                                 f"input), not {width!r}")
        self.a_width, self.b_width, self.model = a_width, b_width, bool(model)
        super().__init__({
            "a": In(signed(a_width)), "a_en": In(1),
            "b": In(signed(b_width)), "b_en": In(1),
            "p_en": In(1), "p": Out(signed(a_width + b_width)),
        })

    def elaborate(self, platform):
        m = Module()
        if self.model:
            reg_a = Signal.like(self.a, name="reg_a")
            reg_b = Signal.like(self.b, name="reg_b")
            with m.If(self.a_en):
                m.d.sync += reg_a.eq(self.a)
            with m.If(self.b_en):
                m.d.sync += reg_b.eq(self.b)
            with m.If(self.p_en):
                m.d.sync += self.p.eq(reg_a * reg_b)
            return m
        product = Signal(_PRODUCT_BITS, name="dsp_p")
        m.submodules.dsp = Instance(PRIMITIVE, **self._parameters(), **self._ports(product))
        m.d.comb += self.p.eq(product[:len(self.p)])
        return m

    @staticmethod
    def _parameters() -> dict:
        """A, B and output registers on CLK0 with enables CE0/CE1/CE2 and synchronous RST0."""
        params = {}
        for reg, ce in (("INPUTA", "CE0"), ("INPUTB", "CE1"), ("OUTPUT", "CE2")):
            params.update({f"p_REG_{reg}_CLK": "CLK0", f"p_REG_{reg}_CE": ce, f"p_REG_{reg}_RST": "RST0"})
        for reg in ("INPUTC", "PIPELINE"):
            params.update({f"p_REG_{reg}_CLK": "NONE", f"p_REG_{reg}_CE": "CE0", f"p_REG_{reg}_RST": "RST0"})
        params.update({f"p_CLK{i}_DIV": "ENABLED" for i in range(4)})
        params.update(p_HIGHSPEED_CLK="NONE", p_GSR="DISABLED", p_CAS_MATCH_REG="FALSE",
                      p_SOURCEB_MODE="B_SHIFT", p_MULT_BYPASS="DISABLED", p_RESETMODE="SYNC")
        return params

    def _ports(self, product: Signal) -> dict:
        """Every input the model declares (operands sign-extended to 18 bits), and ``P``."""
        a = self.a.as_signed()
        b = self.b.as_signed()
        ports = {}
        for i in range(DSP_PORT_BITS):
            ports[f"i_A{i}"] = a[min(i, len(a) - 1)]
            ports[f"i_B{i}"] = b[min(i, len(b) - 1)]
            ports[f"i_C{i}"] = Const(0, 1)
        ports.update(i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1), i_SOURCEA=Const(0, 1),
                     i_SOURCEB=Const(0, 1), i_CLK0=ClockSignal(), i_CE0=self.a_en, i_CE1=self.b_en,
                     i_CE2=self.p_en, i_RST0=ResetSignal())
        for i in range(1, 4):
            ports[f"i_CLK{i}"] = Const(0, 1)
            ports[f"i_RST{i}"] = Const(0, 1)
        ports["i_CE3"] = Const(0, 1)
        for i in range(_PRODUCT_BITS):
            ports[f"o_P{i}"] = product[i]
        return ports
