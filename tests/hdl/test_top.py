"""Whole layers through the AXI4-Stream top level (amaranth.sim), compared with the golden model."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.hdl.stream_format import (Beat, decode_results, encode_layer, expected_results,
                                           predict_cycles, result_beat_count)
from microscopiq.hdl.top import Accelerator
from microscopiq.tb.stimulus import random_case, random_uniform_case, full_outlier_case


class Harness:
    """Drives an :class:`Accelerator` in amaranth.sim: a source per input stream and a sink, each
    with its own seeded idle/back-pressure pattern (probability of a pause per cycle)."""

    def __init__(self, cfg, pause=0.0, seed=0):
        self.cfg = cfg
        self.dut = Accelerator(cfg)
        self.pause = pause
        self.rng = np.random.default_rng(seed)

    def _idle(self):
        return self.pause and self.rng.random() < self.pause

    async def _source(self, ctx, prefix, beats):
        dut = self.dut
        for beat in beats:
            while self._idle():
                ctx.set(getattr(dut, f"{prefix}_tvalid"), 0)
                await ctx.tick()
            ctx.set(getattr(dut, f"{prefix}_tdata"), beat.data)
            ctx.set(getattr(dut, f"{prefix}_tlast"), beat.last)
            ctx.set(getattr(dut, f"{prefix}_tvalid"), 1)
            await ctx.tick().until(getattr(dut, f"{prefix}_tready"))
        ctx.set(getattr(dut, f"{prefix}_tvalid"), 0)

    async def _sink(self, ctx, count, out):
        dut = self.dut
        while len(out) < count:
            ready = not self._idle()
            ctx.set(dut.m_axis_result_tready, ready)
            _, _, valid, data, last = await ctx.tick().sample(
                dut.m_axis_result_tvalid, dut.m_axis_result_tdata, dut.m_axis_result_tlast)
            if ready and valid:
                out.append(Beat(data, bool(last)))
        ctx.set(dut.m_axis_result_tready, 0)

    def run(self, weights, acts, count, reset_after=None):
        """Stream the beats; return (result beats, cycles from the first weights handshake to the
        last result handshake, both included)."""
        dut = self.dut
        out = []
        clock = {}
        sim = Simulator(dut)
        sim.add_clock(1e-8)

        async def weights_tb(ctx):
            await self._source(ctx, "s_axis_weights", weights)

        async def acts_tb(ctx):
            await self._source(ctx, "s_axis_act", acts)

        async def sink_tb(ctx):
            await self._sink(ctx, count, out)

        async def counter(ctx):
            cycle = 0
            async for _, _, wv, wr, rv, rr in ctx.tick().sample(
                    dut.s_axis_weights_tvalid, dut.s_axis_weights_tready,
                    dut.m_axis_result_tvalid, dut.m_axis_result_tready):
                if wv and wr:
                    clock.setdefault("first", cycle)
                if rv and rr:
                    clock["last"] = cycle
                cycle += 1

        sim.add_testbench(weights_tb, background=True)
        sim.add_testbench(acts_tb, background=True)
        sim.add_testbench(counter, background=True)
        sim.add_testbench(sink_tb)
        sim.run()
        return out, clock["last"] - clock["first"] + 1


def check_case(cfg, case, pause=0.0, seed=0, cycles_expected=None):
    print(f"case: {case.name}, pause={pause}, seed={seed}")
    weights, acts = encode_layer(cfg, case.layer, case.x)
    count = result_beat_count(cfg, case.layer, case.tokens)
    harness = Harness(cfg, pause, seed)
    beats, cycles = harness.run(weights, acts, count)
    got = decode_results(cfg, case.layer, case.tokens, beats)
    want = expected_results(cfg, case.layer, case.x)
    for name, g, w in zip(("first", "second"), got, want):
        bad = np.argwhere(g != w)
        if len(bad):
            index = tuple(int(i) for i in bad[0])
            pytest.fail(f"{case.name}: {name} output mismatch at {index}: expected {w[index]}, got {g[index]}")
    return cycles


def test_uniform_none_smoke():
    cfg = AccelConfig(fmt=FormatConfig(wbits=4, group=8), rows=4, cols=8, recon_share=0, max_tokens=4, max_k=64)
    case = random_uniform_case(cfg, n=12, k=13, m=5, seed=1)
    check_case(cfg, case)


def test_msq_per_row_smoke():
    cfg = AccelConfig(fmt=FormatConfig(wbits=4, group=8), rows=4, cols=8, recon_share=1, max_tokens=4, max_k=64)
    case = random_case(cfg, n=12, k=13, m=5, seed=1)
    check_case(cfg, case)
