"""Peer comparison: cycles and weight traffic of a layer on this accelerator and on three peers.

Every design is a weight-stationary ``R × C`` array with the same PE count, run with the schedule of
:func:`microscopiq.host.stream_format.predict_cycles` (the accelerator's own cycle model): per pass
of at most ``max_tokens`` tokens, a header beat, then per weight tile (N-tile outer, K-tile inner) a
load into the shadow registers overlapped with the previous tile's tokens, ``M`` tokens issued one
every ``T`` cycles; row 0 of tile ``i+1`` is written from the cycle tile ``i``'s first token is
issued, the other rows one per cycle behind it, and tile ``i+1`` starts once its last row is in.
What this module adds is a weight *memory* of ``bus_bits`` bits per cycle: a tile of ``B`` stream
bits takes a window of ``max(R + 1, ceil(B / bus_bits))`` cycles (``R + 1`` is the load port of one
header and one PE row per cycle), windows back to back, each starting once the previous tile's
header was taken (one tile of prefetch), its beats ready in the window's last ``R + 1`` cycles
(:func:`~microscopiq.host.stream_format.pass_cycles`' ``loads``). With ``bus_bits=None`` the
memory keeps up and the model is exactly ``predict_cycles`` (tested).

Designs (:func:`designs`), each with its tile bits, issue period and pipeline depth:

``msq``
    This accelerator (MicroScopiQ mode) as generated: tile bits are those of its weights stream
    (:class:`~microscopiq.hdl.layouts.StreamLayouts`: ``C`` 8-bit PPU shifts, then per PE row
    ``C`` codes of ``b`` bits, ``C`` 2-bit roles and the row's ReCoN configuration); its
    :class:`~microscopiq.host.stream_format.CycleModel` (ReCoN latency in the pipeline); period 1
    (ReCoN per row).
``msq-packed``
    The same array fed the packed MicroScopiQ format (``EBW`` bits per weight, quant/ebw.py) by a
    hypothetical on-chip metadata decoder: what the format saves when the weight port is the limit.
``int8``
    A uniform INT8 weight-stationary array: 8 bits per weight, the cycle model of the same array
    without ReCoN, period 1.
``gobo``
    A GOBO/OLAccel-style mixed-precision array: a dense ``b``-bit inlier array (outliers zeroed in
    it) plus one high-precision outlier MAC per PE row. Each outlier travels as a 16-bit value and
    its ``log2(R·C)``-bit position in the tile, and every tile carries the ``C`` 8-bit shifts and an
    outlier count of ``log2(R·C) + 1`` bits. A PE row's outlier MAC takes one outlier × token per
    cycle, so a tile issues one token every ``T = max(1, most outliers in one of its PE rows)``
    cycles. The cycle model of the array without ReCoN (the outlier path is assumed to fit in the
    same pipeline). Outlier positions are those of the real quantized layer.
``w2``
    The same generator at ``b = 2`` running a uniform decoupleQ W2 layer (raw mode): tile bits of
    that configuration's weights stream, period 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import AccelConfig
from ..quant.layer import MsqLayer, Role, padded
from ..hdl.layouts import SHIFT_BITS, StreamLayouts
from .stream_format import CycleModel, pass_cycles

__all__ = ["TileStats", "Design", "tile_stats", "resized", "designs", "schedule_cycles",
           "layer_cycles", "compare", "OUTLIER_VALUE_BITS", "PeerModelError"]

#: Bits of one outlier value in the GOBO-style design (FP16 / INT16).
OUTLIER_VALUE_BITS = 16


class PeerModelError(ValueError):
    """Bad input to the performance model (a parameter named in the message)."""


@dataclass(frozen=True)
class TileStats:
    """Per weight tile (stream order: N-tile outer, K-tile inner) outlier counts of one layer.

    Attributes
    ----------
    n_tiles, k_tiles : int
    outliers : ndarray of int, (n_tiles · k_tiles,)
        Outliers (OUT_HI slots) in the tile.
    row_max : ndarray of int, (n_tiles · k_tiles,)
        Most outliers in one PE row (one input column ``k``) of the tile.
    slots : int
        Weight slots per tile, ``R · C``.
    ebw : float
        Effective bits per weight of the packed layer (codes + metadata + scales).
    source : str
        Where the statistics come from.
    """

    n_tiles: int
    k_tiles: int
    outliers: np.ndarray
    row_max: np.ndarray
    slots: int
    ebw: float
    source: str

    @property
    def tiles(self) -> int:
        return self.n_tiles * self.k_tiles

    @property
    def outlier_fraction(self) -> float:
        """Outliers per weight slot."""
        return float(self.outliers.sum()) / (self.tiles * self.slots)

    @property
    def outlier_tile_fraction(self) -> float:
        """Fraction of tiles holding at least one outlier."""
        return float((self.outliers > 0).mean())


def tile_stats(layer: MsqLayer, rows: int, cols: int, ebw: float, source: str) -> TileStats:
    """Outlier counts of ``layer`` tiled onto an ``rows × cols`` array (N padded to ``cols``, K to
    the K-group as the weights stream does)."""
    if layer.kp % rows:
        raise PeerModelError(f"rows ({rows}) must divide the padded K ({layer.kp})")
    nt = padded(layer.n, cols)
    hi = np.zeros((nt, layer.kp), dtype=np.int64)
    rows_n = min(nt, layer.np_)
    hi[:rows_n] = layer.roles[:rows_n] == Role.OUT_HI
    per_row = hi.reshape(nt // cols, cols, layer.kp // rows, rows).sum(axis=1)  # (NT, KT, R)
    return TileStats(n_tiles=nt // cols, k_tiles=layer.kp // rows,
                     outliers=per_row.sum(axis=2).reshape(-1), row_max=per_row.max(axis=2).reshape(-1),
                     slots=rows * cols, ebw=ebw, source=source)


def resized(stats: TileStats, n_tiles: int, k_tiles: int, source: str) -> TileStats:
    """``stats`` repeated cyclically over an ``n_tiles × k_tiles`` tile grid (a layer shape whose
    weights are not available, given the outlier statistics of a real quantized layer)."""
    count = n_tiles * k_tiles
    return TileStats(n_tiles=n_tiles, k_tiles=k_tiles, outliers=np.resize(stats.outliers, count),
                     row_max=np.resize(stats.row_max, count), slots=stats.slots, ebw=stats.ebw,
                     source=source)


@dataclass(frozen=True)
class Design:
    """One design on a tile grid: its timing constants (the accelerator's
    :class:`~microscopiq.host.stream_format.CycleModel`: rows, pipeline, load beats, shared), and per
    tile the weight bits it streams and its issue period."""

    name: str
    model: CycleModel
    tile_bits: np.ndarray
    periods: np.ndarray

    def load_cycles(self, bus_bits: int | None) -> np.ndarray:
        """Cycles to load each tile: the load port's beats, or the memory's ``ceil(bits / bus)``."""
        floor = self.model.load_beats
        if bus_bits is None:
            return np.full(self.tile_bits.shape, floor, dtype=np.int64)
        return np.maximum(floor, -(-self.tile_bits // bus_bits))


def _stream_tile_bits(cfg: AccelConfig) -> int:
    """Payload bits of one tile on this accelerator's weights stream: the tile header (``C`` shifts)
    and ``R`` row beats (codes, roles, ReCoN config)."""
    return cfg.cols * SHIFT_BITS + cfg.rows * StreamLayouts(cfg).row.size


def designs(cfg: AccelConfig, stats: TileStats) -> dict[str, Design]:
    """The five designs of the module notes for ``cfg`` (ReCoN per row) on ``stats``' tile grid."""
    if cfg.recon_share != 1:
        raise PeerModelError(f"the peer comparison models ReCoN per row (recon_share=1), not "
                             f"recon_share={cfg.recon_share!r}")
    cols, tiles = cfg.cols, stats.tiles
    rows = cfg.rows
    ones = np.ones(tiles, dtype=np.int64)
    slots = rows * cols
    index_bits = max(1, math.ceil(math.log2(slots)))
    cfg_w2 = cfg.replace(wbits=2)
    plain = CycleModel.of(cfg.replace(recon_share=0))            # the same array without ReCoN
    return {
        "msq": Design("msq", CycleModel.of(cfg), ones * _stream_tile_bits(cfg), ones),
        "msq-packed": Design("msq-packed", CycleModel.of(cfg), ones * math.ceil(stats.ebw * slots), ones),
        "int8": Design("int8", plain, ones * (8 * slots), ones),
        "gobo": Design("gobo", plain,
                       cols * SHIFT_BITS + slots * cfg.fmt.wbits + (index_bits + 1)
                       + stats.outliers.astype(np.int64) * (OUTLIER_VALUE_BITS + index_bits),
                       np.maximum(1, stats.row_max.astype(np.int64))),
        "w2": Design("w2", CycleModel.of(cfg_w2), ones * _stream_tile_bits(cfg_w2), ones),
    }


