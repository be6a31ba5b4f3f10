"""Bit-level helpers shared by the blocks."""

from __future__ import annotations

from amaranth import Const, Module, Signal, Value

__all__ = ["REPLICA", "replicas", "field_at", "at_least"]

#: Attribute of a register that copies another register to cut its fan-out (a per-consumer copy,
#: placed next to its consumer). Yosys merges registers with the same input (``opt_merge``), so
#: the synthesis flow (flow/synth.py) sets ``keep`` on the flip-flops driving a wire that carries it.
REPLICA = "microscopiq_replica"


def replicas(m: Module, en, value, count: int, name: str) -> list[Signal]:
    """``count`` registers ``name0`` … each loaded with ``value`` at the edges where ``en`` is 1,
    marked :data:`REPLICA`: one per consumer, so no single register fans out to all of them."""
    copies = [Signal(Value.cast(value).shape(), name=f"{name}{i}", attrs={REPLICA: 1}) for i in range(count)]
    with m.If(en):
        m.d.sync += [copy.eq(value) for copy in copies]
    return copies


def field_at(m: Module, value, offset, width: int):
    """``value.bit_select(offset, width)``, the shift on a signal as wide as ``value`` so that the
    Verilog truncates nothing implicitly (Verilator's WIDTHTRUNC)."""
    if isinstance(offset, int):
        return value[offset:offset + width]
    shifted = Signal(len(value))
    m.d.comb += shifted.eq(value >> offset)
    return shifted[:width]


def at_least(value, constant: int):
    """``value >= constant`` (unsigned) as ANDs and ORs of ``value``'s bits, LSB first: Yosys turns
    a ``>=`` into a carry chain, a chain of four LUTs and a carry cell per comparison; as logic,
    ABC folds a few-bit comparison into a LUT or two."""
    value = Value.cast(value)
    if constant <= 0 or constant >= 1 << len(value):
        return Const(int(constant <= 0), 1)
    holds = Const(1, 1)                       # the empty low part: equal, so at least
    for i, bit in enumerate(value):
        holds = bit & holds if constant >> i & 1 else bit | holds
    return holds
