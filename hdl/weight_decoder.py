"""The weight front end: the packed weight stream in, the core's load beats out — pass headers and
decoded PE rows with their roles, ReCoN configuration and (at a tile's first row) the PPU shifts.

It joins the :class:`~.unpacker.Unpacker` (bus beats -> header, exponents, row records), the
:class:`~.meta_decoder.MetaDecoder` (records -> roles and ReCoN configuration; with ReCoN only) and
the :class:`~.exp_decoder.ExpDecoder` (exponents -> shifts ``d = E - E_min``), and merges their
outputs back into stream order: after a header, the pass's ``R·KT·NT`` rows, K-tiles inner; the
first row of a K-group's last K-tile (MicroScopiQ mode) carries the group's shifts.

Faults (:class:`~.layouts.Fault`): a header the unpacker refuses goes out as a header beat with its
code (the pass does not run). Every later fault belongs to the pass being merged: a micro-block
record naming a slot twice (PAIRS), an exponent below its minimum (EXPONENT), a truncated or overrun
stream (TRUNCATED, OVERRUN). The pass then still delivers all its rows — the ones the stream held,
then zero rows in place of the ones it lacks — so the core runs it to the end, and every beat from
the first fault on carries the pass's first fault code.
"""

from __future__ import annotations

import functools

from amaranth import Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import AccelConfig
from ..quant.layer import Role
from .exp_decoder import ExpDecoder
from . import layouts
from .layouts import SHIFT_BITS, Fault, Mode, StreamLayouts, axis_signature
from .meta_decoder import MetaDecoder
from .skid_buffer import SkidBuffer, SlotBuffer
from .wrap_counter import WrapCounter, step_nested
from .unpacker import Unpacker

__all__ = ["WeightDecoder"]


def _first_fault(*codes):
    """The first nonzero code of ``codes`` (in order of precedence)."""
    out = Value.cast(Fault.NONE)
    for code in reversed([Value.cast(code) for code in codes]):
        out = Mux(code != Fault.NONE.value, code, out)
    return out


