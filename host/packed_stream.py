"""The packed weight stream: the ``.msq`` layer's own bits in the order the array consumes them
(``docs/format.md``, "Streaming format"); pure Python and NumPy.

One pass of a layer on an ``R × C`` instance is a bit stream (LSB first, byte ``i`` holding stream
bits ``8i … 8i + 7``), zero-padded to a whole byte:

* a 64-bit **header** (:data:`HEADER_FIELDS`);
* (MicroScopiQ mode) the **prologue**: the first tiles' maps (below);
* per N-tile ``j`` (MicroScopiQ mode) the **row minima** ``E_min[n]``, ``C × 8`` bits;
* per weight tile ``(j, t)``, K-tiles inner:

  - at the last K-tile of a K-group ``g`` (MicroScopiQ mode) the **exponents** ``E[n, g]``,
    ``C × 8`` bits;
  - ``R`` **rows**: (MicroScopiQ mode) map fields of tiles ahead, then the ``C`` codes (``b`` bits
    each, column ``c`` first), then for every present micro-block of the row its **record**: ``X``
    (``xb`` bits), then its pairs in ascending outlier offset, ``o | p << log2(U)`` in
    ``2·log2(U)`` bits each. Row ``r`` carries the tile's K row ``t·R + π(r)``, ``π`` the tile's
    :func:`row_orders` (``k`` order unless ReCoN is shared).

A tile's **map** is one presence bit per micro-block of the tile (``R·C/U``, row ``r`` outer,
micro-block inner) and ``pairs − 1`` (``log2(U/2)`` bits) of every present micro-block in the same
order. It travels ahead of its tile (:class:`~microscopiq.hdl.unpacker.MapPlacement`): tile ``σ``'s
presence bits open row 0 of tile ``σ − A`` and its counts pass row ``(σ − A)·R + 2``
(``A = ceil(4/R)``); the prologue holds the presence bits of tiles ``0 … A − 1`` and every count
field (0 where absent) of those whose counts row would precede the pass; the presence bits of the
``A`` tiles past the pass's end are 0.

Uniform (raw) layers carry only the header and the rows' codes. On a multi-precision instance
(``AccelConfig.multi_precision``) a uniform layer at ``b/2`` runs in pair mode: its header's ``wbits``
is ``b/2 - 1``, its K-tiles are ``2R`` deep and PE row ``r`` of K-tile ``t`` carries K rows
``2Rt + r`` and ``2Rt + R + r``, column ``c``'s ``b``-bit field holding the first's ``b/2``-bit code
in its low half and the second's in its high half (:func:`uniform_codes`).

A MicroScopiQ layer at ``b/2`` on a multi-precision instance with per-row ReCoN runs in pair mode
too (a **MicroScopiQ pair pass**, header ``msq_pairs`` 1) when every K-group of every N-tile holds
at most ``G/2`` outlier rows (:func:`msq_pair_rows`; else it runs one slot per PE, a narrow pass):
the K-group's rows are placed in slots by :func:`~.row_order.pair_slot_rows`, PE row ``r`` of pair
tile ``t`` carrying slot ``2Rt + r`` (the *network* slot, which may hold outliers) in the low half
of each ``b``-bit code field and slot ``2Rt + R + r`` (the *inlier* slot, no outliers) in the high
half; the row's records are the network slot's, and a K-group's exponents follow its ``G/2R``-th
pair tile.

Every field is a field of the packed file (``quant/pack.py``) or a presence bit; the host reorders,
it never expands metadata into roles or ReCoN configurations: that is the on-chip decoders' job
(:mod:`microscopiq.hdl.meta_decoder`, :mod:`microscopiq.hdl.exp_decoder`). Row lengths are fixed by
the tile maps, which precede their rows by two rows at least, so an unpacker knows every row's
length from registers before the row arrives.

:func:`encode_pass` writes a pass, :func:`decode_pass` reads one back (checking every rule),
:func:`stream_bits` counts the bits per section, :func:`row_records` gives the per-row metadata the
meta decoder takes (what an unpacker hands it), :func:`ppu_shifts` what the exponent decoder computes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..config import AccelConfig, ConfigError
from ..hdl.layouts import EXP_BITS, PACKED_HEADER, STREAM_VERSION, Mode
from ..hdl.meta_decoder import RecordGeometry
from ..hdl.unpacker import MapPlacement
from ..quant.layer import MsqLayer, Role, UniformLayer, padded
from .row_order import pair_slot_rows, tile_row_orders

__all__ = [
    "STREAM_VERSION", "HEADER_BITS", "HEADER_FIELDS", "EXP_BITS", "PackedStreamError",
    "RecordGeometry", "RowRecords", "StreamBits", "Contents",
    "ITEM_MINIMA", "ITEM_EXPONENTS", "ITEM_ROW", "ITEM_PROLOGUE", "pass_items", "SECTIONS", "field_offsets",
    "row_records", "row_orders", "tile_lanes", "pass_pairs", "msq_pair_rows", "split_slots", "pair_codes", "pair_take", "uniform_codes", "encode_pass", "encode_passes", "decode_pass", "stream_bits",
    "ppu_shifts", "to_beats",
]

#: Width of the pass header.
HEADER_BITS = PACKED_HEADER.size
#: ``name: (offset, width)`` of the header fields (:data:`~microscopiq.hdl.layouts.PACKED_HEADER`).
#: ``wbits`` holds ``b - 1``; ``msq_pairs`` is 1 for a MicroScopiQ pair pass; ``reserved`` is 0.
HEADER_FIELDS = {name: (field.offset, field.width) for name, field in PACKED_HEADER}

# Order of the parts of a tile (sort keys of the encoder).
_PART_PRO, _PART_EMIN, _PART_EXPS, _PART_ROWS = range(4)


class PackedStreamError(ValueError):
    """A packed weight stream (or a layer) that breaks a rule of the format; the message names it."""


@dataclass(frozen=True, eq=False)
class RowRecords:
    """Per PE row, in stream order (tile ``(j, t)`` outer, row ``r`` inner: row index
    ``(j·KT + t)·R + r``), what the meta decoder takes; ``B = C/U`` micro-blocks per row.

    Attributes
    ----------
    codes : ndarray, (rows, C)
        Raw ``b``-bit codes of slots ``(jC + c, tR + π(r))``, ``π`` the tile's :func:`row_orders`.
    count : ndarray, (rows, B)
        Pairs of each micro-block (0: not present).
    xexp : ndarray, (rows, B)
        Shared exponent ``X`` (0 where not present).
    outlier, partner : ndarray, (rows, B, U/2)
        Row offsets of each pair, ascending outlier offset; 0 beyond ``count``.
    """

    codes: np.ndarray
    count: np.ndarray
    xexp: np.ndarray
    outlier: np.ndarray
    partner: np.ndarray

    def __len__(self) -> int:
        return self.codes.shape[0]

    def payload(self, index: int, geom: RecordGeometry, raw: bool = False) -> dict:
        """Row ``index`` as the meta decoder's input payload (``hdl.meta_decoder.row_layout``)."""
        blocks = []
        for blk in range(self.count.shape[1]):
            pairs = int(self.count[index, blk])
            block = {"present": int(pairs > 0), "xexp": int(self.xexp[index, blk]),
                     "pairs": [{"outlier": int(self.outlier[index, blk, i]),
                                "partner": int(self.partner[index, blk, i])} for i in range(geom.max_pairs)]}
            if geom.count_bits:
                block["count"] = max(pairs - 1, 0)
            blocks.append(block)
        return {"codes": [int(v) for v in self.codes[index]], "blocks": blocks, "raw": int(raw)}

    def take(self, index) -> "RowRecords":
        """The rows ``index`` (an integer array), in that order."""
        return RowRecords(*(getattr(self, field.name)[index] for field in fields(self)))

    def equals(self, other: "RowRecords") -> str | None:
        """``None`` when both hold the same rows, else where the first difference is."""
        for field in fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if mine.shape != theirs.shape:
                return f"{field.name}: shape {mine.shape} != {theirs.shape}"
            if (bad := mine != theirs).any():
                index = tuple(int(i) for i in np.argwhere(bad)[0])
                return f"{field.name}{list(index)}: {mine[index]} != {theirs[index]}"
        return None


