"""The packed layer file (``.msq``): one quantized layer, bit-exact, versioned and checksummed.

The format is specified bit by bit in ``docs/format.md``; this module is its reference
implementation. In short, a file is a 52-byte little-endian header followed by three sections:

1. **codes** — every slot of the padded ``Np × Kp`` array, row-major, ``b`` bits each, packed
   LSB-first into bytes (slot ``i`` occupies stream bits ``i·b … i·b + b - 1``);
2. **metadata** (MicroScopiQ mode only) — which micro-blocks hold outliers (Rice-coded gaps) and,
   for those, the pair count, the shared exponent ``X`` and the (outlier, partner) row offsets;
3. **scales** — MicroScopiQ: the exponents ``E`` as int8; uniform: ``scale`` then ``zero`` as
   float32.

The header's CRC-32 covers the header before it and every section. :func:`unpack_layer` refuses
anything that is not a well-formed file of a valid layer with a :class:`FormatError` naming the
rule, so a layer that loads is always safe to stream to the hardware.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ..config import ConfigError, FormatConfig
from ..outputs import atomic_file
from .golden import to_signed
from .layer import LayerError, MsqLayer, Role, UniformLayer, padded

__all__ = [
    "FormatError", "MAGIC", "VERSION", "HEADER", "Mode", "SectionSizes",
    "pack_layer", "unpack_layer", "save_layer", "load_layer", "section_sizes",
]

MAGIC = b"MSQL"
VERSION = 1
#: magic, version, mode, wbits, abits, xbits, ublock, group, n, k, codes, metadata, scales, crc32.
HEADER = struct.Struct("<4sHBBBBHIIIQQQI")
_CRC_OFFSET = HEADER.size - 4
#: Metadata preamble: occupied micro-blocks (u32), Rice parameter r (u8).
_PREAMBLE = struct.Struct("<IB")
#: Largest Rice parameter a file may declare (gaps fit in 63 bits).
MAX_RICE = 32


class Mode:
    """The header's ``mode`` byte."""

    MSQ = 0
    UNIFORM = 1


class FormatError(ValueError):
    """A packed layer file is malformed; the message names the broken rule."""


@dataclass(frozen=True)
class SectionSizes:
    """Byte sizes of a packed layer's parts (see :func:`section_sizes`)."""

    header: int
    codes: int
    metadata: int
    scales: int

    @property
    def total(self) -> int:
        return self.header + self.codes + self.metadata + self.scales


# -- bit streams ---------------------------------------------------------------------------------

def _to_bits(values: np.ndarray, width: int) -> np.ndarray:
    """Each value as ``width`` bits, LSB first, concatenated (uint8 0/1 array)."""
    values = np.asarray(values, dtype=np.uint64).reshape(-1)
    if width == 0 or values.size == 0:
        return np.zeros(0, dtype=np.uint8)
    shifts = np.arange(width, dtype=np.uint64)
    return ((values[:, None] >> shifts) & np.uint64(1)).astype(np.uint8).reshape(-1)