class WeightDecoder(wiring.Component):
    """Packed weight stream -> load beats.

    Parameters
    ----------
    cfg : AccelConfig
        ``cfg.weight_bus`` is the width of ``i``.

    Members
    -------
    i : In(axis_signature(cfg.weight_bus))
        ``s_axis_weights``: one pass per ``tlast``-terminated packet (docs/format.md).
    o : Out(stream.Signature(WeightDecoder.beat_layout(cfg)))
        A pass header (``header`` 1: ``fields``, ``fault``) or a PE row (``codes``, ``roles``,
        ``config``; ``shift`` 1 and ``d`` on a row that loads the PPU shifts; ``fault``).

    Latency :attr:`latency` cycles from the beat that completes a row to the row on ``o``, with
    every port always ready; throughput one row per cycle.

    A :class:`~.skid_buffer.SkidBuffer` sits on each side of each decoder (one between the unpacker
    and the merge without ReCoN) and one after the merge (``out_skid``, the front end's output):
    every ``ready`` that reaches the unpacker's parse logic, the decoders' pipeline enables or the
    merge is a register, so no handshake path crosses more than one block (on the 45k the decoders
    are placed far apart), and the merge's handshake loop with the decoded-row buffer closes inside
    the front end, not through the core's loader.
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        super().__init__({
            "i": In(axis_signature(cfg.weight_bus)),
            "o": Out(stream.Signature(self.beat_layout(cfg))),
        })

    @staticmethod
    def beat_layout(cfg: AccelConfig) -> data.StructLayout:
        """A load beat. Without ReCoN (uniform layers only) a row has no roles, configuration or
        shifts: those fields exist only with ReCoN."""
        layouts = StreamLayouts(cfg)
        fields = {"header": unsigned(1), "fault": Fault, "fields": layouts.header,
                  "single": WeightDecoder.single_layout(),
                  "codes": data.ArrayLayout(unsigned(cfg.fmt.wbits), cfg.cols)}
        if cfg.has_recon:
            fields.update({"roles": data.ArrayLayout(Role, cfg.cols), "config": layouts.recon_config,
                           "shift": unsigned(1), "d": data.ArrayLayout(unsigned(SHIFT_BITS), cfg.cols)})
        return data.StructLayout(fields)

    #: The header's counts whose zero tests a header beat carries (``single``).
    COUNTS = ("tokens", "k_tiles", "n_tiles")

    @classmethod
    def single_layout(cls) -> data.StructLayout:
        """Per count of the header, whether it is 0 (one token, K-tile, N-tile): computed in the
        merge from its registers, so that the core's counters start from these bits, not from a
        zero test behind the output buffer's LUT-RAM read."""
        return data.StructLayout({name: unsigned(1) for name in cls.COUNTS})

    @property
    def latency(self) -> int:
        """:meth:`latency_of` this decoder's configuration."""
        return self.latency_of(self.cfg)

    @staticmethod
    def latency_of(cfg: AccelConfig) -> int:
        """Cycles from the beat that completes a row to the row on ``o``: the unpacker's buffer and
        output registers, a skid buffer, with ReCoN the metadata decoder and a second one, and the
        merge's output skid buffer."""
        skid = SkidBuffer.LATENCY
        return 2 + (skid + MetaDecoder.latency_of(cfg.fmt) + skid if cfg.has_recon else skid) + skid

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.unpacker = unpacker = Unpacker(cfg)
        wiring.connect(m, wiring.flipped(self.i), unpacker.i)
        # The merge takes from slot buffers (its ``take`` then reaches no payload enable): the
        # decoders' outputs with ReCoN, the unpacker's rows without.
        rows = self._skid(m, "row_skid", unpacker.rows, SkidBuffer if cfg.has_recon else SlotBuffer)
        if cfg.has_recon:
            m.submodules.meta = meta = MetaDecoder(cfg.fmt, cfg.cols, cfg.multi_precision)
            m.submodules.exps = exps = ExpDecoder(cfg.cols)
            wiring.connect(m, rows, meta.i)
            wiring.connect(m, self._skid(m, "exp_skid", unpacker.exps), exps.i)
            # (Their ``error`` flags reach the merge's fault, written into the output buffer's LUT RAM
            # in the same cycle: held in flip-flops placed by the merge.)
            error_fast = functools.partial(SlotBuffer, fast=("error",))
            rows = self._skid(m, "decoded_row_skid", meta.o, error_fast)
            shifts = self._skid(m, "shift_skid", exps.o, error_fast)
        else:
            # Uniform layers only: no records, no exponents.
            m.d.comb += unpacker.exps.ready.eq(1)
            shifts = None
        m.submodules.out_skid = out_skid = SlotBuffer(self.beat_layout(cfg))
        wiring.connect(m, out_skid.o, wiring.flipped(self.o))
        self._merge(m, unpacker, rows, shifts, out_skid.i)
        return m

    @staticmethod
    def _skid(m, name: str, source, buffer=SkidBuffer):
        """``source`` (a submodule's output stream) through a ``buffer`` (a
        :class:`~.skid_buffer.SkidBuffer` or :class:`~.skid_buffer.SlotBuffer`); returns its output."""
        m.submodules[name] = skid = buffer(source.payload.shape())
        wiring.connect(m, source, skid.i)
        return skid.o

    def _in_flight(self, m, enter, leave, most: int):
        """Whether no beat is between two handshakes of a pipeline (``enter`` in, ``leave`` out): a
        register. The handshakes only choose among ``count``, ``count ± 1`` and the zero tests of
        ``count``: the merge's ``leave`` depends on this flag, and an adder and a zero test behind
        it made a seven-level loop."""
        count = Signal(range(most + 1))
        empty = Signal(init=1)
        m.d.sync += [count.eq(Mux(enter, Mux(leave, count, count + 1), Mux(leave, count - 1, count))),
                     empty.eq(Mux(enter == leave, empty, ~enter & (count == 1)))]
        return empty

    def _merge(self, m, unpacker, rows, shifts, out):
        """Headers, rows and shifts in stream order onto ``out`` (the output skid buffer's input)."""
        cfg = self.cfg
        header = unpacker.header
        beat = out.payload
        fields = Signal(StreamLayouts(cfg).header)
        active = Signal()                 # a pass's rows are being merged
        broken = Signal()                 # the stream of this pass ended in a fault
        pass_fault = Signal(Fault)
        # The place of the row being merged; the ends are registers (the merge's take reaches the
        # wide buffers' enables, so it starts from registers only).
        row = WrapCounter(Const(cfg.rows - 1, range(cfg.rows)), name="row")
        tile_k, tile_n = WrapCounter(fields.k_tiles, name="tile_k"), WrapCounter(fields.n_tiles, name="tile_n")

        def group_last(k, header_fields, ahead: int = 0):
            """(A MicroScopiQ pair pass has ``G/2R`` K-tiles per K-group.)"""
            return layouts.group_last(cfg, k, header_fields.pairs if cfg.multi_precision else None, ahead)

        # The row being merged is a K-group's last K-tile's first row in MicroScopiQ mode, so it
        # carries the shifts: a register, set for the next row as a row is taken, so that the
        # merge's take (which reaches the wide buffers' enables) starts from registers only.
        wants_shift = Signal()
        next_last = Mux(tile_k.last, group_last(Const(0, 1), fields), group_last(tile_k.count, fields, ahead=1))
        wants_next = (fields.mode == Mode.MSQ) & row.last & next_last

        most = self.latency + 2
        rows_drained = self._in_flight(m, unpacker.rows.valid & unpacker.rows.ready, rows.valid & rows.ready, most)
        row_real = rows.valid
        row_made = broken & rows_drained & ~rows.valid
        if shifts is not None:
            exps = unpacker.exps
            shifts_drained = self._in_flight(m, exps.valid & exps.ready & ~exps.payload.minimum,
                                             shifts.valid & shifts.ready,
                                             2 * SkidBuffer.DEPTH + ExpDecoder.latency)
            shift_real = shifts.valid
            shift_made = broken & shifts_drained & ~shifts.valid
        else:
            shift_real, shift_made = Const(0, 1), Const(1, 1)

        # The unpacker's fault pulse a cycle later: its END check (the buffer's zero test) and the
        # merge's fault priority would otherwise run into the output buffer's LUT-RAM write data in
        # one cycle (the critical path of several builds). A pass's last row reaches the merge no
        # earlier than two cycles after it was parsed (the unpacker's output register and the
        # row's slot buffer), and its END check follows the parse, so the pulse is still in time
        # to mark it.
        late_fault = Signal(Fault)
        m.d.sync += late_fault.eq(unpacker.fault)
        with m.If(late_fault != Fault.NONE):
            m.d.sync += broken.eq(1)
        unpacker_fault = Mux(active, late_fault, Fault.NONE)
        row_error = Mux(row_real & rows.payload.error, Fault.PAIRS, Fault.NONE) if cfg.has_recon else Fault.NONE
        shift_error = (Mux(wants_shift & shift_real & shifts.payload.error, Fault.EXPONENT, Fault.NONE)
                       if shifts is not None else Fault.NONE)
        fault_now = _first_fault(pass_fault, unpacker_fault, row_error, shift_error)

        with m.If(~active):
            # A header: the pass's rows follow; a refused one runs nothing.
            m.d.comb += [out.valid.eq(header.valid), header.ready.eq(out.ready),
                         beat.header.eq(1), beat.fields.eq(header.payload.fields), beat.fault.eq(header.payload.fault),
                         *(getattr(beat.single, name).eq(getattr(header.payload.fields, name) == 0)
                           for name in self.COUNTS)]
            with m.If(header.valid & out.ready & (header.payload.fault == Fault.NONE)):
                m.d.sync += [active.eq(1), fields.eq(header.payload.fields), broken.eq(0),
                             pass_fault.eq(Fault.NONE),
                             wants_shift.eq((header.payload.fields.mode == Mode.MSQ)
                                            & group_last(Const(0, 1), header.payload.fields))]
                for counter, limit in ((row, row.limit), (tile_k, header.payload.fields.k_tiles),
                                       (tile_n, header.payload.fields.n_tiles)):
                    counter.start(m, limit)
        with m.Else():
            has_row = row_real | row_made
            has_shift = ~wants_shift | shift_real | shift_made
            m.d.comb += [out.valid.eq(has_row & has_shift), beat.fault.eq(fault_now)]
            take = out.valid & out.ready
            m.d.comb += rows.ready.eq(take & row_real)
            if shifts is not None:
                m.d.comb += shifts.ready.eq(take & wants_shift & shift_real)
            with m.If(row_real):
                m.d.comb += beat.codes.eq(rows.payload.codes)
                if cfg.has_recon:
                    m.d.comb += [beat.roles.eq(rows.payload.roles), beat.config.eq(rows.payload.config)]
            if shifts is not None:
                m.d.comb += beat.shift.eq(wants_shift)
                with m.If(wants_shift & shift_real):
                    m.d.comb += beat.d.eq(shifts.payload.shifts)
            with m.If(take):
                m.d.sync += [pass_fault.eq(fault_now), wants_shift.eq(wants_next)]
                # After a row: the next row, K-tile, N-tile, or the pass's end.
                with m.If(step_nested(m, (row, tile_k, tile_n))):
                    m.d.sync += active.eq(0)
            with m.Elif(fault_now != Fault.NONE):
                m.d.sync += pass_fault.eq(fault_now)