@dataclass(frozen=True)
class _Grid:
    """A layer on the instance's tiles: sizes and the padded arrays (``Nt = NT·C`` rows)."""

    cfg: AccelConfig
    n_tiles: int
    k_tiles: int
    raw: bool
    pairs: bool                # pair mode: 2R-deep K-tiles (a uniform layer at b/2 or a MicroScopiQ pair pass)
    codes: np.ndarray          # (Nt, Kp), (Nt, Kp/2) in pair mode
    exps: np.ndarray           # (Nt, groups) int64; zeros in raw mode
    records: RowRecords        # in stream order: each tile's rows in its order (``orders``)
    orders: np.ndarray         # (tiles, R): PE row r of tile i carries K row t·R + orders[i, r]
    lanes: np.ndarray          # (tiles, depth): the K row of each activation lane of tile i
    narrow: bool = False       # a MicroScopiQ layer at b/2 (one slot per PE, or a MicroScopiQ pair pass)

    @property
    def msq_pairs(self) -> bool:
        """A MicroScopiQ pair pass (header ``msq_pairs``)."""
        return self.narrow and self.pairs

    @property
    def code_bits(self) -> int:
        """Bits of one code in a row: ``b``, or ``b/2`` for a narrow pass one slot per PE."""
        return self.cfg.fmt.wbits // 2 if self.narrow and not self.pairs else self.cfg.fmt.wbits

    @property
    def header_wbits(self) -> int:
        """The pass's ``b`` as the header states it: ``b/2`` in pair mode and for a narrow pass."""
        return self.cfg.fmt.wbits // 2 if self.pairs or self.narrow else self.cfg.fmt.wbits

    @property
    def groups(self) -> int:
        return self.exps.shape[1]


def _check(cfg: AccelConfig, layer) -> bool:
    """Whether ``layer`` is a uniform layer in pair mode on ``cfg``; raise if it cannot run at all."""
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
    if not isinstance(layer, (MsqLayer, UniformLayer)):
        raise TypeError(f"layer must be an MsqLayer or a UniformLayer, not {type(layer).__name__}")
    try:
        pairs = cfg.pass_pairs(layer.fmt, isinstance(layer, UniformLayer))
    except ConfigError as error:
        raise PackedStreamError(str(error)) from None
    if isinstance(layer, MsqLayer) and not cfg.has_recon:
        raise PackedStreamError("a MicroScopiQ layer needs ReCoN: this instance has recon 'none'")
    return pairs


