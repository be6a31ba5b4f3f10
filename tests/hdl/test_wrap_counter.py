"""The wrap counter (hdl/wrap_counter.py): under random steps and restarts with random limits,
``count`` runs 0 .. limit and wraps, and the registered ``last`` / ``first`` equal ``count == limit``
/ ``count == 0`` in every cycle; a constant limit likewise from reset."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import Const, Module, Signal
from amaranth.sim import Simulator

from microscopiq.hdl.wrap_counter import WrapCounter


def _run(limit_const: int | None, cycles: int, seed: int):
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    m = Module()
    step, start, new_limit = Signal(), Signal(), Signal(4)
    limit = Const(limit_const, 4) if limit_const is not None else Signal(4)
    counter = WrapCounter(limit, name="c")
    with m.If(start):
        if limit_const is None:
            m.d.sync += limit.eq(new_limit)
        counter.start(m, limit if limit_const is not None else new_limit)
    with m.Elif(step):
        counter.step(m)

    async def bench(ctx):
        model_count, model_limit = 0, limit_const if limit_const is not None else 0
        for cycle in range(cycles):
            count, last, first = ctx.get(counter.count), ctx.get(counter.last), ctx.get(counter.first)
            assert (count, last, first) == (model_count, int(model_count == model_limit), int(model_count == 0)), \
                f"cycle {cycle}: limit {model_limit}, expected count {model_count}, got {count} (last {last}, first {first})"
            restart = limit_const is None and rng.random() < 0.05
            stepping = rng.random() < 0.7
            ctx.set(start, int(restart))
            ctx.set(step, int(stepping))
            if restart:
                model_limit = int(rng.choice([0, 1, 2, int(rng.integers(0, 16))]))
                ctx.set(new_limit, model_limit)
                model_count = 0
            elif stepping:
                model_count = 0 if model_count == model_limit else model_count + 1
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("limit", [0, 1, 2, 7])
def test_constant_limit(limit):
    _run(limit, 200, seed=limit + 1)


def test_register_limit_restarted():
    _run(None, 3000, seed=11)
