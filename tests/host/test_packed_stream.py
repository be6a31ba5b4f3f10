"""The packed weight stream (host/packed_stream.py): the worked example of docs/format.md bit for
bit, round trips over formats and geometries, exact bit counts, and every refusal."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.host.packed_stream import (
    HEADER_BITS, PackedStreamError, decode_pass, encode_pass, field_offsets, msq_pair_rows, pass_items, row_orders,
    row_records, stream_bits, tile_lanes,
)
from microscopiq.quant.layer import Role
from microscopiq.tb.stimulus import (empty_msq_layer, half_msq_case, half_uniform_case, random_case, random_uniform_case,
                                     worked_example_layer)

FMT = FormatConfig(wbits=4, ublock=8, group=16, xbits=4)
CFG = AccelConfig(fmt=FMT, rows=8, cols=8)


def one_pair_layer():
    return worked_example_layer(FMT)


def write_fields(fields) -> bytes:
    """``(value, width)`` fields, LSB first, zero-padded to a byte: an independent bit writer."""
    bits = [(value >> i) & 1 for value, width in fields for i in range(width)]
    bits += [0] * (-len(bits) % 8)
    return bytes(sum(bit << i for i, bit in enumerate(bits[at:at + 8])) for at in range(0, len(bits), 8))


def test_worked_example_bit_for_bit():
    """The fields in the order docs/format.md lists them, written by hand, equal encode_pass: the
    prologue holds tile 0's map (every count field), row 0 of tile t opens with tile t + 1's presence
    bits and row 2 with its present blocks' counts (none: tile 1 has no outlier; tile 2 is past the
    end, all absent)."""
    layer = one_pair_layer()
    header = 2 | (0 << 4) | (3 << 5) | (0 << 16) | (1 << 32) | (0 << 48)   # v2, MSQ, b-1, M-1, KT-1, NT-1
    present = [[int(t == 0 and r == 3) for r in range(8)] for t in range(3)]
    fields = [(header, 64)] + [(p, 1) for p in present[0]] + [(0, 2)] * 8   # prologue: tile 0's map
    fields += [(0xFD, 8)] * 8                                            # E_min = -3 for the 8 rows
    for t in range(2):                                                   # two K-tiles, one K-group
        if t == 1:
            fields += [(0xFD, 8)] * 8                                    # E[n, 0] at the group's last tile
        for r in range(8):
            if r == 0:
                fields += [(p, 1) for p in present[t + 1]]               # tile t + 1's presence bits
            if r == 2:
                fields += [(0, 2)] * sum(present[t + 1])                 # its pairs - 1
            fields += [(int(layer.codes[c, 8 * t + r]), 4) for c in range(8)]
            if present[t][r]:
                fields += [(9, 4), (5 | 2 << 3, 6)]                      # X, pair o | p << 3
    expected = write_fields(fields)
    assert len(expected) == 95                                           # 754 bits + 6 padding
    assert encode_pass(CFG, layer) == expected
    assert expected[:24].hex(" ") == ("62 00 00 00 01 00 00 00 08 00 00 fd fd fd fd fd "
                                      "fd fd fd 00 20 64 31 05")
    assert stream_bits(CFG, layer).total == 8 * len(expected)


def test_field_offsets_of_the_worked_example():
    """Row 3's record (X, then its pair) after the header, the prologue (24), the minima (64), tile 1's
    presence bits (8) and rows 0-3's codes; tile 1's exponents after all of tile 0 (its row 3 record
    included) — the offsets of test_worked_example_bit_for_bit's fields."""
    layer = one_pair_layer()
    offsets, widths = field_offsets(CFG, layer, "records")
    assert offsets.tolist() == [288, 292] and widths.tolist() == [4, 6]
    offsets, widths = field_offsets(CFG, layer, "exps")
    assert offsets.tolist() == [426 + 8 * c for c in range(8)] and widths.tolist() == [8] * 8
    assert field_offsets(CFG, layer, "header")[0].tolist() == [0]
    with pytest.raises(PackedStreamError, match="no section 'maps'"):
        field_offsets(CFG, layer, "maps")


def check_round_trip(cfg, layer):
    data = encode_pass(cfg, layer)
    bits = stream_bits(cfg, layer)
    assert bits.total == 8 * len(data) and bits.padding == -(bits.total - bits.padding) % 8
    contents = decode_pass(cfg, data)
    where = contents.records.equals(row_records(cfg, layer))
    assert where is None, f"records differ at {where}"
    return contents