def msq_pair_rows(cfg: AccelConfig, layer) -> np.ndarray | None:
    """The slots of ``layer``'s MicroScopiQ pair pass on ``cfg``: ``(NT, Kp)``, the K row that slot
    ``s`` of N-tile ``j`` carries (:func:`~.row_order.pair_slot_rows`); None when the layer does not
    run as one (not a MicroScopiQ layer at ``b/2`` on a multi-precision instance with per-row ReCoN,
    or a K-group of an N-tile with more than ``G/2`` outlier rows: then a narrow pass)."""
    if not isinstance(layer, MsqLayer) or _check(cfg, layer) or layer.fmt == cfg.fmt or cfg.recon_share != 1:
        return None
    kp, nt = padded(layer.k, cfg.fmt.group), padded(layer.n, cfg.cols)
    outlier = np.zeros((nt, kp), bool)
    outlier[:layer.codes.shape[0]] = np.asarray(layer.roles) != Role.INLIER
    return pair_slot_rows(cfg.rows, cfg.fmt.group, outlier.reshape(-1, cfg.cols, kp).any(axis=1))


def pass_pairs(cfg: AccelConfig, layer) -> bool:
    """Whether ``layer``'s passes on ``cfg`` have ``2R``-deep K-tiles (two slots per PE): a uniform
    layer at ``b/2`` (:meth:`AccelConfig.pass_pairs`) or a MicroScopiQ pair pass
    (:func:`msq_pair_rows`); raise :class:`PackedStreamError` if it cannot run at all."""
    return _check(cfg, layer) or msq_pair_rows(cfg, layer) is not None


