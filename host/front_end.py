"""The cycle model of a layer run through the packed weight stream: a cycle-by-cycle simulation of
the control state of the weight front end (:class:`~microscopiq.hdl.weight_decoder.WeightDecoder`:
unpacker, metadata and exponent decoders, merge) and of the core's loader, with the issuer, the
array and the PPU as the per-tile schedule of ``docs/hardware.md`` ("Cycle model"). Every rule
here is one of the RTL's, stated where it is used; the tests hold the RTL's cycle counts equal to
this model's. Streams are always valid (inputs) and ready (output).

Only the state that decides timing is simulated: the unpacker's bit count ``fill`` and item
position, the valid flags of the one-beat registers and of the metadata decoder's stages, the merge's
row count, and the loader's tile bookkeeping. A cycle in which nothing can move is skipped to the
next cycle at which the loader's readiness changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import AccelConfig
from ..hdl.core import CoreTiming
from ..hdl.layouts import PACKED_HEADER
from ..hdl.meta_decoder import MetaDecoder
from ..hdl.unpacker import UnpackerSizes
from .packed_stream import ITEM_EXPONENTS, ITEM_MINIMA, ITEM_ROW

__all__ = ["run_cycles"]

_HEADER = -1      # item kind of the pass header (the packed_stream kinds are 0 … 2)
_END = -2         # the unpacker's END state after a pass's last item


@dataclass
class _Pass:
    """One pass as the simulation walks it."""

    tokens: int
    kinds: list
    bits: list
    beats: int


@dataclass
class _Loader:
    """The loader's and the issuer's schedule: when rows and headers can be taken."""

    timing: CoreTiming
    periods: list
    rows: int
    busy_until: int = -1           # the current pass's last result handshake (busy until then)
    rows_blocked_until: int = -1   # the shadow is full until this cycle (inclusive)
    row_in_tile: int = 0
    tile: int = 0
    free: int = -1                 # earliest issue of the next tile's first token
    tokens: int = 0
    last_result: int = -1
    starts: list = field(default_factory=list)

    def ready_for_header(self, cycle: int) -> bool:
        return cycle > self.busy_until

    def ready_for_row(self, cycle: int) -> bool:
        return cycle > self.rows_blocked_until

    def take_header(self, cycle: int, tokens: int) -> None:
        # busy from the next cycle until the pass's last result; the end is set by its last tile.
        self.busy_until = 1 << 62
        self.rows_blocked_until = cycle
        self.row_in_tile = self.tile = 0
        self.free, self.tokens = -1, tokens

    def take_row(self, cycle: int, last_tile: bool) -> None:
        self.row_in_tile += 1
        if self.row_in_tile < self.rows:
            return
        # The last row reaches the shadow a cycle later (LOAD_STAGE) and sets shadow_ready the cycle
        # after; the tile's first token then issues once the previous tile's last has gone.
        self.row_in_tile = 0
        period = self.periods[self.tile]
        start = max(cycle + 2, self.free)
        self.starts.append(start)
        arrive = self.timing.arrive(period)
        last_issue = start + (self.tokens - 1) * period
        self.free = last_issue + period + self.timing.array.tile_gap_extra
        # shadow_full until the tile's first token reaches the PPU.
        self.rows_blocked_until = start + arrive
        self.tile += 1
        if last_tile:
            self.last_result = last_issue + arrive + self.timing.result_latency
            self.busy_until = self.last_result


def run_cycles(cfg: AccelConfig, items: tuple, periods: list[int], passes: list[int], *,
               k_tiles: int, msq: bool) -> int:
    """Cycles from the first ``s_axis_weights`` handshake to the last ``m_axis_result`` handshake
    (both included) of passes of ``passes`` tokens each, every pass the items ``(kinds, bits)`` of
    :func:`~microscopiq.host.packed_stream.pass_items` after a header; ``periods`` the issue period
    of every tile in stream order, ``k_tiles`` the layer's K-tiles, ``msq`` MicroScopiQ mode (a
    K-group's last K-tile loads the PPU shifts with its first row)."""
    kinds, bits = (np.asarray(a).tolist() for a in items)
    width = cfg.weight_bus
    total = PACKED_HEADER.size + sum(bits)
    walk = [_Pass(tokens, [_HEADER] + kinds + [_END], [PACKED_HEADER.size] + bits + [0], -(-total // width))
            for tokens in passes]
    sim = _Simulation(cfg, walk, _Loader(CoreTiming.of(cfg), periods, cfg.rows), k_tiles=k_tiles, msq=msq)
    return sim.run()


class _Simulation:
    """The front end and loader, one cycle per :meth:`step`."""

    def __init__(self, cfg: AccelConfig, passes: list[_Pass], loader: _Loader, *, k_tiles: int, msq: bool):
        self.cfg, self.passes, self.loader = cfg, passes, loader
        self.k_tiles, self.msq = k_tiles, msq
        self.width = cfg.weight_bus
        self.capacity = UnpackerSizes(cfg, cfg.weight_bus).capacity
        self.recon = cfg.has_recon
        self.meta = [False] * (MetaDecoder.latency_of(cfg.fmt) if self.recon else 0)
        self.rows_per_pass = sum(kind == ITEM_ROW for kind in passes[0].kinds)
        self.tiles_per_pass = self.rows_per_pass // cfg.rows
        self.per_group = cfg.fmt.group // cfg.rows
        # unpacker
        self.pass_in = self.pass_out = 0       # pass whose beats / items are being taken / parsed
        self.beat = 0                          # next beat of pass_in
        self.fill, self.item, self.last_taken = 0, 0, False
        self.header_valid = self.exps_valid = self.exps_minimum = self.row_valid = False
        self.shift_valid = False               # the exponent decoder's output register
        # merge
        self.active, self.merged, self.pass_done = False, 0, 0

    def run(self) -> int:
        cycle = 0
        while self.pass_done < len(self.passes):
            moved = self.step(cycle)
            cycle = cycle + 1 if moved else self._next_change(cycle)
        return self.loader.last_result + 1

    def _next_change(self, cycle: int) -> int:
        """The next cycle at which the loader's readiness changes (nothing else can move first)."""
        later = [t + 1 for t in (self.loader.busy_until, self.loader.rows_blocked_until) if t >= cycle]
        if not later:
            raise RuntimeError(f"cycle model deadlocked at cycle {cycle}")
        return min(later)

    # -- one cycle ---------------------------------------------------------------------------------
    def step(self, cycle: int) -> bool:
        loader, cfg = self.loader, self.cfg
        # The merge's output and the loader's ready (the core's loader rules).
        if not self.active:
            out_valid = self.header_valid
            loader_ready = loader.ready_for_header(cycle)
            wants_shift = False
        else:
            tile = self.merged // cfg.rows
            place = tile % self.k_tiles
            wants_shift = self.msq and self.merged % cfg.rows == 0 and place % self.per_group == self.per_group - 1
            row_real = self.meta[-1] if self.recon else self.row_valid
            out_valid = row_real and (not wants_shift or self.shift_valid)
            loader_ready = loader.ready_for_row(cycle)
        take = out_valid and loader_ready
        # Back-pressure through the decoders (a stalled output freezes the metadata decoder).
        meta_advance = (not self.meta[-1] or (take and self.active)) if self.recon else False
        shift_advance = not self.shift_valid or (take and wants_shift)
        header_taken = self.header_valid and not self.active and loader_ready
        rows_taken = self.row_valid and (meta_advance if self.recon else (take and self.active))
        exps_taken = self.exps_valid and shift_advance
        moved = take or rows_taken or exps_taken or (meta_advance and any(self.meta))

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
            elif kind == ITEM_ROW:
                free = (not self.row_valid or rows_taken) and not self.header_valid
            else:
                free = (not self.exps_valid or exps_taken) and not self.header_valid
            parse = self.fill >= current.bits[self.item] and free
        beat_in = (not self.last_taken and self.fill <= self.capacity - self.width
                   and self.pass_in < len(self.passes))
        moved = moved or parse or restart or beat_in

        # Register updates.
        if self.recon and meta_advance:
            self.meta = [self.row_valid and rows_taken] + self.meta[:-1]
        if shift_advance:
            self.shift_valid = self.exps_valid and not self.exps_minimum
        self.header_valid = (kind == _HEADER and parse) or (self.header_valid and not header_taken)
        self.row_valid = (kind == ITEM_ROW and parse) or (self.row_valid and not rows_taken)
        if kind in (ITEM_MINIMA, ITEM_EXPONENTS) and parse:
            self.exps_valid, self.exps_minimum = True, kind == ITEM_MINIMA
        elif exps_taken:
            self.exps_valid = False
        self._merge(cycle, take)
        self._unpack(parse, restart, beat_in, current)
        return moved

    def _merge(self, cycle: int, take: bool) -> None:
        if not take:
            return
        if not self.active:
            pass_ = self.passes[self.pass_done]
            self.active, self.merged = True, 0
            self.loader.take_header(cycle, pass_.tokens)
            return
        self.merged += 1
        last_tile = self.merged == self.rows_per_pass
        self.loader.take_row(cycle, last_tile)
        if last_tile:
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
