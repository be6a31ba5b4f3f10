"""The multi-precision INT processing element (SPEC §5): one activation times one weight slot.

The PE holds its weight slot stationary in two banks (ping-pong): the *active* bank feeds the
multiplier while the *shadow* bank is loaded with the next tile's slot; ``swap`` exchanges them at a
clock edge, so a weight tile loads while the previous one computes.

Each bank stores the slot already decoded into the signed multiplier operand ``w`` (``b + 1`` bits),
so the compute path is one ``a × (b + 1)`` signed multiplier fed by the active bank's register
whatever the role, and a bank costs ``b + 1`` flip-flops instead of ``b + 2`` (code and role):

========  ================================  ====================================
role      operand ``w``                     product (:func:`~microscopiq.quant.golden.pe_product`)
========  ================================  ====================================
INLIER    ``q``, the signed ``b``-bit code  ``x · q``
OUT_HI    ``-1`` if the code's MSB is set,  ``(-1)^s · x`` (sign and implicit one)
          else ``+1``
OUT_LO    ``f``, the unsigned ``b``-bit     ``x · f`` (the fraction)
          code
3         ``0`` (unused encoding)           ``0``
========  ================================  ====================================

**Pair mode** (``PE(fmt, pairs=True[, apart=True])``, a multi-precision instance, docs/hardware.md "Multi-precision
PEs"): beside the ``a × (b + 1)`` multiplier a narrow ``a × h`` one, ``h = b/2``, and each bank holds
the operand ``w`` and the high slot's signed code ``q_hi`` (``h`` bits, 0 in a ``b``-bit pass):

* ``pairs`` 0 (a ``b``-bit pass): ``w`` is the table's, ``q_hi`` 0, the product ``x · w``;
* ``pairs`` 1 (a ``b/2`` pass, INLIER slots only) in a PE not built ``apart``: the code holds two
  signed ``h``-bit codes, ``q_lo`` in its low half and ``q_hi`` in its high half, ``w = q_lo``, and
  the PE computes ``x · q_lo + x_hi · q_hi`` (two K rows, two activations);
* ``pairs`` 1 in a PE built ``apart`` (an array with MicroScopiQ pair passes, docs/hardware.md
  "MicroScopiQ pair passes", :attr:`Array.msq_pairs <.array.Array.msq_pairs>`): the low half is the
  *network* slot, of any role, decoded at ``h`` (INLIER ``q_lo``, OUT_HI ``±1``, OUT_LO ``f · 2^h``:
  what ``MetaDecoder.narrow_code`` makes of it at ``b``), the high half the *inlier* slot (always
  INLIER); ``product`` is the network slot's ``x · w`` alone and ``inlier + inlier_carry`` the
  inlier slot's ``x_hi · q_hi``, kept apart for the array's inlier chain, which adds it in every
  pair pass (a uniform one too: there both halves are INLIER slots and ``w = q_lo``). The PE then
  has no adder: the chain's one adder per PE is there for MicroScopiQ pair passes anyway.

The decode follows ``pairs`` (steady for a pass, while its slots load); the multipliers do not. The
wide multiplier is the fixed PE's, so the pair mode costs the narrow one (``x_hi · |q_hi|``, at
b = 4 a choice of 0, ``x_hi`` and ``2·x_hi``; a negative ``q_hi`` flips its bits and leaves the ``+1``
to the adders that take the product), ``h`` bits per bank and, not ``apart``, one adder
(docs/performance.md, "Run-time precision").

**DSP build** (``PE(fmt, dsp="ecp5")``, ``AccelConfig.dsp``, docs/hardware.md "DSP build"): the
multiplier and its registers are one :class:`~microscopiq.hdl.dsp_mult.DspMult`, an ECP5
``MULT18X18D``: its B input register is the active bank (loaded from the shadow bank at ``swap``),
its output register is ``product``, and its A input register is one more activation stage, which
the array takes out of its own activation delay line (:attr:`PE.act_stages`), so the array's
latency is the same as with the fabric multiplier.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import DSP_TARGETS, FormatConfig
from ..quant.layer import Role
from .dsp_mult import DspMult

__all__ = ["PE"]


class PE(wiring.Component):
    """Multi-precision INT PE with double-buffered (ping-pong) weight-stationary slot.

    Latency 1 cycle (``product`` is registered; ``1 + act_stages`` = 2 from ``act`` in a DSP
    build), throughput one product per cycle. The product
    register advances only when ``en`` is 1 (a stall holds it); ``load`` and ``swap`` act at every
    clock edge regardless of ``en``. Reset clears both banks (operand 0) and ``product``. The
    banks are an *active* and a *shadow* register (a swap copies each into the other), so the
    multiplier's operand comes straight from a flip-flop.

    At a clock edge, in this order of meaning:

    * if ``en``: ``product ← pe_product(act, active code, active role, b)`` with the bank that was
      active *before* the edge;
    * if ``swap``: the shadow bank becomes active and the active bank becomes the shadow;
    * if ``load``: ``(load_code, load_role)`` is written into the bank that is the shadow *after*
      the edge — the old shadow without ``swap``, the old active bank with ``swap``.

    So a slot loaded at edge ``t`` takes part in products from the first ``swap`` after ``t``:
    ``swap`` at edge ``t' > t`` makes it active, and the activation presented in the cycle after
    ``t'`` is multiplied by it.

    Parameters
    ----------
    fmt : FormatConfig
        Uses ``fmt.abits`` (``a``: 4 or 8) and ``fmt.wbits`` (``b``: 2, 3, 4 or 8). With ``b = 8``
        only INLIER slots occur in practice (uniform mode), but every role is computed.
    pairs : bool
        Build the pair mode's narrow second multiplier with the ``pairs`` and ``act_hi`` inputs
        (even ``b`` only; see the module docstring).
    apart : bool
        With ``pairs``: the high slot's product leaves on ``inlier`` alone in every pair pass,
        ``product`` is the low slot's (the module docstring).
    dsp : str
        ``"none"`` (the multiplier in fabric logic) or ``"ecp5"`` (a :class:`DspMult`; not with
        ``pairs``). With ``"ecp5"`` the activation goes through the DSP's A input register first:
        ``act`` is sampled at every edge where ``act_en`` is 1, and the product is that of the
        activation sampled at the last such edge before the product's own (latency 2 from ``act``;
        :attr:`act_stages` is 1).
    dsp_model : bool
        With ``dsp="ecp5"``: the :class:`DspMult`'s behavioural Amaranth registers instead of the
        primitive (``amaranth.sim`` tests only).

    Members
    -------
    act : In(signed(a))
        Activation.
    en : In(1)
        Clock enable of the compute pipeline (0: ``product`` holds).
    load : In(1)
        Write ``load_code``/``load_role`` into the shadow bank (see above).
    load_code : In(unsigned(b))
        Raw ``b``-bit code of the slot.
    load_role : In(Role)
        Role of the slot, :class:`~microscopiq.quant.layer.Role` (2 bits; the unused encoding 3
        gives the product 0).
    swap : In(1)
        Exchange the active and shadow banks at this clock edge.
    product : Out(signed(a + b))
        ``golden.pe_product(act, code, role, b)`` of the previous enabled cycle (pair mode:
        ``act · q_lo + act_hi · q_hi``; ``|product| <= 2^(a-1) · 2^(b/2)``, within ``a + b`` bits;
        ``apart``: the low slot's product alone, see the module docstring).
    pairs : In(1)
        (``pairs=True`` only) Pair mode for the products; must be steady while slots are loaded
        (the decode follows it), as it is for a pass.
    act_hi : In(signed(a))
        (``pairs=True`` only) The activation of the high-half slot in pair mode (ignored else).
    inlier : Out(signed(a + b/2 + 1))
        (``pairs=True`` only) With ``inlier_carry``, ``act_hi · q_hi`` of the previous enabled cycle
        in pair mode (the high slot's product; 0 in a ``b``-bit pass): the product
        is ``inlier + inlier_carry``, ``inlier`` its bits flipped where ``q_hi < 0``, so the adder
        that takes it takes ``inlier_carry`` as its carry-in.
    inlier_carry : Out(1)
        (``pairs=True`` only) See ``inlier``.
    act_en : In(1)
        (``dsp="ecp5"`` only) Enable of the activation's input register.
    """

    #: Cycles from ``act`` to ``product`` (plus :attr:`act_stages` in a DSP build).
    LATENCY = 1
    #: Products per cycle.
    THROUGHPUT = 1

    def __init__(self, fmt: FormatConfig, pairs: bool = False, dsp: str = "none", dsp_model: bool = False,
                 apart: bool = False):
        if not isinstance(fmt, FormatConfig):
            self._MustUse__silence = True  # refused: never elaborated, no "unused" warning
            raise TypeError(f"fmt must be a FormatConfig, not {fmt!r}")
        if pairs and fmt.wbits % 2:
            self._MustUse__silence = True
            raise ValueError(f"pair mode needs an even wbits, not {fmt.wbits}")
        if dsp not in DSP_TARGETS:
            self._MustUse__silence = True
            raise ValueError(f"dsp must be one of {', '.join(DSP_TARGETS)}, not {dsp!r}")
        if pairs and dsp != "none":
            self._MustUse__silence = True
            raise ValueError(f"pair mode has two partial multipliers, not one DSP: dsp must be 'none', "
                             f"not {dsp!r}")
        if apart and not pairs:
            self._MustUse__silence = True
            raise ValueError("apart keeps the pair mode's high-slot product apart: it needs pairs=True")
        self.fmt = fmt
        self.pairs_mode = pairs
        self.apart = apart
        self.dsp = dsp
        self.dsp_model = dsp_model
        a, b = fmt.abits, fmt.wbits
        ports = {
            "act": In(signed(a)),
            "en": In(1),
            "load": In(1),
            "load_code": In(unsigned(b)),
            "load_role": In(Role),
            "swap": In(1),
            "product": Out(signed(a + b)),
        }
        if pairs:
            ports.update({"pairs": In(1), "act_hi": In(signed(a)),
                          "inlier": Out(signed(a + b // 2 + 1)), "inlier_carry": Out(1)})
        if dsp != "none":
            ports["act_en"] = In(1)
        super().__init__(ports)

    @staticmethod
    def act_stages_of(dsp: str) -> int:
        """Registers the activation passes inside the PE before the multiplier: 1 for a DSP
        (its A input register), 0 in fabric."""
        return DspMult.INPUT_STAGES if dsp != "none" else 0

    @property
    def act_stages(self) -> int:
        """:meth:`act_stages_of` this PE: ``act`` to ``product`` takes ``act_stages + LATENCY``
        cycles."""
        return self.act_stages_of(self.dsp)

    def _decode(self, m: Module) -> Value:
        """The bank contents of the slot being loaded: the multiplier operand ``w`` (signed
        ``b + 1`` bits), in pair mode also the high slot's code ``q_hi`` (module docstring)."""
        b = self.fmt.wbits
        code, role = self.load_code, self.load_role
        if not self.pairs_mode:
            return self._operand(m, code, role, 0)
        h = b // 2
        operand = Mux(self.pairs, self._operand(m, code[:h], role, h), self._operand(m, code, role, 0))
        return Cat(operand, Mux(self.pairs, code[h:], 0))

    def _operand(self, m: Module, code, role, fraction_shift: int) -> Signal:
        """``w`` (signed ``b + 1`` bits) of a slot whose code is ``code`` (``b`` or ``b/2`` bits):
        the INLIER code signed, ``±1`` for OUT_HI, the OUT_LO fraction ``f << fraction_shift``; the
        unused role 3 matches no case and leaves the signal's reset value, 0."""
        operand = Signal(signed(self.fmt.wbits + 1))
        with m.Switch(role):
            with m.Case(Role.INLIER):
                m.d.comb += operand.eq(code.as_signed())
            with m.Case(Role.OUT_HI):
                m.d.comb += operand.eq(Mux(code[-1], -1, 1))
            with m.Case(Role.OUT_LO):
                m.d.comb += operand.eq(code << fraction_shift)
        return operand

    def elaborate(self, platform):
        m = Module()
        b = self.fmt.wbits
        stored = self._decode(m)

        # The active bank is a register of its own (not banks[select]): the multiplier's input
        # comes straight from a flip-flop, with no bank multiplexer and no select signal shared by
        # a whole row (Yosys merges identical per-PE selects into one high-fanout net).
        active = Signal(len(stored), name="active")
        shadow = Signal(len(stored), name="shadow")
        # The shadow after this edge: the loaded slot, else the old active bank on a swap, else itself.
        with m.If(self.load):
            m.d.sync += shadow.eq(stored)
        with m.Elif(self.swap):
            m.d.sync += shadow.eq(active)
        with m.If(self.swap):
            m.d.sync += active.eq(shadow)

        if self.dsp != "none":
            self._dsp_multiply(m, shadow.as_signed())
            return m
        operand = active[:b + 1].as_signed()
        if not self.pairs_mode:
            with m.If(self.en):
                m.d.sync += self.product.eq(self.act * operand)
            return m
        # The high slot's product x_hi·q_hi (0 in a b-bit pass: q_hi 0) as x_hi·|q_hi| with its bits
        # flipped where q_hi < 0, and the 1 that completes the negation (-v = ~v + 1) apart: it
        # rides as the carry-in of the adders that take the product (here and the array's inlier
        # chain), so no adder of its own negates it.
        network = self.act * operand
        q_hi = active[b + 1:].as_signed()
        negate = q_hi < 0
        scaled = Signal(signed(len(self.inlier)))
        m.d.comb += scaled.eq(self.act_hi * Mux(negate, -q_hi, q_hi))
        flipped = (scaled.as_unsigned() ^ negate.replicate(len(scaled))).as_signed()
        with m.If(self.en):
            m.d.sync += [self.product.eq(network if self.apart else network + flipped + negate),
                         self.inlier.eq(flipped), self.inlier_carry.eq(negate)]
        return m

    def _dsp_multiply(self, m, shadow):
        """The DSP's B register loads the shadow bank at ``swap`` (so it holds what ``active``
        holds: ``active`` stays only for the exchange), its output register is ``product``."""
        m.submodules.mult = mult = DspMult(self.fmt.abits, self.fmt.wbits + 1, model=self.dsp_model)
        m.d.comb += [
            mult.a.eq(self.act), mult.a_en.eq(self.act_en),
            mult.b.eq(shadow), mult.b_en.eq(self.swap),
            mult.p_en.eq(self.en),
            self.product.eq(mult.p),
        ]
