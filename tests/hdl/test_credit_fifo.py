"""The credit FIFO (hdl/credit_fifo.py) against a Python queue, cycle by cycle: a writer that keeps
count (it writes only while fewer than ``depth`` entries are held or one leaves) and a reader
that pauses at random; ``level``, ``w_stream.ready`` (not full, and each lane's copy),
``r_stream.valid`` and the oldest entry checked in every cycle, with the entry in one memory or
split into lanes."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from amaranth.sim import Simulator

from microscopiq.hdl.credit_fifo import CreditFIFO

WIDTH = 12


@pytest.mark.parametrize("depth, seed, lanes", [(1, 1, 1), (6, 2, 1), (16, 3, 1), (26, 4, 1),
                                                (1, 5, 3), (6, 6, 5), (16, 7, 12)])
def test_matches_a_queue(depth, seed, lanes):
    print(f"depth={depth} seed={seed} lanes={lanes}")
    rng = np.random.default_rng(seed)
    dut = CreditFIFO(WIDTH, depth, lanes)
    model: deque[int] = deque()
    cycles = 400
    seen = {"full": 0, "empty": 0}    # not vacuous: the queue runs full and empty

    async def bench(ctx):
        for cycle in range(cycles):
            level, ready, valid = ctx.get(dut.level), ctx.get(dut.w_stream.ready), ctx.get(dut.r_stream.valid)
            assert (level, ready, valid) == (len(model), int(len(model) < depth), int(bool(model))), \
                f"cycle {cycle}: level/ready/valid {(level, ready, valid)}, expected " \
                f"{(len(model), int(len(model) < depth), int(bool(model)))}"
            seen["full"] += len(model) == depth
            seen["empty"] += not model
            if lanes > 1:
                copies = ctx.get(dut.w_rdy_lanes)
                assert copies == ready * ((1 << lanes) - 1), f"cycle {cycle}: lane readies {copies:b}, ready {ready}"
            if model:
                got = ctx.get(dut.r_stream.payload)
                assert got == model[0], f"cycle {cycle}: oldest entry {got}, expected {model[0]}"
            # Phases: mostly filling, then mostly draining, so the queue runs full and empty.
            filling = cycle // 50 % 2 == 0
            take = bool(model) and rng.random() < (0.3 if filling else 0.8)
            room = len(model) < depth or take
            put = room and rng.random() < (0.8 if filling else 0.3)
            value = int(rng.integers(0, 1 << WIDTH))
            ctx.set(dut.r_stream.ready, int(take))
            ctx.set(dut.w_stream.valid, int(put))
            if lanes > 1:
                ctx.set(dut.w_lanes, (1 << lanes) - 1 if put else 0)
            ctx.set(dut.w_stream.payload, value)
            await ctx.tick()
            if take:
                model.popleft()
            if put:
                model.append(value)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen["full"] > 10 and seen["empty"] > 10, seen


@pytest.mark.parametrize("width, depth, lanes", [(0, 4, 1), (8, 0, 1), (8, True, 1), (8, 4, 0)])
def test_bad_parameters_are_refused(width, depth, lanes):
    with pytest.raises(ValueError, match=r"must be a positive integer"):
        CreditFIFO(width, depth, lanes)


def test_more_lanes_than_bits_are_refused():
    with pytest.raises(ValueError, match=r"^lanes must be at most the width \(8\), not 9$"):
        CreditFIFO(8, 4, 9)


def test_lanes_split_the_entry_evenly():
    fifo = CreditFIFO(12, 4, 5)
    fifo._MustUse__silence = True      # only its bounds are looked at
    assert fifo.lane_bounds == [(0, 2), (2, 4), (4, 7), (7, 9), (9, 12)]


def test_a_lane_is_written_by_its_own_enable_alone():
    """``w_lanes`` alone writes each lane: an entry written with lane 1's enable low keeps lane 1's
    bits (4 to 7) of the slot's earlier content (0, the memory's), the other lanes take the payload."""
    dut = CreditFIFO(WIDTH, 4, 3)
    read = []

    async def bench(ctx):
        ctx.set(dut.w_stream.payload, 0xABC)
        ctx.set(dut.w_stream.valid, 1)
        ctx.set(dut.w_lanes, 0b101)
        await ctx.tick()
        ctx.set(dut.w_stream.valid, 0)
        ctx.set(dut.w_lanes, 0)
        read.append((ctx.get(dut.level), ctx.get(dut.r_stream.payload)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert read == [(1, 0xA0C)], [(level, hex(entry)) for level, entry in read]
