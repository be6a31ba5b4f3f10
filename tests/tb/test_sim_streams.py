"""The shared Amaranth stream helpers (tb/sim_streams.py) through a SyncFIFO: every value put comes
out once, in order, with back-pressure (a full FIFO) and with a consumer that raises ``ready``."""

from __future__ import annotations

from amaranth.lib.fifo import SyncFIFO
from amaranth.sim import Simulator

from microscopiq.tb.sim_streams import step, stream_get, stream_put


def test_put_and_get_through_a_fifo():
    fifo = SyncFIFO(width=8, depth=2)
    values = [3, 250, 0, 17, 99]
    got = []

    async def producer(ctx):
        for value in values:
            await stream_put(ctx, fifo.w_stream, value)       # waits while the FIFO is full

    async def consumer(ctx):
        for _ in range(6):
            await step(ctx, 1)                                  # let the FIFO fill first
        for _ in values:
            got.append(await stream_get(ctx, fifo.r_stream))
        assert ctx.get(fifo.r_en) == 0                          # ready dropped after the last one

    sim = Simulator(fifo)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    assert got == values
