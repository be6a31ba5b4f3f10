"""Formal proof of the PE's ping-pong banks (flow/formal_pe.py), and a mutant on which it fails."""

from __future__ import annotations

from amaranth import Module, Signal, signed

from microscopiq.config import FormatConfig
from microscopiq.flow.formal_props import PROOFS
from microscopiq.hdl.pe import PE


class SwapBeforeLoad(PE):
    """Mutant: with ``load`` and ``swap`` together the old active bank wins over the loaded slot
    (the slot is lost)."""

    def elaborate(self, platform):
        m = Module()
        b = self.fmt.wbits
        operand = self._decode(m)
        active, shadow = Signal(signed(b + 1)), Signal(signed(b + 1))
        with m.If(self.swap):
            m.d.sync += [shadow.eq(active), active.eq(shadow)]
        with m.Elif(self.load):
            m.d.sync += shadow.eq(operand)
        with m.If(self.en):
            m.d.sync += self.product.eq(self.act * active)
        return m


def test_pe_proof(tmp_path):
    result = PROOFS["pe"].run("pe", root=tmp_path)
    assert result.passed, result.summary()


def test_pe_proof_fails_on_a_mutant(tmp_path):
    result = PROOFS["pe"].run("pe-mutant", root=tmp_path, harness=PROOFS["pe"].build(SwapBeforeLoad(FormatConfig())))
    assert result.status == "FAIL" and result.trace is not None, result.summary()
