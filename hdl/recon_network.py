"""The ReCoN network of one PE row (SPEC §5): PE products in, exact column contributions out.

Per micro-block of ``U`` columns:

1. an in-place Beneš network of ``2·log2(U) - 1`` stages of ``U/2`` pass/swap
   :class:`~microscopiq.hdl.recon_switch.ReconSwitch` es, ``pe_product_bits`` wide, in its Waksman
   form (``U·log2(U) - U + 1`` switches, the others fixed PASS wires), routes every partner's
   OUT_LO product to its outlier's column and every inlier's product to its own (any permutation
   is realisable, so any set of disjoint (outlier, partner) pairs is);
2. register 1: per column the merge operands ``hi`` (its own product when it merges, else 0) and
   ``lo`` (the routed product, 0 for a partner, inverted for MERGE_SUB), both zeroed by synchronous
   clears of the flip-flops, the subtract flag and the shift;
3. per column a *merge* ReconSwitch, always MERGE_TO_0 on ``((hi << b) | subtract, lo)``:
   ``(hi << b) ± routed`` (outlier), the own product (inlier) or 0 (partner), kept to
   ``merge_bits = a + b + 1`` bits, exact for PE products;
4. register 2: the merged value and the column's shift;
5. per column a *scale* ReconSwitch in PASS with the low bits of the configured shift (``b`` for an
   inlier, 0 in uniform mode, ``e + X`` for an outlier), into ``product_bits``;
6. register 3: ``contributions``; it also makes the shift's top step (``2^(sb-1)``): a 2:1
   multiplexer on its upper bits, a synchronous clear of its lower ``2^(sb-1)`` bits.

The configuration (layout: :meth:`ReconNetwork.config_layout`, values: :mod:`~microscopiq.host.routing`)
is static per weight tile. See ``docs/recon.md`` for the proof that every placement is realised.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from amaranth import C, Cat, Module, Mux, ResetSignal, Signal, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from ..config import AccelConfig, FormatConfig
from .recon_geometry import ColumnOp, ReconGeometry
from .recon_switch import Command, ReconSwitch

__all__ = ["ColumnOpEnum", "ReconNetwork", "recon_latency", "config_bit_positions"]


class ColumnOpEnum(enum.Enum, shape=2):
    """Hardware encoding of a column's merge-cell op; values of :class:`~microscopiq.hdl.recon_geometry.ColumnOp`."""

    KEEP = ColumnOp.KEEP.value
    ZERO = ColumnOp.ZERO.value
    MERGE_ADD = ColumnOp.MERGE_ADD.value
    MERGE_SUB = ColumnOp.MERGE_SUB.value


def recon_latency(cfg: AccelConfig) -> int:
    """Enabled cycles the ReCoN of ``cfg`` adds to a PE row's products: :attr:`ReconNetwork.latency`,
    0 without ReCoN (``recon_share = 0``)."""
    return ReconNetwork.latency if cfg.has_recon else 0


