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
        constant = isinstance(self.limit, Const)
        at_reset = self.limit.value == 0 if constant else True
        self.last = Signal(init=at_reset, name=f"{name}_last")
        self.first = Signal(init=1, name=f"{name}_first")
        # ``limit - 1`` (the count before the last) and ``limit == 0``, registers set by ``start``
        # (constants for a constant limit), so that ``last``'s next value is one equality of two
        # registers: no incrementer's carry chain in front of a comparison.
        ones = (1 << len(self.limit)) - 1    # ``limit - 1`` at limit 0 (never a count then)
        if constant:
            self._before_last = Const((self.limit.value - 1) & ones, len(self.limit))
            self._single = Const(at_reset, 1)
        else:
            self._before_last = Signal(len(self.limit), init=ones, name=f"{name}_before_last")
            self._single = Signal(init=1, name=f"{name}_single")
        self._constant = constant

    def start(self, m, limit, single=None):
        """From the next cycle count from 0 up to ``limit`` (the value ``self.limit`` takes then).
        ``single``: ``limit == 0`` where the caller has it from registers already (a limit read
        from LUT RAM would otherwise put its zero test in front of ``last``)."""
        single = limit == 0 if single is None else single
        m.d.sync += [self.count.eq(0), self.last.eq(single), self.first.eq(1)]
        if not self._constant:
            m.d.sync += [self._before_last.eq(limit - 1), self._single.eq(single)]

    def step(self, m):
        """The next count (0 after ``limit``), in the next cycle."""
        m.d.sync += [self.count.eq(Mux(self.last, 0, self.count + 1)), self.first.eq(self.last),
                     self.last.eq(Mux(self.last, self._single, self.count == self._before_last))]


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
