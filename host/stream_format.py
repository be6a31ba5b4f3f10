"""Host side of the accelerator's three AXI4-Stream ports: encoder, decoder, golden results and the
cycle model (pure Python and NumPy; see ``docs/hardware.md`` for the bit layouts).

A layer ``Y = X · Wᵀ`` runs as one or more *passes*, each of at most ``max_tokens`` tokens. A pass
sends on ``s_axis_weights`` one layer header beat, then for every weight tile ``(j, t)`` (N-tile
``j`` outer, K-tile ``t`` inner) one tile header beat (the PPU shifts ``d``) and ``R`` row beats
(codes, roles, ReCoN config of PE row ``r``); on ``s_axis_act`` the ``M`` activation vectors of
every tile, lanes in the order of the tile's rows (:func:`act_columns`: balanced over the ReCoN
groups on a shared-ReCoN build, ``k`` order otherwise); and receives on ``m_axis_result`` ``M`` beats per N-tile (MicroScopiQ mode: ``Y_int``
and the sticky overflow flags) or ``M`` beats per N-tile and K-group (raw mode: ``P`` and ``S``).
Every field is two's complement (signed) or plain binary (unsigned), LSB first at its offset.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from amaranth import Shape
from amaranth.lib import data

from ..config import AccelConfig
from ..hdl.layouts import Fault, Mode, StreamLayouts
from ..hdl.core import CoreTiming
from ..quant import golden
from ..quant.layer import MsqLayer, Role, UniformLayer, padded
from . import front_end, packed_stream, routing

__all__ = [
    "MODE_MSQ", "MODE_RAW", "Beat", "StreamError",
    "check_layer", "layer_pairs", "narrow_codes", "check_activations", "encode_layer", "weight_beats", "act_columns", "decoded_tiles", "decode_results", "pack_beat", "from_beat", "expected_results",
    "predict_cycles", "CycleModel", "token_passes", "tile_outlier_rows", "tile_periods", "tile_gaps",
    "periods_of", "gaps_of",
]

#: Layer header ``mode`` values (:class:`~microscopiq.hdl.layouts.Mode`).
MODE_MSQ, MODE_RAW = Mode.MSQ.value, Mode.RAW.value


class StreamError(ValueError):
    """A layer or activation matrix the generated instance cannot run (names the limit)."""


@dataclass(frozen=True)
class Beat:
    """One AXI4-Stream transfer: ``data`` (``tdata`` as an int) and ``last`` (``tlast``)."""

    data: int
    last: bool = False


def _ints(values) -> list[int]:
    return [int(v) for v in values]


def pack_beat(layout: data.StructLayout | data.ArrayLayout, value) -> int:
    """``layout.const(value).as_bits()`` (tested equal), for a dict (struct) or list (array) whose
    items are integers or lists of integers; a nested layout's value is given as its bits.

    The encoder's hot path: a model layer streams tens of thousands of row beats, and
    :meth:`~amaranth.lib.data.Layout.const` casts every element (4× slower for a whole layer).
    Offsets and widths come from ``layout``, so nothing is defined twice.
    """
    word = 0
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        field = layout[key]
        shape = field.shape
        if isinstance(shape, data.ArrayLayout) and not isinstance(item, (int, np.integer)):
            width = Shape.cast(shape.elem_shape).width
            mask = (1 << width) - 1
            for index, element in enumerate(item):
                word |= (int(element) & mask) << (field.offset + index * width)
        else:
            item = item.value if isinstance(item, enum.Enum) else item
            word |= (int(item) & ((1 << Shape.cast(shape).width) - 1)) << field.offset
    return word


def from_beat(layout, word: int):
    """``word`` (a beat's ``tdata``) read as ``layout``: its low ``layout.size`` bits, the rest of a
    wider stream's ``tdata`` ignored."""
    return layout.from_bits(int(word) & ((1 << layout.size) - 1))


def check_layer(cfg: AccelConfig, layer) -> None:
    """Raise :class:`StreamError` if the generated instance ``cfg`` cannot run ``layer`` (its format,
    ReCoN for a MicroScopiQ layer, ``k <= max_k``, ``n <= max_n``): cheap, so callers check before
    building anything."""
    if isinstance(layer, (MsqLayer, UniformLayer)):
        layer_pairs(cfg, layer)
    if isinstance(layer, MsqLayer):
        if not cfg.has_recon:
            raise StreamError("a MicroScopiQ layer needs ReCoN: this instance has recon 'none' "
                              "(uniform layers only)")
    elif not isinstance(layer, UniformLayer):
        raise TypeError(f"layer must be an MsqLayer or UniformLayer, not {type(layer).__name__}")
    if layer.k > cfg.max_k:
        raise StreamError(f"layer k={layer.k} exceeds max_k={cfg.max_k}")
    if layer.n > cfg.max_n:
        raise StreamError(f"layer n={layer.n} exceeds max_n={cfg.max_n}")


def layer_pairs(cfg: AccelConfig, layer) -> bool:
    """Whether ``layer`` runs in pair mode on ``cfg`` (``2R``-deep K-tiles, two slots per PE: a
    uniform layer at ``b/2`` on a multi-precision instance, :func:`~.packed_stream.uniform_codes`,
    or a MicroScopiQ pair pass, :func:`~.packed_stream.msq_pair_rows`); raise :class:`StreamError`
    if its format is not one ``cfg`` runs."""
    try:
        return packed_stream.pass_pairs(cfg, layer)
    except packed_stream.PackedStreamError as error:
        raise StreamError(str(error)) from None


def _check_layer(cfg: AccelConfig, layer, x: np.ndarray) -> np.ndarray:
    check_layer(cfg, layer)
    return check_activations(cfg, layer, x)


def check_activations(cfg: AccelConfig, layer, x) -> np.ndarray:
    """``x`` as an int64 ``(M >= 1, k)`` array of ``a``-bit activations for ``layer``; raise
    :class:`StreamError` naming the first that does not fit."""
    fmt = cfg.fmt
    x = np.asarray(x, dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != layer.k or x.shape[0] < 1:
        raise StreamError(f"activations must be (M >= 1, k={layer.k}), got shape {x.shape}")
    if (bad := (x < -fmt.act_bound) | (x >= fmt.act_bound)).any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise StreamError(f"activation at {index} = {x[index]} does not fit in abits={fmt.abits}")
    return x


@dataclass(frozen=True)
class _Tiles:
    """A layer padded to whole tiles: per-slot arrays (Nt, Kp) with Nt a multiple of C."""

    codes: np.ndarray
    roles: np.ndarray
    mate: np.ndarray
    xexp: np.ndarray     # (Nt, Kp): each slot's micro-block X
    shifts: np.ndarray   # (Nt, groups): d = E - E_min
    uniform: bool
    orders: np.ndarray   # (tiles, R): packed_stream.row_orders, the rows' travel order per tile
    # The decoded rows' codes where they differ from ``codes`` (whose network-slot codes ReCoN's
    # configuration is compiled from): a MicroScopiQ pair pass's two raw b/2-bit codes per field.
    row_codes: np.ndarray | None = None

    @property
    def n_tiles_k(self) -> int:
        return self.codes.shape[1]


def _tiles(cfg: AccelConfig, layer) -> _Tiles:
    fmt = cfg.fmt
    orders = packed_stream.row_orders(cfg, layer)
    kp = padded(layer.k, fmt.group)
    nt = padded(layer.n, cfg.cols)
    groups = kp // fmt.group

    def grow(array, fill):
        out = np.full((nt, array.shape[1]), fill, dtype=np.int64)
        out[:array.shape[0]] = array
        return out

    if isinstance(layer, UniformLayer):
        codes = grow(packed_stream.uniform_codes(cfg, layer, layer_pairs(cfg, layer)), 0)
        zeros = np.zeros_like(codes)
        return _Tiles(codes, zeros + Role.INLIER, zeros - 1, zeros, np.zeros((nt, groups), np.int64), True, orders)
    exps = np.asarray(layer.exps, np.int64)
    shifts = grow(exps - exps.min(axis=1, keepdims=True), 0)
    codes, roles, mate = grow(layer.codes, 0), grow(layer.roles, Role.INLIER), grow(layer.mate, -1)
    xexp = grow(np.repeat(np.asarray(layer.xexp, np.int64), fmt.ublock, axis=0), 0)
    row_codes = None
    if (slots := packed_stream.msq_pair_rows(cfg, layer)) is not None:
        # PE row r of pair tile t: the network slot 2Rt + r (roles, ReCoN) and the inlier slot 2Rt + R + r.
        network, inlier = packed_stream.split_slots(slots, cfg.rows)
        take = [packed_stream.pair_take(a, network, cfg.cols) for a in (codes, roles, mate, xexp)]
        row_codes = packed_stream.pair_codes(take[0], packed_stream.pair_take(codes, inlier, cfg.cols),
                                             layer.fmt.wbits)
        codes, roles, mate, xexp = take
    if cfg.pass_narrow(layer.fmt, False):
        codes = narrow_codes(codes, roles, fmt.wbits)
    return _Tiles(codes, roles, mate, xexp, shifts, False, orders, row_codes)


def narrow_codes(codes, roles, wbits: int) -> np.ndarray:
    """What the metadata decoder makes of a narrow pass's ``wbits/2``-bit codes
    (:meth:`~microscopiq.hdl.meta_decoder.MetaDecoder.narrow_code`): the ``wbits``-bit codes that
    the ``wbits`` datapath turns into ``2^(wbits/2)`` times each slot's contribution at ``wbits/2``."""
    h = wbits // 2
    codes, roles = np.asarray(codes, np.int64), np.asarray(roles)
    low, sign = codes & ((1 << h) - 1), (codes >> (h - 1)) & 1
    return np.select([roles == Role.INLIER, roles == Role.OUT_HI, roles == Role.OUT_LO],
                     [low | (sign * (((1 << h) - 1) << h)), (low & ((1 << (h - 1)) - 1)) | (sign << (wbits - 1)),
                      low << h], codes)


def _row_beats(cfg: AccelConfig, layouts: StreamLayouts, tiles: _Tiles, j: int, t: int) -> list[int]:
    """The ``R`` row beats of weight tile ``(j, t)`` (:attr:`~microscopiq.hdl.layouts.StreamLayouts.row`),
    in the tile's row order (:func:`~.packed_stream.row_orders`)."""
    fmt = cfg.fmt
    rows, cols = cfg.rows, cfg.cols
    n0, k_tiles = j * cols, tiles.codes.shape[1] // rows
    sel = (slice(n0, n0 + cols), t * rows + tiles.orders[j * k_tiles + t])
    codes, roles = tiles.codes[sel].T, tiles.roles[sel].T   # (R, C)
    if cfg.has_recon:
        fields = routing.compile_fields(fmt, cols, codes, roles, tiles.mate[sel].T, tiles.xexp[sel].T,
                                        uniform=tiles.uniform)
        configs = routing.pack_config(routing.ReconGeometry(fmt, cols), fields)
    else:
        configs = [0] * rows
    if tiles.row_codes is not None:
        codes = tiles.row_codes[sel].T
    return [pack_beat(layouts.row, {"codes": codes[r], "roles": roles[r], "config": configs[r]})
            for r in range(rows)]


def token_passes(cfg: AccelConfig, tokens: int) -> list[tuple[int, int]]:
    """``(first token, token count)`` of every pass."""
    return [(start, min(cfg.max_tokens, tokens - start)) for start in range(0, tokens, cfg.max_tokens)]


def encode_layer(cfg: AccelConfig, layer, x) -> tuple[list[Beat], list[Beat]]:
    """The ``s_axis_weights`` and ``s_axis_act`` beats that run ``layer`` on activations ``x``.

    Parameters
    ----------
    cfg : AccelConfig
        The generated instance.
    layer : MsqLayer or UniformLayer
        MicroScopiQ mode (``Y_int`` and overflow out) or raw mode (``P`` and ``S`` out).
    x : array of int, (M, layer.k)
        Signed ``a``-bit activations.

    Returns
    -------
    (weight_beats, act_beats) : two lists of :class:`Beat`
        ``tlast`` marks the last beat of every pass on both streams.

    Raises
    ------
    StreamError
        The layer or ``x`` does not fit the instance (format, ``max_k``, ``max_n``, ``abits``,
        a MicroScopiQ layer on an instance without ReCoN).
    """
    x = _check_layer(cfg, layer, x)
    return weight_beats(cfg, layer, x.shape[0]), _act_beats(cfg, layer, x)


def weight_beats(cfg: AccelConfig, layer, tokens: int) -> list[Beat]:
    """The ``s_axis_weights`` beats of :func:`encode_layer` (they depend on the token count, not on
    the activations)."""
    check_layer(cfg, layer)
    passes = [count for _, count in token_passes(cfg, tokens)]
    beats = []
    for stream in packed_stream.encode_passes(cfg, layer, passes):
        words = packed_stream.to_beats(stream, cfg.weight_bus)
        beats += [Beat(word, index == len(words) - 1) for index, word in enumerate(words)]
    return beats


def act_columns(cfg: AccelConfig, layer) -> np.ndarray:
    """Per weight tile in stream order, the column of ``x`` (padded to whole K-groups with zeros)
    that each lane of the tile's activation vectors carries, ``(tiles, depth)``
    (:func:`~.packed_stream.tile_lanes`: tile ``(j, t)``'s ``R`` rows in their travel order; a
    uniform pair pass's ``2R`` lanes in ``k`` order, a MicroScopiQ pair pass's its slots; a ``b``
    pass on a multi-precision instance leaves the upper ``R`` lanes 0)."""
    check_layer(cfg, layer)
    return packed_stream.tile_lanes(cfg, layer)


def _act_beats(cfg: AccelConfig, layer, x: np.ndarray) -> list[Beat]:
    """The ``s_axis_act`` beats of :func:`encode_layer` (``x`` checked): per pass, tile ``(j, t)``
    outer, token inner, lanes as :func:`act_columns` says."""
    layouts = StreamLayouts(cfg)
    xp = np.zeros((x.shape[0], padded(layer.k, cfg.fmt.group)), np.int64)
    xp[:, :layer.k] = x
    # Tiles with the same lanes (every N-tile's copy of a K-tile whose rows keep their order) share
    # their packed vectors: pack each distinct lane set once per token.
    unique, inverse = np.unique(act_columns(cfg, layer), axis=0, return_inverse=True)
    beats = []
    for start, count in token_passes(cfg, x.shape[0]):
        vectors = [[pack_beat(layouts.act, xp[m, columns]) for m in range(start, start + count)]
                   for columns in unique]
        flat = [word for u in inverse.reshape(-1) for word in vectors[u]]
        beats += [Beat(data, index == len(flat) - 1) for index, data in enumerate(flat)]
    return beats


def decoded_tiles(cfg: AccelConfig, layer) -> list[tuple[list[int], list[int]]]:
    """What the on-chip decoders (:class:`~microscopiq.hdl.weight_decoder.WeightDecoder`) make of
    ``layer``'s stream, computed by the host's routing compiler: per weight tile in stream order
    the PPU shifts ``d`` (:attr:`~microscopiq.hdl.layouts.StreamLayouts.tile`, used at a K-group's
    last K-tile) and the ``R`` decoded rows (:attr:`~microscopiq.hdl.layouts.StreamLayouts.row`)."""
    check_layer(cfg, layer)
    layouts = StreamLayouts(cfg)
    tiles_per_group = cfg.fmt.group // cfg.tile_depth(layer_pairs(cfg, layer))
    tiles = _tiles(cfg, layer)
    k_tiles, n_tiles = tiles.codes.shape[1] // cfg.rows, tiles.codes.shape[0] // cfg.cols
    out = []
    for j in range(n_tiles):
        cols = slice(j * cfg.cols, (j + 1) * cfg.cols)
        for t in range(k_tiles):
            out.append((_ints(tiles.shifts[cols, t // tiles_per_group]), _row_beats(cfg, layouts, tiles, j, t)))
    return out


def _result_shape(cfg: AccelConfig, layer) -> tuple[int, int]:
    """(K-groups, N-tiles) of ``layer`` on ``cfg``."""
    kp = padded(layer.k, cfg.fmt.group)
    return kp // cfg.fmt.group, padded(layer.n, cfg.cols) // cfg.cols


def result_beat_count(cfg: AccelConfig, layer, tokens: int) -> int:
    """How many ``m_axis_result`` beats ``tokens`` tokens through ``layer`` produce."""
    groups, n_tiles = _result_shape(cfg, layer)
    per_token = n_tiles * (groups if isinstance(layer, UniformLayer) else 1)
    return per_token * tokens


def decode_results(cfg: AccelConfig, layer, tokens: int, beats):
    """Turn ``m_axis_result`` beats back into arrays.

    Parameters
    ----------
    beats : sequence of Beat or int
        Every result beat of the layer's passes, in order.

    Returns
    -------
    MicroScopiQ layer: ``(y_int (M, n) int64, overflow (M, n) bool)``;
    uniform layer: ``(P (M, n, groups) int64, S (M, groups) int64)``.

    Raises
    ------
    StreamError
        A beat marked with a :class:`~microscopiq.hdl.layouts.Fault` (a malformed weight stream),
        wrong number of beats, or a ``tlast`` that is missing or misplaced.
    """
    layouts = StreamLayouts(cfg)
    groups, n_tiles = _result_shape(cfg, layer)
    raw = isinstance(layer, UniformLayer)
    expected = result_beat_count(cfg, layer, tokens)
    beats = [b if isinstance(b, Beat) else Beat(int(b)) for b in beats]
    for index, beat in enumerate(beats):
        if (fault := Fault(from_beat(layouts.result, beat.data).fault)) != Fault.NONE:
            raise StreamError(f"result beat {index}: the accelerator refused the weight stream "
                              f"(fault {fault.name})")
    if len(beats) != expected:
        raise StreamError(f"expected {expected} result beats, got {len(beats)}")
    cols = cfg.cols
    nt = n_tiles * cols
    if raw:
        p = np.zeros((tokens, nt, groups), np.int64)
        s = np.zeros((tokens, groups), np.int64)
    else:
        y = np.zeros((tokens, nt), np.int64)
        ovf = np.zeros((tokens, nt), bool)
    index = 0
    for start, count in token_passes(cfg, tokens):
        order = [(j, g, m) for j in range(n_tiles) for g in range(groups if raw else 1)
                 for m in range(count)]
        for position, (j, g, m) in enumerate(order):
            beat = beats[index]
            index += 1
            if beat.last != (position == len(order) - 1):
                raise StreamError(f"result beat {index - 1}: tlast={int(beat.last)} where "
                                  f"{int(not beat.last)} was expected")
            row, cs = start + m, slice(j * cols, (j + 1) * cols)
            if raw:
                fields = from_beat(layouts.raw_result, beat.data)
                p[row, cs, g], s[row, g] = _ints(fields.p), fields.s
            else:
                fields = from_beat(layouts.msq_result, beat.data)
                y[row, cs], ovf[row, cs] = _ints(fields.y_int), _ints(fields.overflow)
    if raw:
        return p[:, :layer.n], s
    return y[:, :layer.n], ovf[:, :layer.n]


def expected_results(cfg: AccelConfig, layer, x):
    """What :func:`decode_results` must return, from the golden model (same shapes and types)."""
    x = _check_layer(cfg, layer, x)
    if isinstance(layer, UniformLayer):
        p, s = golden.uniform_raw(x, layer)
        return p[:, :layer.n], s
    result = golden.msq_matmul(x, layer, cfg.acc_bits)
    return result.y_int[:, :layer.n], result.overflow[:, :layer.n]


# -- cycle model ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CycleModel:
    """The accelerator's timing (``docs/hardware.md``, "Cycle model"), built from the blocks'
    latencies (:class:`~microscopiq.hdl.core.CoreTiming`, which the core itself uses)."""

    timing: CoreTiming

    @classmethod
    def of(cls, cfg: AccelConfig) -> "CycleModel":
        return cls(CoreTiming.of(cfg))

    @property
    def rows(self) -> int:
        """``R``."""
        return self.timing.array.rows

    @property
    def pipeline(self) -> int:
        """``P + I + L + H`` (:attr:`~microscopiq.hdl.array.ArrayTiming.pipeline`)."""
        return self.timing.array.pipeline

    @property
    def shared(self) -> bool:
        """Time-multiplexed ReCoN."""
        return self.timing.array.shared

    @property
    def tile_gap(self) -> int:
        """The most extra cycles after a tile's last token before the next tile's first (shared
        ReCoN: ``S - 1``, else 0); each tile's own is :func:`tile_gaps`."""
        return self.timing.array.tile_gap_extra

    @property
    def ppu_latency(self) -> int:
        """Cycles from a token's column sums at the PPU to its result beat at the output: the PPU's
        stages and the result FIFO."""
        return self.timing.result_latency

    @property
    def result_fifo_depth(self) -> int:
        return self.timing.result_fifo_depth

    @property
    def tile_spacing(self) -> int:
        """Fewest cycles between consecutive tiles' first tokens (:attr:`CoreTiming.tile_spacing
        <microscopiq.hdl.core.CoreTiming.tile_spacing>`)."""
        return self.timing.tile_spacing

    @property
    def shift_queue_depth(self) -> int:
        """Tile shifts the loader queues for the PPU (:attr:`CoreTiming.shift_queue_depth
        <microscopiq.hdl.core.CoreTiming.shift_queue_depth>`)."""
        return self.timing.shift_queue_depth

    @property
    def depth(self) -> int:
        """Cycles from a token's ``s_axis_act`` handshake to the PPU at ``T = 1``: :meth:`arrive` (1)."""
        return self.arrive(1)

    def arrive(self, period: int) -> int:
        """Cycles from a token's ``s_axis_act`` handshake to its column sums at the PPU (the issue
        register and the array's ``1 + R + T + P + I + L + H + O``); its result beat (if it makes one) is valid :attr:`ppu_latency`
        cycles later."""
        return self.timing.arrive(period)


def tile_outlier_rows(cfg: AccelConfig, layer) -> np.ndarray:
    """Per weight tile in stream order and ReCoN group, whether each PE row (the tile's rows in
    their travel order, :func:`~.packed_stream.row_orders`) holds an outlier: (tiles, R / S, S)
    booleans (S = 1 unless ReCoN is shared)."""
    tiles = _tiles(cfg, layer)
    n_tiles, k_tiles = tiles.codes.shape[0] // cfg.cols, tiles.codes.shape[1] // cfg.rows
    outlier = (tiles.roles != Role.INLIER).reshape(n_tiles, cfg.cols, k_tiles, cfg.rows).any(axis=1)
    outlier = np.take_along_axis(outlier.reshape(n_tiles * k_tiles, cfg.rows), tiles.orders, axis=1)
    return outlier.reshape(n_tiles * k_tiles, -1, max(cfg.recon_share, 1))


def tile_periods(cfg: AccelConfig, layer) -> list[int]:
    """Issue period ``T`` of every weight tile in stream order (1 unless ReCoN is shared: then the
    largest number of outlier rows among the tile's ReCoN groups, at least 1)."""
    return periods_of(tile_outlier_rows(cfg, layer))


def tile_gaps(cfg: AccelConfig, layer) -> list[int]:
    """Extra cycles after every weight tile's last token in stream order
    (:meth:`ArrayTiming.tile_gap <microscopiq.hdl.array.ArrayTiming.tile_gap>`, vectorised: the
    largest offset of an outlier row in its ReCoN group; 0 unless ReCoN is shared)."""
    return gaps_of(tile_outlier_rows(cfg, layer))


def periods_of(outlier_rows) -> list[int]:
    """Each tile's issue period from whether its PE rows hold an outlier, ``(tiles, groups, S)``
    booleans as :func:`tile_outlier_rows` gives them: the most outlier rows of one group, at least 1
    (1 with per-row ReCoN, ``S = 1``)."""
    return [max(1, int(v)) for v in np.asarray(outlier_rows).sum(axis=2).max(axis=1)]


def gaps_of(outlier_rows) -> list[int]:
    """Each tile's gap from the same ``(tiles, groups, S)`` booleans: the largest offset of an
    outlier row in its group (0 with per-row ReCoN)."""
    outlier_rows = np.asarray(outlier_rows)
    return [int(v) for v in (outlier_rows * np.arange(outlier_rows.shape[2])).max(axis=(1, 2))]


def predict_cycles(cfg: AccelConfig, layer, tokens: int, *, periods: list[int] | None = None,
                   gaps: list[int] | None = None) -> int:
    """Clock cycles from the first ``s_axis_weights`` handshake to the last ``m_axis_result``
    handshake, both included, with every stream always valid and ready: the packed weight stream
    through the front end and the loader (:mod:`.front_end`, a cycle-by-cycle simulation of their
    control state), tiles issued as docs/hardware.md ("Cycle model") states.

    A tile ``i`` issues its ``M`` tokens ``T_i`` cycles apart from ``start_i = max(w_i,
    free_i, start_{i-1} + tile_spacing)`` (``w_i + 1`` with shared ReCoN): ``w_i`` the cycle its
    last row is written into the shadow (rows pass the row buffer,
    :data:`~microscopiq.hdl.core.LOAD_STAGE`; row 0 not before ``start_{i-1} + 1``, when that
    tile's first token leaves the issue register, :data:`~microscopiq.hdl.core.ISSUE_STAGE`),
    ``free_i`` = tile ``i-1``'s last token + ``T_{i-1}`` + its gap (:func:`tile_gaps`). The
    last result beat is ``arrive(T) + ppu_latency`` cycles after the last token; the next pass's
    header is taken in the next cycle.

    ``periods`` and ``gaps`` replace :func:`tile_periods` and :func:`tile_gaps` (per tile in stream
    order): the bounds of ``make bench-cycles`` (what a design with other periods or gaps would take).
    """
    check_layer(cfg, layer)
    items = packed_stream.pass_items(cfg, layer)
    depth = cfg.tile_depth(layer_pairs(cfg, layer))
    k_tiles = padded(layer.k, cfg.fmt.group) // depth
    periods = tile_periods(cfg, layer) if periods is None else periods
    gaps = tile_gaps(cfg, layer) if gaps is None else gaps
    if len(periods) != len(gaps):
        raise ValueError(f"periods and gaps must have one entry per tile, not {len(periods)} and {len(gaps)}")
    return front_end.run_cycles(cfg, items, periods, [c for _, c in token_passes(cfg, tokens)],
                                k_tiles=k_tiles, per_group=cfg.fmt.group // depth, msq=isinstance(layer, MsqLayer),
                                gaps=gaps)


