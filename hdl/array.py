"""The weight-stationary ``R × C`` array of MicroScopiQ PEs with ReCoN (docs/architecture.md).

Rows carry ``k``, columns carry ``n``. A token's activation vector enters at stage 0 and walks one
stage per enabled cycle down a marker pipeline; row ``r`` multiplies it when it reaches stage ``r``
(the one-cycle-per-row skew), its ReCoN turns the row's C products into the exact contributions
``x · v[n,k]``, and the column adder of row ``r`` adds them to the partial sum coming down from row
``r - 1``. Weights, ReCoN configurations and the per-row scheduling fields are double-buffered and
swap with the skew: row ``r`` switches to the next tile exactly when that tile's first token reaches
it, so tiles follow each other without a gap, and row ``r`` of the tile after can be loaded from
then on: loading follows the current tile's first token down the rows (:attr:`Array.load`).

ReCoN arrangements (``AccelConfig.recon_share``):

* ``1`` (per row): one :class:`~microscopiq.hdl.recon_network.ReconNetwork` per row, full rate.
* ``S > 1`` (shared): one network per group of ``S`` rows. Rows without an outlier bypass it
  (their contribution is ``product << b``; a raw layer's sums are shifted back once per column at
  the output). The ``j``-th outlier row of a
  group (in row order) owns network slot ``j``; the tile's period ``T`` is the largest number of
  outlier rows in a group (at least 1). Tokens enter every ``T`` cycles and a slot clock modulo
  ``T`` per group gives each slot one network cycle per token; each row holds its contribution in
  a register until its column adder takes it, and a bypass row's products wait ``I + L + H`` cycles
  in a delay line, so that every row multiplies when the token reaches it. Every token carries its
  tile's ``T``, so tiles of different periods overlap; the controller leaves the tile's own gap
  (:attr:`Array.next_gap`: the largest offset of an outlier row in its group) after a tile's last
  token.
* ``0`` (none): no network, every row is a bypass row with shift 0 (uniform layers only).

A **MicroScopiQ pair pass** (a multi-precision instance with per-row ReCoN, ``pairs`` and
``narrow`` both 1): each PE's network slot (lane ``r``) goes through the row's ReCoN as in a
narrow pass, and its inlier slot's product (lane ``R + r``, :attr:`PE.inlier <.pe.PE.inlier>`)
skips the network: a chain of narrow adders per column, one per row, sums a token's inlier
products down the rows with the token's skew (row ``r`` adds its product, ready one stage after
the token reaches it, to the chain's value from row ``r − 1``, the product's ``inlier_carry`` as the
adder's carry-in), and the last row's column adder
adds the chain's sum, ``P + L + H − 1`` registers later, times ``2^b`` like an inlier's
contribution (0 outside a pair pass): ``R`` adders per column, row ``r``'s as wide as a sum of
``r + 1`` products (``a + b/2 + ⌈log2(r + 1)⌉`` bits at most), and one operand of the last column
adder per column, no extra latency. Such an array's PEs are built ``apart`` (``PE(apart=True)``):
in a uniform pair pass too the high slot's product leaves on ``inlier`` and the same chain adds it,
unshifted (a raw pass's scale), so no PE has an adder of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Array as ValueArray, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import AccelConfig
from .bits import replicas
from .pe import PE
from .recon_geometry import config_bits
from .recon_network import ReconNetwork, recon_latency

__all__ = ["Array", "ArrayTiming", "PRODUCT_PIPE", "FIELD_LAG", "issue_layout", "load_layout",
           "result_layout"]

#: Register stages between a PE's product register and its consumer (ReCoN or the column adder): the
#: DSP sites sit far from the logic that consumes their products, so that route gets a cycle of its own.
PRODUCT_PIPE = 1
#: Cycles by which a loaded row's ReCoN config and scheduling fields reach their shadow registers
#: after its PE banks: those fields swap ``1 + PRODUCT_PIPE`` stages after the banks (with the
#: products they apply to), so written as much later their shadow is free exactly when the banks'
#: is, and one load rule (row ``r`` from the cycle the current tile's first token enters stage ``r``)
#: covers both.
FIELD_LAG = 1 + PRODUCT_PIPE


def issue_layout(cfg: AccelConfig, tag_shape=1) -> data.StructLayout:
    """One token entering the array: ``x`` (row ``r`` gets ``x[r]``), ``first`` marks the first token
    of a weight tile, ``tag`` (of ``tag_shape``) is carried unchanged to ``out``."""
    return data.StructLayout({
        "first": 1, "tag": tag_shape,
        "x": data.ArrayLayout(signed(cfg.fmt.abits), cfg.act_lanes),
    })


def load_layout(cfg: AccelConfig) -> data.StructLayout:
    """One PE row of the next weight tile: codes, roles and the ReCoN config of row ``row``;
    ``select`` is ``1 << row``, the rows' bank write enables as bits the source holds in registers
    (no row decoder between the core's row buffer and the clock enables of every PE's banks)."""
    return data.StructLayout({
        "valid": 1, "row": range(cfg.rows), "select": cfg.rows,
        "codes": data.ArrayLayout(unsigned(cfg.fmt.wbits), cfg.cols),
        "roles": data.ArrayLayout(unsigned(2), cfg.cols),
        "config": unsigned(_config_bits(cfg)),
    })


def act_sum_bits(cfg: AccelConfig) -> int:
    """Signed width of the sum column (``Σ x`` over one K-tile, ``2R`` deep in pair mode)."""
    return (cfg.fmt.act_bound * cfg.act_lanes).bit_length() + 1


def result_layout(cfg: AccelConfig, tag_shape=1) -> data.StructLayout:
    """A token leaving the array: the ``C`` column sums over the K-tile and the sum column."""
    return data.StructLayout({
        "first": 1, "tag": tag_shape,
        "sums": data.ArrayLayout(signed(cfg.column_sum_bits), cfg.cols),
        "act_sum": signed(act_sum_bits(cfg)),
    })


def _config_bits(cfg: AccelConfig) -> int:
    return config_bits(cfg.fmt, cfg.cols) if cfg.has_recon else 0


@dataclass(frozen=True)
class ArrayTiming:
    """The latencies of the :class:`Array` of one :class:`AccelConfig`, known without elaborating
    it (the host's cycle model is built from them).

    A token issued in cycle ``c`` leaves (``out``) in cycle ``c + latency(T)``, ``T`` its tile's
    period: ``latency(T) = 1 + R + T + P + I + L + H + O`` — the input register, one stage per PE
    row (the systolic skew), the tile's period ``T``, ``P`` = :data:`PRODUCT_PIPE`, ``L`` the ReCoN
    latency (:func:`~.recon_network.recon_latency`, 0 without ReCoN) and three registers of shared
    ReCoN (each 1 when shared, else 0): ``I`` after a network's input multiplexers, ``H`` holding
    its result for the row's column adder, ``O`` on the column sums leaving the array.
    """

    rows: int
    recon_share: int
    #: ``L``.
    recon_latency: int

    @classmethod
    def of(cls, cfg: AccelConfig) -> "ArrayTiming":
        return cls(rows=cfg.rows, recon_share=cfg.recon_share, recon_latency=recon_latency(cfg))

    @property
    def shared(self) -> bool:
        """Time-multiplexed ReCoN (one network per ``recon_share > 1`` rows)."""
        return self.recon_share > 1

    @property
    def hold(self) -> int:
        """``H``: the register that holds a shared network's result until its row's adder takes it."""
        return 1 if self.shared else 0

    @property
    def network_input(self) -> int:
        """``I``: the register between a shared network's input multiplexers (the slot's row's
        products and configuration) and the network, so the row's claim and the slot clock do not
        run into the network's first switches in one cycle."""
        return 1 if self.shared else 0

    @property
    def output_stage(self) -> int:
        """``O``: the register of a shared array's column sums after the last row's adder (the
        bypass selection into the column adders and the raw shift end there, not in the PPU's
        input register)."""
        return 1 if self.shared else 0

    @property
    def max_period(self) -> int:
        """Largest tile period ``T`` (``recon_share`` when shared, else 1)."""
        return self.recon_share if self.shared else 1

    @property
    def pipeline(self) -> int:
        """``P + I + L + H``: enabled cycles from a row's PE product register to its column adder's
        input, beyond the one cycle of a period-1 tile."""
        return PRODUCT_PIPE + self.network_input + self.recon_latency + self.hold

    @property
    def tile_gap_extra(self) -> int:
        """The largest tile gap (:meth:`tile_gap`): ``S - 1`` with shared ReCoN, else 0."""
        return self.recon_share - 1 if self.shared else 0

    def tile_gap(self, outlier_rows) -> int:
        """Extra cycles between the last token of a tile whose rows hold an outlier where
        ``outlier_rows`` (``R`` truth values) is true and the next tile's first token, beyond the
        period: with shared ReCoN, the largest offset ``r mod S`` of an outlier row ``r`` in its
        group (0 without outlier rows; always 0 unless shared).

        Why: a group's slot clock and slots switch to the next tile when its first token's
        products reach the group's first row. A token's products reach the outlier row at offset
        ``i`` of a group ``i`` cycles after its first row, and the row holds them for ``T`` cycles,
        in which the slot clock gives it the network once (in its last one at the latest, when
        bubbles put the token out of step with the clock), so the token is through the group
        ``i + T`` cycles after it reached the first row. Bypass rows multiply with every other
        row and delay their products (:meth:`Array._bypass_delay`), so they need no gap."""
        if not self.shared:
            return 0
        flags = [bool(v) for v in outlier_rows]
        if len(flags) != self.rows:
            raise ValueError(f"outlier_rows must have {self.rows} entries, not {len(flags)}")
        return max((r % self.recon_share for r, outlier in enumerate(flags) if outlier), default=0)

    def latency(self, period: int) -> int:
        """Enabled cycles from ``issue`` to ``out`` of a token of a tile of period ``period``."""
        return 1 + self.rows + period + self.pipeline + self.output_stage

    @property
    def depth(self) -> int:
        """:meth:`latency` of a period-1 tile."""
        return self.latency(1)


