"""A counter ``0 .. limit`` that wraps, whose end condition ``count == limit`` is a register.

The core's issuer (tokens, K-tiles, N-tiles of a pass) and the weight front end's merge (rows,
K-tiles, N-tiles) step such counters on a stream handshake, and what they do next depends on
whether a counter is at its limit. Compared in the cycle, ``count == limit`` put a multi-level
comparison between the handshake and the clock enables it drives (on the 8×8 build the issuer's
``token == tokens`` / ``tile_k == k_tiles`` chain was the critical path, 12.65 ns); here ``last``
is computed a cycle ahead, from registers only, whenever ``count`` changes.
"""

from __future__ import annotations

from amaranth import Const, Mux, Signal, Value

__all__ = ["WrapCounter", "step_nested"]


class WrapCounter:
    """``count`` runs ``0, 1, … limit, 0, …`` (one step per :meth:`step`); ``last`` is
    ``count == limit`` and ``first`` is ``count == 0``, both registers.

    Parameters
    ----------
    limit : Value
        The last count: a constant, or a register that resets to 0 and changes only together with
        :meth:`start`.
    name : str
        Name of ``count``; ``last`` and ``first`` are ``<name>_last`` and ``<name>_first``.
    """

    def __init__(self, limit, *, name: str):
        self.limit = Value.cast(limit)
        self.count = Signal(len(self.limit), name=name)
        at_reset = self.limit.value == 0 if isinstance(self.limit, Const) else True
        self.last = Signal(init=at_reset, name=f"{name}_last")
        self.first = Signal(init=1, name=f"{name}_first")

    def start(self, m, limit):
        """From the next cycle count from 0 up to ``limit`` (the value ``self.limit`` takes then)."""
        m.d.sync += [self.count.eq(0), self.last.eq(limit == 0), self.first.eq(1)]

    def step(self, m):
        """The next count (0 after ``limit``), in the next cycle."""
        following = self.count + 1
        m.d.sync += [self.count.eq(Mux(self.last, 0, following)), self.first.eq(self.last),
                     self.last.eq(Mux(self.last, self.limit == 0, following == self.limit))]


def step_nested(m, counters) -> Value:
    """Step ``counters[0]``; each counter at its limit (wrapping) steps the next one, as nested loops
    do (innermost first: e.g. rows, K-tiles, N-tiles). Returns the condition under which the outermost
    one wraps too: every counter at its limit, the loops' end."""
    wraps = Const(1)
    for counter in counters:
        with m.If(wraps):
            counter.step(m)
        wraps = wraps & counter.last
    return wraps
