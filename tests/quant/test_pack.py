"""quant/pack: exact round trips and the refusal of every malformed file (docs/format.md).

Files that break one rule are built by hand from the byte layout in docs/format.md (independent of
the packer), sealed with a correct CRC so that the rule under test, not the CRC, refuses them.
"""

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.quant.baselines import quantize_rtn
from microscopiq.quant.layer import MsqLayer, Role, UniformLayer
from microscopiq.quant.msq import quantize_msq
from microscopiq.quant.pack import (HEADER, FormatError, load_layer, pack_layer, save_layer,
                                    section_sizes, unpack_layer)
from microscopiq.tb.stimulus import random_case, worked_example_layer

HEADER_BYTES = 52
CRC_AT = 48


# -- helpers: the file layout of docs/format.md, written independently of the packer -----------

def seal(data: bytes) -> bytes:
    """Recompute the CRC-32 (over bytes 0..47 and 52..end) of a hand-edited file."""
    crc = zlib.crc32(data[HEADER_BYTES:], zlib.crc32(data[:CRC_AT]))
    return data[:CRC_AT] + struct.pack("<I", crc) + data[HEADER_BYTES:]


def bitstream(fields) -> bytes:
    """``(value, width)`` fields, each LSB first, concatenated and zero-padded to a byte."""
    bits = [(value >> i) & 1 for value, width in fields for i in range(width)]
    bits += [0] * (-len(bits) % 8)
    return bytes(sum(bit << i for i, bit in enumerate(bits[j:j + 8])) for j in range(0, len(bits), 8))


def build_file(fmt, n, k, codes, metadata, exps, mode=0, version=1, magic=b"MSQL") -> bytes:
    """A sealed file from raw sections (codes as a flat list of b-bit values)."""
    code_bytes = bitstream((int(c), fmt.wbits) for c in codes)
    scales = np.asarray(exps, dtype="<i1").tobytes()
    header = struct.pack("<4sHBBBBHIIIQQQI", magic, version, mode, fmt.wbits, fmt.abits, fmt.xbits,
                         fmt.ublock, fmt.group, n, k, len(code_bytes), len(metadata), len(scales), 0)
    return seal(header + code_bytes + metadata + scales)


def metadata(r, gaps, counts, xs, pairs, fmt, extra=()) -> bytes:
    """Metadata section per docs/format.md: preamble, unary quotients, remainders, counts, X, pairs."""
    offset_bits = fmt.ublock.bit_length() - 1
    fields = []
    for gap in gaps:                              # unary: q zeros then a one
        fields += [(0, 1)] * (gap >> r) + [(1, 1)]
    fields += [(gap & ((1 << r) - 1), r) for gap in gaps]
    fields += [(c - 1, offset_bits - 1) for c in counts]
    fields += [(x, fmt.xbits) for x in xs]
    fields += [(o | (p << offset_bits), 2 * offset_bits) for o, p in pairs]
    fields += list(extra)
    return struct.pack("<IB", len(gaps), r) + bitstream(fields)


def assert_same_layer(a, b):
    assert type(a) is type(b) and a.fmt == b.fmt and (a.n, a.k) == (b.n, b.k)
    names = ("codes", "roles", "mate", "exps", "xexp") if isinstance(a, MsqLayer) else ("q", "scale", "zero")
    for name in names:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape, name
        mismatch = np.argwhere(x != y)
        assert mismatch.size == 0, f"{name} differs first at {tuple(mismatch[0])}: {x[tuple(mismatch[0])]} vs {y[tuple(mismatch[0])]}"


FMT = FormatConfig(wbits=4, ublock=8, group=16, xbits=4)


def one_pair_layer(fmt=FMT, n=8, k=16):
    """An n×k layer whose only pair is outlier row 5 / partner row 2 at column 3."""
    return worked_example_layer(fmt, n, k)


