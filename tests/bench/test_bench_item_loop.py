"""bench/bench_item_loop.py's two kernels of the unpacker's item loop hand out the items of a bit
stream exactly: random item lengths up to the unpacker's longest, random gaps in the beats and the
parses, every item compared bit for bit (its ``need`` bits) with the stream it was cut from."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest
from amaranth.sim import Simulator

from microscopiq.config import PRESETS
from microscopiq.hdl.unpacker import UnpackerSizes

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_item_loop.py"
_spec = importlib.util.spec_from_file_location("bench_item_loop", BENCH)
bench = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("bench_item_loop", bench)
_spec.loader.exec_module(bench)

SEED = 20261206
ITEMS = 60


def _run(kind, sizes: UnpackerSizes, lengths: list[int], seed: int) -> tuple[int, list[int], list[int]]:
    """The items ``kind`` hands out for a random stream cut into ``lengths``; returns the stream's
    bits as an integer, the items seen (each masked to its length) and, per item, the cycles from
    the cycle its ``parse`` was driven to the cycle its ``item_valid`` was seen."""
    rng = random.Random(seed)
    total = sum(lengths)
    width = sizes.bus_bits
    stream = rng.getrandbits(total)
    beats = [(stream >> at) & ((1 << width) - 1) for at in range(0, total, width)]
    dut = kind(sizes, lengths[0])
    seen, parse_cycles, delays = [], [], []

    async def driver(ctx):
        held, taken, parsed = 0, 0, 0      # the kernel's state one cycle on (its ports are registered)
        for cycle in range(40 * len(lengths)):
            take = taken < len(beats) and held <= sizes.capacity - width and rng.random() < 0.7
            parse = parsed < len(lengths) and held >= lengths[parsed] and rng.random() < 0.8
            ctx.set(dut.take, take)
            ctx.set(dut.data, beats[taken] if take else rng.getrandbits(width))
            ctx.set(dut.parse, parse)
            ctx.set(dut.next_need, lengths[parsed + 1] if parse and parsed + 1 < len(lengths) else 0)
            held += (width if take else 0) - (lengths[parsed] if parse else 0)
            taken, parsed = taken + take, parsed + parse
            if parse:
                parse_cycles.append(cycle)
            item, valid = (await ctx.tick().sample(dut.item, dut.item_valid))[-2:]
            if valid:
                delays.append(cycle - parse_cycles[len(seen)])
                seen.append(item & ((1 << lengths[len(seen)]) - 1))
            if len(seen) == len(lengths):
                return
        raise AssertionError(f"{kind.__name__}: {len(seen)} of {len(lengths)} items out after "
                             f"{40 * len(lengths)} cycles (seed {seed})")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver)
    sim.run()
    return stream, seen, delays


@pytest.mark.parametrize("kind", [bench.ShiftWindow, bench.RingWindow], ids=lambda kind: kind.__name__)
@pytest.mark.parametrize("preset", ["8x8-b4", "16x16-b4-shared"])
def test_items_cut_from_the_stream(kind, preset):
    sizes = UnpackerSizes(PRESETS[preset], PRESETS[preset].weight_bus)
    rng = random.Random(SEED)
    lengths = [rng.randint(1, sizes.item_bits) for _ in range(ITEMS)]
    print(f"seed {SEED}, {preset}: buffer {sizes.capacity} bits, items up to {sizes.item_bits}")
    stream, seen, delays = _run(kind, sizes, lengths, SEED)
    # (One cycle more than ``latency``: the kernel registers its ports.)
    assert delays == [kind.latency + 1] * ITEMS, f"{kind.__name__}: cycles from parse to item {delays}"
    at = 0
    for index, (length, item) in enumerate(zip(lengths, seen)):
        expected = (stream >> at) & ((1 << length) - 1)
        assert item == expected, (f"{kind.__name__}, item {index} ({length} bits from bit {at}): "
                                  f"expected {expected:#x}, got {item:#x}")
        at += length
