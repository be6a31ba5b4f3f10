"""WeightDecoder in amaranth.sim: packed passes on the bus in, the load beats the host's routing
compiler predicts (``stream_format.decoded_tiles``) out, with random idle cycles on both sides;
faults mark the pass and never change its number of rows."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.hdl.layouts import PACKED_HEADER, Fault, StreamLayouts
from microscopiq.hdl.weight_decoder import WeightDecoder
from microscopiq.host import stream_format
from microscopiq.host.packed_stream import encode_pass, to_beats
from microscopiq.tb import stimulus
from microscopiq.tb.sim_streams import stream_run

SEED = 5151

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

B4 = AccelConfig(fmt=FormatConfig(group=16), rows=8, cols=8, weight_bus=32)
WIDE = AccelConfig(fmt=FormatConfig(wbits=2, group=16, xbits=3), rows=4, cols=16, weight_bus=64)
INT8 = AccelConfig(fmt=FormatConfig(wbits=8, group=16), rows=8, cols=8, recon_share=0, acc_bits=48,
                   weight_bus=128)
MP = AccelConfig(fmt=FormatConfig(group=16), rows=4, cols=8, weight_bus=32, multi_precision=True)


def framed(data: bytes, bus: int) -> list[dict]:
    words = to_beats(data, bus)
    return [{"data": word, "last": int(i == len(words) - 1)} for i, word in enumerate(words)]


def decode(cfg, pass_bytes: list[bytes], rng) -> list:
    """The load beats of ``pass_bytes`` through the decoder, each as its View."""
    dut = WeightDecoder(cfg)
    beats = [beat for data in pass_bytes for beat in framed(data, cfg.weight_bus)]
    got = stream_run(dut, dut.i, beats, {"o": dut.o}, rng, tail=80)
    gc.collect()
    layout = WeightDecoder.beat_layout(cfg)
    return [layout.from_bits(word) for word in got["o"]]


def check_pass(cfg, layer, tokens, beats, *, fault=Fault.NONE, first_fault=None):
    """``beats`` hold one pass of ``layer``: its header, then its rows, equal to decoded_tiles. With a
    ``fault`` at row ``first_fault``: every row from some point on is marked with it — from that row
    exactly for PAIRS and EXPONENT, from no later than it for a truncated stream (the unpacker sees
    the cut before the rows ahead of it have left the decoders), from its last row at the latest
    for OVERRUN (``first_fault`` None) — and only the rows the stream held are compared (a
    truncated pass's made-up rows and the faulty row itself are not)."""
    layouts = StreamLayouts(cfg)
    header, rows = beats[0], beats[1:]
    tiles = tiles_of(cfg, layer)
    uniform = layer_is_uniform(layer)
    k_tiles = len(tiles) // n_tiles(cfg, layer)
    assert header.header == 1 and Fault(header.fault) == Fault.NONE
    fields = {"mode": int(uniform), "tokens": tokens - 1, "k_tiles": k_tiles - 1, "n_tiles": n_tiles(cfg, layer) - 1}
    if cfg.multi_precision:
        fields.update(pairs=int(stream_format.layer_pairs(cfg, layer)), narrow=int(cfg.pass_narrow(layer.fmt, uniform)))
    assert header.fields.as_value().value == layouts.header.const(fields).as_value().value
    single = {name: int(fields[name] == 0) for name in WeightDecoder.COUNTS}
    assert {name: int(getattr(header.single, name)) for name in WeightDecoder.COUNTS} == single, single
    assert len(rows) == len(tiles) * cfg.rows, f"{len(rows)} rows, expected {len(tiles) * cfg.rows}"
    marks = [Fault(beat.fault) for beat in rows]
    marked = next((i for i, mark in enumerate(marks) if mark != Fault.NONE), len(rows))
    assert marks[marked:] == [fault] * (len(rows) - marked), f"rows from {marked} marked {marks[marked:]}"
    if fault == Fault.NONE:
        assert marked == len(rows)
    elif fault == Fault.TRUNCATED:
        assert marked <= first_fault, f"first marked row {marked}, the cut is at row {first_fault}"
    elif fault == Fault.OVERRUN:    # found at the pass's end: its last row at least
        assert marked < len(rows), "the pass's last row is not marked"
    else:
        assert marked == first_fault, f"first marked row {marked}, the fault is at row {first_fault}"
    per_group = cfg.fmt.group // cfg.tile_depth(stream_format.layer_pairs(cfg, layer))
    row_layout = layouts.row
    for index, beat in enumerate(rows):
        if index == first_fault or (fault == Fault.TRUNCATED and index >= first_fault):
            continue
        tile, r = divmod(index, cfg.rows)
        where = f"row {index} (tile {tile}, row {r})"
        assert beat.header == 0, where
        word = beat.codes.as_value().value
        if not cfg.has_recon:           # uniform layers only: every role INLIER (0), no shifts
            assert word == tiles[tile][1][r], f"{where}: expected {tiles[tile][1][r]:#x}, got {word:#x}"
            continue
        word |= beat.roles.as_value().value << row_layout["roles"].offset
        word |= beat.config.as_value().value << row_layout["config"].offset
        expected = tiles[tile][1][r]
        assert word == expected, f"{where}: expected {expected:#x}, got {word:#x}"
        shift = r == 0 and not uniform and tile % k_tiles % per_group == per_group - 1
        assert beat.shift == shift, f"{where}: shift flag {beat.shift}, expected {int(shift)}"
        if shift:
            assert [int(d) for d in beat.d] == tiles[tile][0], f"{where}: PPU shifts"


def layer_is_uniform(layer) -> bool:
    return not hasattr(layer, "roles")


def tiles_of(cfg, layer):
    return stream_format.decoded_tiles(cfg, layer)


def n_tiles(cfg, layer) -> int:
    return -(-layer.n // cfg.cols)


@pytest.mark.parametrize("cfg, kind, n, k", [
    (B4, "random", 16, 48),
    (B4, "pair_positions", 8, 64),
    (B4, "random_uniform", 16, 32),
    (WIDE, "full_outlier", 32, 32),
    (INT8, "random_uniform", 16, 32),
    (MP, "half_msq", 24, 40),
], ids=["b4-random", "b4-pairs", "b4-uniform", "wide-b2-full", "int8", "multi-precision-msq-b2"])
def test_passes_decode_as_the_routing_compiler_says(cfg, kind, n, k):
    """Two passes back to back: each a header and every row equal to decoded_tiles."""
    check_two_passes(cfg, stimulus.build_case(kind, cfg, n, k, 1, SEED).layer, kind)


def test_msq_pair_pass_decodes_as_the_routing_compiler_says():
    """A MicroScopiQ b = 2 pair pass (``pairs`` and ``narrow`` 1; 2R-deep K-tiles, the PPU shifts
    with every second tile's first row), twice."""
    layer = stimulus.half_msq_case(MP, 24, 64, 1, SEED, outlier_rate=0.2).layer
    assert stream_format.layer_pairs(MP, layer)
    check_two_passes(MP, layer, "half_msq pairs")


def check_two_passes(cfg, layer, kind):
    print(f"seed {SEED}: {kind} {layer.n}x{layer.k} on {cfg.rows}x{cfg.cols} b={cfg.fmt.wbits}, bus {cfg.weight_bus}")
    beats = decode(cfg, [encode_pass(cfg, layer, 2), encode_pass(cfg, layer, 5)], np.random.default_rng(SEED))
    half = len(beats) // 2
    check_pass(cfg, layer, 2, beats[:half])
    check_pass(cfg, layer, 5, beats[half:])


def one_pair_case():
    return stimulus.worked_example_layer(B4.fmt)


# Bit offsets in docs/format.md's worked example: the pair of tile 0 row 3 follows the header, the
# prologue (24 bits), the minima, tile 1's presence bits (8, opening row 0), rows 0-3's codes and
# row 3's X; tile 1's first exponent follows tile 0 (8 presence bits, eight rows of codes, the one
# record).
PAIR = PACKED_HEADER.size + 24 + 64 + 8 + 4 * 32 + 4
EXPONENT = PACKED_HEADER.size + 24 + 64 + 8 + 8 * 32 + 10


@pytest.mark.parametrize("fault, spoil, first", [
    (Fault.PAIRS, lambda d: stimulus.with_bits(d, PAIR, 6, 5 | 5 << 3), 3),
    (Fault.EXPONENT, lambda d: stimulus.with_bits(d, EXPONENT, 8, 0x80), 8),
    # 84 bytes end on a beat: tile 1's rows 0-4 are whole (they end at bit 658), row 5 is cut.
    (Fault.TRUNCATED, lambda d: d[:84], 13),
], ids=["pairs", "exponent", "truncated"])
def test_faults_mark_the_pass_and_keep_its_rows(fault, spoil, first):
    """A fault inside a pass marks the rest of its rows (the rows it lacks are made up) and the pass
    still has all its rows; the next pass is clean."""
    layer = one_pair_case()
    good = encode_pass(B4, layer, 1)
    beats = decode(B4, [spoil(good), good], np.random.default_rng(SEED))
    assert len(beats) == 2 * (1 + 2 * B4.rows)
    check_pass(B4, layer, 1, beats[:17], fault=fault, first_fault=first)
    check_pass(B4, layer, 1, beats[17:])


@pytest.mark.parametrize("cfg", [B4, INT8], ids=["b4", "int8"])
def test_overrun_marks_the_pass_to_its_last_row(cfg):
    """A pass whose last field is not in its tlast beat (one more beat of zeros) keeps its rows and
    is marked OVERRUN to its last row; the next pass is clean. Without ReCoN a row reaches the
    merge two cycles after it is parsed, the fewest there are, and the unpacker's END check, a
    cycle after the last row's parse, must still mark it."""
    layer = stimulus.build_case("random_uniform", cfg, 16, 32, 1, SEED).layer
    good = encode_pass(cfg, layer, 1)
    beats = decode(cfg, [good + bytes(cfg.weight_bus // 8), good], np.random.default_rng(SEED))
    half = len(beats) // 2
    check_pass(cfg, layer, 1, beats[:half], fault=Fault.OVERRUN)
    check_pass(cfg, layer, 1, beats[half:])


def test_refused_header_is_one_beat():
    """A header the instance cannot take goes out alone, marked; the next pass is read intact."""
    layer = one_pair_case()
    good = encode_pass(B4, layer, 1)
    beats = decode(B4, [stimulus.with_bits(good, 0, 4, 3), good], np.random.default_rng(SEED))
    assert beats[0].header == 1 and Fault(beats[0].fault) == Fault.HEADER
    check_pass(B4, layer, 1, beats[1:])
