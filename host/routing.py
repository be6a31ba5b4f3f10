"""The ReCoN routing compiler and the bit-exact model of the network (pure Python + NumPy).

ReCoN (SPEC §5) turns the ``C`` PE products of one PE row into the ``C`` exact column
contributions ``x · v[n,k]`` of SPEC §3. Per micro-block of ``U`` columns it is an in-place Beneš
network of 2×2 pass/swap switches in its Waksman form (the first switch of the last stage of the
network and of every sub-network of 4 or more lines is a fixed PASS), which brings every partner's
OUT_LO product to its outlier's column and every inlier's product back to its own, followed per
column by a merge switch and a scale (shift) switch (see ``docs/recon.md`` and
:class:`~microscopiq.hdl.recon_network.ReconNetwork`). Its configuration is static per weight tile;
this module computes it from the slot metadata, packs it into the integer the hardware's
``config`` port takes, and models the network bit for bit.

The network's geometry (:class:`ReconGeometry`) and the configuration's layout
(:meth:`~microscopiq.hdl.recon_network.ReconNetwork.config_layout`) belong to the hardware; this
module packs into that layout through its bit positions
(:func:`~microscopiq.hdl.recon_network.config_bit_positions`).

Configuration layout of one PE row, as ``config_layout`` defines it (LSB first; ``μ`` = micro-block, ``W = U·log2(U) - U + 1``
configurable switches):

* micro-block ``μ`` occupies bits ``[μ·B, (μ+1)·B)`` with ``B = W + U·(2 + sb)``;
* inside it, first the swap bits (1 = swap), one per configurable switch in
  :attr:`ReconGeometry.routing_switches` order: stage by stage, switch by switch, the fixed
  switches left out (17 bits at U = 8);
* then one column field per column ``c`` of the micro-block at ``W + c·(2 + sb)``:
  ``op`` (2 bits, :class:`ColumnOp`) then ``shift`` (``sb`` bits, unsigned),
  ``sb = max(max_outlier_shift, b).bit_length()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..config import FormatConfig
from ..hdl.recon_geometry import ColumnOp, ReconGeometry, config_bits
from ..hdl.recon_network import config_bit_positions
from ..quant.layer import Role

__all__ = [
    "ColumnOp", "RoutingError", "ReconGeometry", "RowFields", "benes_route", "benes_apply", "placements",
    "config_bits", "compile_fields", "compile_row", "pack_config", "unpack_config",
    "simulate_fields", "simulate_row",
]


class RoutingError(ValueError):
    """Slot metadata the network cannot (or must not) be configured for; the message names the slot."""


# -- Beneš network --------------------------------------------------------------------------------

def benes_route(dst) -> tuple[tuple[int, ...], ...]:
    """Swap bits that make the in-place Beneš network realise a permutation (looping algorithm),
    never swapping a switch of :attr:`ReconGeometry.fixed_switches` (Waksman).

    Parameters
    ----------
    dst : sequence of int
        A permutation of ``0 … U-1`` (``U`` a power of two >= 2): the value entering on line ``p``
        must leave on line ``dst[p]``.

    Returns
    -------
    tuple of tuple of int
        ``2·log2(U) - 1`` stages of ``U / 2`` bits, in the order of
        :meth:`ReconGeometry.stage_pairs` (1 = swap); the bits of the fixed switches are 0.
    """
    dst = tuple(int(d) for d in dst)
    size = len(dst)
    if size < 2 or size & (size - 1) or sorted(dst) != list(range(size)):
        raise ValueError(f"dst must be a permutation of 0..U-1 with U a power of two >= 2, not {dst!r}")
    return _route(dst)


@lru_cache(maxsize=1 << 16)
def _route(dst: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    size = len(dst)
    if size == 2:
        return ((dst[0],),)
    half = size // 2
    inv = [0] * size
    for p, q in enumerate(dst):
        inv[q] = p
    # sub[p]: 0 if the value entering on line p crosses the upper sub-network, 1 the lower. The two
    # inputs of a first-stage switch, and the two values bound for one last-stage switch, differ.
    # Waksman: the loop through the value bound for output 0 starts in the upper sub-network, so
    # the last stage's first switch never swaps (it is a fixed PASS in the hardware).
    sub = [-1] * size
    for start in (inv[0], *range(half)):
        p = start
        while sub[p] < 0:
            sub[p], mate = 0, (p + half) % size
            sub[mate] = 1
            p = inv[(dst[mate] + half) % size]
    first = tuple(sub[i] for i in range(half))
    upper, lower = [0] * half, [0] * half
    last = [0] * half
    for p in range(size):
        local = p % half
        (lower if sub[p] else upper)[local] = dst[p] % half
        if not sub[p]:
            last[dst[p] % half] = int(dst[p] >= half)
    inner = [u + l for u, l in zip(_route(tuple(upper)), _route(tuple(lower)))]
    return (first, *inner, tuple(last))


def benes_apply(geom: ReconGeometry, swaps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Run values through the Beneš networks of a row (vectorised).

    Parameters
    ----------
    geom : ReconGeometry
    swaps : ndarray, (..., stages, U/2)
        Swap bits per stage and switch.
    values : ndarray, (..., U)
        Values on the input lines.

    Returns
    -------
    ndarray, (..., U)
        Values on the output lines.
    """
    out = np.array(values, copy=True)
    swaps = np.asarray(swaps).astype(bool)
    for stage in range(geom.stages):
        lo, hi = np.array(geom.stage_pairs(stage)).T
        swap = swaps[..., stage, :]
        a, b = out[..., lo], out[..., hi]
        out[..., lo] = np.where(swap, b, a)
        out[..., hi] = np.where(swap, a, b)
    return out