def _from_bits(bits: np.ndarray, width: int) -> np.ndarray:
    """Inverse of :func:`_to_bits`: consecutive ``width``-bit fields as uint64 values."""
    if width == 0:
        return np.zeros(0, dtype=np.uint64)
    fields = bits.reshape(-1, width).astype(np.uint64)
    return (fields << np.arange(width, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def _pack_bits(bits: np.ndarray) -> bytes:
    return np.packbits(bits, bitorder="little").tobytes()


def _unpack_bits(data: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")


def _pack_codes(codes: np.ndarray, wbits: int) -> bytes:
    """Row-major slots, ``wbits`` bits each, LSB-first; the last byte is zero-padded."""
    return _pack_bits(_to_bits(codes, wbits))


def _code_bytes(slots: int, wbits: int) -> int:
    return -(-slots * wbits // 8)


# -- metadata --------------------------------------------------------------------------------------

def _field_widths(fmt: FormatConfig) -> tuple[int, int]:
    """``(count_bits, offset_bits)``: count - 1 in log2(U/2) bits, a row offset in log2(U) bits."""
    offset_bits = fmt.ublock.bit_length() - 1
    return offset_bits - 1, offset_bits


@dataclass(frozen=True)
class _Pairs:
    """The pairs of a layer in file order: occupied micro-blocks ascending (block index
    ``j = μ·Kp + k``), inside a block by outlier offset ascending."""

    blocks: np.ndarray      # (B,) int64 occupied block indices, ascending
    counts: np.ndarray      # (B,) pairs per occupied block
    xexp: np.ndarray        # (B,) shared exponent X per occupied block
    outlier: np.ndarray     # (P,) outlier row offset of every pair
    partner: np.ndarray     # (P,) partner row offset of every pair


def _layer_pairs(layer: MsqLayer) -> _Pairs:
    fmt = layer.fmt
    u, kp = fmt.ublock, layer.kp
    # (μ, k, offset) of every OUT_HI, in block order then offset order.
    hi = (layer.roles == Role.OUT_HI).reshape(-1, u, kp).transpose(0, 2, 1)
    mu, col, off = np.nonzero(hi)
    blocks_all = mu.astype(np.int64) * kp + col
    blocks, counts = np.unique(blocks_all, return_counts=True)
    partner = layer.mate[mu * u + off, col].astype(np.int64)
    xexp = layer.xexp.reshape(-1)[blocks].astype(np.int64)
    return _Pairs(blocks, counts.astype(np.int64), xexp, off.astype(np.int64), partner)


def _gaps(blocks: np.ndarray) -> np.ndarray:
    """Empty micro-blocks before each occupied one (the first gap counts from block 0)."""
    return np.diff(blocks, prepend=-1) - 1


def _rice_bits(gaps: np.ndarray, r: int) -> int:
    return int((gaps >> r).sum()) + gaps.size * (1 + r)


def _best_rice(gaps: np.ndarray) -> int:
    """The Rice parameter that makes the gap stream shortest (the smallest on ties)."""
    costs = [_rice_bits(gaps, r) for r in range(MAX_RICE + 1)]
    return int(np.argmin(costs))


def _metadata_bits(pairs: _Pairs, fmt: FormatConfig, r: int) -> int:
    count_bits, offset_bits = _field_widths(fmt)
    occupied = pairs.blocks.size
    return (_rice_bits(_gaps(pairs.blocks), r) + occupied * (count_bits + fmt.xbits)
            + pairs.outlier.size * 2 * offset_bits)


def _encode_metadata(layer: MsqLayer) -> bytes:
    fmt = layer.fmt
    count_bits, offset_bits = _field_widths(fmt)
    pairs = _layer_pairs(layer)
    gaps = _gaps(pairs.blocks)
    r = _best_rice(gaps)
    quotients = gaps >> r
    # Unary part: quotient q as q zero bits then a one.
    unary = np.zeros(int(quotients.sum()) + gaps.size, dtype=np.uint8)
    unary[np.cumsum(quotients + 1) - 1] = 1
    stream = np.concatenate([
        unary,
        _to_bits(gaps & ((1 << r) - 1), r),
        _to_bits(pairs.counts - 1, count_bits),
        _to_bits(pairs.xexp, fmt.xbits),
        _to_bits(np.stack([pairs.outlier, pairs.partner], axis=1), offset_bits),
    ])
    return _PREAMBLE.pack(pairs.blocks.size, r) + _pack_bits(stream)


def _decode_metadata(data: bytes, fmt: FormatConfig, np_: int, kp: int):
    """Metadata section → ``(roles, mate, xexp)``; every structural rule is checked here."""
    count_bits, offset_bits = _field_widths(fmt)
    u = fmt.ublock
    n_blocks = np_ // u * kp
    if len(data) < _PREAMBLE.size:
        raise FormatError(f"metadata section is {len(data)} bytes, shorter than its "
                          f"{_PREAMBLE.size}-byte preamble")
    occupied, r = _PREAMBLE.unpack_from(data)
    if r > MAX_RICE:
        raise FormatError(f"metadata Rice parameter r={r} exceeds {MAX_RICE}")
    if occupied > n_blocks:
        raise FormatError(f"metadata declares {occupied} micro-blocks with outliers, the layer has "
                          f"only {n_blocks}")
    bits = _unpack_bits(data[_PREAMBLE.size:])
    ones = np.flatnonzero(bits[: min(bits.size, n_blocks + occupied)])[:occupied]
    if ones.size < occupied:
        raise FormatError("metadata is truncated: the gap stream ends before its last micro-block")
    cursor = int(ones[-1]) + 1 if occupied else 0
    quotients = np.diff(ones, prepend=-1) - 1

    def take(count: int, width: int) -> np.ndarray:
        nonlocal cursor
        end = cursor + count * width
        if end > bits.size:
            raise FormatError(f"metadata is truncated: needs at least {end} bits, has {bits.size}")
        out = _from_bits(bits[cursor:end], width).astype(np.int64)
        cursor = end
        return out

    if (quotients > (n_blocks >> r)).any():
        raise FormatError(f"metadata gap quotient {int(quotients.max())} points past the last "
                          f"of the layer's {n_blocks} micro-blocks")
    remainders = take(occupied, r) if r else np.zeros(occupied, dtype=np.int64)
    blocks = np.cumsum((quotients << r) + remainders + 1) - 1
    if occupied and blocks[-1] >= n_blocks:
        raise FormatError(f"metadata names micro-block {int(blocks[-1])}, the layer has {n_blocks}")
    counts = take(occupied, count_bits) + 1 if count_bits else np.ones(occupied, dtype=np.int64)
    xexp = take(occupied, fmt.xbits)
    offsets = take(int(counts.sum()), 2 * offset_bits).reshape(-1)
    offsets = np.stack([offsets & (u - 1), offsets >> offset_bits], axis=1)
    if bits.size - cursor >= 8 or bits[cursor:].any():
        raise FormatError(f"metadata has {bits.size - cursor} bits after its last field "
                          f"(at most 7 zero padding bits are allowed)")
    pair_block = np.repeat(blocks, counts)
    if (bad := offsets[:, 0] == offsets[:, 1]).any():
        i = int(np.argmax(bad))
        raise FormatError(f"bad pair in micro-block {int(pair_block[i])}: outlier and partner are both "
                          f"row offset {int(offsets[i, 0])}")
    slot_ids = (pair_block[:, None] * u + offsets).reshape(-1)
    uses = np.bincount(slot_ids, minlength=1)
    if (uses > 1).any():
        slot = int(np.argmax(uses > 1))
        raise FormatError(f"slot used twice: micro-block {slot // u}, row offset {slot % u} belongs to "
                          f"more than one pair")
    mu, col = pair_block // kp, pair_block % kp
    roles = np.zeros((np_, kp), dtype=np.uint8)
    mate = np.full((np_, kp), -1, dtype=np.int8)
    hi_rows, lo_rows = mu * u + offsets[:, 0], mu * u + offsets[:, 1]
    roles[hi_rows, col], roles[lo_rows, col] = Role.OUT_HI, Role.OUT_LO
    mate[hi_rows, col], mate[lo_rows, col] = offsets[:, 1], offsets[:, 0]
    xgrid = np.zeros(n_blocks, dtype=np.uint8)
    xgrid[blocks] = xexp
    return roles, mate, xgrid.reshape(np_ // u, kp)


# -- whole layers ---------------------------------------------------------------------------------

def _check_packable(layer) -> None:
    """The invariants a file can express: :meth:`validate` plus "padding is inlier zero" and
    "X is zero where a micro-block has no outlier"."""
    if not isinstance(layer, (MsqLayer, UniformLayer)):
        raise TypeError(f"layer must be an MsqLayer or a UniformLayer, not {type(layer).__name__}")
    try:
        layer.validate()
    except LayerError as error:
        raise FormatError(f"invalid layer: {error}") from None
    if isinstance(layer, UniformLayer):
        return
    rows = np.arange(layer.np_)[:, None] >= layer.n
    cols = np.arange(layer.kp)[None, :] >= layer.k
    if (bad := (layer.roles != Role.INLIER) & (rows | cols)).any():
        raise FormatError(f"invalid layer: padding slot {tuple(map(int, np.argwhere(bad)[0]))} is an "
                          f"outlier half (padding must be inlier code 0)")
    occupied = (layer.roles == Role.OUT_HI).reshape(-1, layer.fmt.ublock, layer.kp).any(axis=1)
    if (bad := (layer.xexp != 0) & ~occupied).any():
        raise FormatError(f"invalid layer: micro-block {tuple(map(int, np.argwhere(bad)[0]))} has no "
                          f"outlier but a nonzero shared exponent X")


def section_sizes(layer: MsqLayer | UniformLayer) -> SectionSizes:
    """Byte sizes of :func:`pack_layer`'s output, computed without building it."""
    fmt = layer.fmt
    np_, kp = padded(layer.n, fmt.ublock), padded(layer.k, fmt.group)
    codes = _code_bytes(np_ * kp, fmt.wbits)
    groups = np_ * (kp // fmt.group)
    if isinstance(layer, UniformLayer):
        return SectionSizes(HEADER.size, codes, 0, 8 * groups)
    pairs = _layer_pairs(layer)
    bits = _metadata_bits(pairs, fmt, _best_rice(_gaps(pairs.blocks)))
    return SectionSizes(HEADER.size, codes, _PREAMBLE.size + -(-bits // 8), groups)


def pack_layer(layer: MsqLayer | UniformLayer) -> bytes:
    """Serialise a layer into the bytes of a ``.msq`` file (``docs/format.md``).

    Raises
    ------
    FormatError
        The layer breaks an invariant (:meth:`MsqLayer.validate`, padding not inlier zero, ``X``
        nonzero in a micro-block without outliers).
    """
    _check_packable(layer)
    fmt = layer.fmt
    if isinstance(layer, MsqLayer):
        mode = Mode.MSQ
        codes = _pack_codes(layer.codes, fmt.wbits)
        metadata = _encode_metadata(layer)
        scales = layer.exps.astype("<i1").tobytes()
    else:
        mode = Mode.UNIFORM
        codes = _pack_codes(layer.q.astype(np.int64) & ((1 << fmt.wbits) - 1), fmt.wbits)
        metadata = b""
        scales = layer.scale.astype("<f4").tobytes() + layer.zero.astype("<f4").tobytes()
    header = HEADER.pack(MAGIC, VERSION, mode, fmt.wbits, fmt.abits, fmt.xbits, fmt.ublock,
                         fmt.group, layer.n, layer.k, len(codes), len(metadata), len(scales), 0)
    body = codes + metadata + scales
    crc = zlib.crc32(body, zlib.crc32(header[:_CRC_OFFSET]))
    return header[:_CRC_OFFSET] + struct.pack("<I", crc) + body


def _parse_header(data: bytes):
    if len(data) < HEADER.size:
        raise FormatError(f"file is truncated: {len(data)} bytes, the header alone is {HEADER.size}")
    (magic, version, mode, wbits, abits, xbits, ublock, group, n, k,
     code_len, meta_len, scale_len, crc) = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FormatError(f"not a packed layer: magic is {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise FormatError(f"unsupported format version {version} (this reader knows {VERSION})")
    if mode not in (Mode.MSQ, Mode.UNIFORM):
        raise FormatError(f"unknown mode {mode} (0 = MicroScopiQ, 1 = uniform)")
    expected = HEADER.size + code_len + meta_len + scale_len
    if len(data) < expected:
        raise FormatError(f"file is truncated: {len(data)} bytes, the header announces {expected}")
    if len(data) > expected:
        raise FormatError(f"file has {len(data) - expected} bytes after its last section")
    actual = zlib.crc32(data[HEADER.size:], zlib.crc32(data[:_CRC_OFFSET]))
    if actual != crc:
        raise FormatError(f"CRC mismatch: header says {crc:#010x}, contents give {actual:#010x}")
    try:
        fmt = FormatConfig(wbits=wbits, abits=abits, ublock=ublock, group=group, xbits=xbits)
    except ConfigError as error:
        raise FormatError(f"bad format parameters in header: {error}") from None
    if n < 1 or k < 1:
        raise FormatError(f"layer must be non-empty, header says n={n}, k={k}")
    return mode, fmt, n, k, (code_len, meta_len, scale_len)


def _check_section(name: str, actual: int, expected: int) -> None:
    if actual != expected:
        raise FormatError(f"{name} section is {actual} bytes, expected {expected} for this layer")


def unpack_layer(data: bytes) -> MsqLayer | UniformLayer:
    """Parse and fully check the bytes of a ``.msq`` file; the inverse of :func:`pack_layer`.

    Raises
    ------
    FormatError
        Bad magic, version or mode, truncation or trailing bytes, CRC mismatch, section sizes that
        do not match the layer, malformed metadata (truncated streams, a pair whose outlier and
        partner coincide, a slot used by two pairs, nonzero padding bits), or a decoded layer that
        breaks an invariant of :meth:`MsqLayer.validate` / :meth:`UniformLayer.validate`.
    """
    data = bytes(data)
    mode, fmt, n, k, (code_len, meta_len, scale_len) = _parse_header(data)
    np_, kp = padded(n, fmt.ublock), padded(k, fmt.group)
    groups = kp // fmt.group
    slots = np_ * kp
    _check_section("codes", code_len, _code_bytes(slots, fmt.wbits))
    code_start = HEADER.size
    code_bits = _unpack_bits(data[code_start:code_start + code_len])
    if code_bits[slots * fmt.wbits:].any():
        raise FormatError("codes section has nonzero padding bits after the last slot")
    codes = _from_bits(code_bits[:slots * fmt.wbits], fmt.wbits).reshape(np_, kp)
    meta_start = code_start + code_len
    scale_start = meta_start + meta_len
    scales = data[scale_start:scale_start + scale_len]
    if mode == Mode.UNIFORM:
        _check_section("metadata", meta_len, 0)
        _check_section("scales", scale_len, 8 * np_ * groups)
        values = np.frombuffer(scales, dtype="<f4").astype(np.float32)
        layer = UniformLayer(fmt, n, k, to_signed(codes, fmt.wbits).astype(np.int8),
                             values[:np_ * groups].reshape(np_, groups),
                             values[np_ * groups:].reshape(np_, groups))
    else:
        if not fmt.msq_capable:
            raise FormatError(f"MicroScopiQ mode needs wbits 2, 3 or 4, header says {fmt.wbits}")
        _check_section("scales", scale_len, np_ * groups)
        roles, mate, xexp = _decode_metadata(data[meta_start:scale_start], fmt, np_, kp)
        exps = np.frombuffer(scales, dtype="<i1").astype(np.int16).reshape(np_, groups)
        layer = MsqLayer(fmt, n, k, codes.astype(np.uint8), roles, mate, exps, xexp)
    _check_packable(layer)
    return layer


def save_layer(path: str | os.PathLike, layer: MsqLayer | UniformLayer) -> None:
    """Write ``layer`` to ``path`` atomically (all or nothing)."""
    data = pack_layer(layer)
    with atomic_file(path) as handle:
        handle.write(data)


def load_layer(path: str | os.PathLike) -> MsqLayer | UniformLayer:
    """Read and check a ``.msq`` file written by :func:`save_layer`."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return unpack_layer(data)
    except FormatError as error:
        raise FormatError(f"{os.fspath(path)}: {error}") from None
