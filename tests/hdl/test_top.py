"""Whole layers through the AXI4-Stream top level (amaranth.sim), compared with the golden model:
MicroScopiQ layers (per-row and shared ReCoN) and uniform layers (raw mode, also without ReCoN),
sizes that are not multiples of the array, more tokens than ``max_tokens``, random idle cycles and
back-pressure on every stream, a reset in the middle of a layer, and the exact cycle model."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import ClockDomain, Module
from amaranth.sim import DomainReset, Simulator

from microscopiq.config import PRESETS, AccelConfig, FormatConfig
from microscopiq.host.stream_format import (Beat, CycleModel, StreamError, check_layer, decode_results, encode_layer,
                                           expected_results, layer_pairs, predict_cycles, result_beat_count, tile_periods,
                                           token_passes)
from microscopiq.hdl.layouts import Fault, StreamLayouts
from microscopiq.hdl.top import Accelerator
from microscopiq.tb.stimulus import (extreme_case, full_outlier_case, half_msq_case, half_uniform_case, minilm_case, random_case,
                                     random_uniform_case, saturation_case)


class Harness:
    """An :class:`Accelerator` in amaranth.sim with a source per input stream and a result sink,
    each pausing (idle source / back-pressure) with probability ``pause`` per cycle, seeded; the
    sink also holds ``tready`` low for its first ``result_hold`` cycles."""

    def __init__(self, cfg, pause=0.0, seed=0, result_hold=0):
        self.cfg = cfg
        self.dut = Accelerator(cfg)
        self.pause = pause
        self.result_hold = result_hold
        self.rng = np.random.default_rng(seed)
        self.phase = 0

    def _idle(self):
        return bool(self.pause) and self.rng.random() < self.pause

    async def _source(self, ctx, prefix, beats, phase):
        dut = self.dut
        valid = getattr(dut, f"{prefix}_tvalid")
        data = getattr(dut, f"{prefix}_tdata")
        for beat in beats:
            while self._idle() and self.phase == phase:
                # Garbage on tdata while tvalid is low: it must never reach a result.
                ctx.set(valid, 0)
                ctx.set(data, int(self.rng.integers(0, 1 << 62)) * 0x9E3779B97F4A7C15 % (1 << len(data)))
                await ctx.tick()
            ctx.set(getattr(dut, f"{prefix}_tdata"), beat.data)
            ctx.set(getattr(dut, f"{prefix}_tlast"), beat.last)
            ctx.set(valid, 1)
            await ctx.tick().until(getattr(dut, f"{prefix}_tready"))
            if self.phase != phase:
                break
        ctx.set(valid, 0)

    def run(self, weights, acts, count, interrupt=None):
        """Stream the beats and collect ``count`` result beats.

        With ``interrupt = (weights, acts, cycles)``, those beats are streamed first and the design
        is reset after ``cycles`` cycles (sources stop at once); then the real job runs.

        Returns (result beats, cycles from the first weights handshake to the last result
        handshake of the real job, both included).
        """
        dut = self.dut
        top = Module()
        top.domains.sync = domain = ClockDomain()
        top.submodules.dut = dut
        out, clock = [], {}
        sim = Simulator(top)
        sim.add_clock(1e-8)
        self.phase = 0 if interrupt else 1

        def source(prefix, beats, phase):
            async def bench(ctx):
                while self.phase < phase:
                    await ctx.tick()
                try:
                    await self._source(ctx, prefix, beats, phase)
                except DomainReset:              # the interrupted job: its beats are abandoned
                    ctx.set(getattr(dut, f"{prefix}_tvalid"), 0)
            return bench

        async def sink(ctx):
            if self.result_hold:
                await ctx.tick().repeat(self.result_hold)
            # Far beyond any job here (stalls included): a beat lost would otherwise hang the test.
            for cycle in range(100 * count + 10_000):
                if len(out) == count:
                    return
                ready = not self._idle()
                ctx.set(dut.m_axis_result_tready, ready)
                _, _, valid, data, last = await ctx.tick().sample(
                    dut.m_axis_result_tvalid, dut.m_axis_result_tdata, dut.m_axis_result_tlast)
                if ready and valid and self.phase == 1:
                    out.append(Beat(data, bool(last)))
            raise AssertionError(f"{len(out)} of {count} result beats after {cycle + 1} cycles")

        async def counter(ctx):
            cycle = 0
            async for _, _, wv, wr, rv, rr in ctx.tick().sample(
                    dut.s_axis_weights_tvalid, dut.s_axis_weights_tready,
                    dut.m_axis_result_tvalid, dut.m_axis_result_tready):
                if self.phase == 1:
                    if wv and wr:
                        clock.setdefault("first", cycle)
                    if rv and rr:
                        clock["last"] = cycle
                cycle += 1

        async def resetter(ctx):
            await ctx.tick().repeat(interrupt[2])
            self.phase = -1                      # sources stop driving
            await ctx.tick()
            ctx.set(domain.rst, 1)
            await ctx.tick()
            await ctx.tick()
            ctx.set(domain.rst, 0)
            self.phase = 1

        if interrupt:
            sim.add_testbench(source("s_axis_weights", interrupt[0], 0), background=True)
            sim.add_testbench(source("s_axis_act", interrupt[1], 0), background=True)
            sim.add_testbench(resetter, background=True)
        sim.add_testbench(source("s_axis_weights", weights, 1), background=True)
        sim.add_testbench(source("s_axis_act", acts, 1), background=True)
        sim.add_testbench(counter, background=True)
        sim.add_testbench(sink)
        sim.run()
        return out, clock["last"] - clock["first"] + 1


def check_case(cfg, case, pause=0.0, seed=0, interrupt_cycles=None, result_hold=0):
    """Run ``case`` through the top level and compare every output with the golden model; return
    the measured cycles."""
    print(f"case: {case.name}, recon={cfg.to_json()['recon']}, pause={pause}, seed={seed}")
    weights, acts = encode_layer(cfg, case.layer, case.x)
    count = result_beat_count(cfg, case.layer, case.tokens)
    interrupt = (weights, acts, interrupt_cycles) if interrupt_cycles else None
    beats, cycles = Harness(cfg, pause, seed, result_hold).run(weights, acts, count, interrupt)
    got = decode_results(cfg, case.layer, case.tokens, beats)
    want = expected_results(cfg, case.layer, case.x)
    names = ("P", "S") if case.uniform else ("y_int", "overflow")
    for name, g, w in zip(names, got, want):
        bad = np.argwhere(g != w)
        if len(bad):
            index = tuple(int(i) for i in bad[0])
            pytest.fail(f"{case.name}: {name} mismatch at (m, n, ...)={index}: expected {int(w[index])}, "
                        f"got {int(g[index])}")
    return cycles


def small(share, wbits=4, rows=4, cols=8, group=8, max_tokens=6, acc_bits=32, abits=8):
    return AccelConfig(fmt=FormatConfig(wbits=wbits, group=group, abits=abits), rows=rows, cols=cols,
                       recon_share=share, max_tokens=max_tokens, max_k=64, acc_bits=acc_bits)


# Sizes not multiples of R, C, U or G; M > max_tokens (three passes).
@pytest.mark.parametrize("share", [1, 2, 4], ids=lambda s: f"recon{s}")
@pytest.mark.parametrize("seed", [11, 12])
def test_msq_layer(share, seed):
    cfg = small(share)
    cycles = check_case(cfg, random_case(cfg, n=19, k=21, m=13, seed=seed))
    assert cycles == predict_cycles(cfg, random_case(cfg, n=19, k=21, m=13, seed=seed).layer, 13)


# Decode steps: one token re-enters the PPU every tile (groups of one K-tile: the accumulator
# at every tile), the closest the schedule brings the same token back.
@pytest.mark.parametrize("share", [1, 2], ids=lambda s: f"recon{s}")
@pytest.mark.parametrize("tokens", [1, 2])
def test_decode_tokens(share, tokens):
    cfg = small(share, group=4)
    case = random_case(cfg, n=16, k=24, m=tokens, seed=70 + tokens)
    assert check_case(cfg, case) == predict_cycles(cfg, case.layer, tokens)


# Decode (M = 1): each tile loads while the one before computes (row 0 from the cycle the tile
# before starts, one row per cycle), so with a weight bus that keeps up a tile costs max(T + gap, R)
# cycles; the RTL matches the model tile for tile, over shared periods and two passes.
@pytest.mark.parametrize("share", [1, 2, 4], ids=lambda s: f"recon{s}")
def test_decode_tiles_overlap(share):
    cfg = small(share, group=4, max_tokens=1)
    case = random_case(cfg, n=16, k=16, m=2, seed=80 + share, outlier_rate=0.5)
    periods = tile_periods(cfg, case.layer)
    assert len(periods) == 8 and len(token_passes(cfg, case.tokens)) == 2 and (share == 1 or max(periods) > 1)
    assert check_case(cfg, case) == predict_cycles(cfg, case.layer, case.tokens)


def test_decode_8x8_tile_period():
    """The default 8×8 array, ReCoN per row, M = 1, a 256-bit weight bus (a tile in two beats): 32
    more tiles of a uniform layer (rows only) cost 32·R = 256 cycles, a tile every R = 8 cycles (25
    under the rule before the overlap); a MicroScopiQ tile too (its map travels a tile ahead, so the
    unpacker parses a row every cycle; R + 2 with the MAP state of stream version 1: 366), 32 more
    of them 266 cycles (8 per tile, and 5 for each of the two K-groups' E items they add); the RTL
    runs both."""
    cfg = AccelConfig(max_tokens=4, weight_bus=256)
    short, long = (random_uniform_case(cfg, n=16, k=k, m=1, seed=5) for k in (128, 256))
    cycles = check_case(cfg, short)
    assert cycles == predict_cycles(cfg, short.layer, 1) == 297
    assert predict_cycles(cfg, long.layer, 1) - cycles == 32 * cfg.rows
    msq = random_case(cfg, n=16, k=128, m=1, seed=5)
    assert check_case(cfg, msq) == predict_cycles(cfg, msq.layer, 1) == 308
    assert predict_cycles(cfg, random_case(cfg, n=16, k=256, m=1, seed=5).layer, 1) - 308 == 266


@pytest.mark.parametrize("pause", [0.0, 0.3])
def test_single_row_decode(pause):
    """R = 1, M = 1: the array's double buffering alone would let a tile start the cycle after the
    one before, and token 0 would enter the PPU right after itself (a stale P); the issuer keeps
    them two cycles apart. Pauses let the loader run ahead so that the rule matters."""
    cfg = small(1, rows=1, group=2, max_tokens=1)
    case = random_case(cfg, n=8, k=40, m=1, seed=4)
    cycles = check_case(cfg, case, pause=pause, seed=4)
    if not pause:
        assert cycles == predict_cycles(cfg, case.layer, 1)


@pytest.mark.parametrize("share", [0, 1, 2], ids=lambda s: f"recon{s}")
def test_uniform_layer(share):
    cfg = small(share, wbits=3)
    case = random_uniform_case(cfg, n=10, k=19, m=7, seed=21)
    assert check_case(cfg, case) == predict_cycles(cfg, case.layer, 7)


def test_uniform_int8_no_recon():
    cfg = small(0, wbits=8, abits=4)
    check_case(cfg, random_uniform_case(cfg, n=8, k=16, m=4, seed=22))


@pytest.mark.parametrize("share", [1, 2], ids=lambda s: f"recon{s}")
def test_full_outliers_and_extremes(share):
    cfg = small(share, wbits=2)
    check_case(cfg, full_outlier_case(cfg, n=16, k=16, m=4, seed=31))
    check_case(cfg, extreme_case(cfg, n=8, k=16, m=5, seed=32))


def test_saturation():
    cfg = small(1, acc_bits=22, rows=4, group=4)
    case = saturation_case(cfg, n=8, k=7, m=5, seed=41)
    check_case(cfg, case)
    assert expected_results(cfg, case.layer, case.x)[1].any(), "the case must saturate somewhere"


@pytest.mark.parametrize("share,seed", [(1, 51), (2, 52), (0, 53)], ids=["recon1", "recon2", "recon0"])
def test_backpressure(share, seed):
    cfg = small(share)
    maker = random_uniform_case if share == 0 else random_case
    check_case(cfg, maker(cfg, n=17, k=12, m=9, seed=seed), pause=0.4, seed=seed)


@pytest.mark.parametrize("share", [1, 2], ids=["recon1", "recon2"])
def test_long_pass_full_rate(share):
    """40 tokens per pass with every stream always ready: the result FIFO's depth must keep the
    issuer's credit from ever holding a token back (one beat less and this job takes longer)."""
    cfg = small(share, max_tokens=64)
    case = random_case(cfg, n=24, k=16, m=40, seed=72)
    assert check_case(cfg, case) == predict_cycles(cfg, case.layer, 40)


@pytest.mark.parametrize("share", [1, 2], ids=["recon1", "recon2"])
def test_result_stall(share):
    """The output blocked for 400 cycles while every input is ready: the result FIFO fills to its
    depth (each pass makes more beats than it holds) and the issuer's credit must stop the input
    before a beat is lost. The job finishes later than with the output always ready, but less than
    400 cycles later: the array works ahead while the FIFO takes its beats."""
    cfg = small(share, max_tokens=64)
    case = random_uniform_case(cfg, n=24, k=16, m=40, seed=71)
    depth = CycleModel.of(cfg).result_fifo_depth
    assert result_beat_count(cfg, case.layer, case.tokens) > 2 * depth
    cycles, free_running = check_case(cfg, case, result_hold=400), predict_cycles(cfg, case.layer, 40)
    assert free_running < cycles < free_running + 400, (cycles, free_running)


@pytest.mark.parametrize("share,cycles", [(1, 37), (2, 90)], ids=["recon1", "recon2"])
def test_reset_mid_layer(share, cycles):
    cfg = small(share)
    check_case(cfg, random_case(cfg, n=16, k=16, m=8, seed=61), pause=0.2, seed=61,
               interrupt_cycles=cycles)


def test_refused_pass_then_a_layer_under_back_pressure():
    """A pass whose header is refused (``version`` 15), then a layer streamed right behind it, the
    output blocked for its first 60 cycles: the refused pass is one beat marked HEADER, and the
    layer's activations wait for that beat to be taken instead of being dropped as the refused
    pass's (the formal ``credit_refused`` check found that; docs/verification.md)."""
    cfg = small(1)
    bad, good = (random_case(cfg, n=8, k=8, m=3, seed=seed) for seed in (81, 82))
    bad_weights, bad_acts = encode_layer(cfg, bad.layer, bad.x)
    good_weights, good_acts = encode_layer(cfg, good.layer, good.x)
    refused = [Beat(bad_weights[0].data | 0xF, bad_weights[0].last)] + bad_weights[1:]
    count = result_beat_count(cfg, good.layer, good.tokens)
    beats, _ = Harness(cfg, result_hold=60).run(refused + good_weights, bad_acts + good_acts, 1 + count)
    first = StreamLayouts(cfg).result.from_bits(beats[0].data)
    assert (Fault(first.fault), beats[0].last) == (Fault.HEADER, True), (first, beats[0])
    got = decode_results(cfg, good.layer, good.tokens, beats[1:])
    for name, g, w in zip(("y_int", "overflow"), got, expected_results(cfg, good.layer, good.x)):
        bad_at = np.argwhere(g != w)
        assert not len(bad_at), f"{name} at {tuple(bad_at[0])}: expected {w[tuple(bad_at[0])]}, got {g[tuple(bad_at[0])]}"


# -- multi-precision: one instance (wbits 4, AccelConfig.multi_precision) runs uniform layers at b = 4
# and at b = 2 (two 2-bit slots per PE, 2R-deep K-tiles) and MicroScopiQ layers at b = 4, chosen per
# pass by the stream header.


def pair_build(share=1, rows=4, group=16, max_tokens=8, **changes):
    return AccelConfig(fmt=FormatConfig(wbits=4, group=group), rows=rows, cols=8, recon_share=share,
                       max_tokens=max_tokens, max_k=64, multi_precision=True, **changes)


# Sizes not multiples of R, C or G; M > max_tokens (two passes); every ReCoN arrangement.
@pytest.mark.parametrize("share", [1, 2, 0], ids=lambda s: f"recon{s}")
def test_multi_precision_w2_and_w4_on_one_build(share):
    cfg = pair_build(share)
    w4 = random_uniform_case(cfg, n=19, k=37, m=11, seed=31)
    w2 = half_uniform_case(cfg, n=19, k=37, m=11, seed=32)
    for case in (w4, w2):
        assert check_case(cfg, case) == predict_cycles(cfg, case.layer, case.tokens), case.name
    if share:
        msq = random_case(cfg, n=16, k=20, m=3, seed=33)
        assert check_case(cfg, msq) == predict_cycles(cfg, msq.layer, msq.tokens)


def test_multi_precision_int8_build_runs_w4_pairs():
    """The same rule one width up: an INT8 array (b = 8, no ReCoN) with --multi-precision runs a W8
    layer and a W4 layer (two 4-bit slots per PE)."""
    cfg = pair_build(share=0, acc_bits=48).replace(wbits=8)
    for case in (random_uniform_case(cfg, n=16, k=40, m=5, seed=35), half_uniform_case(cfg, n=16, k=40, m=5, seed=36)):
        assert check_case(cfg, case) == predict_cycles(cfg, case.layer, case.tokens), case.name


def test_multi_precision_w2_halves_the_cycles():
    """M = 4R tokens, K = 4G: the W2 layer takes half the K-tiles (4 instead of 8 per N-tile): 169
    RTL cycles against 297, the model's exactly (the fixed pipeline fill keeps it above 0.5)."""
    cfg = pair_build(group=8, max_tokens=16)
    w4 = random_uniform_case(cfg, n=16, k=32, m=16, seed=41)
    w2 = half_uniform_case(cfg, n=16, k=32, m=16, seed=42)
    c4, c2 = check_case(cfg, w4), check_case(cfg, w2)
    assert (c4, c2) == (predict_cycles(cfg, w4.layer, 16), predict_cycles(cfg, w2.layer, 16)) == (297, 169)


def test_multi_precision_w2_back_pressure():
    cfg = pair_build()
    check_case(cfg, half_uniform_case(cfg, n=16, k=32, m=5, seed=51), pause=0.3, seed=52)


@pytest.mark.parametrize("share", [1, 2], ids=lambda s: f"recon{s}")
def test_multi_precision_msq_w2_w4_and_uniform_w2_on_one_build(share):
    """MicroScopiQ at b = 2 (one slot per PE), MicroScopiQ at b = 4 and uniform W2 (pairs) on one
    build, back to back, each bit-exact against the golden model of its own format, in the cycles
    the model predicts."""
    cfg = pair_build(share)
    for case in (half_msq_case(cfg, n=16, k=20, m=3, seed=61, outlier_rate=0.6),
                 random_case(cfg, n=16, k=20, m=3, seed=62), half_uniform_case(cfg, n=16, k=20, m=3, seed=63)):
        assert check_case(cfg, case) == predict_cycles(cfg, case.layer, case.tokens), case.name


def test_multi_precision_msq_w2_pairs():
    """A MicroScopiQ pair pass (b = 2, two K rows per PE row: each K-group's outlier rows in the
    network slots, the inlier slots' products beside ReCoN) beside a narrow pass of a layer with a
    K-group of more than G/2 outlier rows; sizes not multiples of R, C or G, M > max_tokens, with
    back-pressure; bit-exact, in the predicted cycles."""
    cfg = pair_build()
    pairs = half_msq_case(cfg, n=19, k=37, m=11, seed=64, outlier_rate=0.2)
    narrow = half_msq_case(cfg, n=16, k=20, m=3, seed=61, outlier_rate=0.6)
    assert (layer_pairs(cfg, pairs.layer), layer_pairs(cfg, narrow.layer)) == (True, False)
    for case in (pairs, narrow):
        assert check_case(cfg, case) == predict_cycles(cfg, case.layer, case.tokens), case.name
    check_case(cfg, pairs, pause=0.3, seed=65)


def test_multi_precision_msq_w2_pairs_halve_the_cycles():
    """M = 4R tokens, K = 4G: the MicroScopiQ W2 pair pass takes half the K-tiles of the W4 layer,
    in the cycles the model predicts."""
    cfg = pair_build(group=8, max_tokens=16)
    w4 = random_case(cfg, n=16, k=32, m=16, seed=66, outlier_rate=0.3)
    w2 = half_msq_case(cfg, n=16, k=32, m=16, seed=67, outlier_rate=0.3)
    assert layer_pairs(cfg, w2.layer)
    c4, c2 = check_case(cfg, w4), check_case(cfg, w2)
    assert (c4, c2) == (predict_cycles(cfg, w4.layer, 16), predict_cycles(cfg, w2.layer, 16))
    assert c2 < 0.6 * c4, (c4, c2)


#: Layers of the mixed MiniLM plan at budget 3.0 (docs/quantization.md, "Mixed precision"): the
#: FFN-up of block 0 at b = 4, the FFN-down of block 3 at b = 2.
MIXED_PLAN_LAYERS = {4: "0.model.encoder.layer.0.intermediate.dense", 2: "0.model.encoder.layer.3.output.dense"}


def test_mixed_minilm_layers_on_one_8x8_build():
    """Real MiniLM layers quantized by MicroScopiQ at each b of the mixed plan (top-left 8 x 128
    sub-blocks, two real input rows) run back to back on one 8x8 W4 multi-precision build, bit-exact,
    in the predicted cycles (the whole plan: make bench-mixed-run)."""
    cfg = PRESETS["8x8-b4"].replace(multi_precision=True, max_tokens=4, max_k=256, max_n=64)
    for b, name in MIXED_PLAN_LAYERS.items():
        case = minilm_case(cfg.replace(wbits=b, multi_precision=False), n=8, k=128, m=2, seed=71, layer_name=name)
        assert case.layer.fmt.wbits == b and (np.asarray(case.layer.roles) != 0).any(), name
        assert check_case(cfg, case) == predict_cycles(cfg, case.layer, case.tokens), name


def test_multi_precision_refused_layers():
    cfg = pair_build()
    w2_msq = random_case(cfg.replace(wbits=2, multi_precision=False, recon_share=0), n=8, k=16, m=1, seed=1)
    with pytest.raises(StreamError, match=r"^layer format .*wbits=2.* differs from the accelerator's "):
        check_layer(cfg.replace(recon_share=0), w2_msq.layer)     # MicroScopiQ at b/2 needs ReCoN
    other_x = random_case(cfg.replace(wbits=2, xbits=3, multi_precision=False), n=8, k=16, m=1, seed=1)
    with pytest.raises(StreamError, match=r"^layer format .*xbits=3.* differs from the accelerator's "):
        check_layer(cfg, other_x.layer)       # only b may differ from the build's format
    plain = cfg.replace(multi_precision=False)
    w2 = half_uniform_case(cfg, n=8, k=16, m=1, seed=2)
    with pytest.raises(StreamError, match=r"^layer format .*wbits=2.* differs from the accelerator's "):
        encode_layer(plain, w2.layer, w2.x)
