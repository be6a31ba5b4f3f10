"""Two helpers every amaranth.sim testbench of an ``amaranth.lib.stream`` port shares (as Glasgow's
``gateware/stream.py``): put one payload, get one payload, each waiting for its handshake."""

from __future__ import annotations

__all__ = ["stream_put", "stream_get"]


async def stream_put(ctx, port, payload) -> None:
    """Offer ``payload`` on the stream ``port`` (an ``In`` stream of the design) until it is taken."""
    ctx.set(port.payload, payload)
    ctx.set(port.valid, 1)
    await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


async def stream_get(ctx, port):
    """Take one payload from the stream ``port`` (an ``Out`` stream of the design)."""
    ctx.set(port.ready, 1)
    payload, = await ctx.tick().sample(port.payload).until(port.valid)
    ctx.set(port.ready, 0)
    return payload
