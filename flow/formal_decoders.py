"""Formal property harnesses of the on-chip decoders (:mod:`~microscopiq.hdl.exp_decoder`,
:mod:`~microscopiq.hdl.meta_decoder`).

* :class:`ExpProof`: the exponent decoder against a reference of its docstring, free beats and free
  back-pressure in every cycle: ``i.ready = ~o.valid | o.ready``; a ``minimum`` beat taken loads the
  reference minima and makes no output; every other beat taken makes exactly one output beat,
  offered from the next cycle and held (valid and payload) until taken, with ``shifts[c] =
  E[c] - E_min[c]`` where that is >= 0, else 0, and ``error`` exactly when some ``E[c] < E_min[c]``.
  k-induction; its one invariant, the decoder's minima (an internal register, named) equal the
  reference's.
* :class:`MetaProof`: the metadata decoder composed with the ReCoN network
  (:class:`~microscopiq.hdl.recon_network.ReconNetwork`) it configures. Every cycle a new row of
  free records (any codes, ``X``, ``raw``, ``present``, ``count`` and pair fields: every legal
  placement, pairs in any order and orientation, and every illegal one); the decoder's output
  drives the network's ``config``, any PE products of the rows' roles' ranges its ``products``.
  Asserted, ``latency`` cycles after the row went in: ``codes`` passed through, ``error`` exactly
  when a used slot is named twice (in a present micro-block of a non-raw row), the roles of the
  placement (legal rows), and ``ReconNetwork.latency`` cycles later the network's contributions
  equal the merge/shift of SPEC §3 for that row and those products (legal rows).
"""

from __future__ import annotations

from functools import reduce

from amaranth import Array, C, Cat, Elaboratable, Module, Mux, Signal, signed
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, ResetSignal
from amaranth.lib.data import View

from ..config import FormatConfig
from ..hdl.exp_decoder import ExpDecoder
from ..hdl.layouts import EXP_BITS
from ..hdl.meta_decoder import MetaDecoder
from ..hdl.recon_network import ReconNetwork
from ..quant.layer import Role
from .formal import elaborated, internal
from .formal_recon import in_pe_range, network_checks, spec_merge, spec_shift

__all__ = ["ExpProof", "MetaProof", "delayed"]