class ReconNetwork(wiring.Component):
    """ReCoN for one PE row of ``width`` columns.

    Latency 3 cycles (counted in cycles with ``en = 1``), throughput one row of products per cycle:
    ``contributions`` after the third enabled clock edge equal
    :func:`~microscopiq.host.routing.simulate_row` of the ``products`` and ``config`` present at the
    first. The registers sit after the Beneš network, after the merge adder and after the shifter
    (152.6 MHz on an ECP5-25k with registered inputs, U = 8, b = 4); all advance only when ``en`` is 1
    and carry the column config with the data, so a config change between two product rows takes
    effect exactly with the row it arrives with. Reset clears the registers (contributions 0).

    Parameters
    ----------
    fmt : FormatConfig
        Number formats; ``wbits`` must have an outlier format (2, 3 or 4).
    width : int
        Columns ``C``, a positive multiple of ``fmt.ublock``.

    Members
    -------
    products : In(ArrayLayout(signed(fmt.pe_product_bits), width))
        The row's PE products (:func:`~microscopiq.quant.golden.pe_product`), one token.
    config : In(ReconNetwork.config_layout(fmt, width))
        Static routing of the row (:func:`~microscopiq.host.routing.compile_row`).
    en : In(1)
        Clock enable of the three register stages (0 = stall, everything holds).
    contributions : Out(ArrayLayout(signed(fmt.product_bits), width))
        ``x · v[n,k]`` of SPEC §3 per column (``x · q`` in uniform mode).
    """

    #: Enabled clock edges from ``products``/``config`` to ``contributions``.
    latency = 3

    def __init__(self, fmt: FormatConfig, width: int):
        self.geometry = ReconGeometry(fmt, width)
        self.fmt, self.width = fmt, width
        super().__init__({
            "products": In(data.ArrayLayout(signed(fmt.pe_product_bits), width)),
            "config": In(self.config_layout(fmt, width)),
            "en": In(1),
            "contributions": Out(data.ArrayLayout(signed(fmt.product_bits), width)),
        })

    @staticmethod
    def column_layout(fmt: FormatConfig) -> data.StructLayout:
        """One column's field: ``op`` (2 bits) then ``shift``."""
        geom = ReconGeometry(fmt, fmt.ublock)
        return data.StructLayout({"op": ColumnOpEnum, "shift": unsigned(geom.shift_bits)})

    @classmethod
    def config_layout(cls, fmt: FormatConfig, width: int) -> data.ArrayLayout:
        """Layout of the ``config`` port: per micro-block the swap bits of the configurable
        switches (:attr:`~microscopiq.hdl.recon_geometry.ReconGeometry.routing_switches` order) then the
        ``U`` column fields. Bit-identical to the integers of
        :func:`~microscopiq.host.routing.compile_row`."""
        geom = ReconGeometry(fmt, width)
        block = data.StructLayout({
            "benes": unsigned(geom.benes_bits),
            "columns": data.ArrayLayout(cls.column_layout(fmt), geom.ublock),
        })
        return data.ArrayLayout(block, geom.blocks)

    def elaborate(self, platform):
        m = Module()
        geom = self.geometry
        u = geom.ublock
        for blk in range(geom.blocks):
            cfg = self.config[blk]
            own = [self.products[blk * u + c] for c in range(u)]
            routed = self._benes(m, blk, own, cfg.benes)
            for c in range(u):
                self._column(m, blk * u + c, own[c], routed[c], cfg.columns[c])
        return m

    def _benes(self, m: Module, blk: int, lines: list, swaps) -> list:
        """Instantiate micro-block ``blk``'s routing switches on ``lines`` (the fixed PASS ones are
        wires); return the output lines."""
        geom, bits = self.geometry, self.fmt.pe_product_bits
        lines = list(lines)
        for bit, (stage, index) in enumerate(geom.routing_switches):
            lo, hi = geom.stage_pairs(stage)[index]
            switch = ReconSwitch(bits, bits, merge_shift=0, max_shift=0)
            m.submodules[f"route_{blk}_{stage}_{index}"] = switch
            m.d.comb += [
                switch.in0.eq(lines[lo]),
                switch.in1.eq(lines[hi]),
                switch.cmd.eq(Mux(swaps[bit], Command.SWAP, Command.PASS)),
            ]
            lines[lo], lines[hi] = switch.out0, switch.out1
        return lines

    def _load(self, m: Module, reg: Signal, value, clear) -> None:
        """``reg <= value`` on enabled edges, ``0`` instead where ``clear`` (and on reset).

        ``reg`` is reset-less: the clear (with the domain's reset) becomes the flip-flops'
        synchronous reset instead of a gate in front of every data bit."""
        with m.If(ResetSignal(allow_reset_less=True) | (self.en & clear)):
            m.d.sync += reg.eq(0)
        with m.Elif(self.en):
            m.d.sync += reg.eq(value)

    def _column(self, m: Module, col: int, own, routed, field) -> None:
        """Column ``col`` after the Beneš network: register 1, merge switch, register 2, scale
        switch, register 3 (whose synchronous clear is the shifter's last step's zero fill)."""
        fmt, geom = self.fmt, self.geometry
        # Register 1: the merge operands, already selected by the op. hi: the own product of a
        # merging column, else 0. lo: the routed product, 0 for ZERO, inverted for MERGE_SUB (the
        # inversion shares the LUT of the last routing stage). -lo = ~lo + 1, and the + 1 rides in
        # bit 0 of hi << b, which is free: (hi << b) - lo = ((hi << b) | 1) + ~lo.
        pe_bits, b = fmt.pe_product_bits, fmt.wbits
        hi_r = Signal(signed(pe_bits), name=f"hi_{col}", reset_less=True)
        lo_r = Signal(signed(pe_bits), name=f"lo_{col}", reset_less=True)
        sign_r = Signal(name=f"sign_{col}")
        shift_r = Signal(geom.shift_bits, name=f"shift_{col}")
        subtract = field.op == ColumnOpEnum.MERGE_SUB
        self._load(m, hi_r, own, ~field.op.as_value()[1])  # not MERGE_ADD / MERGE_SUB
        self._load(m, lo_r, routed ^ subtract.replicate(pe_bits), field.op == ColumnOpEnum.ZERO)
        with m.If(self.en):
            m.d.sync += [sign_r.eq(subtract), shift_r.eq(field.shift)]

        # Merge switch, always MERGE_TO_0 with m = 0 on the prepared operands: (hi << b) ± lo for an
        # outlier, lo for KEEP, 0 for ZERO; kept to its low merge_bits (exact for PE products).
        merge = ReconSwitch(pe_bits + b, pe_bits + b + 1, merge_shift=0, max_shift=0)
        m.submodules[f"merge_{col}"] = merge
        m.d.comb += [merge.in0.eq(Cat(sign_r, C(0, b - 1), hi_r)), merge.in1.eq(lo_r),
                     merge.cmd.eq(Command.MERGE_TO_0)]
        merged_r = Signal(signed(geom.merge_bits), name=f"merged_{col}")
        scale_r = Signal(geom.shift_bits, name=f"scale_{col}")
        with m.If(self.en):
            m.d.sync += [merged_r.eq(merge.out0), scale_r.eq(shift_r)]

        # Scale switch (PASS) for the shift's low bits; its top bit (a step of 2^(sb-1)) is the
        # output register's: a 2:1 multiplexer on the upper bits, a synchronous clear of the lower.
        step = 1 << (geom.shift_bits - 1)
        scale = ReconSwitch(geom.merge_bits, fmt.product_bits, merge_shift=0, max_shift=step - 1)
        m.submodules[f"scale_{col}"] = scale
        m.d.comb += [scale.in0.eq(merged_r), scale.cmd.eq(Command.PASS), scale.shift.eq(scale_r[:-1])]
        low = Signal(step, name=f"low_{col}", reset_less=True)
        high = Signal(signed(fmt.product_bits - step), name=f"high_{col}")
        stepping = scale_r[-1]
        self._load(m, low, scale.out0[:step], stepping)
        with m.If(self.en):
            m.d.sync += high.eq(Mux(stepping, scale.out0, scale.out0[step:]))
        m.d.comb += self.contributions[col].eq(Cat(low, high))


@lru_cache(maxsize=64)
def config_bit_positions(fmt: FormatConfig, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bit positions in :meth:`ReconNetwork.config_layout` of every swap bit (blocks·benes_bits,),
    every op bit (width, 2) and every shift bit (width, shift_bits): the host's vectorised packer
    (:func:`~microscopiq.host.routing.pack_config`) places the fields with these."""
    geom = ReconGeometry(fmt, width)
    layout = ReconNetwork.config_layout(fmt, width)
    block = layout.elem_shape
    columns = block["columns"]
    column = columns.shape.elem_shape
    base = np.arange(geom.blocks)[:, None] * block.size
    benes = (base + block["benes"].offset + np.arange(geom.benes_bits)[None, :]).reshape(-1)
    start = (base + columns.offset + np.arange(geom.ublock)[None, :] * column.size).reshape(-1)
    op = start[:, None] + column["op"].offset + np.arange(2)[None, :]
    shift = start[:, None] + column["shift"].offset + np.arange(geom.shift_bits)[None, :]
    return benes, op, shift
