"""The PE array with ReCoN (per row, shared, none) against ``golden.group_partial_sums`` of one
K-tile, tile after tile, with bubbles and stalls."""

from __future__ import annotations

import re

import numpy as np
import pytest
from amaranth.sim import Simulator

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.hdl.array import Array, ArrayTiming
from microscopiq.hdl.layouts import StreamLayouts
from microscopiq.host.stream_format import (_row_beats, _tiles, act_columns, from_beat, layer_pairs, tile_gaps,
                                            tile_periods)
from microscopiq.quant import golden
from microscopiq.quant.layer import UniformLayer
from microscopiq.tb.sim_streams import step, stream_get
from microscopiq.tb.stimulus import full_outlier_case, half_msq_case, half_uniform_case, random_case, random_uniform_case


def _tile_rows(cfg, layer, t):
    """(codes, roles, config) per PE row of K-tile ``t`` (N-tile 0), from the stream encoder (the
    tile's rows in their travel order)."""
    layouts = StreamLayouts(cfg)
    beats = [from_beat(layouts.row, word) for word in _row_beats(cfg, layouts, _tiles(cfg, layer), 0, t)]
    return [([int(c) for c in beat.codes], [int(role) for role in beat.roles], beat.config.as_bits())
            for beat in beats]


def _columns(cfg, layer, x):
    """``act_columns`` of N-tile 0's K-tiles."""
    return act_columns(cfg, layer)[:x.shape[1] // cfg.tile_depth(layer_pairs(cfg, layer))]


def run_array(cfg, layer, x, seed, pause=0.0):
    """Stream every K-tile of N-tile 0 through the array, each tile's activations in its rows' order
    (``act_columns``); return (sums (T, M, C), act sums (T, M)). A DSP build (``cfg.dsp``) runs with
    the DSPs' behavioural model. A multi-precision instance runs the layer's pass mode (``pairs``,
    ``narrow``)."""
    dut = Array(cfg, tag_shape=8, dsp_model=True)
    rng = np.random.default_rng(seed)
    columns = _columns(cfg, layer, x)
    k_tiles = len(columns)
    tokens = x.shape[0]
    raw = isinstance(layer, UniformLayer)
    sums = np.zeros((k_tiles, tokens, cfg.cols), np.int64)
    act_sums = np.zeros((k_tiles, tokens), np.int64)
    periods, gaps = tile_periods(cfg, layer), tile_gaps(cfg, layer)
    state = {"received": 0}
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def driver(ctx):
        # One enabled cycle per iteration, at the load contract's tightest: row 0 of tile t + 1 in
        # the cycle tile t's first token is issued (or later), the rows one after another, and a
        # tile's first token in the cycle after its last row (or later); bubbles on both.
        ctx.set(dut.raw, raw)
        if cfg.multi_precision:
            ctx.set(dut.pairs, layer_pairs(cfg, layer))
            ctx.set(dut.narrow, cfg.pass_narrow(layer.fmt, raw))
        ctx.set(dut.en, 1)
        load_t = load_r = issue_t = issue_m = wait = 0
        loaded = started = -1                          # last tile fully loaded / started
        while issue_t < k_tiles:
            issue = (wait == 0 and (issue_m > 0 or loaded >= issue_t)
                     and not (pause and rng.random() < pause))
            if issue:
                if issue_m == 0:
                    assert ctx.get(dut.next_period) == periods[issue_t], (issue_t, periods[issue_t])
                    assert ctx.get(dut.next_gap) == gaps[issue_t], (issue_t, gaps[issue_t])
                    started = issue_t
                ctx.set(dut.issue.valid, 1)
                ctx.set(dut.issue.payload, {"first": issue_m == 0, "tag": issue_m, "x": [
                    int(v) for v in x[issue_m, columns[issue_t]]]})
            else:
                ctx.set(dut.issue.valid, 0)
            load = (load_t < k_tiles and (load_r > 0 or started >= load_t - 1)
                    and not (pause and rng.random() < pause))
            if load:
                codes, roles, config = _tile_rows(cfg, layer, load_t)[load_r]
                ctx.set(dut.load, {"valid": 1, "row": load_r, "select": 1 << load_r, "codes": codes, "roles": roles,
                                   "config": config})
            else:
                ctx.set(dut.load.valid, 0)
            await step(ctx, dut.en)
            wait = max(wait - 1, 0)
            if issue:
                last = issue_m == tokens - 1
                wait = periods[issue_t] - 1 + (gaps[issue_t] if last else 0)
                issue_t, issue_m = (issue_t + 1, 0) if last else (issue_t, issue_m + 1)
            if load:
                if load_r == cfg.rows - 1:
                    loaded, load_t, load_r = load_t, load_t + 1, 0
                else:
                    load_r += 1
        ctx.set(dut.issue.valid, 0)

    async def staller(ctx):
        # Random global stalls (en low) on top of the bubbles.
        while True:
            ctx.set(dut.en, 0 if pause and rng.random() < pause else 1)
            await ctx.tick()

    async def monitor(ctx):
        while state["received"] < k_tiles * tokens:
            out = await stream_get(ctx, dut.out, en=dut.en)
            t, mm = divmod(state["received"], tokens)
            assert out.tag == mm, f"token order: expected tag {mm}, got {out.tag}"
            assert bool(out.first) == (mm == 0)
            sums[t, mm] = [int(v) for v in out.sums]
            act_sums[t, mm] = out.act_sum
            state["received"] += 1

    sim.add_testbench(driver, background=True)
    if pause:
        sim.add_testbench(staller, background=True)
    sim.add_testbench(monitor)
    sim.run()
    return sums, act_sums


def expected_tile_sums(cfg, layer, x):
    """``golden.group_partial_sums`` over each K-tile's rows (``act_columns``, in tile order)."""
    weights = layer.q if isinstance(layer, UniformLayer) else golden.slot_values(layer)
    columns = _columns(cfg, layer, x)
    weights = np.asarray(weights, np.int64)[:cfg.cols, columns.ravel()]
    x = x[:, columns.ravel()]
    partial = golden.group_partial_sums(x, weights, columns.shape[1])      # (M, C, k_tiles)
    act = x.reshape(x.shape[0], -1, columns.shape[1]).sum(axis=2)
    return partial.transpose(2, 0, 1), act.T


def check(cfg, case, seed, pause=0.0):
    print(f"{case.name} share={cfg.recon_share} pause={pause} seed={seed}")
    x = golden._pad_activations(case.x, case.layer.codes.shape[1] if hasattr(case.layer, "codes")
                                else case.layer.q.shape[1])
    got, got_act = run_array(cfg, case.layer, x, seed, pause)
    want, want_act = expected_tile_sums(cfg, case.layer, x)
    for name, g, w in (("column sum", got, want), ("sum column", got_act, want_act)):
        bad = np.argwhere(g != w)
        if len(bad):
            index = tuple(int(i) for i in bad[0])
            pytest.fail(f"{name} mismatch at (tile, m, n)={index}: expected {w[index]}, got {g[index]}")


def _cfg(share, wbits=4, rows=4, cols=8):
    return AccelConfig(fmt=FormatConfig(wbits=wbits, group=rows), rows=rows, cols=cols,
                       recon_share=share, max_tokens=16, max_k=64)


@pytest.mark.parametrize("share", [1, 2, 4])
@pytest.mark.parametrize("seed", [1, 2])
def test_random_tiles(share, seed):
    cfg = _cfg(share)
    check(cfg, random_case(cfg, n=8, k=16, m=5, seed=seed), seed)


@pytest.mark.parametrize("share", [1, 2, 4])
def test_full_outlier_blocks_with_stalls(share):
    """U/2 outliers in every micro-block at every k; bubbles and global stalls (en low)."""
    seed = 20 + share
    cfg = _cfg(share, wbits=2)
    check(cfg, full_outlier_case(cfg, n=8, k=12, m=6, seed=seed), seed, pause=0.3)


@pytest.mark.parametrize("share", [0, 1, 2])
def test_uniform_raw(share):
    """Uniform layers: inliers contribute x·q unshifted (ReCoN uniform config, or bypass)."""
    seed = 30 + share
    cfg = _cfg(share, wbits=3)
    check(cfg, random_uniform_case(cfg, n=8, k=12, m=5, seed=seed), seed, pause=0.2)


@pytest.mark.parametrize("share, kind", [(1, random_case), (2, full_outlier_case), (0, random_uniform_case)])
def test_dsp_build_with_stalls(share, kind):
    """``dsp="ecp5"`` (the MULT18X18D's A register is the last activation stage, its B register the
    active bank, its output register the product): the same sums under bubbles and global stalls."""
    seed = 60 + share
    cfg = _cfg(share, wbits=2 if share else 3).replace(dsp="ecp5")
    check(cfg, kind(cfg, n=8, k=12, m=5, seed=seed), seed, pause=0.3)


def test_wide_array_mixed_periods():
    """8 × 16 array, ReCoN shared by 4 rows: tiles with periods 1 … 4 back to back."""
    seed = 40
    cfg = AccelConfig(fmt=FormatConfig(wbits=4, group=8), rows=8, cols=16, recon_share=4,
                      max_tokens=16, max_k=64)
    case = random_case(cfg, n=16, k=40, m=4, seed=seed, outlier_rate=0.15)
    assert len(set(tile_periods(cfg, case.layer))) > 1
    check(cfg, case, seed)


def test_tile_gap_rule():
    """The tile gap is the largest group offset of an outlier row (shared), 0 otherwise; the host's
    vectorised ``tile_gaps`` is the same rule, tile by tile, on the rows as they travel (each
    tile's row order, which leaves at most ``ceil(n·S/R) − 1``)."""
    shared = ArrayTiming.of(_cfg(4, rows=8))
    assert [shared.tile_gap(rows) for rows in ([0] * 8, [1, 0, 0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 1, 0, 0, 0],
                                               [0, 0, 0, 0, 0, 0, 0, 1], [1] * 8)] == [0, 0, 2, 3, 3]
    assert ArrayTiming.of(_cfg(1, rows=8)).tile_gap([1] * 8) == 0
    with pytest.raises(ValueError, match="8 entries"):
        shared.tile_gap([1] * 4)
    cfg = AccelConfig(fmt=FormatConfig(wbits=4, group=8), rows=8, cols=16, recon_share=4, max_tokens=16, max_k=64)
    layer = random_case(cfg, n=16, k=40, m=1, seed=41, outlier_rate=0.1).layer
    tiles = _tiles(cfg, layer)
    n_tiles, k_tiles = tiles.codes.shape[0] // cfg.cols, tiles.codes.shape[1] // cfg.rows
    layouts = StreamLayouts(cfg)
    want = [shared.tile_gap([any(int(v) for v in from_beat(layouts.row, word).roles)
                              for word in _row_beats(cfg, layouts, tiles, j, t)])
            for j in range(n_tiles) for t in range(k_tiles)]
    got = tile_gaps(cfg, layer)
    assert len(set(want)) > 1
    bad = [i for i, (w, g) in enumerate(zip(want, got)) if w != g]
    assert not bad and len(got) == len(want), f"tile {bad[:1]}: expected {want[bad[0]] if bad else None}, got {got[bad[0]] if bad else None}"


@pytest.mark.parametrize("share, rows, m", [(4, 4, 3), (2, 8, 7)])
@pytest.mark.parametrize("pause", [0.0, 0.3])
def test_tile_gaps_at_their_tightest(share, rows, m, pause):
    """Tiles without outlier rows and tiles whose balanced rows give every gap ``T − 1`` up to
    ``S − 1``: where ``T > 1`` each tile's gap, not the load, decides when the next tile starts
    (``m·T + gap > R``), with and without bubbles and stalls."""
    seed = 50 + share + int(10 * pause)
    cfg = _cfg(share, rows=rows)
    case = random_case(cfg, n=8, k=64, m=m, seed=seed, outlier_rate=0.5)
    gaps = tile_gaps(cfg, case.layer)
    assert min(gaps) == 0 and max(gaps) == share - 1, gaps
    check(cfg, case, seed, pause=pause)


def _multi_precision(rows=4, group=8):
    return AccelConfig(fmt=FormatConfig(wbits=4, group=group), rows=rows, cols=8, max_tokens=16, max_k=64,
                       multi_precision=True)


@pytest.mark.parametrize("pause", [0.0, 0.3])
def test_msq_pair_pass(pause):
    """A MicroScopiQ b = 2 pair pass on a b = 4 multi-precision array: each PE's network slot through
    its row's ReCoN, its inlier slot added at row ``r − L`` (rows ``r < L`` delayed), K rows in
    the host's slot order; with bubbles and stalls."""
    seed = 70
    cfg = _multi_precision(rows=4, group=16)
    case = half_msq_case(cfg, n=8, k=32, m=5, seed=seed, outlier_rate=0.35)
    assert layer_pairs(cfg, case.layer)
    check(cfg, case, seed, pause=pause)


@pytest.mark.parametrize("kind", [half_uniform_case, half_msq_case, random_case])
def test_multi_precision_passes(kind):
    """The other passes of the same array: a uniform pair pass (``pairs`` only), a narrow
    MicroScopiQ pass (one slot per PE, a K-group with more than G/2 outlier rows), a b = 4 pass."""
    seed = 80
    cfg = _multi_precision(rows=4, group=16)
    extra = {"outlier_rate": 0.8} if kind is half_msq_case else {}
    case = kind(cfg, n=8, k=32, m=4, seed=seed, **extra)
    assert layer_pairs(cfg, case.layer) == (kind is half_uniform_case)
    check(cfg, case, seed, pause=0.2)


@pytest.mark.parametrize("dsp, multi_precision, replicas", [("none", False, 64), ("none", True, 128), ("ecp5", False, 0)])
def test_activation_registers_per_pe(dsp, multi_precision, replicas, replica_wires):
    """A fabric 8×8 gives each PE its own last activation register (two with the pair mode's
    high-half lane), each marked REPLICA for the flow; a DSP build's are the DSPs' A registers.
    (The PEs' ``act`` ports, driven by the copies, carry the mark too.)"""
    marked = replica_wires(Array(AccelConfig(dsp=dsp, multi_precision=multi_precision)))
    lanes = {name for name in marked if name.startswith("lane_")}
    assert len(lanes) == replicas and all(re.fullmatch(r"lane_\d+_\d+_pe\d", name) for name in lanes)