def delayed(m: Module, value, cycles: int, name: str):
    """``value`` ``cycles`` clock edges ago (a shift register in the harness)."""
    for stage in range(cycles):
        reg = Signal(value.shape(), name=f"{name}_d{stage + 1}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


class ExpProof(Elaboratable):
    """The exponent decoder's contract (module docstring), by k-induction.

    Parameters
    ----------
    width : int
        Columns (independent but for ``error``, their OR).
    decoder : ExpDecoder, optional
        The block under proof (default ``ExpDecoder(width)``; the mutation tests pass a broken one).
    """

    def __init__(self, width: int = 2, *, decoder=None):
        self.decoder = ExpDecoder(width) if decoder is None else decoder
        self.width = self.decoder.width

    def elaborate(self, platform):
        m = Module()
        m.d.comb += ResetSignal().eq(0)
        dec = self.decoder
        m.submodules.decoder = fragment = elaborated(dec)
        payload = dec.i.payload.as_value()
        m.d.comb += [dec.i.valid.eq(AnySeq(1)), payload.eq(AnySeq(len(payload))), dec.o.ready.eq(AnySeq(1))]
        taken, given = dec.i.valid & dec.i.ready, dec.o.valid & dec.o.ready
        minimum, exps = dec.i.payload.minimum, dec.i.payload.exps
        m.d.comb += Assert(dec.i.ready == (~dec.o.valid | dec.o.ready))

        # Reference: the minima (0 after reset) and the one beat owed.
        ref_min = [Signal(signed(EXP_BITS), name=f"ref_min_{c}") for c in range(self.width)]
        owed, owed_error = Signal(), Signal()
        owed_shifts = [Signal(EXP_BITS + 1, name=f"owed_shift_{c}") for c in range(self.width)]  # untruncated
        diffs = [exps[c] - ref_min[c] for c in range(self.width)]
        with m.If(taken & minimum):
            m.d.sync += [reg.eq(exps[c]) for c, reg in enumerate(ref_min)]
        with m.If(taken & ~minimum):
            m.d.sync += [owed.eq(1), owed_error.eq(Cat(*(d < 0 for d in diffs)).any())]
            m.d.sync += [reg.eq(Mux(d < 0, 0, d)) for reg, d in zip(owed_shifts, diffs)]
        with m.Elif(given | taken):
            m.d.sync += owed.eq(0)
        m.d.comb += Assert(dec.o.valid == owed)
        with m.If(owed):
            m.d.comb += [Assert(dec.o.payload.error == owed_error),
                         *(Assert(dec.o.payload.shifts[c] == reg) for c, reg in enumerate(owed_shifts))]
        # The induction invariant: the decoder keeps the reference's minima.
        minima = internal(fragment, "minima")
        m.d.comb += [Assert(minima[c * EXP_BITS:(c + 1) * EXP_BITS].as_signed() == reg)
                     for c, reg in enumerate(ref_min)]
        return m


def _any(values):
    return reduce(lambda a, b: a | b, values, C(0, 1))


class MetaProof(Elaboratable):
    """The metadata decoder and the network it configures (module docstring), one micro-block.

    Parameters
    ----------
    fmt : FormatConfig
    decoder : MetaDecoder, optional
        The block under proof (default ``MetaDecoder(fmt, fmt.ublock)``; the mutation tests pass a
        broken one). Its output is always ready (full rate: ``latency`` is exact).
    cut : bool
        Assert the network at its merge registers (:func:`~.formal_recon.network_checks`), not at
        its contributions.
    """

    def __init__(self, fmt: FormatConfig, *, decoder=None, cut: bool = False):
        self.fmt, self.cut = fmt, cut
        self.decoder = MetaDecoder(fmt, fmt.ublock) if decoder is None else decoder
        self.network = ReconNetwork(fmt, fmt.ublock)

    def _placement(self, record, uniform):
        """``(dst, roles, illegal)`` of one record: the routing permutation and the roles its used
        pairs name, and whether a used slot is named twice."""
        u = self.fmt.ublock
        count = record.count if "count" in record.shape().members else C(0, 1)
        used = [~uniform & record.present & (count >= i) for i in range(len(record.pairs))]
        pairs = [(use, record.pairs[i].outlier, record.pairs[i].partner) for i, use in enumerate(used)]
        fields = [(use, slot) for use, o, p in pairs for slot in (o, p)]
        illegal = _any(a_use & b_use & (a == b) for i, (a_use, a) in enumerate(fields)
                       for b_use, b in fields[i + 1:])
        dst, roles = [], []
        for c in range(u):
            hi = [use & (o == c) for use, o, _ in pairs]
            lo = [use & (p == c) for use, _, p in pairs]
            mate = reduce(lambda acc, hit: Mux(hit[0], hit[1], acc),
                          [(h, p) for h, (_, _, p) in zip(hi, pairs)] + [(l, o) for l, (_, o, _) in zip(lo, pairs)],
                          C(c, (u - 1).bit_length()))
            dst.append(mate)
            roles.append(Mux(_any(hi), Role.OUT_HI, Mux(_any(lo), Role.OUT_LO, Role.INLIER)))
        return dst, roles, illegal

    def elaborate(self, platform):
        m = Module()
        m.d.comb += ResetSignal().eq(0)
        fmt, dec, net = self.fmt, self.decoder, self.network
        u = fmt.ublock
        m.submodules.decoder = dec
        m.submodules.network = fragment = elaborated(net)
        payload = dec.i.payload
        m.d.comb += [dec.i.valid.eq(AnySeq(1)), payload.as_value().eq(AnySeq(len(payload.as_value()))),
                     dec.o.ready.eq(1), net.en.eq(1),
                     net.config.as_value().eq(dec.o.payload.config.as_value())]

        # The row as it went in, when its decoder output comes out.
        lat = dec.latency
        row = delayed(m, payload.as_value(), lat, "row")
        valid = delayed(m, dec.i.valid, lat, "valid")
        view = View(payload.shape(), row)
        uniform, record = view.raw, view.blocks[0]
        dst, roles, illegal = self._placement(record, uniform)
        dst_now = [Signal(len(d), name=f"dst_{c}") for c, d in enumerate(dst)]
        role_now = [Signal(2, name=f"role_{c}") for c in range(u)]
        m.d.comb += [s.eq(d) for s, d in zip(dst_now, dst)] + [s.eq(r) for s, r in zip(role_now, roles)]

        filled = Signal(range(lat + net.latency + 1))
        with m.If(filled != lat + net.latency):
            m.d.sync += filled.eq(filled + 1)
        out = dec.o.payload
        with m.If(filled >= lat):
            m.d.comb += [Assert(dec.o.valid == valid), Assert(out.codes.as_value() == view.codes.as_value()),
                         Assert(out.error == illegal)]
            with m.If(~illegal):
                m.d.comb += [Assert(out.roles[c] == role_now[c]) for c in range(u)]

        # The network: any products of the row's roles' ranges; the contributions SPEC §3 gives.
        products = [net.products[c] for c in range(u)]
        m.d.comb += [p.eq(AnySeq(fmt.pe_product_bits)) for p in products]
        m.d.comb += [Assume(in_pe_range(fmt, role_now[c], products[c])) for c in range(u)]
        expected = [(spec_merge(fmt, role_now[c], view.codes[c], products[c], Array(products)[dst_now[c]]),
                     spec_shift(fmt, uniform, role_now[c], view.codes[c], record.xexp)) for c in range(u)]
        checks, latency = network_checks(net, fragment, expected, cut=self.cut)
        late = [delayed(m, want, latency, f"expected_{i}") for i, (_, want) in enumerate(checks)]
        legal_late = delayed(m, ~illegal, latency, "legal")
        with m.If((filled >= lat + latency) & legal_late):
            m.d.comb += [Assert(got == want) for (got, _), want in zip(checks, late)]
        return m
