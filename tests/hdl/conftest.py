"""Helpers shared by the block tests."""

from __future__ import annotations

import re

import pytest
from amaranth.back import rtlil

from microscopiq.hdl.bits import REPLICA


@pytest.fixture
def replica_wires():
    """The names of the wires a component marks :data:`~microscopiq.hdl.bits.REPLICA` (its
    RTLIL, each name once)."""
    def names(component) -> set[str]:
        text = rtlil.convert(component, ports=[])
        return set(re.findall(rf"attribute \\{REPLICA} 1\n(?:  attribute [^\n]*\n)*  wire [^\n]* \\(\S+)", text))
    return names
