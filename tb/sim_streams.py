"""Small async helpers shared by the Amaranth simulation tests (``tests/hdl``), in the manner of
Glasgow's ``gateware/stream.py``: put a payload on a stream, take one off, wait for an enabled edge.

A block of this project that never stalls has ``always_ready`` streams and a clock enable ``en``
instead: pass it as ``en`` and a transfer happens at the next edge with ``en`` high.
"""

from __future__ import annotations

from amaranth import Const, Value

__all__ = ["step", "stream_put", "stream_get"]


def _handshake(flag, en):
    return flag if en is None else Value.cast(flag) & en


async def step(ctx, en) -> None:
    """Wait for the next clock edge at which ``en`` is high (a stalled block ignores its inputs)."""
    await ctx.tick().until(en)


async def stream_put(ctx, stream, payload, *, en=None) -> None:
    """Offer ``payload`` on ``stream`` until it is taken (``ready``, and ``en`` if given)."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(_handshake(stream.ready, en))
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, *, en=None):
    """Take the next payload off ``stream`` (raising ``ready`` unless it is ``always_ready``)."""
    settable = not isinstance(stream.ready, Const)
    if settable:
        ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(_handshake(stream.valid, en))
    if settable:
        ctx.set(stream.ready, 0)
    return payload