# -- round trips ------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None, derandomize=True)
@given(wbits=st.sampled_from([2, 3, 4]), ublock=st.sampled_from([2, 4, 8, 16]),
       group=st.sampled_from([2, 8, 32]), xbits=st.integers(1, 6), n=st.integers(1, 40),
       k=st.integers(1, 70), rate=st.sampled_from([0.0, 0.05, 0.5, 1.0]), seed=st.integers(0, 2**32 - 1))
def test_msq_round_trip_property(wbits, ublock, group, xbits, n, k, rate, seed):
    fmt = FormatConfig(wbits=wbits, ublock=ublock, group=group, xbits=xbits)
    cfg = AccelConfig(fmt=fmt, rows=2, cols=ublock)
    layer = random_case(cfg, n, k, 1, seed, outlier_rate=rate).layer
    data = pack_layer(layer)
    assert len(data) == section_sizes(layer).total
    assert_same_layer(layer, unpack_layer(data))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(wbits=st.sampled_from([2, 3, 4, 8]), n=st.integers(1, 20), k=st.integers(1, 50),
       seed=st.integers(0, 2**32 - 1))
def test_uniform_round_trip_property(wbits, n, k, seed):
    fmt = FormatConfig(wbits=wbits, ublock=4, group=16)
    rng = np.random.default_rng(seed)
    layer = quantize_rtn(rng.standard_normal((n, k)) * rng.uniform(1e-3, 1e3), fmt)
    assert_same_layer(layer, unpack_layer(pack_layer(layer)))


@pytest.mark.parametrize("wbits", [2, 3, 4])
def test_quantizer_output_round_trips_through_a_file(tmp_path, wbits):
    seed = 1000 + wbits
    print("seed", seed)
    rng = np.random.default_rng(seed)
    weight = rng.standard_t(3, size=(37, 100))
    layer = quantize_msq(weight, fmt=FormatConfig(wbits=wbits, group=32))
    assert (layer.roles == Role.OUT_HI).any()
    save_layer(tmp_path / "w.msq", layer)
    assert_same_layer(layer, load_layer(tmp_path / "w.msq"))


def test_hand_built_file_matches_the_packer():
    """The packer writes exactly the bytes docs/format.md describes."""
    layer = one_pair_layer()
    # Block index j = μ·Kp + k = 3: gap 3. Rice costs: r=0: 4 bits, r=1: 1+1+1 = 3, r=2: 0+1+2 = 3 → r=1.
    meta = metadata(1, [3], [1], [9], [(5, 2)], FMT)
    expected = build_file(FMT, 8, 16, layer.codes.reshape(-1), meta, layer.exps.reshape(-1))
    assert pack_layer(layer) == expected
    assert_same_layer(layer, unpack_layer(expected))


def test_save_is_atomic(tmp_path):
    bad = one_pair_layer()
    bad.xexp[0, 4] = 1                     # X without an outlier: not packable
    target = tmp_path / "w.msq"
    with pytest.raises(FormatError, match=r"^invalid layer: micro-block \(0, 4\) has no outlier but a nonzero shared exponent X$"):
        save_layer(target, bad)
    assert list(tmp_path.iterdir()) == []


# -- refusals ---------------------------------------------------------------------------------------

GOOD = pack_layer(one_pair_layer())


def patched(offset: int, fmt: str, value) -> bytes:
    data = bytearray(GOOD)
    struct.pack_into(fmt, data, offset, value)
    return seal(bytes(data))


