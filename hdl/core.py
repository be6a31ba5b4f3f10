"""The accelerator's core: the array and the PPU behind :mod:`amaranth.lib.stream` ports
(``weights`` and ``act`` in, ``result`` out), with the loader, the issuer and the result FIFO
(docs/hardware.md has the stream layouts and the cycle model; :mod:`.top` gives the ports their
AXI4-Stream names).

Control, per pass (one layer header, at most ``max_tokens`` tokens):

* the **weight front end** (:class:`~.weight_decoder.WeightDecoder`) turns the packed weight
  stream into the pass header and decoded PE rows (a tile's first row with its PPU shifts);
* the **loader** takes the header, then per weight tile the PPU shifts (into a queue that hands
  them to the PPU when its shadow is free) and the ``R`` rows, through a
  :class:`~.skid_buffer.SkidBuffer` (one row per cycle, bubbles allowed), into the shadow banks:
  row 0 of a tile as soon as the tile before's first token is on the array's ``issue`` (the
  array's load rule; the cycle after its handshake, the issue register's),
  the rest one per cycle behind it, so the next tile loads while the current one computes;
* the **issuer** starts a tile in the cycle its last row is written or later (and at least
  :attr:`CoreTiming.tile_spacing` cycles after the tile before) and sends its ``M``
  activation vectors into the array, one per cycle (one every ``T`` cycles with shared ReCoN, plus
  the array's tile gap after a tile), tagging each token with its index and the tile's place in its
  K-group and the layer;
* the **PPU** accumulates and emits result beats into the result FIFO. The array and the PPU never
  stall: the issuer takes a token only while the FIFO has room for it and for every token already
  on its way (a registered credit check), so back-pressure on the output stops the input and
  nothing else, and no enable net fans out to the array's registers.

A pass whose header the front end refuses runs nothing: its activations are dropped up to their
``tlast`` and one result beat carries its fault (docs/hardware.md, "Malformed weight streams").
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..config import AccelConfig
from .array import Array, ArrayTiming, load_layout
from .credit_fifo import CreditFIFO
from .layouts import Fault, Mode, StreamLayouts, axis_signature
from .weight_decoder import WeightDecoder
from .ppu import PPU, token_tag_layout
from .skid_buffer import SkidBuffer
from .bits import mirrored, one_hot
from .wrap_counter import WrapCounter, step_nested

__all__ = ["AcceleratorCore", "CoreTiming", "LOAD_STAGE", "ISSUE_STAGE", "ROW_BUFFER_DEPTH",
           "RESULT_FIFO_LATENCY", "CREDIT_MARGIN"]

#: Cycles from a row beat's handshake to its earliest write into the shadow banks: the row
#: buffer's output register (:attr:`SkidBuffer.LATENCY <.skid_buffer.SkidBuffer.LATENCY>`).
LOAD_STAGE = SkidBuffer.LATENCY
#: Cycles from a token's ``act`` handshake to the array's ``issue`` port: the issue register. It
#: lets the gate on a tile's row 0 be a register (``pending``, cleared by the handshake) instead of
#: the handshake itself, which crossed the chip from the issuer into the row buffer's enables.
ISSUE_STAGE = 1
#: Row beats the loader holds while row 0 of a tile waits for the tile before to start
#: (:attr:`SkidBuffer.DEPTH <.skid_buffer.SkidBuffer.DEPTH>`): with two, it takes a row every
#: cycle once they flow.
ROW_BUFFER_DEPTH = SkidBuffer.DEPTH
#: Cycles a beat spends in the result FIFO when the output is always ready: it is written at the
#: PPU's result register and read in the next cycle, so the FIFO then holds one beat.
RESULT_FIFO_LATENCY = 1
#: Beats the issuer's credit keeps free beyond the tokens in flight: ``committed`` is a cycle old
#: and can grow by two beats in a cycle (a token issued, a beat written), and the credit admits one
#: more token.
CREDIT_MARGIN = 3


@dataclass(frozen=True)
class CoreTiming:
    """The latencies of the :class:`AcceleratorCore` of one :class:`AccelConfig`, built from its
    blocks' (:class:`~.array.ArrayTiming`, :attr:`PPU.latency <.ppu.PPU.latency>`) and known
    without elaborating it; the host's cycle model is built from these.
    """

    array: ArrayTiming

    @classmethod
    def of(cls, cfg: AccelConfig) -> "CoreTiming":
        return cls(ArrayTiming.of(cfg))

    def arrive(self, period: int) -> int:
        """Cycles from a token's ``s_axis_act`` handshake to its column sums at the PPU: the issue
        register (:data:`ISSUE_STAGE`) and the array's latency."""
        return ISSUE_STAGE + self.array.latency(period)

    @property
    def start_with_last_row(self) -> bool:
        """Whether the issuer may take a tile's first token in the cycle its last row is written
        (the token reaches the array a cycle later, after the row): so without shared ReCoN. With
        it the tile's ``T`` (the array's ``next_period``, which the issuer needs at the handshake)
        counts the last row only from the next cycle, and the tile starts a cycle after."""
        return not self.array.shared

    @property
    def tile_spacing(self) -> int:
        """Fewest cycles between the first tokens of two consecutive tiles: ``R`` from the array's
        double buffering (the next tile's last row is free from ``R - 1`` cycles after the current
        first token, and written before the next one), and at least 2, so that at ``M = 1`` no
        token enters the PPU in the cycle after itself (the issuer enforces it only for ``R = 1``)."""
        return max(self.array.rows, 2)

    @property
    def shift_queue_depth(self) -> int:
        """Tile shifts the loader queues for the PPU, whose one shadow takes a tile's
        shifts only once the tile before has reached it. Shifts taken for tiles not yet at the
        PPU: up to ``ceil(arrive(max T) / R)`` started tiles (first tokens are at least ``R``
        cycles apart) and at most four more (the tile complete in the shadow, the one in the row
        buffer and, for ``R`` of 1 or 2, the next ones), one of them in the PPU's shadow: so the
        queue never holds the loader back."""
        rows = self.array.rows
        return -(-self.arrive(self.array.max_period) // rows) + 3

    @property
    def result_latency(self) -> int:
        """Cycles from a token's column sums at the PPU to its result beat at the output (always
        ready): the PPU's stages and the result FIFO's cycle."""
        return PPU.latency + RESULT_FIFO_LATENCY

    @property
    def result_fifo_depth(self) -> int:
        """Beats of the result FIFO: room for every token in the array (``arrive(1)``) and in the
        PPU, the beat the FIFO holds when the output is always ready, and :data:`CREDIT_MARGIN`,
        so the credit never holds a token back while the output keeps up."""
        return self.arrive(1) + PPU.latency + RESULT_FIFO_LATENCY + CREDIT_MARGIN


class AcceleratorCore(wiring.Component):
    """The accelerator with :mod:`amaranth.lib.stream` ports.

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    weights : In(stream.Signature({"data": weights_width, "last": 1}))
        Layer header, tile headers and row beats (``last`` is not used by the hardware).
    act : In(stream.Signature({"data": R·a, "last": 1}))
        Activation vectors (``last`` is not used by the hardware).
    result : Out(stream.Signature({"data": result_width, "last": 1}))
        Result beats; ``last`` on the last beat of a pass.

    Latency (every stream always ready): :meth:`CoreTiming.arrive` ``(T)`` cycles from an
    ``act`` handshake to the PPU, :attr:`CoreTiming.result_latency` more to its result beat;
    :attr:`timing` holds the terms. Throughput one token per cycle (one per ``T`` with shared ReCoN).
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        self.format = sf = StreamLayouts(cfg)
        self.timing = CoreTiming.of(cfg)
        super().__init__({
            "weights": In(axis_signature(sf.weights_width)),
            "act": In(axis_signature(sf.act_width)),
            "result": Out(axis_signature(sf.result_width)),
            "fault": Out(Fault),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, sf = self.cfg, self.format
        tag_layout = token_tag_layout(cfg)
        m.submodules.array = array = Array(cfg, tag_shape=tag_layout)
        m.submodules.ppu = ppu = PPU(cfg)
        m.submodules.decoder = decoder = WeightDecoder(cfg)
        wiring.connect(m, wiring.flipped(self.weights), decoder.i)
        # Free-running: Yosys folds the blocks' enables away (see the module docstring).
        m.d.comb += [array.en.eq(1), ppu.en.eq(1)]

        # -- pass registers (layer header) ------------------------------------------------------
        busy = Signal()
        refused = Signal()             # this pass's header was refused: drain its activations
        # Assigned through their next values (bits.mirrored), from which the issuer registers
        # whether it may start a tile (``startable``): so its handshake does not decode them.
        busy_next, _ = mirrored(m, busy, 0)
        refused_next, _ = mirrored(m, refused, 0)
        pass_fault = Signal(Fault)     # the pass's first fault (marks its result beats)
        mode = Signal(Mode)
        tokens = Signal(sf.header.members["tokens"])
        k_tiles = Signal(sf.header.members["k_tiles"])
        n_tiles = Signal(sf.header.members["n_tiles"])
        pairs = Signal()               # a b/2 pass on a multi-precision instance (2R-deep K-tiles)
        narrow = Signal()              # a MicroScopiQ b/2 pass on a multi-precision instance
        m.d.comb += [array.raw.eq(mode == Mode.RAW), ppu.raw.eq(mode == Mode.RAW)]
        if cfg.multi_precision:
            m.d.comb += [array.pairs.eq(pairs), array.narrow.eq(narrow)]
        took = Signal()                # a token taken: in the issue register in the next cycle
        credit, refusal, offers = self._result_fifo(m, array, ppu, pass_fault, took)

        # pending: a tile's last row is in the shadow and its first token has not been issued; row
        # 0 of the next tile may be written from the cycle that token is issued (the array's load
        # rule), the issuer may start the tile in any cycle after its last row was written.
        pending = Signal()
        # The row buffer's gate reads a copy of its own: the issuer, which clears ``pending``, and
        # the row buffer, whose enables it reaches, are placed apart (a 9.3 ns route at nextpnr seed 2).
        pending_next, (gate_pending,) = mirrored(m, pending, 1)
        rows, completes = self._row_path(m, array, gate_pending)
        shifts = self._shift_path(m, array, ppu)

        # The issuer's place in the pass: token of the tile, K-tile, N-tile (reset by each header).
        counters = (WrapCounter(tokens, name="token"), WrapCounter(k_tiles, name="tile_k"),
                    WrapCounter(n_tiles, name="tile_n"))
        pass_regs = {"busy": busy, "refused": refused, "busy_next": busy_next, "refused_next": refused_next,
                     "pass_fault": pass_fault, "mode": mode,
                     "tokens": tokens, "k_tiles": k_tiles, "n_tiles": n_tiles, "pairs": pairs,
                     "narrow": narrow, "counters": counters}
        self._loader(m, decoder.o, pass_regs, rows, shifts)
        self._issuer(m, credit, pass_regs, (pending, pending_next, completes), array, tag_layout, took)
        self._refusal(m, refused, refusal, offers)
        self._status(m, decoder.o)

        wiring.connect(m, array=array.out, ppu=ppu.inp)
        with m.If(self.result.valid & self.result.ready & self.result.payload.last):
            m.d.comb += [busy_next.eq(0), refused_next.eq(0)]
        return m

    def _status(self, m, beats):
        """``fault``: the first fault of any pass since reset (sticky)."""
        with m.If(beats.valid & beats.ready & (beats.payload.fault != Fault.NONE) & (self.fault == Fault.NONE)):
            m.d.sync += self.fault.eq(beats.payload.fault)

    def _result_fifo(self, m, array, ppu, pass_fault, took):
        """The result FIFO after the PPU's result register, and the credit the issuer needs.

        Every token in the issue register or the array (taken, not yet at the PPU) or in the PPU's
        :attr:`PPU.latency <.ppu.PPU.latency>` stages may still write one beat, so the
        FIFO cannot overflow while ``committed + PPU.latency ≤ depth``, ``committed`` being the
        tokens in the issue register and the array plus the FIFO's beats. ``credit`` for the next cycle compares this
        cycle's ``committed``, a sum of two registers, with a constant (a short path, whatever the
        handshakes do), leaving :data:`CREDIT_MARGIN`. Depth: :attr:`CoreTiming.result_fifo_depth`.

        Returns ``credit``, the write port of a refused pass's one beat (``valid``, ``ready``;
        it is written only while no token is in the array, the PPU or the FIFO) and ``offers``,
        one signal per lane of the FIFO for :meth:`_refusal` to drive with a copy of that beat's
        ``valid``."""
        sf = self.format
        depth = self.timing.result_fifo_depth
        # Each entry: the PPU's beat and the pass's fault when it was written (stable while the
        # output waits; the pass's last beat is written after any fault of the pass is known).
        entry = data.StructLayout({"beat": ppu.result.payload.shape(), "fault": Fault})
        # One lane per column: each lane's LUT-RAM cells are written by their own copies of the
        # writers' valid registers (the PPU's, the refusal's, the FIFO's not-full).
        m.submodules.result_fifo = out = CreditFIFO(entry.size, depth, lanes=self.cfg.cols)
        refusal = stream.Signature(1).flip().create(path=("refusal",))
        offers = [Signal(name=f"refusal_offer_{i}") for i in range(out.lanes)]
        # The PPU cannot stall (its result is always_ready): the credit keeps the FIFO from ever
        # being full when it writes (a CreditFIFO: nothing gates the write enable of its LUT-RAM
        # cells but the writers' valid registers and its own not-full register); a refused
        # pass's beat waits for room.
        computed, refused_beat = Signal(entry), Signal(entry)    # refused: body 0, its fault, tlast
        m.d.comb += [computed.beat.eq(ppu.result.payload), computed.fault.eq(pass_fault),
                     refused_beat.beat.last.eq(1), refused_beat.fault.eq(pass_fault),
                     refusal.ready.eq(out.w_rdy),
                     out.w_stream.valid.eq(ppu.result.valid | (refusal.valid & refusal.ready))]
        for lane, (low, high) in enumerate(out.lane_bounds):
            offered = offers[lane]
            m.d.comb += [
                out.w_stream.payload[low:high].eq(
                    Mux(offered, refused_beat.as_value()[low:high], computed.as_value()[low:high])),
                out.w_lanes[lane].eq(ppu.result_valid_copies[lane] | (offered & out.w_rdy_lanes[lane]))]
        beat = data.View(sf.result, self.result.payload.data)
        read = data.View(entry, out.r_stream.payload)
        m.d.comb += [self.result.valid.eq(out.r_stream.valid), out.r_stream.ready.eq(self.result.ready),
                     self.result.payload.data.eq(read.beat.data), self.result.payload.last.eq(read.beat.last),
                     beat.fault.eq(read.fault)]
        # ``committed`` is kept as the sum of two wrapping counters: the tokens taken, counted
        # beside the issuer (whose ``took`` comes from the activation handshake), and everything
        # else, counted beside the PPU and the FIFO, so that no handshake crosses the die into an
        # adder; the credit adds the two registers. Wide enough that the sum (at most ``depth``)
        # is exact modulo their width.
        wrap = unsigned(depth.bit_length() + 1)
        taken, rest = Signal(wrap), Signal(wrap)
        grows = ppu.result.valid + (refusal.valid & refusal.ready)
        shrinks = array.out.valid + (out.r_rdy & self.result.ready)
        committed = Signal(wrap)
        credit = Signal(init=1)
        m.d.comb += committed.eq(taken + rest)
        m.d.sync += [taken.eq(taken + took), rest.eq(rest + grows - shrinks),
                     credit.eq(committed + CREDIT_MARGIN + PPU.latency <= depth)]
        return credit, refusal, offers

    def _refusal(self, m, refused, refusal, offers):
        """A refused pass: its activations up to ``tlast`` are dropped (the issuer takes none while
        ``refused``), then its one result beat goes out; then nothing until that beat has been taken
        (``refused`` clears), so the next pass's activations wait for it — under back-pressure they
        would otherwise be dropped as this pass's and answered with more refusal beats (found by the
        formal ``credit_refused`` check). ``offers``: copies of the beat's ``valid``, one per lane
        of the result FIFO."""
        drained = Signal()
        # The beat is offered from the cycle after the drain until it is written: a register, as
        # it joins the PPU's valid in the result FIFO's write enables, and one copy per lane, as
        # one net reaching every LUT-RAM cell of the FIFO crossed the die (the critical path).
        offering = Signal()
        offering_next, copies = mirrored(m, offering, len(offers) - 1)
        act = self.act
        with m.If(refused & ~drained):
            m.d.comb += act.ready.eq(1)
            with m.If(act.valid & act.payload.last):
                m.d.sync += drained.eq(1)
                m.d.comb += offering_next.eq(1)
        m.d.comb += [refusal.valid.eq(offering), *(offer.eq(copy) for offer, copy in zip(offers, [offering, *copies]))]
        with m.If(offering & refusal.ready):
            m.d.comb += offering_next.eq(0)
        with m.If(~refused):
            m.d.sync += drained.eq(0)
            m.d.comb += offering_next.eq(0)

    def _row_path(self, m, array, pending):
        """The row buffer between the loader and the array's ``load``; returns its input stream and
        ``completes``: a tile's last row is written in this cycle.

        Its output is written into the shadow in the cycle it is offered, except row 0 of a tile
        while the tile before is complete in the shadow and its first token not taken
        (``pending``, a register the issuer clears with that handshake): the token reaches the
        array's ``issue`` a cycle after the handshake (:data:`ISSUE_STAGE`), the cycle from which
        the array takes the next tile's row 0, so the gate needs no path from the issuer's
        handshake (its ``act.valid`` and credit) into the buffer's enables and the array's load."""
        cfg = self.cfg
        members = dict(load_layout(cfg).members)
        del members["valid"]
        # With each row, whether it is its tile's first / last (the loader's registered counter
        # ends): the gate and ``completes`` are then a LUT of the buffer's registers, not a
        # comparison of the row number (``completes`` starts the issuer's handshake, whose
        # end-of-tile logic was the critical path with it, 11.9 ns).
        members.update(first=1, last=1)
        m.submodules.row_buffer = buffer = SkidBuffer(data.StructLayout(members))
        head = buffer.o.payload
        m.d.comb += buffer.o.ready.eq(~head.first | ~pending)
        written = buffer.o.valid & buffer.o.ready
        m.d.comb += [array.load.valid.eq(written), array.load.row.eq(head.row), array.load.select.eq(head.select),
                     array.load.codes.eq(head.codes), array.load.roles.eq(head.roles),
                     array.load.config.eq(head.config)]
        # A tile's last row is never held back unless it is also its first (R = 1).
        return buffer.i, (written if cfg.rows == 1 else buffer.o.valid) & head.last

    def _shift_path(self, m, array, ppu):
        """The queue of tile shifts in front of the PPU's one shadow; returns its input stream.

        The PPU makes its shadow active when a tile's first token reaches it (``out.first``), so
        the next tile's shifts are written in that cycle or, if they come later, when they come.
        Depth :attr:`CoreTiming.shift_queue_depth`."""
        m.submodules.shift_queue = queue = SyncFIFO(width=len(ppu.shift_load.d.as_value()),
                                                    depth=self.timing.shift_queue_depth)
        free = Signal(init=1)              # the PPU's shadow holds no tile that has not reached it
        arrived = array.out.valid & array.out.payload.first
        move = queue.r_rdy & (free | arrived)
        m.d.comb += [queue.r_en.eq(move), ppu.shift_load.valid.eq(move),
                     ppu.shift_load.d.as_value().eq(queue.r_data)]
        with m.If(move):
            m.d.sync += free.eq(0)
        with m.Elif(arrived):
            m.d.sync += free.eq(1)
        return queue.w_stream

    def _loader(self, m, beats, regs, rows, shifts):
        """Take the decoded pass header, then per tile its ``R`` rows into the row buffer, and with
        row 0 the tile's PPU shifts (zeros unless it is a K-group's last K-tile, where the PPU uses
        them) into the shift queue."""
        cfg = self.cfg
        beat = beats.payload
        header = beat.fields
        row = WrapCounter(Const(cfg.rows - 1, range(cfg.rows)), name="row")
        m.d.comb += [rows.payload.row.eq(row.count), rows.payload.select.eq(one_hot(row.count, cfg.rows)),
                     rows.payload.first.eq(row.first),
                     rows.payload.last.eq(row.last), rows.payload.codes.eq(beat.codes)]
        if cfg.has_recon:   # (else every role is INLIER, 0, and the PPU's shifts are unused)
            m.d.comb += [shifts.payload.eq(beat.d.as_value()),
                         rows.payload.roles.as_value().eq(beat.roles.as_value()),
                         rows.payload.config.eq(beat.config.as_value())]
        take = beats.valid & beats.ready
        with m.If(~regs["busy"]):
            m.d.comb += beats.ready.eq(1)
            with m.If(beats.valid):
                m.d.sync += regs["pass_fault"].eq(beat.fault)
                m.d.comb += regs["busy_next"].eq(1)
                row.start(m, row.limit)
                with m.If(beat.fault == Fault.NONE):
                    m.d.sync += [regs["mode"].eq(header.mode), regs["tokens"].eq(header.tokens),
                                 regs["k_tiles"].eq(header.k_tiles), regs["n_tiles"].eq(header.n_tiles)]
                    for counter, name in zip(regs["counters"], WeightDecoder.COUNTS):
                        counter.start(m, getattr(header, name), single=getattr(beat.single, name))
                    if cfg.multi_precision:
                        m.d.sync += [regs["pairs"].eq(header.pairs), regs["narrow"].eq(header.narrow)]
                with m.Else():
                    m.d.comb += regs["refused_next"].eq(1)
        with m.Elif(~regs["refused"]):
            # A row waits for room in the row buffer (row 0 also in the shift queue); the next
            # header waits until this pass has ended (~busy).
            row_beat = beats.valid & ~beat.header
            first = row.first
            m.d.comb += [beats.ready.eq(~beat.header & rows.ready & (~first | shifts.ready)),
                         rows.valid.eq(row_beat & (~first | shifts.ready)),
                         shifts.valid.eq(row_beat & first & rows.ready)]
            with m.If(take):
                m.d.sync += regs["pass_fault"].eq(beat.fault)
                row.step(m)

    @staticmethod
    def _group_place(tile_k, per_group: int):
        """Whether K-tile ``tile_k`` is the first / the last of its K-group of ``per_group`` tiles."""
        place = tile_k % per_group if per_group > 1 else 0
        return place == 0, place == per_group - 1

    def _issuer(self, m, credit, regs, tiles, array, tag_layout, took):
        """Take the pass's activation vectors, tile by tile, into the issue register (the array's
        ``issue`` a cycle later) with their tags. ``tiles`` is (``pending``, its next value,
        ``completes``): a tile's last row was written in an earlier cycle and its first token not
        taken (a register, kept here through its next value), or is written in this cycle; drives ``took``, a token taken.

        The handshake reaches only registers' enables and the issue register: the end of a tile,
        of a K-pass and of the pass are :class:`~.wrap_counter.WrapCounter` flags computed a cycle
        ahead, and a refused pass (whose activations :meth:`_refusal` drops, driving ``ready``
        itself) never starts a tile, so ``take`` needs no term of its own for it."""
        cfg = self.cfg
        beat = self.act
        busy = regs["busy"]
        token, tile_k, tile_n = regs["counters"]
        in_tile = Signal()
        done = Signal()
        done_next, _ = mirrored(m, done, 0)
        # ``busy & ~refused & ~done``, a register: the handshake's tile start needs no decode of it.
        startable = Signal(name="startable")
        m.d.sync += startable.eq(regs["busy_next"] & ~regs["refused_next"] & ~done_next)
        period = Signal.like(array.next_period, init=1)
        gap = Signal.like(array.next_gap)
        wait = Signal(range(array.max_period + array.tile_gap_extra + 1))
        idle = Signal(init=1)       # ``wait == 0``, a register: no comparator behind ``ready``
        pending, pending_next, completes = tiles
        complete = pending | completes if self.timing.start_with_last_row else pending
        can_start = startable & complete
        if self.timing.tile_spacing > self.timing.array.rows:
            # R = 1: the double buffering alone would let the next tile's first token follow this
            # one's in the next cycle, and at M = 1 that token would enter the PPU right after itself.
            just_started = Signal()
            m.d.sync += just_started.eq(took & ~in_tile)
            can_start &= ~just_started
        ready = Signal()
        m.d.comb += [ready.eq(credit & idle & Mux(in_tile, 1, can_start)), beat.ready.eq(ready)]
        # (A refused pass's activations are dropped by _refusal, which also drives beat.ready; the
        # issuer's own ``ready`` is 0 then: in_tile is 0 from the pass before's last token on.)
        take = beat.valid & ready
        starts = take & ~in_tile           # a tile's first token
        m.d.comb += took.eq(take)
        with m.If(starts):
            m.d.comb += pending_next.eq(0)
        with m.Elif(completes):
            m.d.comb += pending_next.eq(1)

        group_first, group_last = self._group_place(tile_k.count, cfg.fmt.group // cfg.rows)
        if cfg.multi_precision:      # a pair pass's K-tiles are 2R deep: G/2R per K-group
            pair_first, pair_last = self._group_place(tile_k.count, cfg.fmt.group // (2 * cfg.rows))
            group_first = Mux(regs["pairs"], pair_first, group_first)
            group_last = Mux(regs["pairs"], pair_last, group_last)
        tag = Signal(tag_layout)
        m.d.comb += [
            tag.m.eq(token.count),
            tag.group_first.eq(group_first),
            tag.group_last.eq(group_last),
            tag.k_first.eq(tile_k.first),
            tag.k_last.eq(tile_k.last),
            tag.last.eq(token.last & tile_k.last & tile_n.last),
        ]
        # The issue register (ISSUE_STAGE): the token reaches the array a cycle after its handshake.
        m.d.sync += [
            array.issue.valid.eq(take),
            array.issue.payload.first.eq(~in_tile),
            array.issue.payload.tag.eq(tag),
            array.issue.payload.x.as_value().eq(Mux(beat.valid, beat.payload.data, 0)),
        ]
        cur_period = Mux(in_tile, period, array.next_period)
        cur_gap = Mux(in_tile, gap, array.next_gap)
        next_wait = Signal.like(wait)
        m.d.comb += next_wait.eq(cur_period - 1 + Mux(token.last, cur_gap, 0))
        with m.If(wait != 0):
            m.d.sync += [wait.eq(wait - 1), idle.eq(wait == 1)]
        with m.If(take):
            # Tokens T apart; after a tile's last one, also the tile's gap (Array.next_gap).
            m.d.sync += [wait.eq(next_wait), idle.eq(next_wait == 0),
                         period.eq(cur_period), gap.eq(cur_gap), in_tile.eq(~token.last)]
            with m.If(step_nested(m, (token, tile_k, tile_n))):
                m.d.comb += done_next.eq(1)
        with m.If(~busy):
            m.d.comb += done_next.eq(0)