def schedule_cycles(design: Design, tokens: int, max_tokens: int, bus_bits: int | None = None) -> int:
    """Cycles from the first weights beat to the last result of a layer (every pass re-streams all
    tiles), the schedule of :func:`~microscopiq.host.stream_format.predict_cycles` with each tile's
    load taking :meth:`Design.load_cycles`."""
    if tokens < 1:
        raise PeerModelError(f"tokens must be >= 1, not {tokens!r}")
    loads = design.load_cycles(bus_bits).tolist()
    periods = design.periods.tolist()
    total = 0
    for start in range(0, tokens, max_tokens):
        total += pass_cycles(design.model, periods, min(max_tokens, tokens - start), loads)
    return total


def layer_cycles(design: Design, tokens: int, max_tokens: int, bus_bits: int | None) -> dict:
    """Cycles and weight bytes moved (all passes) of one design."""
    passes = -(-tokens // max_tokens)
    return {"cycles": schedule_cycles(design, tokens, max_tokens, bus_bits),
            "weight_bytes": passes * int(design.tile_bits.sum()) / 8}


def compare(cfg: AccelConfig, stats: TileStats, tokens: int, bus_bits: int | None) -> dict[str, dict]:
    """:func:`layer_cycles` of every design plus ``speedup`` (its cycles over ``msq``'s: > 1 means
    this accelerator is faster)."""
    out = {name: layer_cycles(design, tokens, cfg.max_tokens, bus_bits)
           for name, design in designs(cfg, stats).items()}
    base = out["msq"]["cycles"]
    for entry in out.values():
        entry["speedup"] = entry["cycles"] / base
    return out
