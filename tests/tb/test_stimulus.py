"""microscopiq.tb.stimulus: every generator yields valid layers that really hit its corner."""

import itertools

import numpy as np
import pytest

from microscopiq.config import PRESETS
from microscopiq.quant.golden import msq_matmul
from microscopiq.quant.layer import Role
from microscopiq.tb import stimulus

CONFIGS = ["4x8-b2", "8x8-b4", "16x16-b4-shared"]
SHAPES = {"pair_positions": (16, 128, 3), "saturation": (24, 256, 4)}


def _case(kind, preset, seed=7):
    n, k, m = SHAPES.get(kind, (13, 70, 5))
    return stimulus.build_case(kind, PRESETS[preset], n, k, m, seed)


@pytest.mark.parametrize("preset", CONFIGS)
@pytest.mark.parametrize("kind", ["random", "random_uniform", *stimulus.CORNERS])
def test_generators_validate_and_fit_the_ports(kind, preset):
    case = _case(kind, preset)
    case.layer.validate()
    fmt = PRESETS[preset].fmt
    assert case.x.shape == (case.tokens, case.layer.k)
    assert case.x.min() >= -fmt.act_bound and case.x.max() <= fmt.amax
    assert f"seed={case.seed}" in case.name


@pytest.mark.parametrize("kind", ["random", "random_uniform", *stimulus.CORNERS])
def test_same_seed_same_case(kind):
    a, b, c = _case(kind, "8x8-b4", 3), _case(kind, "8x8-b4", 3), _case(kind, "8x8-b4", 4)
    arrays = ("q",) if a.uniform else ("codes", "roles", "mate", "exps", "xexp")
    for name in arrays:
        np.testing.assert_array_equal(getattr(a.layer, name), getattr(b.layer, name))
    np.testing.assert_array_equal(a.x, b.x)
    assert any(not np.array_equal(getattr(a.layer, name), getattr(c.layer, name)) for name in arrays)


def test_all_inlier_has_no_outlier():
    case = _case("all_inlier", "8x8-b4")
    assert (case.layer.roles == Role.INLIER).all() and (case.layer.xexp == 0).all()


@pytest.mark.parametrize("preset", CONFIGS)
def test_full_outlier_fills_every_micro_block(preset):
    case = stimulus.full_outlier_case(PRESETS[preset], 16, 40, 2, seed=1)
    layer, u = case.layer, PRESETS[preset].fmt.ublock
    hi = (layer.roles[:16, :40] == Role.OUT_HI).reshape(-1, u, 40).sum(axis=1)
    assert (hi == u // 2).all()
    assert (layer.roles[:16, :40] != Role.INLIER).all()


@pytest.mark.parametrize("preset", CONFIGS)
def test_pair_positions_cover_every_ordered_pair_in_every_block(preset):
    case = _case("pair_positions", preset)
    layer, u = case.layer, PRESETS[preset].fmt.ublock
    for block in range(layer.n // u):
        seen = set()
        for col in range(layer.k):
            rows = block * u + np.arange(u)
            hi = rows[layer.roles[rows, col] == Role.OUT_HI]
            assert len(hi) == 1
            seen.add((int(hi[0]) % u, int(layer.mate[hi[0], col])))
        assert seen == set(itertools.permutations(range(u), 2))


def test_pair_positions_refuses_short_k():
    with pytest.raises(ValueError, match=r"^pair_positions_case needs k >= U\*\(U-1\) = 56, got k=55$"):
        stimulus.pair_positions_case(PRESETS["8x8-b4"], 8, 55, 1, seed=0)


def test_extreme_codes_and_activations():
    case = _case("extreme", "8x8-b4")
    fmt, layer = case.layer.fmt, case.layer
    live = np.zeros_like(layer.roles, bool)
    live[:layer.n, :layer.k] = True
    inlier = live & (layer.roles == Role.INLIER)
    assert set(np.unique(layer.codes[inlier])) == {fmt.qmax, 1 << (fmt.wbits - 1)}
    assert set(np.unique(layer.codes[~inlier & live])) == {0, (1 << fmt.wbits) - 1}
    assert set(np.unique(case.x)) == {-fmt.act_bound, -fmt.amax, 0, fmt.amax}
    assert set(np.unique(layer.exps[:layer.n])) == {-128, 127}


@pytest.mark.parametrize("preset", CONFIGS)
def test_saturation_hits_the_sticky_flag(preset):
    cfg = PRESETS[preset]
    case = _case("saturation", preset)
    result = msq_matmul(case.x, case.layer, cfg.acc_bits)
    lo, hi = -(1 << (cfg.acc_bits - 1)), (1 << (cfg.acc_bits - 1)) - 1
    flagged = result.overflow[:, :case.layer.n]
    y = result.y_int[:, :case.layer.n]
    assert flagged.any() and not flagged.all()
    # Sticky: the flag is set on outputs whose final value came back inside the range.
    assert (flagged & (y > lo) & (y < hi)).any()
    assert (flagged & ((y == lo) | (y == hi))).any()


def test_saturation_refuses_one_group():
    with pytest.raises(ValueError, match=r"^saturation_case needs G < k <= 2G \(two K-groups\), got k=128 with G=128$"):
        stimulus.saturation_case(PRESETS["8x8-b4"], 8, 128, 1, seed=0)


@pytest.mark.parametrize("preset", CONFIGS)
def test_ragged_sizes_are_off_every_multiple(preset):
    cfg = PRESETS[preset]
    case = stimulus.ragged_case(cfg, 16, 128, 64, seed=2)
    assert case.layer.n % cfg.cols and case.layer.n % cfg.fmt.ublock
    assert case.layer.k % cfg.rows and case.layer.k % cfg.fmt.group
    assert case.tokens % cfg.max_tokens


def test_build_case_refuses_unknown_kind():
    with pytest.raises(ValueError, match=r"^stimulus kind must be one of random, .*, not 'bogus'$"):
        stimulus.build_case("bogus", PRESETS["8x8-b4"], 8, 8, 1, 0)
