"""The decode table's pure parts (bench/bench_decode.py): the tiled layer keeps every pair in its
micro-block and its cycles are predict_cycles', the table and the verdicts on a tiny configuration."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.host.packed_stream import stream_bits
from microscopiq.host.stream_format import predict_cycles
from microscopiq.quant.layer import Role
from microscopiq.tb.stimulus import random_case, random_uniform_case

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_decode.py"
_spec = importlib.util.spec_from_file_location("bench_decode", BENCH)
bd = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("bench_decode", bd)
_spec.loader.exec_module(bd)

FMT = FormatConfig(wbits=4, ublock=8, group=16, xbits=4)
CFG = AccelConfig(fmt=FMT, rows=8, cols=8, max_k=256, max_n=256)
INT8 = AccelConfig(fmt=FormatConfig(wbits=8, ublock=8, group=16), rows=8, cols=8, recon_share=0,
                   acc_bits=48, max_k=256, max_n=256)
TINY = (bd.Design("msq-b4", "b4", CFG, "unused", ()), bd.Design("int8", "int8", INT8, "unused", ()))


def msq_layer(seed: int = 3):
    return random_case(CFG, 16, 32, 1, seed, outlier_rate=0.6).layer


def test_tiled_msq_layer_repeats_whole_blocks_and_validates():
    src = msq_layer()
    assert (src.roles == Role.OUT_HI).any()
    big = bd.tiled(src, 40, 80)          # 2.5 × 2.5 copies: the last ones cut at block/group edges
    assert (big.n, big.k) == (40, 80)
    for name, unit in (("codes", (16, 32)), ("roles", (16, 32)), ("mate", (16, 32)), ("exps", (16, 2)),
                       ("xexp", (2, 32))):
        got, want = getattr(big, name), getattr(src, name)
        rows, cols = got.shape
        for r0 in range(0, rows, unit[0]):
            for c0 in range(0, cols, unit[1]):
                part = got[r0:r0 + unit[0], c0:c0 + unit[1]]
                where = np.argwhere(part != want[:part.shape[0], :part.shape[1]])
                assert not len(where), f"{name} copy at ({r0}, {c0}): first difference at {where[0]}"


def test_tiled_uniform_layer():
    src = random_uniform_case(CFG, 16, 32, 1, 5).layer
    big = bd.tiled(src, 32, 64)
    assert np.array_equal(big.q, np.tile(src.q, (2, 2)))
    assert np.array_equal(big.scale, np.tile(src.scale, (2, 2)))


@pytest.mark.parametrize("n, k, message", [
    (36, 64, r"^n \(36\) must be a multiple of 8 to tile whole micro-blocks and K-groups$"),
    (32, 40, r"^k \(40\) must be a multiple of 16 to tile whole micro-blocks and K-groups$"),
])
def test_tiled_refuses_partial_blocks(n, k, message):
    with pytest.raises(bd.BenchError, match=message):
        bd.tiled(msq_layer(), n, k)


def test_tiled_refuses_a_padded_source():
    padded_src = random_case(CFG, 12, 32, 1, 1).layer
    with pytest.raises(bd.BenchError, match=r"^source n \(12\) must be a multiple of 8 "):
        bd.tiled(padded_src, 24, 32)


def test_model_rows_are_predict_cycles_of_the_tiled_layer():
    layer = bd.tiled(msq_layer(), 32, 64)
    rows = bd.model_rows(TINY[0], {"big": layer}, buses=(32, 64), tokens=(1, 3))
    assert [(r.bus, r.tokens) for r in rows] == [(32, 1), (32, 3), (64, 1), (64, 3)]
    for r in rows:
        cfg = CFG.replace(weight_bus=r.bus)
        assert r.cycles == predict_cycles(cfg, layer, r.tokens), r
        assert r.bits_per_weight == stream_bits(cfg, layer).bus_bits_per_weight(r.bus)


TILES = 512 * 512   # 8×8 tiles of the 4096×4096 layer


def test_table_speedups_and_verdicts():
    rows = [bd.Row("msq-b4", bd.BIG, 32, 1, 10 * TILES, 4.5, rtl_cycles=10 * TILES),
            bd.Row("int8", bd.BIG, 32, 1, 25 * TILES, 8.0),
            bd.Row("msq-b4", bd.BIG, 64, 1, 50, 4.5), bd.Row("int8", bd.BIG, 64, 1, 60, 8.0)]
    table = bd.table(rows, TINY).splitlines()
    assert table[2] == f"| {bd.BIG} | 32 | 1 | 2,621,440 (2,621,440) | 2.50 | 6,553,600 | 1.00 |"
    assert table[3] == f"| {bd.BIG} | 64 | 1 | 50 | 1.20 | 60 | 1.00 |"
    assert bd.verdicts(rows, TINY) == [
        f"* msq-b4 ≥ 1.8× INT8 at M = 1, 32-bit bus: met — {bd.BIG} 2.50×. Per weight tile ({bd.BIG}): "
        f"10.00 cycles for 9.00 bus beats of weights (bus-bound); INT8 25.00 cycles for 16.00 beats"]
    slower = [bd.Row("msq-b4", bd.BIG, 32, 1, 20 * TILES, 4.5), bd.Row("int8", bd.BIG, 32, 1, 25 * TILES, 8.0)]
    assert bd.verdicts(slower, TINY)[0].startswith(
        f"* msq-b4 ≥ 1.8× INT8 at M = 1, 32-bit bus: **NOT met** — {bd.BIG} 1.25×. Per weight tile ({bd.BIG}): "
        f"20.00 cycles for 9.00 bus beats of weights (the tile period, not the bus, sets the pace)")
    assert bd.rtl_summary(rows) == "RTL cycles equal the model's on all 1 RTL runs."
    off = [bd.Row("msq-b4", bd.BIG, 32, 1, 100, 4.5, rtl_cycles=101)]
    assert bd.rtl_summary(off).startswith("**RTL cycles differ from the model's on 1 of 1 RTL runs**")
    assert "101 ≠" in bd.table(off + rows[1:2], TINY)


def test_tile_period_rows():
    rows = [bd.Row("msq-b4", bd.BIG, 32, 1, TILES * 25, 4.5)]
    assert bd.tile_periods_m1(rows, TINY)[2] == "| msq-b4 | 32 | 25.00 | 9.00 |"
