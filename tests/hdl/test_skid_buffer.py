"""The two-entry skid and slot buffers (hdl/skid_buffer.py): every payload in order under random bubbles and
back-pressure; one cycle of latency and one payload per cycle; ``i.ready`` a register."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from amaranth import unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from microscopiq.hdl.skid_buffer import SkidBuffer, SlotBuffer
from microscopiq.tb.sim_streams import stream_through

LAYOUT = data.StructLayout({"row": unsigned(3), "value": unsigned(12)})


def fast(*names):
    """A slot buffer holding the fields ``names`` in flip-flops."""
    buffer = functools.partial(SlotBuffer, fast=names)
    buffer.__name__ = f"SlotBuffer(fast={names})"
    return buffer


#: The buffers: the same ports and cycle-by-cycle behaviour.
BUFFERS = pytest.mark.parametrize("buffer", [SkidBuffer, SlotBuffer, fast("row"), fast("row", "value")],
                                  ids=lambda buffer: buffer.__name__)


@BUFFERS
@pytest.mark.parametrize("pause", [0.0, 0.3, 0.7])
def test_in_order_under_pauses(buffer, pause):
    seed = int(pause * 10) + 1
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    payloads = [{"row": int(r), "value": int(v)} for r, v in zip(rng.integers(0, 8, 200), rng.integers(0, 4096, 200))]
    got = stream_through(buffer(LAYOUT), payloads, len(payloads), rng, pause=pause,
                         sample=lambda beat: {"row": int(beat.row), "value": int(beat.value)})
    for index, (g, w) in enumerate(zip(got, payloads)):
        assert g == w, f"payload {index}: expected {w}, got {g}"


@BUFFERS
def test_latency_throughput_and_registered_ready(buffer):
    """Always-ready output: a payload per cycle, each one cycle after it was taken. Output held:
    two are taken, then ``i.ready`` is 0 in the same cycle that ``o.ready`` rises (a register)."""
    dut = buffer(LAYOUT)
    seen = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for value in range(5):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, {"row": 0, "value": value})
            _, _, ready, o_valid, o_payload = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
            assert ready == 1
            seen.append(int(o_payload.value) if o_valid else None)
        ctx.set(dut.i.valid, 0)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload.value) == 4
        await ctx.tick()
        ctx.set(dut.o.ready, 0)
        taken = 0
        for value in range(3):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, {"row": 1, "value": 10 + value})
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            taken += ready
        assert taken == 2 and ctx.get(dut.i.ready) == 0
        ctx.set(dut.o.ready, 1)
        assert ctx.get(dut.i.ready) == 0 and ctx.get(dut.o.payload.value) == 10
        await ctx.tick()
        assert ctx.get(dut.o.payload.value) == 11 and ctx.get(dut.i.ready) == 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [None, 0, 1, 2, 3], seen


def _trace(buffer, valid, ready, values) -> list:
    """``(i.ready, o.valid, o.payload if valid)`` of ``buffer(LAYOUT)`` in every cycle under the
    given ``i.valid``, ``o.ready`` and ``i.payload`` sequences (independent of the buffer)."""
    dut = buffer(LAYOUT)
    trace = []

    async def bench(ctx):
        for v, r, value in zip(valid, ready, values):
            ctx.set(dut.i.valid, int(v))
            ctx.set(dut.o.ready, int(r))
            ctx.set(dut.i.payload, {"row": 0, "value": int(value)})
            _, _, i_ready, o_valid, o_payload = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
            trace.append((i_ready, o_valid, int(o_payload.value) if o_valid else None))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return trace


@pytest.mark.parametrize("buffer", [SlotBuffer, fast("value")], ids=lambda buffer: buffer.__name__)
def test_slot_buffer_cycle_for_cycle_a_skid_buffer(buffer):
    """The slot buffer's ``i.ready``, ``o.valid`` and valid ``o.payload`` (from its LUT RAM or its
    flip-flops) equal the skid buffer's in every cycle of a random run (so swapping one for the
    other changes no cycle count)."""
    seed = 7
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    cycles = 2000
    valid, ready, values = rng.random(cycles) < 0.6, rng.random(cycles) < 0.5, rng.integers(0, 4096, cycles)
    skid, slot = _trace(SkidBuffer, valid, ready, values), _trace(buffer, valid, ready, values)
    for cycle, (want, got) in enumerate(zip(skid, slot)):
        assert got == want, f"cycle {cycle}: skid buffer (i.ready, o.valid, o.payload) {want}, slot buffer {got}"


@BUFFERS
def test_refuses_a_non_layout(buffer):
    with pytest.raises(TypeError, match=r"^layout must be an amaranth\.lib\.data\.Layout, not 8$"):
        buffer(8)


def test_slot_buffer_refuses_fast_fields_not_in_the_layout():
    with pytest.raises(ValueError, match=r"^fast fields \('row', 'col'\) are not all fields of "):
        SlotBuffer(LAYOUT, fast=("row", "col"))