def placements(ublock: int) -> list[tuple[tuple[int, int], ...]]:
    """Every placement the format allows in one micro-block: each set of disjoint ordered
    ``(outlier, partner)`` offset pairs (0 … U/2 pairs), once; 5937 for U = 8.

    The lowest free slot is either an inlier or paired (in either order) with a later free slot.
    """
    def extend(free: tuple[int, ...]):
        if not free:
            yield ()
            return
        first, rest = free[0], free[1:]
        yield from extend(rest)
        for index, other in enumerate(rest):
            for tail in extend(rest[:index] + rest[index + 1:]):
                yield ((first, other),) + tail
                yield ((other, first),) + tail

    return list(extend(tuple(range(ublock))))


# -- compiler -------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class RowFields:
    """The unpacked configuration of a batch of rows.

    Attributes
    ----------
    benes : ndarray of uint8, (B, blocks, stages, U/2)
        Swap bits of every switch, 0 for the fixed ones (only the others are packed).
    op : ndarray of uint8, (B, width)
        :class:`ColumnOp` of every column.
    shift : ndarray of int64, (B, width)
        Shift of every column.
    """

    benes: np.ndarray
    op: np.ndarray
    shift: np.ndarray


def _slot_name(index: tuple, batched: bool) -> str:
    return f"row {index[0]} slot {index[1]}" if batched else f"slot {index[-1]}"


def _refuse(mask: np.ndarray, batched: bool, rule: str) -> None:
    if mask.any():
        index = tuple(int(i) for i in np.argwhere(mask)[0])
        raise RoutingError(f"{_slot_name(index, batched)}: {rule}")


