"""Formal stall proofs: a cycle in which a block stalls holds every one of its flip-flops.

A pipelined block whose stall (a clock enable low, an output beat waiting) freezes all its state
visits, in a stalled run, only the states of the full-rate run of its advancing cycles, each
repeated while it stalls. So a functional proof at full rate (``recon_network``, ``meta_decoder``)
together with this one covers every stall pattern, without the solver ever unrolling one.

:class:`HoldProof` drives every input port of a :class:`~amaranth.lib.wiring.Component` freely, finds
its flip-flops in its elaborated fragment (:func:`~.formal.registers`, submodules included) and
asserts, from any state, that each keeps its value across a cycle in which the block's ``stall``
condition held; k-induction (a one-cycle property of every state, reachable or not).
"""

from __future__ import annotations

from typing import Callable

from amaranth import Elaboratable, Module, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, ResetSignal
from amaranth.lib.wiring import In

from .formal import elaborated, registers

__all__ = ["HoldProof"]


class HoldProof(Elaboratable):
    """Every flip-flop of ``block`` holds across a cycle where ``stall(block)`` is true.

    Parameters
    ----------
    block : wiring.Component
        The block under proof; all its ``In`` ports are free in every cycle.
    stall : callable
        ``stall(block)``: the block's stall condition, an expression of its ports.
    contract : callable, optional
        ``contract(block)``: further assertions of its ports in every cycle (e.g. ``ready`` low while
        stalled).
    """

    def __init__(self, block, stall: Callable, contract: Callable | None = None):
        self.block, self.stall, self.contract = block, stall, contract

    def elaborate(self, platform):
        m = Module()
        m.d.comb += ResetSignal().eq(0)
        block = self.block
        m.submodules.block = fragment = elaborated(block)
        for _, member, port in block.signature.flatten(block):
            if member.flow == In:
                value = port.as_value() if hasattr(port, "as_value") else port
                m.d.comb += value.eq(AnySeq(len(value)))
        stalled = Signal()
        m.d.sync += stalled.eq(self.stall(block))
        for reg in registers(fragment):
            before = Signal.like(reg, name=f"before_{reg.name}")
            m.d.sync += before.eq(reg)
            m.d.comb += Assert(~stalled | (reg == before))
        if self.contract is not None:
            m.d.comb += [Assert(condition) for condition in self.contract(block)]
        return m
