"""Small async helpers shared by the Amaranth simulation tests (``tests/hdl``), in the manner of
Glasgow's ``gateware/stream.py``: put a payload on a stream, take one off, wait for an enabled edge.

A block of this project that never stalls has ``always_ready`` streams and a clock enable ``en``
instead: pass it as ``en`` and a transfer happens at the next edge with ``en`` high.
"""

from __future__ import annotations

from amaranth import Const, Value

__all__ = ["step", "stream_put", "stream_get", "stream_through", "stream_run"]


def _handshake(flag, en):
    return flag if en is None else Value.cast(flag) & en


async def step(ctx, en) -> None:
    """Wait for the next clock edge at which ``en`` is high (a stalled block ignores its inputs)."""
    await ctx.tick().until(en)


#: Cycles ``stream_through`` and ``stream_run`` wait for one handshake before they fail: a block
#: that stops taking or giving beats fails its test with the beat it stopped at, instead of hanging.
PATIENCE = 5000


async def _until(ctx, condition, within, what: str, *sampled):
    """The next clock edge at which ``condition`` holds, and the values of ``sampled`` there; with
    ``within`` a number of edges, an ``AssertionError`` naming ``what`` if none comes by then."""
    if within is None:
        return await ctx.tick().sample(*sampled).until(condition)
    for _ in range(within):
        _, _, *values, done = await ctx.tick().sample(*sampled, condition)
        if done:
            return values
    raise AssertionError(f"{what}: no handshake within {within} cycles")


async def stream_put(ctx, stream, payload, *, en=None, within=None, what="beat") -> None:
    """Offer ``payload`` on ``stream`` until it is taken (``ready``, and ``en`` if given), failing
    after ``within`` cycles if given."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await _until(ctx, _handshake(stream.ready, en), within, f"{what} not taken")
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, *, en=None, within=None, what="beat"):
    """Take the next payload off ``stream`` (raising ``ready`` unless it is ``always_ready``),
    failing after ``within`` cycles if given."""
    settable = not isinstance(stream.ready, Const)
    if settable:
        ctx.set(stream.ready, 1)
    payload, = await _until(ctx, _handshake(stream.valid, en), within, f"{what} not given", stream.payload)
    if settable:
        ctx.set(stream.ready, 0)
    return payload


def stream_through(dut, payloads, wanted: int, rng, *, pause: float = 0.25, sample=lambda beat: beat) -> list:
    """Simulate the stream block ``dut`` (ports ``i`` and ``o``): offer ``payloads`` on ``i`` and
    take ``wanted`` beats off ``o``, each side idle before a beat with probability ``pause`` (drawn
    from the NumPy generator ``rng``); return ``sample(beat)`` of every output beat, in order."""
    from amaranth.sim import Simulator
    outputs = []
    idle_in, idle_out = rng.random(len(payloads)) < pause, rng.random(max(wanted, 1)) < pause

    async def producer(ctx):
        for index, payload in enumerate(payloads):
            if idle_in[index]:
                await ctx.tick()
            await stream_put(ctx, dut.i, payload, within=PATIENCE, what=f"input beat {index}")

    async def consumer(ctx):
        for index in range(wanted):
            if idle_out[index]:
                await ctx.tick()
            outputs.append(sample(await stream_get(ctx, dut.o, within=PATIENCE, what=f"output beat {index} of {wanted}")))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return outputs


def stream_run(dut, source, payloads, sinks: dict, rng, *, pause: float = 0.3, tail: int = 64,
               watch=None) -> dict:
    """Simulate ``dut``: offer ``payloads`` on its stream ``source`` (idle before a beat with
    probability ``pause``), and every cycle make each stream of ``sinks`` (name: stream) ready with
    probability ``1 - pause``, for ``tail`` cycles after the last payload; return per sink the
    integer payloads taken, in order, and under ``"watch"`` the nonzero values of the signal
    ``watch`` cycle by cycle."""
    from amaranth.sim import Simulator
    got = {name: [] for name in sinks}
    got["watch"] = []

    async def producer(ctx):
        for index, payload in enumerate(payloads):
            if rng.random() < pause:
                await ctx.tick()
            await stream_put(ctx, source, payload, within=PATIENCE, what=f"input beat {index}")
        await ctx.tick().repeat(tail)

    async def consumers(ctx):
        watched = [watch] if watch is not None else []
        while True:
            ready = {name: rng.random() >= pause for name in sinks}
            for name, port in sinks.items():
                ctx.set(port.ready, ready[name])
            _, _, *sampled = await ctx.tick().sample(
                *watched, *(v for port in sinks.values() for v in (port.valid, port.payload)))
            if watched:
                value = sampled.pop(0)
                if (value := int(getattr(value, "value", value))):       # an enum member or an int
                    got["watch"].append(value)
            for index, name in enumerate(sinks):
                valid, payload = sampled[2 * index:2 * index + 2]
                if valid and ready[name]:
                    got[name].append(payload.as_value().value)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumers, background=True)
    sim.run()
    return got
