"""The peer-comparison model (host/perf_model.py): equal to the accelerator's own cycle model when the
weight memory keeps up, and exact cycles and bytes on small hand-computed cases."""

import numpy as np
import pytest

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.host import perf_model as pm
from microscopiq.host import routing
from microscopiq.hdl.array import PRODUCT_PIPE
from microscopiq.hdl.ppu import PPU
from microscopiq.hdl.recon_network import ReconNetwork
from microscopiq.hdl.core import LOAD_STAGE, RESULT_FIFO_LATENCY
from microscopiq.host.stream_format import CycleModel, predict_cycles, tile_periods
from microscopiq.quant.layer import Role
from microscopiq.tb.stimulus import empty_msq_layer, random_case

SMALL = AccelConfig(fmt=FormatConfig(group=8))       # 8×8, b=4, K-group = one K-tile


def _stats(layer, cfg, ebw=4.5):
    return pm.tile_stats(layer, cfg.rows, cfg.cols, ebw=ebw, source="test")


def _layer_with_pairs(fmt, n, k, pairs):
    """An all-inlier layer with OUT_HI at each ``(n, k)`` of ``pairs`` and OUT_LO at ``n ^ 1``."""
    layer = empty_msq_layer(fmt, n, k)
    for row, col in pairs:
        layer.roles[row, col] = Role.OUT_HI
        layer.roles[row ^ 1, col] = Role.OUT_LO
    return layer


@pytest.mark.parametrize("recon_share", [1, 4], ids=["per-row", "shared4"])
@pytest.mark.parametrize("tokens", [1, 5, 64, 70])
def test_unbounded_memory_is_predict_cycles(recon_share, tokens):
    seed = 7
    print(f"seed={seed}")
    cfg = AccelConfig(rows=8, cols=8, recon_share=recon_share)
    layer = random_case(cfg, n=24, k=200, m=1, seed=seed).layer
    periods = np.array(tile_periods(cfg, layer), dtype=np.int64)
    model = CycleModel.of(cfg)
    design = pm.Design("msq", model, np.zeros_like(periods), periods)
    assert pm.schedule_cycles(design, tokens, cfg.max_tokens) == predict_cycles(cfg, layer, tokens)
    if recon_share == 1:
        stats = _stats(layer, cfg)
        assert pm.compare(cfg, stats, tokens, None)["msq"]["cycles"] == predict_cycles(cfg, layer, tokens)


def test_hand_computed_schedule_without_memory_limit():
    # arrive(T=1) = 1 + R + T + product pipe + ReCoN latency = 10 + L with L = pipe + ReCoN; a tile
    # loads in R + 1 = 9 beats after the header (cycle 0); the last result beat is arrive + P (the
    # PPU latency and the result FIFO's cycle) after the last token, counted inclusively.
    lat, ppu = PRODUCT_PIPE + ReconNetwork.latency, PPU.latency + RESULT_FIFO_LATENCY
    stage = LOAD_STAGE                                            # last row beat -> shadow write
    layer = empty_msq_layer(SMALL.fmt, 8, 8)                      # one tile
    design = pm.designs(SMALL, _stats(layer, SMALL))["msq"]
    assert design.model.arrive(1) == 10 + lat
    # start 1 + 9 + S = 10 + S, last issue 13 + S, last result 13 + S + (10 + L) + P: 24 + S + L + P.
    assert pm.schedule_cycles(design, 4, 64) == 24 + stage + lat + ppu
    two = pm.designs(SMALL, _stats(empty_msq_layer(SMALL.fmt, 8, 16), SMALL))["msq"]
    # Tile 1's header follows tile 0's last row beat (9), its rows are taken from 11 and written
    # from 11 + S, the cycle after tile 0's first token (10 + S), one per cycle: it starts at
    # 19 + S, last issue 22 + S, done 22 + S + (10 + L) + P + 1.
    assert pm.schedule_cycles(two, 4, 64) == 33 + stage + lat + ppu
    # 30 tokens: tile 1 waits for tile 0's last issue (39 + S), starts at 40 + S, last issue 69 + S.
    assert pm.schedule_cycles(two, 30, 64) == 80 + stage + lat + ppu
    # 70 tokens with max_tokens 64: passes of 64 and 6 tokens, each re-streaming the tile.
    assert pm.schedule_cycles(design, 70, 64) == pm.schedule_cycles(design, 64, 64) + \
        pm.schedule_cycles(design, 6, 64)


