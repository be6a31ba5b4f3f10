"""The post-processing unit against ``golden.mx_accumulate`` and ``golden.uniform_raw``: random
partial sums, saturation both ways with the sticky flag, shifts 0 to 255, raw mode, the same token
as close as the PPU allows (M = 2 without a gap between tiles, M = 1 one cycle apart) under
back-pressure, the latency, and the narrow shift with its fit test exhaustively on small words."""

from __future__ import annotations

import re

import numpy as np
import pytest
from amaranth import Module, Signal, signed
from amaranth.sim import Simulator

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.hdl.layouts import StreamLayouts
from microscopiq.hdl.ppu import PPU, fit_mask, narrow_shift, shift_beyond
from microscopiq.host.stream_format import from_beat
from microscopiq.quant import golden
from microscopiq.tb.sim_streams import step, stream_put


def run_ppu(cfg, tile_sums, act_sums, shifts, raw, seed, stall=0.0, gapless=False):
    """Feed K-tile column sums ``tile_sums`` (K-tiles, M, C) and act sums (K-tiles, M) for one
    N-tile, with ``shifts`` (groups, C); return the result words in order.

    ``gapless``: the next tile's shifts load with a tile's last token and the next tile follows
    in the next cycle, instead of one idle cycle apart; but the same ``m`` never enters in two
    consecutive enabled cycles (the PPU's rule: at M = 1 the tiles stay one idle cycle apart)."""
    dut = PPU(cfg)
    rng = np.random.default_rng(seed)
    k_tiles, tokens, cols = tile_sums.shape
    per_group = cfg.fmt.group // cfg.rows
    expected_beats = tokens * (k_tiles // per_group if raw else 1)
    words = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    def load(ctx, t):
        ctx.set(dut.shift_load, {"valid": 1, "d": [int(v) for v in shifts[t // per_group]]})

    async def driver(ctx):
        ctx.set(dut.raw, raw)
        for t in range(k_tiles):
            if not gapless or t == 0:
                load(ctx, t)
                await ctx.tick()
                ctx.set(dut.shift_load.valid, 0)
            for m in range(tokens):
                place = t % per_group
                tag = {"m": m, "group_first": place == 0, "group_last": place == per_group - 1,
                       "k_first": t == 0, "k_last": t == k_tiles - 1,
                       "last": t == k_tiles - 1 and m == tokens - 1}
                if gapless and tokens == 1 and t > 0:
                    await step(ctx, dut.en)            # one idle cycle: m = 0 may not follow itself
                if gapless and m == tokens - 1 and t + 1 < k_tiles:
                    load(ctx, t + 1)
                # Held until the pipeline moves (an enabled edge).
                await stream_put(ctx, dut.inp, {"first": m == 0, "tag": tag, "sums": [
                    int(v) for v in tile_sums[t, m]], "act_sum": int(act_sums[t, m])}, en=dut.en)
                ctx.set(dut.shift_load.valid, 0)

    async def sink(ctx):
        while len(words) < expected_beats:
            ready = not (stall and rng.random() < stall)
            # The controller's rule: everything advances when the output register can move (the
            # PPU's result is always_ready: a consumer that refuses a beat holds en low).
            ctx.set(dut.en, (not ctx.get(dut.result.valid)) or ready)
            _, _, valid, payload = await ctx.tick().sample(dut.result.valid, dut.result.payload)
            if valid and ready:
                words.append((int(payload.data), bool(payload.last)))

    sim.add_testbench(driver, background=True)
    sim.add_testbench(sink)
    sim.run()
    assert words[-1][1] and not any(last for _, last in words[:-1]), "tlast only on the last beat"
    return [w for w, _ in words]


def _first_mismatch(got, want, what):
    bad = np.argwhere(got != want)
    if len(bad):
        index = tuple(int(i) for i in bad[0])
        pytest.fail(f"{what} mismatch at (m, n)={index}: expected {int(want[index])}, got {int(got[index])}")


def _cfg(acc_bits=32, rows=4, group=8):
    return AccelConfig(fmt=FormatConfig(group=group), rows=rows, cols=8, acc_bits=acc_bits,
                       max_tokens=8, max_k=64 if acc_bits >= 22 else rows)


def _random_tiles(cfg, rng, k_tiles, tokens, scale_bits):
    limit = 1 << scale_bits
    sums = rng.integers(-limit, limit, size=(k_tiles, tokens, cfg.cols))
    acts = rng.integers(-cfg.fmt.act_bound * cfg.rows, cfg.fmt.act_bound * cfg.rows, size=(k_tiles, tokens))
    return sums, acts


def check_msq(cfg, sums, acts, shifts, seed, stall=0.0, gapless=False):
    print(f"seed={seed} acc_bits={cfg.acc_bits} shifts max={shifts.max()} stall={stall} gapless={gapless}")
    words = run_ppu(cfg, sums, acts, shifts, raw=False, seed=seed, stall=stall, gapless=gapless)
    per_group = cfg.fmt.group // cfg.rows
    k_tiles, tokens, cols = sums.shape
    partial = sums.reshape(-1, per_group, tokens, cols).sum(axis=1).transpose(1, 2, 0)   # (M, C, groups)
    # mx_accumulate takes exponents; E = d with E_min = 0 gives shifts d (min 0 per row ensured).
    want = golden.mx_accumulate(partial, shifts.T, cfg.acc_bits)
    beats = [from_beat(StreamLayouts(cfg).msq_result, w) for w in words]
    got_y = np.array([[int(v) for v in beat.y_int] for beat in beats])
    got_o = np.array([[int(v) for v in beat.overflow] for beat in beats]).astype(bool)
    _first_mismatch(got_y, want.y_int, "y_int")
    _first_mismatch(got_o, want.overflow, "overflow")
    return want.overflow


def _shifts(rng, groups, cols, high):
    shifts = rng.integers(0, high + 1, size=(groups, cols))
    shifts[rng.integers(0, groups), :] = 0         # E_min: every column has a group with d = 0
    shifts[0, :] = 0
    return shifts


@pytest.mark.parametrize("seed", [1, 2])
def test_msq_random(seed):
    cfg = _cfg()
    rng = np.random.default_rng(seed)
    sums, acts = _random_tiles(cfg, rng, 6, 5, 20)
    check_msq(cfg, sums, acts, _shifts(rng, 3, cfg.cols, 8), seed)


def test_saturation_both_ways_and_large_shifts():
    """acc_bits = 18: partial sums near the range and shifts 0 … 255 saturate up and down; a later
    group pulls the sum back in range but the flag stays set."""
    seed = 3
    cfg = _cfg(acc_bits=18, rows=4, group=4)
    rng = np.random.default_rng(seed)
    k_tiles, tokens = 4, 8
    sums, acts = _random_tiles(cfg, rng, k_tiles, tokens, 17)
    sums[1, :4] = -sums[0, :4]                     # return to range after a clamp
    sums[2, 2] = 0                                 # P = 0 with a huge shift: no overflow
    sums[2, 3] = 1                                 # P = 1 shifted by 255: saturates
    sums[2, 4] = -1
    shifts = np.zeros((k_tiles, cfg.cols), np.int64)
    shifts[2] = [255, 17, 16, 15, 14, 1, 200, 64]
    shifts[3] = rng.integers(0, 3, size=cfg.cols)
    overflow = check_msq(cfg, sums, acts, shifts, seed)
    assert overflow.any() and not overflow.all()


def check_raw(cfg, sums, acts, seed, stall=0.0, gapless=False):
    print(f"seed={seed} stall={stall} gapless={gapless}")
    per_group = cfg.fmt.group // cfg.rows
    k_tiles, tokens, _ = sums.shape
    shifts = np.zeros((k_tiles // per_group, cfg.cols), np.int64)
    words = run_ppu(cfg, sums, acts, shifts, raw=True, seed=seed, stall=stall, gapless=gapless)
    p = sums.reshape(-1, per_group, tokens, cfg.cols).sum(axis=1)      # (groups, M, C)
    s = acts.reshape(-1, per_group, tokens).sum(axis=1)
    beats = [from_beat(StreamLayouts(cfg).raw_result, w) for w in words]
    got_p = np.array([[int(v) for v in beat.p] for beat in beats]).reshape(p.shape)
    got_s = np.array([int(beat.s) for beat in beats])
    _first_mismatch(got_p.reshape(-1, cfg.cols), p.reshape(-1, cfg.cols), "P")
    _first_mismatch(got_s, s.reshape(-1), "S")


def test_raw_mode():
    seed = 4
    cfg = _cfg(rows=4, group=8)
    sums, acts = _random_tiles(cfg, np.random.default_rng(seed), 4, 6, 24)
    check_raw(cfg, sums, acts, seed, stall=0.3)


def test_stalls():
    seed = 5
    cfg = _cfg()
    rng = np.random.default_rng(seed)
    sums, acts = _random_tiles(cfg, rng, 4, 7, 30)
    check_msq(cfg, sums, acts, _shifts(rng, 2, cfg.cols, 12), seed, stall=0.5)


@pytest.mark.parametrize("tokens", [1, 2, 3])
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_same_token_back_to_back(tokens, stall):
    """M = 2 or 3 with no gap between tiles and M = 1 one cycle apart: a token re-enters while its
    previous K-tile's update is still in the pipeline (P every cycle, the accumulator at every
    group end: groups of one K-tile), with and without back-pressure; acc_bits = 18 so the
    saturation path runs too. A token two cycles behind its previous visit takes the accumulator
    write of the current cycle, three cycles behind the one of the cycle of its early read
    (:func:`~microscopiq.hdl.ppu.read_ahead`)."""
    seed = 6 + tokens
    cfg = _cfg(acc_bits=18, rows=4, group=4)
    rng = np.random.default_rng(seed)
    sums, acts = _random_tiles(cfg, rng, 8, tokens, 15)
    overflow = check_msq(cfg, sums, acts, _shifts(rng, 8, cfg.cols, 3), seed, stall=stall, gapless=True)
    assert overflow.any() and not overflow.all()


@pytest.mark.parametrize("tokens", [1, 2])
def test_same_token_back_to_back_groups(tokens):
    """K-groups of two K-tiles without gaps (M = 1: one cycle apart): ``P`` carries across tiles of a
    group, in both modes."""
    seed = 8 + tokens
    cfg = _cfg(rows=4, group=8)
    rng = np.random.default_rng(seed)
    sums, acts = _random_tiles(cfg, rng, 6, tokens, 20)
    check_msq(cfg, sums, acts, _shifts(rng, 3, cfg.cols, 8), seed, stall=0.3, gapless=True)
    check_raw(cfg, sums, acts, seed, stall=0.3, gapless=True)


def test_latency():
    """A token's result beat is valid exactly ``PPU.latency`` enabled cycles after it entered,
    and a stall (``en`` = 0) in between delays it by exactly the stalled cycles."""
    cfg = _cfg()
    dut = PPU(cfg)
    tag = {"m": 3, "group_first": 1, "group_last": 1, "k_first": 1, "k_last": 1, "last": 1}
    seen = {}

    async def bench(ctx):
        for stalled in (0, 2):
            ctx.set(dut.en, 1)
            await stream_put(ctx, dut.inp, {"first": 1, "tag": tag, "sums": [5] * cfg.cols, "act_sum": 1},
                             en=dut.en)
            ctx.set(dut.en, 0)                 # the token is in stage 2 while en is low
            for _ in range(stalled):
                await ctx.tick()
            ctx.set(dut.en, 1)
            cycles = 1 + stalled
            while not ctx.get(dut.result.valid):
                await ctx.tick()
                cycles += 1
            seen[stalled] = cycles
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {0: PPU.latency, 2: PPU.latency + 2}


@pytest.mark.parametrize("partial_bits, wide", [(7, 5), (4, 7)])
def test_narrow_shift_and_fit_exhaustive(partial_bits, wide):
    """Every ``partial`` of a 7-bit word into 5 bits (the bits above the word decide the fit) and of
    a 4-bit word into 7 (sign-extended), every shift up to 2 · wide: the shifted low bits when the
    value fits, ``beyond`` exactly when a nonzero ``partial << d`` leaves ``wide`` signed bits."""
    m = Module()
    partial = Signal(signed(partial_bits))
    small = Signal(range(wide))
    huge = Signal()
    shifted = narrow_shift(m, partial, small, wide)
    beyond = Signal()
    m.d.comb += beyond.eq(shift_beyond(m, partial, fit_mask(m, small, huge, partial_bits, wide), huge))
    low, high = -(1 << (wide - 1)), (1 << (wide - 1)) - 1

    async def bench(ctx):
        for value in range(-(1 << (partial_bits - 1)), 1 << (partial_bits - 1)):
            for d in range(2 * wide):
                ctx.set(partial, value)
                ctx.set(small, d & ((1 << len(small)) - 1))    # the PPU's small: d's low bits
                ctx.set(huge, d >= wide)
                want_beyond = not low <= value << d <= high
                got_beyond = ctx.get(beyond)
                assert got_beyond == want_beyond, f"partial={value} d={d}: beyond expected {want_beyond}, got {got_beyond}"
                if not want_beyond:
                    assert ctx.get(shifted) == value << d, \
                        f"partial={value} d={d}: expected {value << d}, got {ctx.get(shifted)}"

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_memory_ports_per_column(replica_wires):
    """Each column's memories are addressed and written by its own copies of the stages' token
    fields (stage 1: index and clear; 2: valid and index; 3: index; 3b: clear; 5: valid and index),
    marked REPLICA: 8 per column, 64 on the 8×8 (the memory ports they drive carry the mark too)."""
    fields = ("s1_addr", "s1_clear", "s2_valid", "s2_addr", "s3_addr", "s3b_clear", "s5_valid", "s5_addr")
    copies = {name for name in replica_wires(PPU(AccelConfig())) if re.fullmatch(r"s\d+b?_[a-z]+_\d+", name)}
    assert copies == {f"{field}_{c}" for field in fields for c in range(8)}