@pytest.mark.parametrize("data, message", [
    (b"MSQ", r"^file is truncated: 3 bytes, the header alone is 52$"),
    (seal(b"XSQL" + GOOD[4:]), r"^not a packed layer: magic is b'XSQL', expected b'MSQL'$"),
    (patched(4, "<H", 2), r"^unsupported format version 2 \(this reader knows 1\)$"),
    (patched(6, "<B", 7), r"^unknown mode 7 \(0 = MicroScopiQ, 1 = uniform\)$"),
    (GOOD[:-1], r"^file is truncated: \d+ bytes, the header announces \d+$"),
    (GOOD + b"\0", r"^file has 1 bytes after its last section$"),
    (GOOD[:60] + bytes([GOOD[60] ^ 1]) + GOOD[61:], r"^CRC mismatch: header says 0x[0-9a-f]{8}, contents give 0x[0-9a-f]{8}$"),
    (patched(7, "<B", 5), r"^bad format parameters in header: wbits must be one of 2, 3, 4, 8, not 5$"),
    (patched(16, "<I", 0), r"^layer must be non-empty, header says n=0, k=16$"),
    (patched(16, "<I", 9), r"^codes section is 64 bytes, expected 128 for this layer$"),
])
def test_header_refusals(data, message):
    with pytest.raises(FormatError, match=message):
        unpack_layer(data)


def test_msq_mode_refuses_wbits_8():
    fmt = FormatConfig(wbits=8, ublock=8, group=16)
    data = build_file(fmt, 8, 16, [0] * 128, metadata(0, [], [], [], [], fmt), [0] * 8)
    with pytest.raises(FormatError, match=r"^MicroScopiQ mode needs wbits 2, 3 or 4, header says 8$"):
        unpack_layer(data)


def file_with(meta: bytes, codes=None, exps=None) -> bytes:
    layer = one_pair_layer()
    return build_file(FMT, 8, 16, layer.codes.reshape(-1) if codes is None else codes, meta,
                      layer.exps.reshape(-1) if exps is None else exps)


@pytest.mark.parametrize("meta, message", [
    # outlier and partner in the same slot
    (metadata(1, [3], [1], [9], [(5, 5)], FMT),
     r"^bad pair in micro-block 3: outlier and partner are both row offset 5$"),
    # two pairs that share slot 2
    (metadata(1, [3], [2], [9], [(5, 2), (2, 6)], FMT),
     r"^slot used twice: micro-block 3, row offset 2 belongs to more than one pair$"),
    # the gap stream points past the last micro-block (2 blocks × 16 columns... here 16 blocks)
    (metadata(0, [16], [1], [9], [(5, 2)], FMT),
     r"^metadata names micro-block 16, the layer has 16$"),
    # a pair missing at the end
    (struct.pack("<IB", 1, 1) + bitstream([(1, 1), (1, 1), (0, 2), (9, 4)]),
     r"^metadata is truncated: needs at least \d+ bits, has \d+$"),
    # more micro-blocks announced than the gap stream holds
    (struct.pack("<IB", 3, 0) + bitstream([(1, 1)]),
     r"^metadata is truncated: the gap stream ends before its last micro-block$"),
    (struct.pack("<IB", 17, 0), r"^metadata declares 17 micro-blocks with outliers, the layer has only 16$"),
    (struct.pack("<IB", 1, 33), r"^metadata Rice parameter r=33 exceeds 32$"),
    (b"\1", r"^metadata section is 1 bytes, shorter than its 5-byte preamble$"),
    # nonzero padding bits after the last field
    (metadata(1, [3], [1], [9], [(5, 2)], FMT, extra=[(1, 1)]),
     r"^metadata has \d+ bits after its last field \(at most 7 zero padding bits are allowed\)$"),
    # a whole spare byte
    (metadata(1, [3], [1], [9], [(5, 2)], FMT, extra=[(0, 8)]),
     r"^metadata has \d+ bits after its last field \(at most 7 zero padding bits are allowed\)$"),
])
def test_metadata_refusals(meta, message):
    with pytest.raises(FormatError, match=message):
        unpack_layer(file_with(meta))