def test_hand_computed_bits_and_memory_bound_cycles():
    layer = _layer_with_pairs(SMALL.fmt, 8, 8, [(0, 0), (2, 0), (4, 5)])
    stats = _stats(layer, SMALL, ebw=4.25)
    assert stats.outliers.tolist() == [3] and stats.row_max.tolist() == [2]
    assert routing.config_bits(SMALL.fmt, 8) == 73
    got = pm.designs(SMALL, stats)
    # msq: 8 shifts of 8 bits + 8 rows of (8 codes × 4 + 8 roles × 2 + 73 config bits).
    assert got["msq"].tile_bits.tolist() == [64 + 8 * (32 + 16 + 73)]          # 1032
    assert got["msq-packed"].tile_bits.tolist() == [272]                     # ceil(4.25 × 64)
    assert got["int8"].tile_bits.tolist() == [512]
    # gobo: shifts 64 + codes 256 + count 7 + 3 outliers × (16 + 6).
    assert got["gobo"].tile_bits.tolist() == [64 + 256 + 7 + 3 * 22]         # 393
    assert got["gobo"].periods.tolist() == [2]
    # w2: 8 rows of (8 × 2 + 8 × 2 + 73).
    assert got["w2"].tile_bits.tolist() == [64 + 8 * (16 + 16 + 73)]          # 904

    result = pm.compare(SMALL, stats, tokens=4, bus_bits=64)
    # Every design has the array's product pipe; L adds ReCoN's latency to it.
    pipe, ppu = PRODUCT_PIPE, PPU.latency + RESULT_FIFO_LATENCY
    lat = pipe + ReconNetwork.latency
    stage = LOAD_STAGE
    # msq: load ceil(1032 / 64) = 17 > 9: start 18 + S, last issue 21 + S, last result
    # 21 + S + (10 + L) + P.
    assert result["msq"] == {"cycles": 32 + stage + lat + ppu, "weight_bytes": 129.0, "speedup": 1.0}
    # int8: load max(9, 8) = 9, arrive 10 + pipe (no ReCoN): start 10 + S, last issue 13 + S,
    # then + 10 + pipe + P + 1.
    assert result["int8"]["cycles"] == 24 + stage + pipe + ppu and result["int8"]["weight_bytes"] == 64.0
    # gobo: load max(9, 7) = 9, period 2, arrive(2) = 11 + pipe: start 10 + S, last issue 16 + S,
    # then + 11 + pipe + P + 1.
    assert result["gobo"]["cycles"] == 28 + stage + pipe + ppu and result["gobo"]["weight_bytes"] == 393 / 8
    assert result["gobo"]["speedup"] == (28 + stage + pipe + ppu) / (32 + stage + lat + ppu)
    # w2: load ceil(904 / 64) = 15: start 16 + S, last issue 19 + S, then + (10 + L) + P + 1.
    assert result["w2"]["cycles"] == 30 + stage + lat + ppu
    # Decode over two msq tiles: the memory starts tile 1 after tile 0's window (cycles 1 … 17),
    # so its header is ready at 34 - 8 = 26 and its rows are taken 27 … 34 and written from 28:
    # start 35 + S, one token, then + (10 + L) + P + 1: the bus, 17 cycles a tile, is the limit.
    two = _stats(empty_msq_layer(SMALL.fmt, 8, 16), SMALL, ebw=4.25)
    assert pm.compare(SMALL, two, tokens=1, bus_bits=64)["msq"]["cycles"] == 46 + stage + lat + ppu


def test_tile_stats_and_resize():
    cfg = SMALL
    # 16 x 16 layer: tiles (N-tile, K-tile) = (0,0) (0,1) (1,0) (1,1) in stream order.
    layer = _layer_with_pairs(cfg.fmt, 16, 16, [(0, 0), (2, 1), (4, 1), (8, 9), (10, 9), (12, 9), (14, 15)])
    stats = _stats(layer, cfg)
    assert (stats.n_tiles, stats.k_tiles) == (2, 2)
    assert stats.outliers.tolist() == [3, 0, 0, 4]
    assert stats.row_max.tolist() == [2, 0, 0, 3]
    assert stats.outlier_fraction == 7 / 256
    assert stats.outlier_tile_fraction == 0.5
    big = pm.resized(stats, 3, 2, "tiled")
    assert big.outliers.tolist() == [3, 0, 0, 4, 3, 0] and big.tiles == 6


def test_errors():
    layer = empty_msq_layer(SMALL.fmt, 8, 8)
    with pytest.raises(pm.PeerModelError, match=r"^the peer comparison models ReCoN per row "
                                                r"\(recon_share=1\), not recon_share=0$"):
        pm.designs(SMALL.replace(recon_share=0), _stats(layer, SMALL))
    design = pm.designs(SMALL, _stats(layer, SMALL))["msq"]
    with pytest.raises(pm.PeerModelError, match=r"^tokens must be >= 1, not 0$"):
        pm.schedule_cycles(design, 0, 64)
    with pytest.raises(pm.PeerModelError, match=r"^rows \(16\) must divide the padded K \(8\)$"):
        pm.tile_stats(layer, 16, 8, ebw=4.0, source="x")