def _as_rows(name: str, values, widths: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim not in (1, 2) or array.shape[-1] not in widths or not np.issubdtype(array.dtype, np.integer):
        raise RoutingError(f"{name} must be an integer array of length {' or '.join(map(str, widths))} "
                           f"(or a batch of them), got shape {array.shape} dtype {array.dtype}")
    return array.astype(np.int64).reshape(-1, array.shape[-1])


def compile_fields(fmt: FormatConfig, width: int, codes, roles, mate, xexp, *,
                   uniform: bool = False) -> RowFields:
    """Configuration fields for one PE row, or a batch of rows (leading axis), from slot metadata.

    Parameters as in :func:`compile_row`, each optionally with a leading batch axis.

    Raises
    ------
    RoutingError
        On inconsistent metadata, naming the first offending slot (``row r slot c`` for a batch).
    """
    geom = ReconGeometry(fmt, width)
    u, b = fmt.ublock, fmt.wbits
    batched = np.ndim(codes) == 2
    codes = _as_rows("codes", codes, (width,))
    roles = _as_rows("roles", roles, (width,))
    mate = _as_rows("mate", mate, (width,))
    xexp = _as_rows("xexp", xexp, (width, geom.blocks))
    if not codes.shape[0] == roles.shape[0] == mate.shape[0] == xexp.shape[0]:
        raise RoutingError("codes, roles, mate and xexp must hold the same number of rows")
    if xexp.shape[1] == geom.blocks:  # one X per micro-block: give it to each of its columns
        xexp = np.repeat(xexp, u, axis=1)
    _refuse((codes < 0) | (codes >= 1 << b), batched, f"code does not fit in wbits={b}")
    _refuse(~np.isin(roles, list(Role)), batched, "role is not INLIER (0), OUT_HI (1) or OUT_LO (2)")
    _refuse((xexp < 0) | (xexp >= 1 << fmt.xbits), batched,
            f"shared exponent X does not fit in xbits={fmt.xbits}")
    first_x = np.repeat(xexp[:, ::u], u, axis=1)
    _refuse(xexp != first_x, batched, "shared exponent X differs from the one of its micro-block's first column")
    inlier = roles == Role.INLIER
    if uniform:
        _refuse(~inlier, batched, "uniform mode has only INLIER slots")
    _refuse(mate < -1, batched, "mate must be -1 (inlier) or an offset 0..U-1")
    _refuse(inlier != (mate < 0), batched, "an inlier has mate -1 and an outlier half a mate >= 0")
    _refuse(mate >= u, batched, f"mate offset outside the micro-block (U={u})")
    offset = np.arange(width) % u
    _refuse(~inlier & (mate == offset), batched, "an outlier half cannot be its own mate")
    mate_col = np.where(inlier, np.arange(width), np.arange(width) - offset + np.maximum(mate, 0))
    back = np.take_along_axis(mate, mate_col, axis=1)
    mate_role = np.take_along_axis(roles, mate_col, axis=1)
    _refuse(~inlier & ((back != offset) | (mate_role + roles != Role.OUT_HI + Role.OUT_LO)), batched,
            "its mate does not point back with the other role (each outlier needs exactly one partner "
            "in its micro-block)")

    dst = np.where(inlier, offset, mate).reshape(-1, u)
    unique, inverse = np.unique(dst, axis=0, return_inverse=True)
    routes = np.array([benes_route(row) for row in unique], dtype=np.uint8)
    benes = routes[inverse.reshape(-1)].reshape(codes.shape[0], geom.blocks, geom.stages, geom.switches)

    sign, e = codes >> (b - 1), codes & ((1 << (b - 1)) - 1)
    op = np.select([inlier, roles == Role.OUT_LO, sign == 0],
                   [ColumnOp.KEEP, ColumnOp.ZERO, ColumnOp.MERGE_ADD], ColumnOp.MERGE_SUB).astype(np.uint8)
    shift = np.select([inlier, roles == Role.OUT_LO], [0 if uniform else b, 0], e + xexp).astype(np.int64)
    return RowFields(benes=benes, op=op, shift=shift)


def compile_row(fmt: FormatConfig, width: int, codes, roles, mate, xexp, *, uniform: bool = False) -> int:
    """The static ReCoN configuration of one PE row of a weight tile, as one integer.

    Parameters
    ----------
    fmt : FormatConfig
    width : int
        Columns ``C`` of the row, a multiple of ``U``.
    codes : array of int, (width,)
        The ``b``-bit code of every slot (raw bits, unsigned).
    roles : array of int, (width,)
        :class:`~microscopiq.quant.layer.Role` of every slot.
    mate : array of int, (width,)
        For outlier halves the offset (0 … U-1) of the other half in the micro-block; -1 for inliers
        (as in :class:`~microscopiq.quant.layer.MsqLayer`).
    xexp : array of int, (width,) or (width / U,)
        Shared outlier exponent ``X`` of each column's micro-block (equal within a micro-block), or
        one per micro-block.
    uniform : bool
        Uniform mode (decoupleQ/GPTQ/RTN layers): every slot is an INLIER and contributes ``x · q``
        unshifted.

    Returns
    -------
    int
        The config, bits as in :func:`config_bits`'s layout (module docstring), ready for
        ``ctx.set(network.config.as_value(), value)`` or for streaming.

    Raises
    ------
    RoutingError
        On inconsistent metadata, naming the first offending slot.
    """
    if np.ndim(codes) != 1:
        raise RoutingError(f"codes must be one row (1-D), got shape {np.shape(codes)}")
    return pack_config(ReconGeometry(fmt, width), compile_fields(fmt, width, codes, roles, mate, xexp,
                                                                 uniform=uniform))[0]


def pack_config(geom: ReconGeometry, fields: RowFields) -> list[int]:
    """Pack a batch of :class:`RowFields` into config integers (one per row)."""
    benes_pos, op_pos, shift_pos = config_bit_positions(geom.fmt, geom.width)
    rows = fields.op.shape[0]
    bits = np.zeros((rows, geom.total_bits), dtype=np.uint8)
    stage, switch = np.array(geom.routing_switches).T
    bits[:, benes_pos] = fields.benes[:, :, stage, switch].reshape(rows, -1)
    bits[:, op_pos.reshape(-1)] = ((fields.op[:, :, None] >> np.arange(2)) & 1).reshape(rows, -1)
    shifts = (fields.shift[:, :, None] >> np.arange(geom.shift_bits)) & 1
    bits[:, shift_pos.reshape(-1)] = shifts.reshape(rows, -1)
    packed = np.packbits(bits, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def unpack_config(geom: ReconGeometry, configs) -> RowFields:
    """Split config integers (a sequence, one per row) into :class:`RowFields`."""
    configs = [int(c) for c in configs]
    for index, value in enumerate(configs):
        if not 0 <= value < 1 << geom.total_bits:
            raise RoutingError(f"config {index} = {value:#x} does not fit in {geom.total_bits} bits")
    nbytes = -(-geom.total_bits // 8)
    raw = np.frombuffer(b"".join(c.to_bytes(nbytes, "little") for c in configs), dtype=np.uint8)
    bits = np.unpackbits(raw.reshape(len(configs), nbytes), axis=1, bitorder="little").astype(np.int64)
    benes_pos, op_pos, shift_pos = config_bit_positions(geom.fmt, geom.width)
    benes = np.zeros((len(configs), geom.blocks, geom.stages, geom.switches), dtype=np.uint8)
    stage, switch = np.array(geom.routing_switches).T
    benes[:, :, stage, switch] = bits[:, benes_pos].reshape(len(configs), geom.blocks, -1)
    op = (bits[:, op_pos] << np.arange(2)).sum(axis=2)
    shift = (bits[:, shift_pos] << np.arange(geom.shift_bits)).sum(axis=2)
    return RowFields(benes=benes, op=op.astype(np.uint8), shift=shift)


# -- bit-exact model ------------------------------------------------------------------------------

def _wrap(values: np.ndarray, bits: int) -> np.ndarray:
    half = 1 << (bits - 1)
    return ((values + half) & ((1 << bits) - 1)) - half


def _check_products(fmt: FormatConfig, products: np.ndarray, batched: bool) -> None:
    bits = fmt.pe_product_bits
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    _refuse((products < lo) | (products > hi), batched, f"product outside the signed {bits}-bit range")


def simulate_fields(geom: ReconGeometry, fields: RowFields, products) -> np.ndarray:
    """Bit-exact model of :class:`~microscopiq.hdl.recon_network.ReconNetwork` on a batch of rows.

    Parameters
    ----------
    geom : ReconGeometry
    fields : RowFields
        ``B`` row configs.
    products : array of int, (B, width)
        PE products, each in the signed ``fmt.pe_product_bits`` range.

    Returns
    -------
    ndarray, (B, width)
        Contributions, signed ``fmt.product_bits`` wide: int64, or Python ints (object) where the
        widths exceed 62 bits.
    """
    fmt = geom.fmt
    wide = geom.merge_bits + (1 << geom.shift_bits) - 1 > 62 or fmt.product_bits > 62
    dtype = object if wide else np.int64
    products = np.asarray(products, dtype=np.int64)
    if products.shape != fields.op.shape:
        raise ValueError(f"products must have shape {fields.op.shape}, not {products.shape}")
    _check_products(fmt, products, batched=True)
    rows = products.shape[0]
    routed = benes_apply(geom, fields.benes, products.reshape(rows, geom.blocks, geom.ublock))
    routed = routed.reshape(rows, geom.width)
    # The merge operands of register 1: hi (the own product of a merging column, else 0) and lo
    # (the routed product, 0 for ZERO, negated for MERGE_SUB); (hi << b) + lo wraps at merge_bits.
    merging = (fields.op == ColumnOp.MERGE_ADD) | (fields.op == ColumnOp.MERGE_SUB)
    hi = np.where(merging, products, 0)
    lo = np.where(fields.op == ColumnOp.ZERO, 0, routed)
    lo = np.where(fields.op == ColumnOp.MERGE_SUB, -lo, lo)
    merged = _wrap((hi << fmt.wbits) + lo, geom.merge_bits)
    return _wrap(merged.astype(dtype) << fields.shift.astype(dtype), fmt.product_bits)


def simulate_row(fmt: FormatConfig, width: int, config: int, products) -> list[int]:
    """Bit-exact model of the network for one row: the ``width`` contributions (Python ints) that
    ``ReconNetwork(fmt, width)`` outputs for ``config`` and the PE ``products``."""
    geom = ReconGeometry(fmt, width)
    products = np.asarray(products, dtype=np.int64)
    if products.shape != (width,):
        raise ValueError(f"products must have length width={width}, got shape {products.shape}")
    _check_products(fmt, products[None, :], batched=False)
    out = simulate_fields(geom, unpack_config(geom, [config]), products[None, :])
    return [int(v) for v in out[0]]