def test_more_than_half_u_pairs_have_no_encoding():
    """The count field holds 1..U/2 exactly (log2(U/2) bits): U/2 pairs decode, and the bits of a
    (U/2 + 1)-th pair are stray bits after the last field, refused."""
    four = [(0, 4), (1, 5), (2, 6), (3, 7)]
    layer = unpack_layer(file_with(metadata(0, [0], [4], [1], four, FMT)))
    assert layer.roles[:, 0].tolist() == [Role.OUT_HI] * 4 + [Role.OUT_LO] * 4
    with pytest.raises(FormatError, match=r"^metadata has \d+ bits after its last field"):
        unpack_layer(file_with(metadata(0, [0], [4], [1], four, FMT, extra=[(0 | (1 << 3), 6)])))


def test_padding_refusals():
    fmt = FormatConfig(wbits=3, ublock=8, group=16)
    # n=7, k=15: row 7 and column 15 are padding; 8·16·3 = 384 bits = 48 bytes exactly.
    codes = [0] * 128
    exps = [0] * 8
    empty = metadata(0, [], [], [], [], fmt)
    assert unpack_layer(build_file(fmt, 7, 15, codes, empty, exps)).n == 7
    codes[7 * 16 + 2] = 1                                 # padding row, inlier code 1
    with pytest.raises(FormatError, match=r"^invalid layer: padding slot \(7, 2\) is not zero$"):
        unpack_layer(build_file(fmt, 7, 15, codes, empty, exps))
    # a pair whose partner is padding row 7 at column 0
    codes[7 * 16 + 2] = 0
    with pytest.raises(FormatError, match=r"^invalid layer: padding slot \(7, 0\) is an outlier half"):
        unpack_layer(build_file(fmt, 7, 15, codes, metadata(0, [0], [1], [0], [(1, 7)], fmt), exps))
    # an outlier in padding column 15
    with pytest.raises(FormatError, match=r"^invalid layer: padding slot \(0, 15\) is an outlier half"):
        unpack_layer(build_file(fmt, 7, 15, codes, metadata(0, [15], [1], [0], [(0, 1)], fmt), exps))
    # b=3 with an odd slot count: 2×... use n=1,k=1,U=2,G=2 → 4 slots · 3 bits = 12 bits, 4 padding bits
    small = FormatConfig(wbits=3, ublock=2, group=2)
    good = build_file(small, 1, 1, [0, 0, 0, 0], metadata(0, [], [], [], [], small), [0, 0])
    assert unpack_layer(good).codes.shape == (2, 2)
    data = bytearray(good)
    data[HEADER_BYTES + 1] |= 0x80                        # stream bit 15: padding
    with pytest.raises(FormatError, match=r"^codes section has nonzero padding bits after the last slot$"):
        unpack_layer(seal(bytes(data)))


def test_section_sizes_must_match_the_layer():
    with pytest.raises(FormatError, match=r"^scales section is 7 bytes, expected 8 for this layer$"):
        unpack_layer(file_with(metadata(1, [3], [1], [9], [(5, 2)], FMT), exps=[0] * 7))


def test_uniform_refusals():
    fmt = FormatConfig(wbits=4, ublock=4, group=8)
    layer = UniformLayer(fmt, 4, 8, np.zeros((4, 8), np.int8), np.ones((4, 1), np.float32),
                         np.zeros((4, 1), np.float32))
    data = bytearray(pack_layer(layer))
    scale_at = HEADER_BYTES + 16
    struct.pack_into("<f", data, scale_at, float("nan"))
    with pytest.raises(FormatError, match=r"^invalid layer: scale has a NaN or Inf$"):
        unpack_layer(seal(bytes(data)))
    header = list(HEADER.unpack_from(data))
    header[12] = 28                                       # scales bytes 32 → 28
    short = HEADER.pack(*header) + bytes(data[HEADER_BYTES:-4])
    with pytest.raises(FormatError, match=r"^scales section is 28 bytes, expected 32 for this layer$"):
        unpack_layer(seal(short))


def test_load_names_the_file(tmp_path):
    path = tmp_path / "bad.msq"
    path.write_bytes(b"nope")
    with pytest.raises(FormatError, match=r"^.*bad\.msq: file is truncated: 4 bytes, the header alone is 52$"):
        load_layer(path)
