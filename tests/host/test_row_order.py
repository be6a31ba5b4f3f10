"""A weight tile's row order (host/row_order.py): exact orders for directed outlier-row patterns,
the permutation and optimality properties over every pattern of an 8-row tile, and refusals."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.hdl.array import ArrayTiming
from microscopiq.host.row_order import pair_slot_rows, tile_row_order, tile_row_orders


def _cfg(share, rows=8):
    return AccelConfig(fmt=FormatConfig(wbits=4, group=16), rows=rows, cols=8, recon_share=share)


def _present(rows, *outliers):
    return [k in outliers for k in range(rows)]


@pytest.mark.parametrize("share, outliers, order", [
    (4, (), (0, 1, 2, 3, 4, 5, 6, 7)),                 # no outlier row: k order
    (4, tuple(range(8)), (0, 2, 4, 6, 1, 3, 5, 7)),    # every row: dealt over the 2 groups
    (4, (5,), (5, 0, 1, 2, 3, 4, 6, 7)),               # one: group 0's first row
    (4, (1, 2, 3), (1, 3, 0, 4, 2, 5, 6, 7)),          # R/S + 1: groups 0, 1, then 0 again
    (4, (4, 5, 6, 7), (4, 6, 0, 1, 5, 7, 2, 3)),       # a full group: split over both
    (2, (6, 7), (6, 0, 7, 1, 2, 3, 4, 5)),             # 4 groups of 2
    (2, (0, 2, 4, 6, 7), (0, 7, 2, 1, 4, 3, 6, 5)),    # R/S + 1 at S = 2
    (8, (3, 6), (3, 6, 0, 1, 2, 4, 5, 7)),             # one group: outlier rows first
    (1, (3, 6), (0, 1, 2, 3, 4, 5, 6, 7)),             # per-row ReCoN: k order
])
def test_directed_orders(share, outliers, order):
    assert tile_row_order(_cfg(share), _present(8, *outliers)) == order


@pytest.mark.parametrize("share", [2, 4, 8])
def test_every_pattern_is_balanced(share):
    """All 256 patterns of an 8-row tile: a permutation; the period (most outlier rows in a group)
    is ``max(1, ceil(n·S/R))`` and the gap (the RTL's ``ArrayTiming.tile_gap``) one less, the least
    any order gives; rows without outliers keep ``k`` order."""
    cfg = _cfg(share)
    timing = ArrayTiming.of(cfg)
    for pattern in itertools.product((False, True), repeat=8):
        order = tile_row_order(cfg, pattern)
        assert sorted(order) == list(range(8)), (pattern, order)
        rows = [pattern[k] for k in order]
        n = sum(pattern)
        period = max(1, max(sum(rows[g:g + share]) for g in range(0, 8, share)))
        assert period == max(1, math.ceil(n * share / 8)), (pattern, order)
        assert timing.tile_gap(rows) == (period - 1 if n else 0), (pattern, order)
        inliers = [k for k in order if not pattern[k]]
        assert inliers == sorted(inliers), (pattern, order)


def test_orders_of_many_tiles_are_the_single_tiles():
    cfg = _cfg(4)
    rng = np.random.default_rng(3)
    print("seed=3")
    present = rng.random((50, 8)) < 0.3
    got = tile_row_orders(cfg, present)
    assert got.shape == (50, 8) and got.dtype == np.int64
    for i, row in enumerate(present):
        assert tuple(got[i]) == tile_row_order(cfg, row), f"tile {i}: {tuple(got[i])} != {tile_row_order(cfg, row)}"
    assert (tile_row_orders(_cfg(1), present) == np.arange(8)).all()
    assert tile_row_orders(cfg, np.zeros((0, 8), bool)).shape == (0, 8)


def test_refusals():
    with pytest.raises(ValueError, match=r"^present must have one entry per row of the tile \(8\), not 4$"):
        tile_row_order(_cfg(4), [True] * 4)
    with pytest.raises(ValueError, match=r"^present must be \(tiles, 8\) bools, not shape \(3, 4\)$"):
        tile_row_orders(_cfg(4), np.zeros((3, 4), bool))


def test_pair_slot_rows_directed():
    """R = 2, G = 8 (two pair tiles of 4 slots, lanes 0, 1 network): an outlier row in an inlier
    slot trades with the first non-outlier row in a network slot; no outlier: ``k`` order."""
    no = np.zeros((1, 8), bool)
    assert (pair_slot_rows(2, 8, no) == np.arange(8)).all()
    outlier = _present(8, 2, 3, 7)            # rows 2, 3 (tile 0's inlier slots), 7 (tile 1's)
    got = pair_slot_rows(2, 8, np.array([outlier]))
    assert got.tolist() == [[2, 3, 0, 1, 7, 5, 6, 4]]
    assert pair_slot_rows(2, 8, np.array([_present(8, 0, 1, 2, 4, 5)])) is None   # 5 > G/2 = 4


def test_pair_slot_rows_every_pattern():
    """Every outlier pattern of one K-group (R = 2, G = 8) and a second N-tile and K-group: a
    permutation inside each K-group that puts every outlier row in a network slot, exactly when
    at most G/2 rows hold an outlier."""
    rng = np.random.default_rng(7)
    for pattern in itertools.product((False, True), repeat=8):
        other = rng.random(8) < 0.3
        outlier = np.array([list(pattern) + list(other), list(other) + list(pattern)])
        got = pair_slot_rows(2, 8, outlier)
        if max(sum(pattern), other.sum()) > 4:
            assert got is None, pattern
            continue
        for j in range(2):
            for g in range(2):
                block = got[j, 8 * g:8 * (g + 1)]
                assert sorted(block) == list(range(8 * g, 8 * (g + 1))), (pattern, block)
                carried = outlier[j, block]
                assert not carried[np.arange(8) % 4 >= 2].any(), (pattern, block)


def test_pair_slot_rows_refuses_bad_shapes():
    with pytest.raises(ValueError, match=r"^outlier must be \(N-tiles, Kp\) bools with Kp a multiple of G=8"):
        pair_slot_rows(2, 8, np.zeros((1, 12), bool))
    with pytest.raises(ValueError, match="multiple of 2R=4"):
        pair_slot_rows(2, 6, np.zeros((1, 12), bool))