@settings(max_examples=40, deadline=None, derandomize=True)
@given(wbits=st.sampled_from([2, 3, 4]), ublock=st.sampled_from([2, 4, 8, 16]), blocks=st.integers(1, 3),
       rows=st.sampled_from([1, 2, 4]), xbits=st.integers(1, 6), n=st.integers(1, 40), k=st.integers(1, 70),
       rate=st.sampled_from([0.0, 0.3, 1.0]), seed=st.integers(0, 2**32 - 1))
def test_msq_round_trip(wbits, ublock, blocks, rows, xbits, n, k, rate, seed):
    fmt = FormatConfig(wbits=wbits, ublock=ublock, group=8, xbits=xbits)
    cfg = AccelConfig(fmt=fmt, rows=rows, cols=ublock * blocks)
    layer = random_case(cfg, n, k, 1, seed, outlier_rate=rate).layer
    contents = check_round_trip(cfg, layer)
    np_ = layer.exps.shape[0]
    assert (contents.exps[:np_] == layer.exps).all() and not contents.exps[np_:].any()
    assert (contents.emin[:np_] == layer.exps.min(axis=1)).all()


@pytest.mark.parametrize("share", [2, 4, 8])
def test_shared_pass_is_the_per_row_pass_with_each_tiles_rows_reordered(share):
    """A shared-ReCoN build's pass carries every tile's rows in ``row_orders`` (balanced over the
    ReCoN groups), a per-row build's in ``k`` order; the same fields, so the same bit count, and
    the round trip reads them back."""
    shared = CFG.replace(recon_share=share)
    layer = random_case(shared, n=16, k=32, m=1, seed=21, outlier_rate=0.3).layer
    orders = row_orders(shared, layer)
    assert (row_orders(CFG, layer) == np.arange(8)).all() and (orders != np.arange(8)).any()
    want = row_records(CFG, layer).take((np.arange(len(orders))[:, None] * 8 + orders).ravel())
    got = check_round_trip(shared, layer).records
    assert got.equals(want) is None, got.equals(want)
    assert stream_bits(shared, layer) == stream_bits(CFG, layer)


@pytest.mark.parametrize("wbits", [2, 4, 8])
def test_uniform_round_trip_is_codes_only(wbits):
    cfg = AccelConfig(fmt=FormatConfig(wbits=wbits, group=16), rows=4, cols=8, acc_bits=48,
                      recon_share=0 if wbits == 8 else 1)
    layer = random_uniform_case(cfg, 20, 40, 1, 7).layer
    contents = check_round_trip(cfg, layer)
    bits = stream_bits(cfg, layer)
    assert (bits.header, bits.emin, bits.exps, bits.tile_maps, bits.records) == (HEADER_BITS, 0, 0, 0, 0)
    assert bits.codes == 24 * 48 * wbits
    assert contents.header["mode"] == 1


def test_records_list_pairs_by_ascending_outlier():
    layer = empty_msq_layer(FMT, 8, 16)
    for o, p in ((6, 0), (1, 7), (3, 2)):
        layer.roles[o, 5], layer.roles[p, 5], layer.mate[o, 5], layer.mate[p, 5] = Role.OUT_HI, Role.OUT_LO, p, o
    layer.xexp[0, 5] = 4
    rec = row_records(CFG, layer.validate())
    assert rec.count[5].tolist() == [3] and rec.xexp[5].tolist() == [4]
    assert rec.outlier[5, 0].tolist() == [1, 3, 6, 0] and rec.partner[5, 0].tolist() == [7, 2, 0, 0]
    assert not rec.count[np.arange(16) != 5].any()


def tampered(change) -> bytes:
    bits = np.unpackbits(np.frombuffer(encode_pass(CFG, one_pair_layer()), np.uint8), bitorder="little")
    bits = change(bits.copy())
    return np.packbits(bits, bitorder="little").tobytes()


def set_field(bits, offset, width, value):
    bits[offset:offset + width] = [(value >> i) & 1 for i in range(width)]
    return bits


# Bit offsets in the worked example: the record of tile 0 row 3 starts after the header, the 24-bit
# prologue, the minima, tile 1's 8 presence bits and four rows of codes: 64 + 24 + 64 + 8 + 4·32 = 288
# (X), 292 (the pair); tile 2's presence bits (past the end) open tile 1's row 0, after tile 0's
# 8 + 8·32 + 10 bits and E: 64 + 24 + 64 + 274 + 64 = 490.
PAIR = 64 + 24 + 64 + 8 + 4 * 32 + 4
PAST = 64 + 24 + 64 + 274 + 64


