"""Bit-level helpers shared by the blocks."""

from __future__ import annotations

from amaranth import Module, Signal

__all__ = ["field_at"]


def field_at(m: Module, value, offset, width: int):
    """``value.bit_select(offset, width)``, the shift on a signal as wide as ``value`` so that the
    Verilog truncates nothing implicitly (Verilator's WIDTHTRUNC)."""
    if isinstance(offset, int):
        return value[offset:offset + width]
    shifted = Signal(len(value))
    m.d.comb += shifted.eq(value >> offset)
    return shifted[:width]
