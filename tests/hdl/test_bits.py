"""``field_at`` against Python's integers: every offset of a 6-bit value, variable and fixed, one
bit and three; ``at_least``, ``below`` and ``residue_is`` against Python's ``>=``, ``<`` and ``%``
for every 4-bit value and constant (powers of two and others, moduli wider than the value)."""

from __future__ import annotations

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from microscopiq.hdl.bits import at_least, below, field_at, residue_is


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


def _check_every_value(compared: dict, want, name: str):
    """``compared``: ``constants -> value`` of a 4-bit ``value`` signal; each against ``want``."""
    m = Module()
    value = Signal(4)
    outputs = {constants: helper(value) for constants, helper in compared.items()}

    async def bench(ctx):
        for number in range(16):
            ctx.set(value, number)
            for constants, holds in outputs.items():
                expected = int(want(number, *constants))
                assert ctx.get(holds) == expected, f"{name}({number}, {constants}): expected {expected}, got {ctx.get(holds)}"

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("name, helper, want", [
    ("at_least", at_least, lambda number, constant: number >= constant),
    ("below", below, lambda number, constant: number < constant),
])
def test_comparison_every_value_and_constant(name, helper, want):
    compared = {(constant,): lambda value, constant=constant: helper(value, constant) for constant in range(34)}
    _check_every_value(compared, want, name)


def test_residue_every_value_modulus_and_residue():
    compared = {(modulus, residue): lambda value, modulus=modulus, residue=residue: residue_is(value, modulus, residue)
                for modulus in range(1, 34) for residue in range(modulus)}
    _check_every_value(compared, lambda number, modulus, residue: number % modulus == residue, "residue_is")