class Array(wiring.Component):
    """Weight-stationary ``R × C`` PE array with ReCoN, double-buffered tiles.

    Latency ``1 + R + T + P + I + L + H + O`` enabled cycles from ``issue`` to ``out`` (``T`` the tile's
    period, 1 unless ReCoN is shared; :class:`ArrayTiming` names the terms, :attr:`timing` holds
    them and :attr:`depth` gives the latency for ``T = 1``). Throughput one token every ``T``
    cycles. All state advances only when ``en`` is 1.

    Loading: rows of the next tile are written with ``load`` into the shadow banks, at most one per
    enabled cycle, in row order (``0 … R-1``), row ``r`` no earlier than the enabled cycle ``c + r``
    where ``c`` is the cycle in which the current tile's first token is on ``issue`` (it enters
    stage ``r`` at the end of that cycle and swaps row ``r``'s banks then; a row written in the
    same cycle goes into the bank that becomes the shadow). Writing row 0 no earlier than ``c``
    and the rows one after another is enough. The shadow tile's first token (``issue.first``)
    may be issued in any cycle after its last row was written; it makes the tile active row by row
    as it passes. The ReCoN config and the scheduling fields of a row reach their shadow
    :data:`FIELD_LAG` cycles after its banks, matching their later swap. So the tile-to-tile period
    allowed by the double buffering is ``R`` cycles (each row is free only once the current tile's
    first token has reached it, and the last row must be written before the next first token);
    the load port (one row per cycle) allows the same. With shared ReCoN, ``next_period`` and
    ``next_gap`` are the shadow tile's ``T`` and gap (valid once its last row is written): the
    controller issues that tile's tokens ``T`` cycles apart, and the next tile's first token
    ``T + gap`` cycles after the last one (:meth:`ArrayTiming.tile_gap`).

    Parameters
    ----------
    cfg : AccelConfig
    tag_shape : shape-like
        Shape of the token tag carried from ``issue`` to ``out`` (the PPU's
        :func:`~.ppu.token_tag_layout` in the core).
    dsp_model : bool
        With ``cfg.dsp`` set: the PEs' DSPs as behavioural Amaranth registers, for ``amaranth.sim``
        tests only (:class:`~.dsp_mult.DspMult`); same latency.

    Members
    -------
    en : In(1)
        Global clock enable (0 = stall).
    raw : In(1)
        Uniform (raw) mode: bypass rows contribute ``x · q`` unshifted.
    pairs : In(1)
        (multi-precision instances only) Pair mode, static for a pass: every PE computes two
        ``b/2``-bit slots, row ``r`` K rows ``r`` (``x[r]``) and ``R + r`` (``x[R + r]``), and the
        sum column adds all ``2R`` activations.
    narrow : In(1)
        (multi-precision instances only) A MicroScopiQ pass at ``b/2``, static for a pass: the
        column sums leave shifted right by ``b/2`` (see :meth:`_raw_sums`). With ``pairs`` (and
        per-row ReCoN): a MicroScopiQ pair pass, lane ``r`` the network slot and lane ``R + r``
        the inlier slot (module docstring).
    issue : In(stream.Signature(issue_layout(cfg, tag_shape), always_ready=True))
        The token entering this cycle (``valid`` 0 = bubble); the array never refuses one.
    load : In(load_layout(cfg))
        One row of the next tile (``valid``: write it this cycle), under the rule above.
    out : Out(stream.Signature(result_layout(cfg, tag_shape), always_ready=True))
        The token leaving this cycle with its column sums; it cannot be held back.
    next_period : Out(range(recon_share + 1))
        ``T`` of the loaded (shadow) tile (1 unless ReCoN is shared).
    next_gap : Out(range(tile_gap_extra + 1))
        The loaded (shadow) tile's gap, :meth:`ArrayTiming.tile_gap` (0 unless ReCoN is shared).
    """

    def __init__(self, cfg: AccelConfig, tag_shape=1, dsp_model: bool = False):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        self.tag_shape = tag_shape
        self.dsp_model = dsp_model
        self.timing = timing = ArrayTiming.of(cfg)
        self.shared, self.max_period = timing.shared, timing.max_period
        self.recon_latency = timing.recon_latency
        ports = {
            "en": In(1),
            "raw": In(1),
            "issue": In(stream.Signature(issue_layout(cfg, tag_shape), always_ready=True)),
            "load": In(load_layout(cfg)),
            "out": Out(stream.Signature(result_layout(cfg, tag_shape), always_ready=True)),
            "next_period": Out(range(self.max_period + 1)),
            "next_gap": Out(range(timing.tile_gap_extra + 1)),
        }
        if cfg.multi_precision:
            ports["pairs"] = In(1)
            ports["narrow"] = In(1)
        super().__init__(ports)

    @property
    def tile_gap_extra(self) -> int:
        """:attr:`ArrayTiming.tile_gap_extra`."""
        return self.timing.tile_gap_extra

    @property
    def depth(self) -> int:
        """Enabled cycles from ``issue`` to ``out`` for ``T = 1`` (:attr:`ArrayTiming.depth`)."""
        return self.timing.depth

    @property
    def pipeline(self) -> int:
        """:attr:`ArrayTiming.pipeline`, ``P + I + L + H``."""
        return self.timing.pipeline

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        rows = cfg.rows
        en = self.en
        lat = self.pipeline
        stages = rows + self.max_period + lat + 1
        # Each token carries its tile's period T: tiles with different periods overlap in the
        # array, and every stage that depends on T uses the token's own.
        issue = self.issue.payload
        marker_layout = data.StructLayout({"valid": 1, "first": 1, "tag": self.tag_shape,
                                           "act_sum": signed(act_sum_bits(cfg)),
                                           "period": range(self.max_period + 1)})
        markers = [Signal(marker_layout, name=f"marker_{s}") for s in range(stages)]
        period = Signal(range(self.max_period + 1), init=1)      # of the tile being issued
        with m.If(en & self.issue.valid & issue.first):
            m.d.sync += period.eq(self.next_period)
        with m.If(en):
            m.d.sync += [
                markers[0].valid.eq(self.issue.valid),
                markers[0].first.eq(issue.first),
                markers[0].tag.eq(issue.tag),
                markers[0].act_sum.eq(sum(issue.x[r] for r in range(rows))),
                markers[0].period.eq(Mux(issue.first, self.next_period, period)),
            ]
            # A token's sums are at stage R + T + P + I + L + H (then O registers); beyond it its
            # marker is cleared.
            m.d.sync += [markers[s].eq(markers[s - 1]) for s in range(1, stages)]
            m.d.sync += [markers[s].valid.eq(markers[s - 1].valid
                                             & (s - 1 < rows + lat + markers[s - 1].period))
                         for s in range(1, stages)]
            if cfg.multi_precision:
                # A pair pass's upper R activations join the sum column a stage later: no adder
                # of 2R activations in one cycle (the sum is read only as the token leaves).
                upper = Signal(signed(act_sum_bits(cfg)), name="act_sum_upper")
                m.d.sync += [upper.eq(Mux(self.pairs, sum(issue.x[rows + r] for r in range(rows)), 0)),
                             markers[1].act_sum.eq(markers[0].act_sum + upper)]

        def tap(base):
            """The token at stage ``base + T`` with ``T`` its own period (valid 0 if none)."""
            if not self.shared:
                return markers[base + 1]
            chosen = Const(0, marker_layout.size)
            for t in range(1, self.max_period + 1):
                here = markers[base + t]
                chosen = Mux(here.valid & (here.period == t), here.as_value(), chosen)
            return data.View(marker_layout, chosen)

        lanes = self._lanes(m, 0)
        lanes_hi = self._lanes(m, rows) if cfg.multi_precision else None
        rowctl, upcoming = self._row_state(m, markers)
        products, inliers = self._pe_rows(m, markers, lanes, lanes_hi)
        contribs = self._contributions(m, markers, products, rowctl, upcoming)
        psum = self._column_adders(m, contribs, self._inlier_sums(m, inliers), tap)
        leaving = tap(rows + lat)
        out = [
            self.out.valid.eq(leaving.valid),
            self.out.payload.first.eq(leaving.first),
            self.out.payload.tag.eq(leaving.tag),
            self.out.payload.act_sum.eq(leaving.act_sum),
            self.out.payload.sums.eq(self._raw_sums(psum)),
        ]
        if self.timing.output_stage:
            with m.If(en):
                m.d.sync += out
        else:
            m.d.comb += out
        return m

    @property
    def msq_pairs(self) -> bool:
        """Whether this array runs MicroScopiQ pair passes (multi-precision, per-row ReCoN)."""
        return self.cfg.multi_precision and self.cfg.has_recon and not self.shared

    def _inlier_sums(self, m, inliers):
        """The operand the last row's column adders add in a MicroScopiQ pair pass: per column the
        token's inlier products summed down the rows (the chain of the module docstring) and shifted
        by ``b``, 0 outside a pair pass; None without pair passes. Row ``r``'s chain register holds
        a token's sum over rows ``0 … r`` when the token is at stage ``r + 2``, the last row's
        adder takes it at stage ``R + P + L + H``: ``P + L + H − 1`` registers between."""
        cfg = self.cfg
        if not self.msq_pairs:
            return None
        a, h = cfg.fmt.abits, cfg.fmt.wbits // 2

        def shape(terms):
            """A sum of ``terms`` inlier products: ``|x·q| <= 2^(a-1) · 2^(h-1)`` each."""
            return signed((terms << (a + h - 2)).bit_length() + 1)
        chain = [0] * cfg.cols
        for r, row in enumerate(inliers):
            nxt = [Signal(shape(r + 1), name=f"inlier_sum_{r}_{c}") for c in range(cfg.cols)]
            with m.If(self.en):
                m.d.sync += [d.eq(prev + v + carry) for d, prev, (v, carry) in zip(nxt, chain, row)]
            chain = nxt
        for s in range(self.pipeline - 1):
            later = [Signal(shape(cfg.rows), name=f"inlier_sum_d{s + 1}_{c}") for c in range(cfg.cols)]
            with m.If(self.en):
                m.d.sync += [d.eq(v) for d, v in zip(later, chain)]
            chain = later
        # An inlier's contribution: 2^b times its product in a MicroScopiQ pass, the product in a
        # uniform one (the PEs leave every pair pass's high-slot product to this chain).
        return [Mux(self.pairs, Mux(self.narrow, v << cfg.fmt.wbits, v), 0) for v in chain]

    def _column_adders(self, m, contribs, inlier_sums, tap):
        """Row ``r`` adds its contribution to the partial sums coming down from row ``r - 1`` when
        the token reaches stage ``r + T + P + I + L + H``, the last row also ``inlier_sums`` (``C``
        values, or None); returns the last row's sums."""
        cfg = self.cfg
        psum = Signal(data.ArrayLayout(signed(cfg.column_sum_bits), cfg.cols), name="psum_in")
        for r in range(cfg.rows):
            nxt = Signal(data.ArrayLayout(signed(cfg.column_sum_bits), cfg.cols), name=f"psum_{r}")
            take = tap(r + self.pipeline)
            sums = [(psum[c] if r else 0) + contribs[r][c] for c in range(cfg.cols)]
            if inlier_sums is not None and r == cfg.rows - 1:
                sums = [v + extra for v, extra in zip(sums, inlier_sums)]
            with m.If(self.en & take.valid):
                m.d.sync += [nxt[c].eq(sums[c]) for c in range(cfg.cols)]
            psum = nxt
        return psum

    def _raw_sums(self, psum):
        """The column sums as they leave: with shared ReCoN every bypass row adds ``product << b``
        whatever the mode (no per-PE shift multiplexer), and a raw (uniform) layer, whose rows all
        bypass, is brought back to ``Σ x · q`` by one exact ``>> b`` per column here. On a
        multi-precision instance a MicroScopiQ pass at ``b/2`` runs on the ``b``-bit datapath with
        every contribution exactly ``2^(b/2)`` times its own (``MetaDecoder.narrow_code``): one
        exact ``>> b/2`` per column, here too."""
        b, cols = self.cfg.fmt.wbits, self.cfg.cols
        sums = [psum[c] for c in range(cols)]
        if self.cfg.multi_precision and self.cfg.has_recon:
            sums = [Mux(self.narrow, s >> b // 2, s) for s in sums]
        if self.shared:
            sums = [Mux(self.raw, s >> b, s) for s in sums]
        return Cat(*sums)

    def _first_entering(self, markers, r):
        """A tile's first token enters stage ``r`` (from ``issue`` at row 0)."""
        if r == 0:
            return self.issue.valid & self.issue.payload.first
        return markers[r - 1].valid & markers[r - 1].first

    def _lanes(self, m, first: int):
        """Per row, the activation its PEs take: a list of one signal per column. Row ``r``'s PEs
        multiply ``issue``'s ``x[first + r]`` (``first`` = ``R``: the pair mode's high-half
        activations) ``r + 1`` registers on; the last :attr:`PE.act_stages <.pe.PE.act_stages>` of
        them are inside the PEs (a DSP's A input register, one per PE). In fabric the last stage is
        one register per PE, each driving its PE's multiplier alone: a single register per row drove
        all ``C`` PEs and its routed net was the default build's critical path (docs/performance.md).
        The copies carry the :data:`~.bits.REPLICA` attribute, from which the synthesis flow keeps them
        apart (Yosys merges registers with the same input otherwise)."""
        cfg = self.cfg
        in_fabric = PE.act_stages_of(cfg.dsp) == 0
        taps = []
        for r in range(cfg.rows):
            entering = self.issue.payload.x[first + r]
            line = [Signal(signed(cfg.fmt.abits), name=f"lane_{first + r}_{s}") for s in range(r)]
            with m.If(self.en):
                m.d.sync += [stage.eq(prev) for stage, prev in zip(line, [entering, *line])]
            shared = [entering, *line][-1]
            taps.append(replicas(m, self.en, shared, cfg.cols, f"lane_{first + r}_{r}_pe") if in_fabric
                        else [shared] * cfg.cols)
        return taps

    def _row_state(self, m, markers):
        """Double-buffered per-row fields: ReCoN config, bypass flag, network slot; ``T`` and the
        tile gap. Returns per row its active fields and its ``claim`` and ``slot`` as they will be
        after the next enabled edge (the shared network's input index is a register computed from
        them, see _contributions)."""
        cfg, load, en = self.cfg, self.load, self.en
        share = max(cfg.recon_share, 1)
        slot_shape = range(share)
        rowctl, upcoming = [], []
        count = Signal(range(share + 1))      # outlier rows so far in the loading group
        most = Signal(range(share + 1))       # largest count of the loading tile
        writing = en & load.valid
        has_outlier = Cat(role != 0 for role in load.roles).any()
        group_start = (load.row % share == 0) if share > 1 else Const(1)
        new_count = Mux(group_start, 0, count) + has_outlier
        with m.If(writing):
            m.d.sync += [count.eq(new_count),
                         most.eq(Mux(load.row == 0, new_count, Mux(new_count > most, new_count, most)))]
        m.d.comb += self.next_period.eq(Mux(most > 1, most, 1) if self.shared else 1)
        if self.shared:
            # ArrayTiming.tile_gap: the largest group offset of an outlier row.
            gap = Signal.like(self.next_gap)
            late = Mux(has_outlier, load.row % share, 0)
            with m.If(writing):
                m.d.sync += gap.eq(Mux((load.row == 0) | (late > gap), late, gap))
            m.d.comb += self.next_gap.eq(gap)
        fields = data.StructLayout({"config": unsigned(_config_bits(cfg)), "bypass": 1,
                                    "claim": 1, "slot": slot_shape})
        # The fields that swap 1 + P stages after the banks reach the shadow FIELD_LAG cycles after
        # the row's load, through one delay line shared by all rows (one row is loaded per cycle).
        lagged_layout = data.StructLayout({"valid": 1, "row": range(cfg.rows), "fields": fields})
        lagged = Signal(lagged_layout, name="field_load_0")
        m.d.comb += [lagged.valid.eq(writing), lagged.row.eq(load.row),
                     lagged.fields.config.eq(load.config), lagged.fields.bypass.eq(~has_outlier),
                     lagged.fields.claim.eq(has_outlier), lagged.fields.slot.eq(Mux(group_start, 0, count))]
        for lag in range(FIELD_LAG):
            later = Signal(lagged_layout, name=f"field_load_{lag + 1}")
            with m.If(en):
                m.d.sync += later.eq(lagged)
            lagged = later
        for r in range(cfg.rows):
            shadow = Signal(fields, name=f"row_{r}_shadow")
            active = Signal(fields, name=f"row_{r}_active")
            with m.If(en & lagged.valid & (lagged.row == r)):
                m.d.sync += shadow.eq(lagged.fields)
            # The config and the contribution source switch 1 + P stages after the PE banks, with
            # the products they apply to; the network slot of every row of a group at once, when
            # the first token's products leave the group's first row (with the group's slot
            # clock, see _contributions).
            products_in = markers[r + PRODUCT_PIPE]
            with m.If(en & products_in.valid & products_in.first):
                m.d.sync += [active.config.eq(shadow.config), active.bypass.eq(shadow.bypass)]
            head = markers[r - r % share + PRODUCT_PIPE]
            after = Signal(data.StructLayout({"claim": 1, "slot": slot_shape}), name=f"row_{r}_upcoming")
            switch = head.valid & head.first
            m.d.comb += [after.claim.eq(Mux(switch, shadow.claim, active.claim)),
                         after.slot.eq(Mux(switch, shadow.slot, active.slot))]
            with m.If(en):
                m.d.sync += [active.claim.eq(after.claim), active.slot.eq(after.slot)]
            rowctl.append(active)
            upcoming.append(after)
        return rowctl, upcoming

    def _pe_rows(self, m, markers, lanes, lanes_hi):
        """The PEs: row ``r`` multiplies when a token is at stage ``r``; returns per row the list
        of ``C`` product signals (registered once more, :data:`PRODUCT_PIPE`) and (arrays with
        MicroScopiQ pair passes) of the ``C`` PEs' ``inlier`` outputs."""
        cfg, en = self.cfg, self.en
        products, inliers = [], []
        for r in range(cfg.rows):
            swap = en & self._first_entering(markers, r)
            step = markers[r].valid
            acts = lanes[r]
            acts_hi = lanes_hi[r] if cfg.multi_precision else None
            row, inlier_row = [], []
            for c in range(cfg.cols):
                pe = m.submodules[f"pe_{r}_{c}"] = PE(cfg.fmt, pairs=cfg.multi_precision, dsp=cfg.dsp,
                                                      dsp_model=self.dsp_model, apart=self.msq_pairs)
                if cfg.multi_precision:
                    m.d.comb += [pe.pairs.eq(self.pairs), pe.act_hi.eq(acts_hi[c])]
                if cfg.dsp != "none":
                    m.d.comb += pe.act_en.eq(en)
                m.d.comb += [
                    pe.act.eq(acts[c]),
                    pe.en.eq(en & step),
                    pe.swap.eq(swap),
                    pe.load.eq(en & self.load.valid & self.load.select[r]),
                    pe.load_code.eq(self.load.codes[c]),
                    pe.load_role.eq(self.load.roles[c]),
                ]
                staged = Signal.like(pe.product, name=f"product_{r}_{c}")
                with m.If(en):
                    m.d.sync += staged.eq(pe.product)
                row.append(staged)
                if self.msq_pairs:
                    inlier_row.append((pe.inlier, pe.inlier_carry))
            products.append(row)
            inliers.append(inlier_row)
        return products, inliers

    def _contributions(self, m, markers, products, rowctl, upcoming):
        """Per row, the ``C`` contributions the column adders take (``upcoming``: see _row_state)."""
        cfg, en = self.cfg, self.en
        fmt = cfg.fmt
        width = fmt.product_bits

        out = []
        if not cfg.has_recon:
            for r, row in enumerate(products):
                vals = [Signal(signed(width), name=f"contrib_{r}_{c}") for c in range(cfg.cols)]
                m.d.comb += [v.eq(p) for v, p in zip(vals, row)]
                out.append(vals)
            return out
        if not self.shared:
            for r, row in enumerate(products):
                net = m.submodules[f"recon_{r}"] = ReconNetwork(fmt, cfg.cols)
                m.d.comb += [net.en.eq(en), net.config.as_value().eq(rowctl[r].config)]
                m.d.comb += [net.products[c].eq(p) for c, p in enumerate(row)]
                out.append([net.contributions[c] for c in range(cfg.cols)])
            return out
        share = cfg.recon_share
        for g in range(cfg.rows // share):
            net = m.submodules[f"recon_{g}"] = ReconNetwork(fmt, cfg.cols)
            members = range(g * share, (g + 1) * share)
            # The group's slot clock: restarts when a tile's first token's products leave its first
            # row (the previous tile's windows in this group have ended: see tile_gap).
            head = markers[g * share + PRODUCT_PIPE]
            phase = Signal(range(share), name=f"recon_{g}_phase")
            period = Signal(range(share + 1), init=1, name=f"recon_{g}_period")
            restart = head.valid & head.first
            phase_after = Signal(range(share), name=f"recon_{g}_phase_upcoming")
            m.d.comb += phase_after.eq(Mux(restart, 0, Mux(phase + 1 >= period, 0, phase + 1)))
            with m.If(en):
                m.d.sync += phase.eq(phase_after)
            with m.If(en & restart):
                m.d.sync += period.eq(head.period)

            # The slot's owner, one-hot (or 0), and the same as a binary index (one S:1 multiplexer
            # per bit instead of a chain of S 2:1 ones): both registers, loaded from the rows'
            # upcoming claims and the slot clock's upcoming phase, so they hold this cycle's owner
            # and only flip-flops drive the multiplexers' selects, which reach the group's rows
            # across the die. With no claimer the network computes row 0's products, which no row
            # takes.
            owner = Cat(upcoming[r].claim & (upcoming[r].slot == phase_after) for r in members)
            sel = Signal(share, name=f"recon_{g}_sel")
            index = Signal(range(share), name=f"recon_{g}_index")
            with m.If(en):
                m.d.sync += [sel.eq(owner),
                             index.eq(Cat(Cat(owner[i] for i in range(share) if i >> k & 1).any()
                                          for k in range(len(index))))]
            # The network's inputs through the register I (ArrayTiming.network_input).
            config = ValueArray(rowctl[r].config for r in members)[index]
            prods = [ValueArray(products[r][c] for r in members)[index] for c in range(cfg.cols)]
            m.d.comb += net.en.eq(en)
            with m.If(en):
                m.d.sync += [net.config.as_value().eq(config),
                             *(net.products[c].eq(p) for c, p in enumerate(prods))]
            delayed = sel
            for s in range(self.timing.network_input + self.recon_latency):
                nxt = Signal(share, name=f"recon_{g}_sel_d{s + 1}")
                with m.If(en):
                    m.d.sync += nxt.eq(delayed)
                delayed = nxt
            for i, r in enumerate(members):
                hold = [Signal(signed(width), name=f"hold_{r}_{c}") for c in range(cfg.cols)]
                with m.If(en & delayed[i]):
                    m.d.sync += [h.eq(net.contributions[c]) for c, h in enumerate(hold)]
                late = self._bypass_delay(m, r, products[r], rowctl[r].bypass)
                vals = [Signal(signed(width), name=f"contrib_{r}_{c}") for c in range(cfg.cols)]
                m.d.comb += [v.eq(Mux(late.bypass, p << fmt.wbits, h))
                             for v, p, h in zip(vals, late.products, hold)]
                out.append(vals)
        return out

    def _bypass_delay(self, m, r, products, bypass):
        """Row ``r``'s products and bypass flag ``I + L + H`` enabled cycles later. A row's product
        register holds a token's products for its ``T`` cycles from stage ``r + 1 + P``, and the
        column adder takes them at stage ``r + T + P + I + L + H``, so ``I + L + H`` registers bring
        them there for every ``T``; the flag travels with them, so a row that changes role between
        two tiles needs no gap. (The alternative, multiplying late in the PE, needs the PE's
        weights after the next tile has swapped them in: a gap of ``L + H`` after every tile.)"""
        layout = data.StructLayout({"bypass": 1, "products": data.ArrayLayout(products[0].shape(), len(products))})
        line = Signal(layout, name=f"bypass_{r}_0")
        m.d.comb += [line.bypass.eq(bypass), *(line.products[c].eq(p) for c, p in enumerate(products))]
        for s in range(self.pipeline - PRODUCT_PIPE):
            later = Signal(layout, name=f"bypass_{r}_{s + 1}")
            with m.If(self.en):
                m.d.sync += later.eq(line)
            line = later
        return line