@pytest.mark.parametrize("change, message", [
    (lambda b: set_field(b, 0, 4, 1), r"^unsupported stream version 1 \(this reader knows 2\)$"),
    (lambda b: set_field(b, 9, 7, 0x40), r"^header reserved bits are 0x40, must be 0$"),
    (lambda b: set_field(b, 5, 3, 1), r"^stream has wbits=2, the instance 4$"),
    (lambda b: set_field(b, 32, 16, 2), r"^k_tiles=3 is not a whole number of K-groups \(2 tiles each\)$"),
    (lambda b: set_field(b, 32, 16, 1023), r"^stream has 1024 K-tiles and 1 N-tiles, more than the instance's "
                                           r"max_k=4096, max_n=16384 allow$"),
    (lambda b: set_field(b, PAIR, 6, 5 | 5 << 3), r"^row 3 micro-block 0: a slot is used twice"),
    (lambda b: b[:-16], r"^stream is truncated in the codes: needs"),
    (lambda b: np.concatenate([b, np.zeros(8, np.uint8)]), r"^stream has 14 bits after its last field"),
    (lambda b: set_field(b, 755, 1, 1), r"^stream has 6 bits after its last field"),
    (lambda b: b[:80], r"^stream is truncated in the tile map: needs 88 bits, has 80$"),
    (lambda b: set_field(b, 72, 2, 1), r"^tile 0: the prologue's count of an absent micro-block is not 0$"),
    (lambda b: set_field(b, PAST, 1, 1), r"^tile map of tile 2, past the pass's last tile, has present micro-blocks$"),
    (lambda b: b[:40], r"^stream is truncated in the header: 5 bytes, the header is 8$"),
])
def test_decode_refusals(change, message):
    with pytest.raises(PackedStreamError, match=message):
        decode_pass(CFG, tampered(change))


def test_encode_refusals():
    layer = one_pair_layer()
    with pytest.raises(PackedStreamError, match=r"^layer format .* differs from the accelerator's"):
        encode_pass(AccelConfig(), layer)
    with pytest.raises(PackedStreamError, match=r"^tokens must be 1 … max_tokens=64 for one pass, not 65$"):
        encode_pass(CFG, layer, 65)
    with pytest.raises(PackedStreamError, match=r"^a MicroScopiQ layer needs ReCoN"):
        encode_pass(AccelConfig(fmt=FMT, rows=8, cols=8, recon_share=0), layer)
    with pytest.raises(TypeError, match=r"^layer must be an MsqLayer or a UniformLayer, not int$"):
        stream_bits(CFG, 3)


def test_pair_pass_bit_for_bit():
    """A b = 2 uniform layer on a b = 4 multi-precision 4×8 instance (G = 16: 2R-deep K-tiles, two per
    K-group): header ``wbits`` 1, and PE row ``r`` of K-tile ``t`` holds, per column, the code of
    ``k = 8t + r`` in its low two bits and of ``8t + 4 + r`` in its high two; written by an
    independent bit writer, read back by decode_pass."""
    cfg = AccelConfig(fmt=FormatConfig(wbits=4, group=16), rows=4, cols=8, multi_precision=True)
    layer = half_uniform_case(cfg, 8, 24, 1, 9).layer
    q = layer.q.astype(np.int64) & 3                                   # (8, 32): Kp = 32
    header = 2 | 1 << 4 | 1 << 5 | (4 - 1) << 32                      # v2, raw, b - 1 = 1, KT = 4
    rows = [(q[c, 8 * t + r] | q[c, 8 * t + 4 + r] << 2, 4) for t in range(4) for r in range(4) for c in range(8)]
    data = encode_pass(cfg, layer)
    assert data == write_fields([(header, 64)] + rows)
    contents = decode_pass(cfg, data)
    assert (contents.header["wbits"], contents.header["pairs"], contents.header["k_tiles"]) == (1, 1, 3)
    assert stream_bits(cfg, layer).codes == 8 * 32 * 2                 # still two bits per weight
    with pytest.raises(PackedStreamError, match=r"^stream has wbits=2, the instance 4$"):
        decode_pass(cfg.replace(multi_precision=False), data)
    with pytest.raises(PackedStreamError, match=r"^k_tiles=3 is not a whole number of K-groups \(2 tiles each\)$"):
        decode_pass(cfg, data[:4] + bytes([2]) + data[5:])


