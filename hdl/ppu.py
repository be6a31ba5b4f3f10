"""The post-processing unit (SPEC §3): per token and column, the K-group partial sum ``P`` and the
saturating MX accumulator with its sticky overflow flag; raw mode emits ``P`` and ``S``.

Tokens arrive from the array with their column sums over one K-tile and a tag naming the token
``m`` and the tile's place in its K-group and in the layer. A token memory of ``max_tokens`` entries
keeps, per token, ``P`` per column (``FormatConfig.group_sum_bits()``), ``S`` (the sum column),
the accumulator per column (``acc_bits``) and the overflow flags.

At a token of the last K-tile of a group, MicroScopiQ mode computes
``acc ← sat(acc + (P << d[c]))`` (``golden.mx_accumulate``); the shifts ``d = E - E_min`` come
per tile from the host (double-buffered: loaded for the next tile, active from its first token).
At the last K-tile of the layer the token's ``(acc, overflow)`` row is emitted. Raw mode emits
``(P, S)`` at the last K-tile of every group (``golden.uniform_raw``).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import AccelConfig
from .array import act_sum_bits
from .stream_format import SHIFT_BITS, StreamFormat

__all__ = ["PPU", "token_tag_layout", "saturating_shift_add"]


def token_tag_layout(cfg: AccelConfig) -> data.StructLayout:
    """The tag a token carries through the array to the PPU.

    ``m``: token index in the pass; ``group_first``/``group_last``: the tile is the first/last
    K-tile of its K-group; ``k_first``/``k_last``: first/last K-tile of the layer; ``last``: the
    pass's final token (its result beat carries ``tlast``).
    """
    return data.StructLayout({
        "m": range(cfg.max_tokens), "group_first": 1, "group_last": 1,
        "k_first": 1, "k_last": 1, "last": 1,
    })


def saturating_shift_add(m: Module, acc, partial, shift, acc_bits: int):
    """``clamp(acc + (partial << shift))`` to signed ``acc_bits`` and whether it clamped.

    ``shift`` may be up to 255: instead of a 300-bit shifter, a nonzero ``partial`` whose shifted
    value cannot fit in ``acc_bits + 1`` signed bits saturates directly (its magnitude is then at
    least ``2^acc_bits``, more than any accumulator can cancel). Otherwise the shift is narrower
    than ``acc_bits + 1`` and the sum is formed ``acc_bits + 2`` bits wide and clamped.
    """
    wide = acc_bits + 1
    small = Signal(range(wide), name="small_shift")
    huge = shift >= wide
    m.d.comb += small.eq(shift)
    high = Signal(signed(len(partial)), name="shifted_out")
    # The bits that P << small pushes past the wide window: all sign copies when it fits.
    amount = Signal(range(wide), name="fit_shift")
    m.d.comb += amount.eq(wide - 1 - small)
    m.d.comb += high.eq(partial.as_signed() >> amount)
    fits = (high == 0) | (high == -1)
    shifted = Signal(signed(wide), name="shifted")
    m.d.comb += shifted.eq(partial.as_signed() << small)
    total = Signal(signed(acc_bits + 2), name="total")
    m.d.comb += total.eq(acc + shifted)
    top, bottom = (1 << (acc_bits - 1)) - 1, -(1 << (acc_bits - 1))
    result = Signal(signed(acc_bits), name="saturated")
    clamped = Signal(name="clamped")
    beyond = (partial != 0) & (huge | ~fits)
    with m.If(beyond):
        m.d.comb += [result.eq(Mux(partial.as_signed() < 0, bottom, top)), clamped.eq(1)]
    with m.Elif(total > top):
        m.d.comb += [result.eq(top), clamped.eq(1)]
    with m.Elif(total < bottom):
        m.d.comb += [result.eq(bottom), clamped.eq(1)]
    with m.Else():
        m.d.comb += result.eq(total)
    return result, clamped


class PPU(wiring.Component):
    """Post-processing unit: K-group accumulation, MX shift-accumulate with saturation, raw mode.

    Latency 1 enabled cycle from ``inp`` to ``result`` (a registered output), throughput one token
    per cycle. Everything advances only when ``en`` is 1; the controller drives
    ``en = ~result.valid | result.ready`` so a full output register stalls the whole pipeline.

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    en : In(1)
        Global clock enable.
    raw : In(1)
        Raw (uniform) mode.
    inp : In(StructLayout)
        ``valid``, ``first`` (first token of a tile: the loaded shifts become active), ``tag``
        (:func:`token_tag_layout`), ``sums`` (C signed ``column_sum_bits``), ``act_sum``.
    shift_load : In(StructLayout)
        ``valid`` and ``d`` (C × 8 bits): the next tile's shifts.
    result : Out(stream.Signature(StructLayout({"data": result_width, "last": 1})))
        Result beats in the layout of :class:`~microscopiq.hdl.stream_format.StreamFormat`.
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        self.format = sf = StreamFormat(cfg)
        super().__init__({
            "en": In(1),
            "raw": In(1),
            "inp": In(data.StructLayout({
                "valid": 1, "first": 1, "tag": token_tag_layout(cfg),
                "sums": data.ArrayLayout(signed(cfg.column_sum_bits), cfg.cols),
                "act_sum": signed(act_sum_bits(cfg)),
            })),
            "shift_load": In(data.StructLayout({
                "valid": 1, "d": data.ArrayLayout(unsigned(SHIFT_BITS), cfg.cols)})),
            "result": Out(stream.Signature(data.StructLayout({
                "data": unsigned(sf.result_width), "last": 1}))),
        })

    def entry_layout(self) -> data.StructLayout:
        cfg, sf = self.cfg, self.format
        return data.StructLayout({
            "p": data.ArrayLayout(signed(sf.partial_bits), cfg.cols),
            "s": signed(sf.sum_bits),
            "acc": data.ArrayLayout(signed(cfg.acc_bits), cfg.cols),
            "ovf": unsigned(cfg.cols),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, sf = self.cfg, self.format
        cols, en, inp = cfg.cols, self.en, self.inp
        tag = inp.tag

        shadow = Signal(data.ArrayLayout(unsigned(SHIFT_BITS), cols))
        shifts = Signal(data.ArrayLayout(unsigned(SHIFT_BITS), cols))
        with m.If(en & self.shift_load.valid):
            m.d.sync += shadow.eq(self.shift_load.d)
        with m.If(en & inp.valid & inp.first):
            m.d.sync += shifts.eq(shadow)
        # The tile's first token already uses the shifts it makes active.
        current = Signal(data.ArrayLayout(unsigned(SHIFT_BITS), cols))
        m.d.comb += current.eq(Mux(inp.first, shadow.as_value(), shifts.as_value()))

        m.submodules.tokens = mem = Memory(shape=self.entry_layout(), depth=cfg.max_tokens, init=[])
        rd = mem.read_port(domain="comb")
        wr = mem.write_port()
        old = rd.data
        new = Signal(self.entry_layout())
        m.d.comb += rd.addr.eq(tag.m)

        restart = tag.group_first
        for c in range(cols):
            m.d.comb += new.p[c].eq(Mux(restart, 0, old.p[c]) + inp.sums[c])
        m.d.comb += new.s.eq(Mux(restart, 0, old.s) + inp.act_sum)
        for c in range(cols):
            acc_old = Mux(tag.k_first, 0, old.acc[c])
            ovf_old = Mux(tag.k_first, 0, old.ovf[c])
            with m.If(tag.group_last):
                summed, clamped = saturating_shift_add(m, acc_old, new.p[c], current[c], cfg.acc_bits)
                m.d.comb += [new.acc[c].eq(summed), new.ovf[c].eq(ovf_old | clamped)]
            with m.Else():
                m.d.comb += [new.acc[c].eq(acc_old), new.ovf[c].eq(ovf_old)]
        m.d.comb += [wr.addr.eq(tag.m), wr.data.eq(new), wr.en.eq(en & inp.valid)]

        raw_word = Cat(*(new.p[c] for c in range(cols)), new.s)
        msq_word = Cat(*(new.acc[c] for c in range(cols)), new.ovf)
        emit = inp.valid & Mux(self.raw, tag.group_last, tag.k_last)
        with m.If(en):
            m.d.sync += self.result.valid.eq(emit)
            with m.If(emit):
                m.d.sync += [self.result.payload.data.eq(Mux(self.raw, raw_word, msq_word)),
                             self.result.payload.last.eq(tag.last)]
        return m
