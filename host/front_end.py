"""The cycle model of a layer run through the packed weight stream: a cycle-by-cycle simulation of
the control state of the weight front end (:class:`~microscopiq.hdl.weight_decoder.WeightDecoder`:
unpacker, metadata and exponent decoders, merge) and of the core's loader, with the issuer, the
array and the PPU as the per-tile schedule of ``docs/hardware.md`` ("Cycle model"). Every rule
here is one of the RTL's, stated where it is used; the tests hold the RTL's cycle counts equal to
this model's. Streams are always valid (inputs) and ready (output).

Only the state that decides timing is simulated: the unpacker's bit count ``fill`` and item
position, the valid flags of the one-beat registers and of the metadata decoder's stages, the merge's
row count, the skid buffers' occupancy, and the loader's tile bookkeeping. A cycle in which nothing can move is skipped to the
next cycle at which the loader's readiness changes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..config import AccelConfig
from ..hdl.core import ISSUE_STAGE, CoreTiming
from ..hdl.layouts import PACKED_HEADER
from ..hdl.meta_decoder import MetaDecoder
from ..hdl.unpacker import UnpackerSizes
from .packed_stream import ITEM_EXPONENTS, ITEM_MINIMA, ITEM_PROLOGUE, ITEM_ROW

__all__ = ["run_cycles"]

_HEADER = -1      # item kind of the pass header (the packed_stream kinds are 0 … 3)
_END = -2         # the unpacker's END state after a pass's last item


@dataclass
class _Pass:
    """One pass as the simulation walks it."""

    tokens: int
    kinds: list
    bits: list
    beats: int


_LATER = 1 << 62       # a cycle that has not come yet


class _Skid:
    """A :class:`~microscopiq.hdl.skid_buffer.SkidBuffer`'s occupancy: its head (the output
    register) and spare, each a payload tag or None. ``ready`` (the spare is empty) is a register."""

    def __init__(self):
        self.head = self.spare = None

    @property
    def ready(self) -> bool:
        return self.spare is None

    def step(self, taken, leaves: bool) -> None:
        """One clock edge: ``taken`` entered (None: nothing), the head left if ``leaves``."""
        if self.head is not None and not leaves:
            if taken is not None:
                self.spare = taken
        else:
            self.head = self.spare if self.spare is not None else taken
            self.spare = None


class _Loader:
    """The core's loader, row buffer, shift queue and issuer (hdl/core.py), cycle by cycle: when
    it takes a header or a row, when rows reach the shadow banks, when tiles start.

    The row buffer (:class:`~microscopiq.hdl.skid_buffer.SkidBuffer`) takes a row while its spare
    is empty and writes its head into the shadow, but row 0 of a tile while the tile before is
    complete and not started (``pending``): that row goes in the cycle after the tile's start (the
    first token's handshake; the token is in the issue register then) at the earliest. A tile
    starts in the cycle its last row is written (with shared ReCoN the cycle after:
    :attr:`~microscopiq.hdl.core.CoreTiming.start_with_last_row`), at least
    :attr:`~microscopiq.hdl.core.CoreTiming.tile_spacing` after the tile before and once that
    tile's ``M`` tokens (``T`` apart) and gap are through. The shift queue takes a tile's shifts
    with its row 0 while it has room and moves them to the PPU while the PPU's shadow is free
    (after the tile before reached the PPU)."""

    def __init__(self, timing: CoreTiming, periods: list, gaps: list, rows: int, tiles_per_pass: int):
        self.timing, self.periods, self.gaps = timing, periods, gaps
        self.rows, self.tiles_per_pass = rows, tiles_per_pass
        self.busy_until = -1                     # the current pass's last result handshake
        self.last_result = -1
        self.tokens = 0
        self.buffer = _Skid()                    # the row buffer's rows (index in their tile)
        self.loaded = 0                          # rows taken of the tile being taken
        self.written = 0                         # rows written of the tile being written
        self.tile = 0                            # tile being written (in the pass)
        self.row0_from = -_LATER                 # the cycle after the last complete tile's start
        self.issued = self.free = -_LATER        # the tile before's start; earliest next start
        self.queue = 0                           # shift queue entries
        self.shadow_free = True                  # the PPU's shift shadow
        self.arrivals = deque()                  # first tokens' arrivals at the PPU, in order
        self.passes_done = 0

    def ready_for_header(self, cycle: int) -> bool:
        return cycle > self.busy_until

    def ready_for_row(self) -> bool:
        """The row buffer's spare is empty, and for a tile's row 0 the shift queue has room."""
        return self.buffer.ready and (self.loaded != 0 or self.queue < self.timing.shift_queue_depth)

    def take_header(self, tokens: int) -> None:
        self.busy_until = _LATER                 # set when the pass's last tile is scheduled
        self.tokens, self.tile = tokens, 0
        self.issued = self.free = -_LATER

    def step(self, cycle: int, took_row: bool) -> bool:
        """One cycle in which the loader took a row or not; returns whether anything moved."""
        taken = self.loaded if took_row else None
        if took_row:
            self.loaded = (self.loaded + 1) % self.rows
        head = self.buffer.head
        leaves = head is not None and (head != 0 or cycle >= self.row0_from)
        if leaves:
            self._write(cycle)
        self.buffer.step(taken, leaves)
        return self._shift_queue(cycle, taken == 0) or leaves or took_row

    def _write(self, cycle: int) -> None:
        self.written += 1
        if self.written < self.rows:
            return
        self.written = 0
        timing, period = self.timing, self.periods[self.tile]
        start = max(cycle + (0 if timing.start_with_last_row else 1), self.free,
                    self.issued + timing.tile_spacing)
        self.issued, self.row0_from = start, start + ISSUE_STAGE
        last_issue = start + (self.tokens - 1) * period
        self.free = last_issue + period + self.gaps[self.tile]
        self.arrivals.append(start + timing.arrive(period))
        self.tile += 1
        if self.tile == self.tiles_per_pass:
            self.last_result = last_issue + timing.arrive(period) + timing.result_latency
            self.busy_until = self.last_result
            self.passes_done += 1

    def _shift_queue(self, cycle: int, push: bool) -> bool:
        arrived = bool(self.arrivals) and self.arrivals[0] == cycle
        if arrived:
            self.arrivals.popleft()
        move = self.queue > 0 and (self.shadow_free or arrived)
        if move:
            self.shadow_free = False
        elif arrived:
            self.shadow_free = True
        self.queue += int(push) - int(move)
        return move or arrived or push

    def next_event(self, cycle: int) -> int:
        """The next cycle after ``cycle`` at which this part changes on its own."""
        times = [t for t in (self.busy_until + 1, self.row0_from, *list(self.arrivals)[:1]) if t > cycle]
        return min(times) if times else _LATER


def run_cycles(cfg: AccelConfig, items: tuple, periods: list[int], passes: list[int], *,
               k_tiles: int, per_group: int, msq: bool, gaps: list[int]) -> int:
    """Cycles from the first ``s_axis_weights`` handshake to the last ``m_axis_result`` handshake
    (both included) of passes of ``passes`` tokens each, every pass the items ``(kinds, bits)`` of
    :func:`~microscopiq.host.packed_stream.pass_items` after a header; ``periods`` the issue period
    of every tile in stream order, ``k_tiles`` the layer's K-tiles, ``per_group`` the K-tiles of a
    K-group (``G/R``, ``G/2R`` in pair mode), ``msq`` MicroScopiQ mode (a
    K-group's last K-tile loads the PPU shifts with its first row), ``gaps`` every tile's extra
    cycles after its last token (:func:`~microscopiq.host.stream_format.tile_gaps`)."""
    kinds, bits = (np.asarray(a).tolist() for a in items)
    width = cfg.weight_bus
    total = PACKED_HEADER.size + sum(bits)
    walk = [_Pass(tokens, [_HEADER] + kinds + [_END], [PACKED_HEADER.size] + bits + [0], -(-total // width))
            for tokens in passes]
    loader = _Loader(CoreTiming.of(cfg), periods, gaps, cfg.rows, len(periods))
    sim = _Simulation(cfg, walk, loader, k_tiles=k_tiles, per_group=per_group, msq=msq)
    return sim.run()


class _Simulation:
    """The front end and loader, one cycle per :meth:`step`."""

    def __init__(self, cfg: AccelConfig, passes: list[_Pass], loader: _Loader, *, k_tiles: int, per_group: int,
                 msq: bool):
        self.cfg, self.passes, self.loader = cfg, passes, loader
        self.k_tiles, self.msq = k_tiles, msq
        self.width = cfg.weight_bus
        self.capacity = UnpackerSizes(cfg, cfg.weight_bus).capacity
        self.recon = cfg.has_recon
        self.meta = [False] * (MetaDecoder.latency_of(cfg.fmt) if self.recon else 0)
        self.rows_per_pass = sum(kind == ITEM_ROW for kind in passes[0].kinds)
        self.per_group = per_group
        # unpacker
        self.pass_in = self.pass_out = 0       # pass whose beats / items are being taken / parsed
        self.beat = 0                          # next beat of pass_in
        self.fill, self.item, self.last_taken = 0, 0, False
        self.header_valid = self.exps_valid = self.exps_minimum = self.row_valid = False
        # skid buffers before and after the decoders (payload: True, or an exponent item's
        # ``minimum`` flag); without ReCoN only ``row_skid``, between the unpacker and the merge
        self.row_skid, self.exp_skid, self.decoded_skid, self.shift_skid = _Skid(), _Skid(), _Skid(), _Skid()
        self.shift_valid = False               # the exponent decoder's output register
        # merge, and its output skid buffer (payload: True for a row, the pass for its header)
        self.active, self.merged, self.pass_done = False, 0, 0
        self.out_skid = _Skid()

    def run(self) -> int:
        cycle = 0
        while self.loader.passes_done < len(self.passes):
            moved = self.step(cycle)
            cycle = cycle + 1 if moved else self._next_change(cycle)
        return self.loader.last_result + 1

    def _next_change(self, cycle: int) -> int:
        """The next cycle at which the loader changes on its own (nothing else can move first)."""
        later = self.loader.next_event(cycle)
        if later == _LATER:
            raise RuntimeError(f"cycle model deadlocked at cycle {cycle}")
        return later

    # -- one cycle ---------------------------------------------------------------------------------
    def step(self, cycle: int) -> bool:
        loader, cfg = self.loader, self.cfg
        # The front end's output skid buffer and the loader's ready (the core's loader rules).
        head = self.out_skid.head
        if head is None:
            loader_take = False
        else:
            loader_take = loader.ready_for_row() if head is True else loader.ready_for_header(cycle)
        # The merge's output into that buffer.
        if not self.active:
            out_valid = self.header_valid
            wants_shift = False
        else:
            tile = self.merged // cfg.rows
            place = tile % self.k_tiles
            wants_shift = self.msq and self.merged % cfg.rows == 0 and place % self.per_group == self.per_group - 1
            rows = self.decoded_skid if self.recon else self.row_skid
            out_valid = rows.head is not None and (not wants_shift or self.shift_skid.head is not None)
        take = out_valid and self.out_skid.ready
        header_taken = self.header_valid and not self.active and self.out_skid.ready
        moved = self._decoders(take and self.active, take and self.active and wants_shift)
        rows_taken = self.rows_taken
        moved = loader.step(cycle, loader_take and head is True) or loader_take or take or moved
        if loader_take and head is not True:
            loader.take_header(head.tokens)
        merged = (True if self.active else self.passes[self.pass_done]) if take else None
        self.out_skid.step(merged, loader_take)

        # The unpacker's item and beat (rules of hdl/unpacker.py).
        current = self.passes[min(self.pass_out, len(self.passes) - 1)]
        kind = current.kinds[self.item] if self.pass_out < len(self.passes) else None
        parse = restart = False
        if kind is None:
            pass                            # every pass parsed
        elif kind == _END:
            restart = self.last_taken
        else:
            if kind == _HEADER:
                free = not self.header_valid or header_taken
            elif kind == ITEM_PROLOGUE:
                free = not self.header_valid       # no output register; waits for the header's taker
            elif kind == ITEM_ROW:
                free = (not self.row_valid or rows_taken) and not self.header_valid
            else:
                free = (not self.exps_valid or self.exps_taken) and not self.header_valid
            parse = self.fill >= current.bits[self.item] and free
        beat_in = (not self.last_taken and self.fill <= self.capacity - self.width
                   and self.pass_in < len(self.passes))
        moved = moved or parse or restart or beat_in

        # Register updates.
        self.header_valid = (kind == _HEADER and parse) or (self.header_valid and not header_taken)
        self.row_valid = (kind == ITEM_ROW and parse) or (self.row_valid and not rows_taken)
        if kind in (ITEM_MINIMA, ITEM_EXPONENTS) and parse:
            self.exps_valid, self.exps_minimum = True, kind == ITEM_MINIMA
        elif self.exps_taken:
            self.exps_valid = False
        self._merge(cycle, take)
        self._unpack(parse, restart, beat_in, current)
        return moved

    def _decoders(self, row_leaves: bool, shift_leaves: bool) -> bool:
        """One cycle of the skid buffers and decoders between the unpacker's output registers and
        the merge (the merge takes a row if ``row_leaves``, a tile's shifts if ``shift_leaves``);
        sets ``rows_taken`` and ``exps_taken`` (the unpacker's output registers emptied), returns
        whether anything moved. Each decoder's stages advance while
        its output register is empty or the skid buffer after it has room."""
        self.rows_taken = rows_taken = self.row_valid and self.row_skid.ready
        taken_row = True if rows_taken else None
        if not self.recon:
            self.exps_taken = self.exps_valid         # (raw passes have no exponent items)
            self.row_skid.step(taken_row, row_leaves)
            return rows_taken
        self.exps_taken = self.exps_valid and self.exp_skid.ready
        meta_advance = not self.meta[-1] or self.decoded_skid.ready
        meta_out = self.meta[-1] and self.decoded_skid.ready
        row_in = meta_advance and self.row_skid.head is not None
        shift_advance = not self.shift_valid or self.shift_skid.ready
        shift_out = self.shift_valid and self.shift_skid.ready
        exp_in = shift_advance and self.exp_skid.head is not None
        if meta_advance:
            self.meta = [row_in] + self.meta[:-1]
        if shift_advance:
            self.shift_valid = exp_in and not self.exp_skid.head
        self.decoded_skid.step(True if meta_out else None, row_leaves)
        self.row_skid.step(taken_row, row_in)
        self.shift_skid.step(True if shift_out else None, shift_leaves)
        self.exp_skid.step(self.exps_minimum if self.exps_taken else None, exp_in)
        return rows_taken or self.exps_taken or meta_out or row_in or shift_out or exp_in or (
            meta_advance and any(self.meta))

    def _merge(self, cycle: int, take: bool) -> None:
        if not take:
            return
        if not self.active:
            self.active, self.merged = True, 0
            return
        self.merged += 1
        if self.merged == self.rows_per_pass:
            self.active = False
            self.pass_done += 1

    def _unpack(self, parse: bool, restart: bool, beat_in: bool, current: _Pass) -> None:
        if parse:
            self.fill -= current.bits[self.item]
            self.item += 1
        if restart:
            self.fill, self.item, self.last_taken = 0, 0, False
            self.pass_out += 1
            return
        if beat_in:
            self.fill += self.width
            self.beat += 1
            if self.beat == self.passes[self.pass_in].beats:
                self.last_taken = True
                self.pass_in += 1
                self.beat = 0
