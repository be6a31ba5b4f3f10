"""Formal property harnesses of ReCoN: the 2×2 switch and the network of one micro-block row.

* :class:`SwitchProof`: every switch command against the table of ``docs/recon.md``, for every
  input pair, sign and shift (combinational, so one step is the whole proof).
* :class:`NetworkProof`: for every configuration the routing compiler produces and all PE products
  (any values of the PE's ranges for the slots' roles), each column's contribution, ``latency``
  enabled cycles after its products and config entered, equals the merge/shift of SPEC §3:
  ``products << b`` (inlier; unshifted in uniform mode), ``((hi << b) ± lo) << (e + X)`` (outlier,
  ``golden.recon_merge``), 0 (partner).

The legal configurations enter as an encoding taken from the compiler itself
(:func:`compiler_encoding`): the Beneš swap bits it writes for each routing permutation of the
placements of one micro-block (the ``dst`` involutions, a table), and the op and shift it writes
for a column from that column's role, code and shared exponent ``X`` (:func:`column_field`, a
formula). ``tests/formal/`` checks that the table holds the Beneš bits the compiler writes for all
5937 placements and that the formula equals the compiler on every (mode, role, code, X), so
assuming them covers every configuration the compiler can produce.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from amaranth import Array, Cat, Const, Elaboratable, Module, Mux, Signal, signed
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, ResetSignal

from ..config import FormatConfig
from ..hdl.recon_network import ReconNetwork
from ..hdl.recon_switch import Command, ReconSwitch
from ..host import routing
from ..quant.layer import Role
from .formal import elaborated, internal

__all__ = ["SwitchProof", "recon_switches", "CompilerEncoding", "compiler_encoding", "column_field",
           "in_pe_range", "spec_merge", "spec_shift", "network_checks", "NetworkProof",
           "ShiftStageProof"]


class SwitchProof(Elaboratable):
    """ReCoN 2×2 switches against the command table of ``docs/recon.md`` for every command, sign,
    shift and pair of inputs.

    Parameters
    ----------
    switches : list of ReconSwitch
        The switches to prove, each with its own free inputs.
    """

    def __init__(self, switches):
        self.switches = list(switches)

    @staticmethod
    def expected(switch: ReconSwitch, in0, in1, cmd, sign, shift):
        """``(out0, out1)`` of the table, exact (Amaranth widens every operation), untruncated."""
        swapped = (cmd == Command.SWAP) | (cmd == Command.MERGE_TO_1)
        first, second = Mux(swapped, in1, in0), Mux(swapped, in0, in1)
        merged = ((first << switch.merge_shift) + Mux(sign, -second, second)) << shift
        passing = (cmd == Command.PASS) | (cmd == Command.SWAP)
        out0 = Mux(passing, first << shift, Mux(cmd == Command.MERGE_TO_0, merged, 0))
        out1 = Mux(passing, second << shift, Mux(cmd == Command.MERGE_TO_1, merged, 0))
        return out0, out1

    def elaborate(self, platform):
        m = Module()
        for index, switch in enumerate(self.switches):
            m.submodules[f"dut{index}"] = switch
            in0, in1 = AnySeq(signed(switch.in_bits)), AnySeq(signed(switch.in_bits))
            cmd, sign = AnySeq(3), AnySeq(1)
            shift = AnySeq(switch.max_shift.bit_length()) if switch.max_shift else 0
            m.d.comb += [switch.in0.eq(in0), switch.in1.eq(in1), switch.cmd.as_value().eq(cmd),
                         switch.sign.eq(sign)]
            if switch.max_shift:
                m.d.comb += switch.shift.eq(shift)
            exact0, exact1 = self.expected(switch, in0, in1, cmd, sign, shift)
            want0, want1 = Signal(signed(switch.out_bits)), Signal(signed(switch.out_bits))
            m.d.comb += [want0.eq(exact0), want1.eq(exact1),  # truncated to out_bits
                         Assert(switch.out0 == want0), Assert(switch.out1 == want1)]
        return m


def recon_switches(fmt: FormatConfig) -> list[ReconSwitch]:
    """The switch shapes ReCoN builds for ``fmt`` (routing, merge, scale: ``docs/recon.md``) and a
    general one with ``merge_shift = b`` and the largest outlier shift."""
    b, pe_bits = fmt.wbits, fmt.pe_product_bits
    shift_bits = max(fmt.max_outlier_shift, b).bit_length()
    return [
        ReconSwitch(pe_bits, pe_bits, merge_shift=0, max_shift=0),
        ReconSwitch(pe_bits + b, pe_bits + b + 1, merge_shift=0, max_shift=0),
        ReconSwitch(pe_bits + 1, fmt.product_bits, merge_shift=0, max_shift=(1 << (shift_bits - 1)) - 1),
        ReconSwitch(pe_bits, fmt.product_bits, merge_shift=b, max_shift=fmt.max_outlier_shift),
    ]


# -- the legal configurations ---------------------------------------------------------------------

@dataclass(frozen=True)
class CompilerEncoding:
    """What :func:`~microscopiq.host.routing.compile_fields` writes for one micro-block.

    Attributes
    ----------
    routes : tuple of (tuple of int, int)
        Every ``(dst, swap bits)`` pair: the routing permutation of a placement (``dst[o] = p``,
        ``dst[p] = o`` per pair, ``dst[c] = c`` for inliers) and the micro-block's Beneš bits.
    columns : dict
        ``(uniform, role, code, X) -> (op, shift)`` of one column.
    """

    routes: tuple
    columns: dict


def _placement_rows(ublock: int):
    """``(roles, mate)`` rows of every placement of one micro-block (:func:`routing.placements`)."""
    places = routing.placements(ublock)
    roles = np.full((len(places), ublock), int(Role.INLIER), dtype=np.int64)
    mate = np.full((len(places), ublock), -1, dtype=np.int64)
    for row, pairs in enumerate(places):
        for hi, lo in pairs:
            roles[row, hi], roles[row, lo] = Role.OUT_HI, Role.OUT_LO
            mate[row, hi], mate[row, lo] = lo, hi
    return roles, mate


def _dst(mate: np.ndarray) -> np.ndarray:
    offset = np.arange(mate.shape[-1])
    return np.where(mate < 0, offset, mate)


@lru_cache(maxsize=None)
def compiler_encoding(fmt: FormatConfig) -> CompilerEncoding:
    """Run the compiler over every placement of one micro-block and over every (role, code, X)
    of a column, and collect what it writes."""
    u, b, geom = fmt.ublock, fmt.wbits, routing.ReconGeometry(fmt, fmt.ublock)
    roles, mate = _placement_rows(u)
    zeros = np.zeros_like(roles)
    fields = routing.compile_fields(fmt, u, zeros, roles, mate, zeros[:, :1])
    swaps = [config & ((1 << geom.benes_bits) - 1) for config in routing.pack_config(geom, fields)]
    routes = tuple(sorted({(tuple(int(d) for d in dst), swap) for dst, swap in zip(_dst(mate), swaps)}))

    # Columns: one row per (code, X) with column 0 OUT_HI, column 1 its OUT_LO, the rest inliers,
    # all holding the code; and the uniform rows (every column an inlier).
    codes = np.arange(1 << b)
    xs = np.arange(1 << fmt.xbits)
    code_grid, x_grid = (a.reshape(-1) for a in np.meshgrid(codes, xs, indexing="ij"))
    row_roles = np.full((len(code_grid), u), int(Role.INLIER))
    row_roles[:, 0], row_roles[:, 1] = Role.OUT_HI, Role.OUT_LO
    row_mate = np.full((len(code_grid), u), -1)
    row_mate[:, 0], row_mate[:, 1] = 1, 0
    row_codes = np.repeat(code_grid[:, None], u, axis=1)
    msq = routing.compile_fields(fmt, u, row_codes, row_roles, row_mate, x_grid[:, None])
    uni = routing.compile_fields(fmt, u, row_codes, np.zeros_like(row_roles), np.full_like(row_mate, -1),
                                 x_grid[:, None], uniform=True)
    columns = {}
    for i, (code, x) in enumerate(zip(code_grid, x_grid)):
        for col, role in ((0, Role.OUT_HI), (1, Role.OUT_LO), (2, Role.INLIER)):
            columns[(0, int(role), int(code), int(x))] = (int(msq.op[i, col]), int(msq.shift[i, col]))
        columns[(1, int(Role.INLIER), int(code), int(x))] = (int(uni.op[i, 0]), int(uni.shift[i, 0]))
    return CompilerEncoding(routes=routes, columns=columns)


def column_field(fmt: FormatConfig, uniform, role, code, xexp):
    """The ``op | shift << 2`` word the compiler writes for one column, as an Amaranth expression
    of its mode, role, code and ``X`` (checked equal to :attr:`CompilerEncoding.columns` for every
    key by ``tests/formal/test_formal_recon_net.py``): KEEP with shift ``b`` (0 in uniform mode) for an
    inlier, MERGE_ADD/MERGE_SUB by the sign with shift ``e + X`` for an OUT_HI, ZERO for an OUT_LO."""
    sign = code[fmt.wbits - 1]
    op = Mux(role == Role.INLIER, routing.ColumnOp.KEEP,
             Mux(role == Role.OUT_LO, routing.ColumnOp.ZERO,
                 Mux(sign, routing.ColumnOp.MERGE_SUB, routing.ColumnOp.MERGE_ADD)))
    return Cat(op[:2], spec_shift(fmt, uniform, role, code, xexp))


# -- the network ----------------------------------------------------------------------------------

def in_pe_range(fmt: FormatConfig, role, product):
    """``product`` is a value the PE can produce for a slot of ``role``
    (:func:`~microscopiq.quant.golden.pe_product`: ``|x·q| <= 2^(a-1)·2^(b-1)``, ``|±x| <= 2^(a-1)``,
    ``|x·f| <= 2^(a-1)·(2^b - 1)``)."""
    b = fmt.wbits
    bound = Mux(role == Role.INLIER, fmt.act_bound << (b - 1),
                Mux(role == Role.OUT_HI, fmt.act_bound, fmt.act_bound * ((1 << b) - 1)))
    return (product <= bound) & (product >= -bound)


def spec_merge(fmt: FormatConfig, role, code, product, partner):
    """A column's merge of SPEC §3 before its shift: ``product`` for an inlier, ``(product << b) ±
    partner`` for an outlier (``golden.recon_merge``: the code's MSB the sign; ``partner`` the
    product of its partner's column), 0 for a partner."""
    b = fmt.wbits
    merged = (product << b) + Mux(code[b - 1], -partner, partner)
    return Mux(role == Role.INLIER, product, Mux(role == Role.OUT_HI, merged, 0))


def spec_shift(fmt: FormatConfig, uniform, role, code, xexp):
    """A column's shift of SPEC §3: ``b`` for an inlier (0 in uniform mode), ``e + X`` for an outlier
    (``e`` the code's low bits), 0 for a partner (whose merge is 0)."""
    b = fmt.wbits
    return Mux(role == Role.INLIER, Mux(uniform, 0, b), Mux(role == Role.OUT_HI, code[:b - 1] + xexp, 0))


def network_checks(network: ReconNetwork, fragment, expected: list, *, cut: bool) -> tuple[list, int]:
    """What a harness asserts of ``network`` (elaborated as ``fragment``) for a row whose columns
    should give ``expected`` (``(merge, shift)`` each, :func:`spec_merge` and :func:`spec_shift`),
    and after how many enabled edges: ``(signal, expected value)`` pairs — the contributions
    ``merge << shift`` (SPEC §3's: ``p << b`` for an inlier, ``p`` in uniform mode, ``((hi << b) ±
    lo) << (e + X)`` for an outlier, 0 for a partner) after ``latency`` edges, or with ``cut`` the
    merge registers ``merged_<c>`` and ``scale_<c>`` one edge earlier (:class:`ShiftStageProof`
    covers the last stage)."""
    if cut:
        return [(internal(fragment, name), want) for c, (merge, shift) in enumerate(expected)
                for name, want in ((f"merged_{c}", merge), (f"scale_{c}", shift))], network.latency - 1
    return [(network.contributions[c], merge << shift) for c, (merge, shift) in enumerate(expected)], network.latency


class NetworkProof(Elaboratable):
    """ReCoN network of one row of ``width`` columns against SPEC §3 (see the module docstring).

    Every cycle brings a new row: any codes, shared exponents ``X``, uniform or MicroScopiQ mode,
    per micro-block any placement (one of the compiler's routes, each pair in either orientation)
    and any products within the PE's range for each slot's role
    (:func:`~microscopiq.quant.golden.pe_product`: ``|x·q| <= 2^(a-1)·2^(b-1)``, ``|±x| <= 2^(a-1)``,
    ``|x·f| <= 2^(a-1)·(2^b - 1)``); the config is the compiler's for that row. The harness delays
    the exact expected contributions by ``network.latency`` enabled cycles and asserts them once
    that many enabled edges have passed.

    With ``cut``, the harness asserts one register stage earlier instead, at the network's merge
    registers (``merged_<c>``, ``scale_<c>``): the merge and the shift of SPEC §3 (:func:`spec_merge`,
    :func:`spec_shift`). With :class:`ShiftStageProof` (the last stage makes ``merged << scale`` from
    any state) that is the whole network at formats where the uncut proof does not finish: the
    routing and merge are the solver's work, and the cut keeps the shifters out of it.

    Parameters
    ----------
    fmt : FormatConfig
    width : int, optional
        Columns (default one micro-block, ``fmt.ublock``).
    network : ReconNetwork, optional
        The block under proof (default ``ReconNetwork(fmt, width)``; the mutation tests pass a
        broken one).
    stalls : bool
        ``en`` is free in every cycle (True) or always 1 (False).
    cut : bool
        Assert at the merge registers (True) or at ``contributions`` (False).
    """

    def __init__(self, fmt: FormatConfig, width: int | None = None, *, network=None, stalls: bool = True,
                 cut: bool = False):
        self.fmt = fmt
        self.width = fmt.ublock if width is None else width
        self.network = ReconNetwork(fmt, self.width) if network is None else network
        self.stalls, self.cut = stalls, cut

    def _block(self, m: Module, enc: CompilerEncoding, block: int, uniform) -> list:
        """Drive micro-block ``block`` with a free placement, codes and ``X`` and the compiler's
        config for them; return each column's exact expected ``(merge, shift)``."""
        fmt, u, b = self.fmt, self.fmt.ublock, self.fmt.wbits
        cfg = self.network.config[block]
        dst_bits = (u - 1).bit_length()
        route = AnySeq(range(len(enc.routes)))
        identity = enc.routes.index((tuple(range(u)), 0))
        xexp, hi_side = AnySeq(fmt.xbits), AnySeq(u)
        codes = [AnySeq(b) for _ in range(u)]
        products = [self.network.products[block * u + c] for c in range(u)]
        m.d.comb += [product.eq(AnySeq(fmt.pe_product_bits)) for product in products]
        m.d.comb += [Assume(route < len(enc.routes)), Assume(~uniform | (route == identity))]
        dst_word = Signal(dst_bits * u, name=f"dst_{block}")
        m.d.comb += [
            dst_word.eq(Array(Const(sum(d << (dst_bits * c) for c, d in enumerate(dst)), dst_bits * u)
                              for dst, _ in enc.routes)[route]),
            cfg.benes.eq(Array(Const(swaps, len(cfg.benes)) for _, swaps in enc.routes)[route]),
        ]
        expected = []
        for c in range(u):
            dst = dst_word[c * dst_bits:(c + 1) * dst_bits]
            paired = dst != c
            m.d.comb += Assume(~paired | (hi_side[c] != hi_side.bit_select(dst, 1)))
            role = Signal(2, name=f"role_{block}_{c}")
            m.d.comb += [
                role.eq(Mux(paired, Mux(hi_side[c], Role.OUT_HI, Role.OUT_LO), Role.INLIER)),
                cfg.columns[c].as_value().eq(column_field(fmt, uniform, role, codes[c], xexp)),
            ]
            m.d.comb += Assume(in_pe_range(fmt, role, products[c]))
            expected.append((spec_merge(fmt, role, codes[c], products[c], Array(products)[dst]),
                             spec_shift(fmt, uniform, role, codes[c], xexp)))
        return expected

    def elaborate(self, platform):
        m = Module()
        m.d.comb += ResetSignal().eq(0)
        fmt, net = self.fmt, self.network
        m.submodules.network = fragment = elaborated(net)
        enc = compiler_encoding(fmt)
        uniform = AnySeq(1)
        expected = []
        for block in range(self.width // fmt.ublock):
            expected += self._block(m, enc, block, uniform)
        en = AnySeq(1) if self.stalls else 1
        m.d.comb += net.en.eq(en)
        checks, latency = network_checks(net, fragment, expected, cut=self.cut)

        # The expected values, delayed like the network's data: latency enabled edges.
        stages = [[Signal(want.shape(), name=f"expected_{s}_{i}") for i, (_, want) in enumerate(checks)]
                  for s in range(latency)]
        filled = Signal(range(latency + 1))
        with m.If(en):
            for s, stage in enumerate(stages):
                source = [want for _, want in checks] if s == 0 else stages[s - 1]
                m.d.sync += [reg.eq(value) for reg, value in zip(stage, source)]
            with m.If(filled != latency):
                m.d.sync += filled.eq(filled + 1)
        with m.If(filled == latency):
            m.d.comb += [Assert(got == want) for (got, _), want in zip(checks, stages[-1])]
        return m


class ShiftStageProof(Elaboratable):
    """The network's last stage, from any state: after every enabled edge each column's
    contribution is its merge register shifted by its shift register as they were before the edge
    (``merged_<c> << scale_<c>``, kept to ``product_bits``); every input free in every cycle, ``en``
    too. k-induction, so unbounded; with :class:`NetworkProof`'s ``cut`` it completes the network
    proof (the contribution is the shifted merge; SPEC's values fit ``product_bits``).

    Parameters
    ----------
    fmt : FormatConfig
    network : ReconNetwork, optional
        The block under proof (default ``ReconNetwork(fmt, fmt.ublock)``).
    """

    def __init__(self, fmt: FormatConfig, *, network=None):
        self.fmt = fmt
        self.network = ReconNetwork(fmt, fmt.ublock) if network is None else network

    def elaborate(self, platform):
        m = Module()
        m.d.comb += ResetSignal().eq(0)
        net = self.network
        m.submodules.network = fragment = elaborated(net)
        m.d.comb += [net.products.as_value().eq(AnySeq(len(net.products.as_value()))),
                     net.config.as_value().eq(AnySeq(len(net.config.as_value()))),
                     net.en.eq(AnySeq(1))]
        shifted = Signal()                       # an enabled edge has passed since the start
        with m.If(net.en):
            m.d.sync += shifted.eq(1)
        for c in range(net.width):
            merged, scale = internal(fragment, f"merged_{c}"), internal(fragment, f"scale_{c}")
            want = Signal(signed(self.fmt.product_bits), name=f"want_{c}")
            with m.If(net.en):
                m.d.sync += want.eq(merged << scale)
            m.d.comb += Assert(~shifted | (net.contributions[c] == want))
        return m