def split_slots(slots, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`msq_pair_rows`'s ``(NT, Kp)`` slots as the network and the inlier slots' K rows,
    ``(NT, Kp/2)`` each: column ``tR + r`` is PE row ``r`` of pair tile ``t``."""
    halves = slots.reshape(len(slots), -1, 2, rows)
    return halves[:, :, 0].reshape(len(slots), -1), halves[:, :, 1].reshape(len(slots), -1)


def pair_codes(low, high, half: int) -> np.ndarray:
    """Two slots' ``half``-bit codes in one ``2·half``-bit field: ``low`` in the low half."""
    mask = (1 << half) - 1
    return (np.asarray(low, np.int64) & mask) | (np.asarray(high, np.int64) & mask) << half


def pair_take(array, slots, per_tile: int) -> np.ndarray:
    """``array`` ``(NT·per_tile, Kp, ...)`` by (N position, K row) with its K rows taken in each
    N-tile's slot order ``slots`` ``(NT, S)``: ``(NT·per_tile, S, ...)``."""
    array = np.asarray(array)
    nt = slots.shape[0]
    index = np.repeat(slots, per_tile, axis=0).reshape(nt * per_tile, -1, *([1] * (array.ndim - 2)))
    return np.take_along_axis(array, index, axis=1)


def uniform_codes(cfg: AccelConfig, layer: UniformLayer, pairs: bool) -> np.ndarray:
    """The uniform layer's ``b``-bit row codes, ``(Np, Kp)``; in pair mode ``(Np, Kp/2)``: column
    ``tR + r`` holds ``q[:, 2Rt + r]`` in its low ``b/2`` bits and ``q[:, 2Rt + R + r]`` in its high
    ``b/2`` bits (two K rows of the ``2R``-deep K-tile ``t`` per PE row)."""
    q = np.asarray(layer.q, np.int64)
    if not pairs:
        return q & ((1 << cfg.fmt.wbits) - 1)
    split = q.reshape(q.shape[0], -1, 2, cfg.rows)      # (n, t, half, r)
    return pair_codes(split[:, :, 0], split[:, :, 1], layer.fmt.wbits).reshape(q.shape[0], -1)


def _to_rows(array: np.ndarray, cfg: AccelConfig, per_row: int) -> np.ndarray:
    """``(NT·per_row, Kp, ...)`` indexed by (N position, k) → stream rows ``(NT·KT·R, per_row, ...)``."""
    nt = array.shape[0] // per_row
    kt = array.shape[1] // cfg.rows
    tail = array.shape[2:]
    grid = array.reshape(nt, per_row, kt, cfg.rows, *tail)
    grid = np.moveaxis(grid, 1, 3)                       # (j, t, r, per_row, ...)
    return grid.reshape(nt * kt * cfg.rows, per_row, *tail)


def _grid(cfg: AccelConfig, layer) -> _Grid:
    slots = msq_pair_rows(cfg, layer)
    pairs = _check(cfg, layer) or slots is not None
    fmt = cfg.fmt
    u = fmt.ublock
    kp = padded(layer.k, fmt.group)                             # K rows
    nt = padded(layer.n, cfg.cols)
    raw = isinstance(layer, UniformLayer)

    def grow(array, fill=0):
        out = np.full((nt, *array.shape[1:]), fill, dtype=np.int64)
        out[:array.shape[0]] = array
        return out

    blocks, half = nt // u, max(fmt.max_outliers, 1)
    count = np.zeros((blocks, kp), np.int64)
    xexp = np.zeros((blocks, kp), np.int64)
    outlier = np.zeros((blocks, kp, half), np.int64)
    partner = np.zeros((blocks, kp, half), np.int64)
    if raw:
        codes = grow(uniform_codes(cfg, layer, pairs))
        exps = np.zeros((nt, kp // fmt.group), np.int64)
    else:
        codes, exps = grow(layer.codes), grow(layer.exps)
        hi = (np.asarray(layer.roles) == Role.OUT_HI).reshape(-1, u, kp).transpose(0, 2, 1)  # (μ, k, o)
        mu, col, off = np.nonzero(hi)                   # lexicographic: offsets ascend in a block
        index = (np.cumsum(hi, axis=2) - 1)[mu, col, off]
        count[:hi.shape[0]] = hi.sum(axis=2)
        outlier[mu, col, index] = off
        partner[mu, col, index] = np.asarray(layer.mate)[mu * u + off, col]
        xexp[:hi.shape[0]] = np.where(count[:hi.shape[0]] > 0, layer.xexp, 0)
    depth = cfg.tile_depth(pairs)
    lanes = np.broadcast_to(np.arange(kp), (nt // cfg.cols, kp))     # per N-tile, the K row of each lane
    if slots is not None:
        # A MicroScopiQ pair pass: row r of pair tile t holds slots 2Rt + r (network: its codes'
        # low halves and its records) and 2Rt + R + r (inlier: the high halves).
        lanes = slots
        network, inlier = split_slots(slots, cfg.rows)
        codes = pair_codes(pair_take(codes, network, cfg.cols), pair_take(codes, inlier, cfg.cols), layer.fmt.wbits)
        count, xexp, outlier, partner = (pair_take(a, network, cfg.cols // u) for a in (count, xexp, outlier, partner))
    elif pairs:
        count, xexp, outlier, partner = (a[:, :kp // 2] for a in (count, xexp, outlier, partner))
    per_row = cfg.cols // u
    records = RowRecords(codes=_to_rows(codes, cfg, cfg.cols), count=_to_rows(count, cfg, per_row),
                         xexp=_to_rows(xexp, cfg, per_row), outlier=_to_rows(outlier, cfg, per_row),
                         partner=_to_rows(partner, cfg, per_row))
    # Each tile's rows in their travel order (identity unless ReCoN is shared; a raw pass has no
    # outlier rows, so it keeps k order too).
    orders = tile_row_orders(cfg, (records.count > 0).any(axis=1).reshape(-1, cfg.rows))
    records = records.take((np.arange(len(orders))[:, None] * cfg.rows + orders).ravel())
    k_tiles = kp // depth
    if depth == cfg.rows:
        lanes = (np.arange(len(orders)) % k_tiles * depth)[:, None] + orders
    else:
        lanes = lanes.reshape(-1, depth)
    narrow = not raw and layer.fmt != fmt
    return _Grid(cfg, nt // cfg.cols, k_tiles, raw, pairs, codes, exps, records, orders, lanes, narrow)


def row_records(cfg: AccelConfig, layer) -> RowRecords:
    """Every PE row's codes and micro-block metadata in stream order (see :class:`RowRecords`)."""
    return _grid(cfg, layer).records


def row_orders(cfg: AccelConfig, layer) -> np.ndarray:
    """Per weight tile in stream order, which of its K rows each PE row carries, ``(tiles, R)``:
    row ``r`` of tile ``(j, t)`` holds slots ``(jC + c, t·R + orders[j·KT + t, r])``
    (:func:`~microscopiq.host.row_order.tile_row_order`: balanced over the ReCoN groups when ReCoN
    is shared, else ``k`` order). Its activation vectors travel in the same order. A pair pass's
    ``2R``-deep tiles keep their code columns in order (``k`` order: identity); which K rows their
    slots hold is :func:`tile_lanes`."""
    return _grid(cfg, layer).orders


def tile_lanes(cfg: AccelConfig, layer) -> np.ndarray:
    """Per weight tile in stream order, the K row (of ``x`` padded to whole K-groups) that each lane
    of its activation vectors carries, ``(tiles, depth)``: tile ``(j, t)``'s ``R`` rows in their
    travel order (:func:`row_orders`); a pair pass's ``2R`` lanes: K rows ``2Rt … 2Rt + 2R − 1``
    of a uniform layer, the slots of :func:`msq_pair_rows` of a MicroScopiQ pair pass."""
    return _grid(cfg, layer).lanes


def ppu_shifts(emin, exps) -> np.ndarray:
    """The PPU shifts ``d = E - E_min`` (``hdl.exp_decoder``'s function), for arrays of equal shape.

    Raises
    ------
    PackedStreamError
        An ``E`` below its row minimum (a malformed stream).
    """
    d = np.asarray(exps, np.int64) - np.asarray(emin, np.int64)
    if (bad := d < 0).any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise PackedStreamError(f"exponent at {list(index)} lies below its row minimum")
    return d


# -- encoder --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamBits:
    """Bits of one pass by section; ``weights`` is the layer's ``n · k``."""

    header: int
    emin: int
    exps: int
    tile_maps: int
    codes: int
    records: int
    padding: int
    weights: int

    @property
    def total(self) -> int:
        return (self.header + self.emin + self.exps + self.tile_maps + self.codes + self.records
                + self.padding)

    @property
    def bits_per_weight(self) -> float:
        return self.total / self.weights

    def bus_bits_per_weight(self, bus_bits: int) -> float:
        """Bits per weight on a ``bus_bits`` bus: the pass in whole beats."""
        return -(-self.total // bus_bits) * bus_bits / self.weights


def _header_tokens(cfg: AccelConfig, tokens: int) -> None:
    if isinstance(tokens, bool) or not isinstance(tokens, int):
        raise TypeError(f"tokens must be an integer, not {tokens!r}")
    if not 1 <= tokens <= cfg.max_tokens:
        raise PackedStreamError(f"tokens must be 1 … max_tokens={cfg.max_tokens} for one pass, "
                                f"not {tokens!r}")


def _header(cfg: AccelConfig, grid: _Grid, tokens: int) -> int:
    _header_tokens(cfg, tokens)
    values = {"version": STREAM_VERSION, "mode": (Mode.RAW if grid.raw else Mode.MSQ).value,
              "wbits": grid.header_wbits - 1, "msq_pairs": int(grid.msq_pairs), "reserved": 0,
              "tokens": tokens - 1,
              "k_tiles": grid.k_tiles - 1, "n_tiles": grid.n_tiles - 1}
    for name in ("k_tiles", "n_tiles"):
        if values[name] >> HEADER_FIELDS[name][1]:
            raise PackedStreamError(f"the layer has {values[name] + 1} {name.replace('_', '-')}, more "
                                    f"than the header's {HEADER_FIELDS[name][1]}-bit field holds")
    return sum(value << HEADER_FIELDS[name][0] for name, value in values.items())


def _tile_maps(grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """Per tile of the pass and ``ahead`` tiles past its end (all absent): the presence bits and
    ``pairs − 1`` (0 where absent) of its ``R·B`` micro-blocks, row ``r`` outer, ``(tiles + ahead, R·B)``."""
    rec, ahead = grid.records, MapPlacement(grid.cfg.rows).ahead
    tiles = grid.n_tiles * grid.k_tiles
    present = np.zeros((tiles + ahead, grid.cfg.rows * rec.count.shape[1]), np.int64)
    counts = np.zeros_like(present)
    present[:tiles] = (rec.count > 0).reshape(tiles, -1)
    counts[:tiles] = np.maximum(rec.count - 1, 0).reshape(tiles, -1)
    return present, counts


#: The sections of a pass (:func:`stream_bits` counts them, :func:`field_offsets` locates their fields).
SECTIONS = ("header", "emin", "exps", "tile_maps", "codes", "records")


def _fields(grid: _Grid):
    """Every field of a pass: ``(sections, keys, values, widths)``, unsorted; sorting by ``keys``
    (tile, part, position; the header first) gives stream order."""
    rec = grid.records
    fmt, rows, cols = grid.cfg.fmt, grid.cfg.rows, grid.cfg.cols
    tiles_per_group = fmt.group // grid.cfg.tile_depth(grid.pairs)
    out = {name: [] for name in SECTIONS}

    def add(section, tile, part, pos, values, width):
        tile, part, pos, values = np.broadcast_arrays(*(np.asarray(a, np.int64) for a in (tile, part, pos, values)))
        if width:
            out[section].append((tile.ravel(), part.ravel(), pos.ravel(), values.ravel(), width))

    add("header", -1, 0, 0, np.array(0), HEADER_BITS)        # value filled in by the caller
    row = np.arange(len(rec))
    tile, r = row // rows, row % rows
    add("codes", tile[:, None], _PART_ROWS + r[:, None], np.arange(cols)[None, :], rec.codes, grid.code_bits)
    if not grid.raw:
        geom = RecordGeometry(fmt)
        j = np.arange(grid.n_tiles)
        add("emin", (j * grid.k_tiles)[:, None], _PART_EMIN, np.arange(cols)[None, :],
            grid.exps.min(axis=1).reshape(grid.n_tiles, cols) & 0xFF, EXP_BITS)
        g = np.arange(grid.groups)
        last_tile = j[:, None] * grid.k_tiles + (g[None, :] + 1) * tiles_per_group - 1      # (NT, groups)
        exps = grid.exps.reshape(grid.n_tiles, cols, grid.groups).transpose(0, 2, 1)      # (NT, groups, C)
        add("exps", last_tile[:, :, None], _PART_EXPS, np.arange(cols)[None, None, :], exps & 0xFF, EXP_BITS)
        _add_tile_maps(grid, add)
        sel = np.nonzero(rec.count > 0)
        stride = 1 + geom.max_pairs
        base = cols + sel[1] * stride
        add("records", tile[sel[0]], _PART_ROWS + r[sel[0]], base, rec.xexp[sel], fmt.xbits)
        pairs = np.arange(geom.max_pairs)[None, :] < rec.count[sel][:, None]              # (present, U/2)
        which = np.nonzero(pairs)
        value = rec.outlier[sel][which] | (rec.partner[sel][which] << geom.offset_bits)
        add("records", tile[sel[0]][which[0]], _PART_ROWS + r[sel[0]][which[0]], base[which[0]] + 1 + which[1],
            value, geom.pair_bits)
    return out


# Positions of a row's map fields before its codes (0 …): presence bits, then counts.
_POS_PRESENCE, _POS_COUNTS = -(2 << 40), -(1 << 40)


def _add_tile_maps(grid: _Grid, add) -> None:
    """The tile maps' fields (:class:`~microscopiq.hdl.unpacker.MapPlacement`): the prologue (the
    first ``ahead`` tiles' presence bits, then every count field of the first ``prologue_counts``),
    then tile ``σ``'s presence bits at the front of row 0 of tile ``σ − ahead`` (zeros past the
    pass's end) and its present blocks' counts at the front of pass row ``(σ − ahead)·R + 2``."""
    place, rows = MapPlacement(grid.cfg.rows), grid.cfg.rows
    ahead, early = place.ahead, place.prologue_counts
    count_bits = RecordGeometry(grid.cfg.fmt).count_bits
    present, counts = _tile_maps(grid)
    tiles, entries = present.shape[0] - ahead, present.shape[1]
    entry = np.arange(entries)[None, :]
    lead = np.arange(ahead)[:, None]
    add("tile_maps", 0, _PART_PRO, lead * entries + entry, present[:ahead], 1)
    add("tile_maps", 0, _PART_PRO, ahead * entries + np.arange(early)[:, None] * entries + entry,
        counts[:early], count_bits)
    carried = np.arange(ahead, tiles + ahead)[:, None]
    add("tile_maps", carried - ahead, _PART_ROWS, _POS_PRESENCE + entry, present[ahead:], 1)
    later = np.arange(early, tiles)
    row = place.counts_row(later)
    sel = np.nonzero(present[later])                     # lexicographic: ascending entries
    add("tile_maps", (row // rows)[sel[0]], _PART_ROWS + (row % rows)[sel[0]], _POS_COUNTS + sel[1],
        counts[later][sel], count_bits)


#: Item kinds of :func:`pass_items` (the unpacker parses one item per cycle).
ITEM_MINIMA, ITEM_EXPONENTS, ITEM_ROW, ITEM_PROLOGUE = range(4)


def pass_items(cfg: AccelConfig, layer) -> tuple[np.ndarray, np.ndarray]:
    """The items the unpacker (:class:`~microscopiq.hdl.unpacker.Unpacker`) parses from one pass
    after its header, in stream order: ``(kinds, bits)``, ``kinds`` one of :data:`ITEM_PROLOGUE`,
    :data:`ITEM_MINIMA`, :data:`ITEM_EXPONENTS`, :data:`ITEM_ROW` (a MicroScopiQ row includes the
    map fields in front of it). ``bits.sum() + HEADER_BITS`` is the pass's length before padding."""
    grid = _grid(cfg, layer)
    rec, fmt, rows = grid.records, cfg.fmt, cfg.rows
    row_bits = np.full(len(rec), cfg.cols * grid.code_bits, np.int64)
    tiles = grid.n_tiles * grid.k_tiles
    if grid.raw:
        return np.full(tiles * rows, ITEM_ROW), row_bits
    geom = RecordGeometry(fmt)
    place = MapPlacement(rows)
    present = rec.count > 0
    row_bits += (present * (fmt.xbits + rec.count * geom.pair_bits)).sum(axis=1)
    maps, _ = _tile_maps(grid)
    entries = maps.shape[1]
    row_bits[::rows] += entries
    later = np.arange(place.prologue_counts, tiles)
    np.add.at(row_bits, place.counts_row(later), maps[later].sum(axis=1) * geom.count_bits)
    prologue = place.ahead * entries + place.prologue_counts * entries * geom.count_bits
    # Per tile: E_min at an N-tile's first K-tile, E at a K-group's last, then the R rows.
    t = np.arange(tiles) % grid.k_tiles
    per_group = fmt.group // cfg.tile_depth(grid.pairs)
    heads = np.stack([t == 0, (t + 1) % per_group == 0], axis=1)            # (tiles, 2)
    kinds = np.concatenate([np.where(heads, [[ITEM_MINIMA, ITEM_EXPONENTS]], -1),
                            np.full((tiles, rows), ITEM_ROW)], axis=1)
    bits = np.concatenate([np.where(heads, cfg.cols * EXP_BITS, 0), row_bits.reshape(tiles, rows)], axis=1)
    keep = kinds.ravel() >= 0
    return (np.concatenate([[ITEM_PROLOGUE], kinds.ravel()[keep]]),
            np.concatenate([[prologue], bits.ravel()[keep]]))


def stream_bits(cfg: AccelConfig, layer) -> StreamBits:
    """The bit count of :func:`encode_pass` by section, without building the stream."""
    grid = _grid(cfg, layer)
    _header(cfg, grid, 1)
    sizes = {name: sum(len(part[3]) * part[4] for part in parts) for name, parts in _fields(grid).items()}
    total = sum(sizes.values())
    return StreamBits(**sizes, padding=-total % 8, weights=layer.n * layer.k)


def _in_stream_order(grid: _Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every field of the pass in stream order, the header first (its value 0): ``(sections,
    values, widths)``, ``sections`` the names of :func:`_fields`."""
    fields = _fields(grid)
    names = np.concatenate([np.full(len(v), name) for name, parts in fields.items() for _, _, _, v, _ in parts])
    tile, part, pos, values, widths = (np.concatenate(a) for a in zip(
        *((t, p, q, v, np.full(len(v), w, np.int64)) for parts in fields.values() for t, p, q, v, w in parts)))
    order = np.lexsort((pos, part, tile))
    return names[order], values.astype(np.uint64)[order], widths[order]


def field_offsets(cfg: AccelConfig, layer, section: str) -> tuple[np.ndarray, np.ndarray]:
    """Where the fields of one ``section`` of :func:`encode_pass`'s stream lie: ``(offsets, widths)``
    in bits from the pass's start, in stream order (``records``: per present micro-block its ``X``,
    then its pairs). For tests that spoil one field of a real pass."""
    if section not in SECTIONS:
        raise PackedStreamError(f"no section {section!r} in a pass; sections: {', '.join(SECTIONS)}")
    names, _, widths = _in_stream_order(_grid(cfg, layer))
    starts = np.cumsum(widths) - widths
    return starts[names == section], widths[names == section]


def encode_pass(cfg: AccelConfig, layer, tokens: int = 1) -> bytes:
    """The ``s_axis_weights`` bytes of one pass of ``tokens`` tokens through ``layer``.

    Raises
    ------
    PackedStreamError
        The layer does not fit the instance (format, ReCoN, tile counts) or ``tokens`` exceeds
        ``max_tokens``.
    """
    grid = _grid(cfg, layer)
    header = _header(cfg, grid, tokens)
    _, values, widths = _in_stream_order(grid)
    values[0] = np.uint64(header)
    starts = np.cumsum(widths) - widths
    owner = np.repeat(np.arange(len(values)), widths)
    shift = (np.arange(int(widths.sum())) - starts[owner]).astype(np.uint64)
    bits = ((values[owner] >> shift) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits, bitorder="little").tobytes()


def encode_passes(cfg: AccelConfig, layer, counts) -> list[bytes]:
    """:func:`encode_pass` for passes of ``counts`` tokens each; the layer is encoded once (passes
    differ only in the header's ``tokens``)."""
    offset, width = HEADER_FIELDS["tokens"]
    first = encode_pass(cfg, layer, counts[0])
    passes = []
    for tokens in counts:
        _header_tokens(cfg, tokens)
        word = int.from_bytes(first[:HEADER_BITS // 8], "little") & ~(((1 << width) - 1) << offset)
        passes.append((word | (tokens - 1) << offset).to_bytes(HEADER_BITS // 8, "little") + first[HEADER_BITS // 8:])
    return passes


def to_beats(data: bytes, bus_bits: int) -> list[int]:
    """The ``bus_bits``-wide ``tdata`` words that carry the pass ``data`` (byte ``i`` of a word at
    bits ``8i …``), its last word padded with zero bytes; ``tlast`` goes on the last one."""
    step = bus_bits // 8
    data = bytes(data) + bytes(-len(data) % step)
    return [int.from_bytes(data[i:i + step], "little") for i in range(0, len(data), step)]


# -- decoder --------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Contents:
    """What :func:`decode_pass` reads: the header fields, the per-row records, and (MicroScopiQ
    mode) ``emin`` (NT·C,) and ``exps`` (NT·C, groups) as signed integers."""

    header: dict
    records: RowRecords
    emin: np.ndarray
    exps: np.ndarray


class _Reader:
    def __init__(self, data: bytes):
        self.bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little").astype(np.int64)
        self.cursor = 0

    def take(self, count: int, width: int, what: str) -> np.ndarray:
        """``count`` consecutive ``width``-bit fields."""
        end = self.cursor + count * width
        if end > self.bits.size:
            raise PackedStreamError(f"stream is truncated in the {what}: needs {end} bits, has {self.bits.size}")
        chunk = self.bits[self.cursor:end].reshape(count, width)
        self.cursor = end
        return (chunk << np.arange(width)).sum(axis=1) if width else np.zeros(count, np.int64)


def _signed8(values: np.ndarray) -> np.ndarray:
    return np.where(values >= 128, values - 256, values)


def decode_pass(cfg: AccelConfig, data: bytes) -> Contents:
    """Read one pass written by :func:`encode_pass` for ``cfg``, checking every rule.

    Raises
    ------
    PackedStreamError
        A wrong version, reserved bits, ``wbits`` or tile counts the instance cannot take, a stream
        that ends early or has more than 7 zero padding bits (or nonzero ones) after its last field,
        a pair whose outlier and partner coincide or a slot used by two pairs, a prologue count of
        an absent micro-block that is not 0, a present micro-block in a tile map past the pass's
        last tile (the unpacker reads such fields as the layout says and ignores them).
    """
    fmt = cfg.fmt
    data = bytes(data)
    if len(data) < HEADER_BITS // 8:
        raise PackedStreamError(f"stream is truncated in the header: {len(data)} bytes, the header is "
                                f"{HEADER_BITS // 8}")
    word = int.from_bytes(data[:HEADER_BITS // 8], "little")
    header = {name: (word >> offset) & ((1 << width) - 1) for name, (offset, width) in HEADER_FIELDS.items()}
    reader = _Reader(data)
    reader.cursor = HEADER_BITS
    if header["version"] != STREAM_VERSION:
        raise PackedStreamError(f"unsupported stream version {header['version']} (this reader knows "
                                f"{STREAM_VERSION})")
    if header["reserved"]:
        raise PackedStreamError(f"header reserved bits are {header['reserved']:#x}, must be 0")
    raw = header["mode"] == Mode.RAW.value
    half_width = cfg.multi_precision and header["wbits"] + 1 == fmt.wbits // 2
    narrow = half_width and not raw and cfg.has_recon      # a MicroScopiQ pass at b/2
    if header["msq_pairs"] and not (narrow and cfg.recon_share == 1):
        raise PackedStreamError("header msq_pairs is 1 but the pass is not a MicroScopiQ pass at b/2 on a "
                                "multi-precision instance with per-row ReCoN")
    pairs = half_width and (raw or bool(header["msq_pairs"]))
    if not raw and not cfg.has_recon:
        raise PackedStreamError("a MicroScopiQ stream needs ReCoN: this instance has recon 'none'")
    if header["wbits"] + 1 != fmt.wbits and not (pairs or narrow):
        runs = f"{fmt.wbits}" + (f" (or {fmt.wbits // 2})" if cfg.multi_precision else "")
        raise PackedStreamError(f"stream has wbits={header['wbits'] + 1}, the instance {runs}")
    kt, nt = header["k_tiles"] + 1, header["n_tiles"] + 1
    rows, cols, u = cfg.rows, cfg.cols, fmt.ublock
    if cfg.multi_precision:
        header["pairs"] = int(pairs)          # (StreamLayouts.header's fields: derived, not sent)
        header["narrow"] = int(narrow)
    tiles_per_group = fmt.group // cfg.tile_depth(pairs)
    if kt % tiles_per_group:
        raise PackedStreamError(f"k_tiles={kt} is not a whole number of K-groups ({tiles_per_group} tiles each)")
    if kt * cfg.tile_depth(pairs) > padded(cfg.max_k, fmt.group) or nt * cols > padded(cfg.max_n, cols):
        raise PackedStreamError(f"stream has {kt} K-tiles and {nt} N-tiles, more than the instance's "
                                f"max_k={cfg.max_k}, max_n={cfg.max_n} allow")
    per_row = cols // u
    half = max(fmt.max_outliers, 1)
    total_rows = nt * kt * rows
    rec = RowRecords(codes=np.zeros((total_rows, cols), np.int64), count=np.zeros((total_rows, per_row), np.int64),
                     xexp=np.zeros((total_rows, per_row), np.int64),
                     outlier=np.zeros((total_rows, per_row, half), np.int64),
                     partner=np.zeros((total_rows, per_row, half), np.int64))
    emin = np.zeros(nt * cols, np.int64)
    exps = np.zeros((nt * cols, kt // tiles_per_group), np.int64)
    geom = RecordGeometry(fmt) if not raw else None
    maps = None if raw else _MapReader(reader, MapPlacement(rows), rows * per_row, geom.count_bits)
    for j in range(nt):
        if not raw:
            emin[j * cols:(j + 1) * cols] = _signed8(reader.take(cols, EXP_BITS, "row minima"))
        for t in range(kt):
            if not raw and (t + 1) % tiles_per_group == 0:
                exps[j * cols:(j + 1) * cols, t // tiles_per_group] = _signed8(reader.take(cols, EXP_BITS, "exponents"))
            first = (j * kt + t) * rows
            counts = np.zeros((rows, per_row), np.int64) if raw else maps.counts(j * kt + t).reshape(rows, per_row)
            for r in range(rows):
                index = first + r
                if not raw:
                    maps.row_fields(index)
                rec.codes[index] = reader.take(cols, fmt.wbits // 2 if narrow and not pairs else fmt.wbits, "codes")
                for blk in np.flatnonzero(counts[r]):
                    _read_record(reader, geom, rec, index, blk, int(counts[r, blk]))
    if not raw:
        maps.check_past(nt * kt)
    tail = reader.bits[reader.cursor:]
    if tail.size >= 8 or tail.any():
        raise PackedStreamError(f"stream has {tail.size} bits after its last field (at most 7 zero "
                                f"padding bits are allowed)")
    return Contents(header, rec, emin, exps)


class _MapReader:
    """The tile maps of a MicroScopiQ pass as :func:`decode_pass` meets them
    (:class:`~microscopiq.hdl.unpacker.MapPlacement`): the prologue when made, then the map fields
    at the front of each row (:meth:`row_fields`, in row order)."""

    def __init__(self, reader: _Reader, place: MapPlacement, entries: int, count_bits: int):
        self.reader, self.place, self.entries, self.count_bits = reader, place, entries, count_bits
        self.present = {tile: reader.take(entries, 1, "tile map") for tile in range(place.ahead)}
        self.pairs = {}
        for tile in range(place.prologue_counts):
            fields = reader.take(entries, count_bits, "tile map")
            if (fields * (1 - self.present[tile])).any():
                raise PackedStreamError(f"tile {tile}: the prologue's count of an absent micro-block is not 0")
            self.pairs[tile] = fields

    def row_fields(self, row: int) -> None:
        """Read the map fields at the front of pass row ``row``."""
        place = self.place
        if row % place.rows == 0:
            self.present[row // place.rows + place.ahead] = self.reader.take(self.entries, 1, "tile map")
        if (row - 2) % place.rows == 0 and (tile := (row - 2) // place.rows + place.ahead) >= place.prologue_counts:
            present = self.present[tile]
            fields = np.zeros(self.entries, np.int64)
            fields[present == 1] = self.reader.take(int(present.sum()), self.count_bits, "tile map")
            self.pairs[tile] = fields

    def counts(self, tile: int) -> np.ndarray:
        """Pairs of each micro-block of ``tile`` (0: absent), ``(R·B,)``."""
        return np.where(self.present[tile] == 1, self.pairs[tile] + 1, 0)

    def check_past(self, tiles: int) -> None:
        """The maps of the tiles past the pass's end must be empty."""
        for tile in range(tiles, tiles + self.place.ahead):
            if self.present[tile].any():
                raise PackedStreamError(f"tile map of tile {tile}, past the pass's last tile, has present "
                                        f"micro-blocks")


def _read_record(reader: _Reader, geom: RecordGeometry, rec: RowRecords, index: int, blk: int, pairs: int) -> None:
    rec.count[index, blk] = pairs
    rec.xexp[index, blk] = reader.take(1, geom.fmt.xbits, "records")[0]
    values = reader.take(pairs, geom.pair_bits, "records")
    outlier, partner = values & (geom.fmt.ublock - 1), values >> geom.offset_bits
    slots = np.concatenate([outlier, partner])
    if np.unique(slots).size != slots.size:
        raise PackedStreamError(f"row {index} micro-block {blk}: a slot is used twice (or an outlier is "
                                f"its own partner) in pairs {list(zip(outlier.tolist(), partner.tolist()))}")
    rec.outlier[index, blk, :pairs], rec.partner[index, blk, :pairs] = outlier, partner