def test_narrow_msq_pass():
    """A MicroScopiQ b = 2 layer on a b = 4 multi-precision instance: header ``wbits`` 1, ``R``-deep
    K-tiles, 2-bit codes (the stream equals the same layer's on a fixed b = 2 instance of the same
    tile shape but for nothing: header, maps, codes, records), read back with ``narrow`` 1; without
    ReCoN it is refused."""
    cfg = AccelConfig(fmt=FormatConfig(wbits=4, group=16), rows=4, cols=8, multi_precision=True)
    fixed = cfg.replace(wbits=2, multi_precision=False)
    layer = half_msq_case(cfg, 16, 40, 1, 9, outlier_rate=0.6).layer
    assert msq_pair_rows(cfg, layer) is None          # a K-group with more than G/2 outlier rows
    data = encode_pass(cfg, layer)
    assert data == encode_pass(fixed, layer)
    contents = check_round_trip(cfg, layer)
    assert (contents.header["wbits"], contents.header["pairs"], contents.header["narrow"]) == (1, 0, 1)
    assert stream_bits(cfg, layer).codes == 16 * 48 * 2
    assert int(np.asarray(layer.roles).max()) > 0
    with pytest.raises(PackedStreamError, match=r"^a MicroScopiQ stream needs ReCoN"):
        decode_pass(cfg.replace(recon_share=0), data)
    with pytest.raises(PackedStreamError, match=r"^stream has wbits=3, the instance 4 \(or 2\)$"):
        decode_pass(cfg, bytes([data[0] & 0x1F | 2 << 5]) + data[1:])


def test_msq_pair_pass():
    """A MicroScopiQ b = 2 layer whose K-groups hold at most G/2 outlier rows per N-tile, on a b = 4
    multi-precision instance with per-row ReCoN: header ``wbits`` 1 and ``msq_pairs`` 1, ``2R``-deep
    K-tiles (``G/2R`` per K-group: ``E`` after every second tile here), each row's ``b``-bit code
    fields holding the network slot's code (low half) and the inlier slot's (high half), and the
    network slot's records; read back with ``pairs`` and ``narrow`` 1. The activation lanes carry
    the slots' K rows; inlier slots hold no outlier. Refused where the pass is not one."""
    cfg = AccelConfig(fmt=FormatConfig(wbits=4, group=16), rows=4, cols=8, multi_precision=True)
    layer = half_msq_case(cfg, 16, 40, 1, 9, outlier_rate=0.25).layer
    slots = msq_pair_rows(cfg, layer)
    assert slots is not None and (slots != np.arange(48)).any()
    data = encode_pass(cfg, layer)
    contents = check_round_trip(cfg, layer)
    header = contents.header
    assert (header["wbits"], header["msq_pairs"], header["pairs"], header["narrow"], header["k_tiles"]) == (1, 1, 1, 1, 5)
    assert stream_bits(cfg, layer).codes == 16 * 48 * 2                # two bits per weight
    lanes = tile_lanes(cfg, layer)                                     # (2 N-tiles · 6 pair tiles, 8)
    assert lanes.shape == (12, 8) and (lanes.reshape(2, -1) == slots).all()
    rec = row_records(cfg, layer)
    codes = np.zeros((16, 48), np.int64)
    codes[:layer.np_] = layer.codes
    roles = np.zeros((16, 48), np.int64)
    roles[:layer.np_] = layer.roles
    for i in range(12):
        cols = slice(8 * (i // 6), 8 * (i // 6) + 8)
        for r in range(4):
            net, inl = lanes[i, r], lanes[i, 4 + r]
            assert (rec.codes[4 * i + r] == codes[cols, net] | codes[cols, inl] << 2).all(), (i, r)
            assert (roles[cols, inl] == Role.INLIER).all(), (i, r)
            mine = (roles[cols, net] == Role.OUT_HI).reshape(-1, 8).sum(axis=1)
            assert (rec.count[4 * i + r] == mine).all(), (i, r)
    kinds, _ = pass_items(cfg, layer)
    assert list(kinds[:13]) == [3, 0, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2]   # prologue, E_min, tile 0, E, tile 1 …
    with pytest.raises(PackedStreamError, match=r"^header msq_pairs is 1 but the pass is not a MicroScopiQ pass"):
        decode_pass(cfg.replace(recon_share=2), data)
    assert msq_pair_rows(cfg.replace(recon_share=2), layer) is None
