"""``field_at`` against Python's integers: every offset of a 6-bit value, variable and fixed, one
bit and three; ``at_least`` against Python's ``>=`` for every 4-bit value and constant."""

from __future__ import annotations

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from microscopiq.hdl.bits import at_least, field_at


@pytest.mark.parametrize("width", [1, 3])
def test_field_at_every_offset(width):
    m = Module()
    value, offset = Signal(6), Signal(range(8))
    variable = field_at(m, value, offset, width)
    fixed = {at: field_at(m, value, at, width) for at in range(6)}

    async def bench(ctx):
        for number in range(64):
            ctx.set(value, number)
            for at in range(8):
                ctx.set(offset, at)
                want = (number >> at) & ((1 << width) - 1)
                assert ctx.get(variable) == want, f"value={number} offset={at}: expected {want}, got {ctx.get(variable)}"
                if at in fixed:
                    assert ctx.get(fixed[at]) == want, f"value={number} fixed offset {at}: expected {want}"

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_at_least_every_value_and_constant():
    m = Module()
    value = Signal(4)
    compared = {constant: at_least(value, constant) for constant in range(18)}

    async def bench(ctx):
        for number in range(16):
            ctx.set(value, number)
            for constant, holds in compared.items():
                want = int(number >= constant)
                assert ctx.get(holds) == want, f"{number} >= {constant}: expected {want}, got {ctx.get(holds)}"

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
