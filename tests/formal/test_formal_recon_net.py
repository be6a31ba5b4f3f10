"""Formal proofs of the ReCoN network (flow/formal_recon.py): the column encoding the network proof
assumes equals the compiler's, a mutant network on which the (bounded) proof finds a counterexample
(the uncut proofs themselves run in ``make formal`` only), the default format's proof in two halves
(the network cut at its merge registers, and its last stage from any state), and the stall proof
(every flip-flop holds while ``en`` is 0), each with its mutant.""" 

from __future__ import annotations

import pytest

from amaranth import C, Module, Signal
from amaranth.sim import Simulator

from microscopiq.config import FormatConfig
from microscopiq.flow.formal_props import NETWORK_FORMAT, PROOFS
from microscopiq.flow.formal_recon import column_field, compiler_encoding
from microscopiq.hdl.recon_network import ReconNetwork


class BenesBitFlipped(ReconNetwork):
    """Mutant: the first configurable routing switch reads its swap bit inverted."""

    def _benes(self, m, blk, lines, swaps):
        return super()._benes(m, blk, lines, swaps ^ 1)


def test_column_field_is_the_compilers():
    fmt = FormatConfig()
    enc = compiler_encoding(fmt)
    uniform, role, code, xexp = Signal(), Signal(2), Signal(fmt.wbits), Signal(fmt.xbits)
    word = Signal(2 + 5)
    m = Module()
    m.d.comb += word.eq(column_field(fmt, uniform, role, code, xexp))
    sim = Simulator(m)
    mismatches = []

    async def bench(ctx):
        for key, (op, shift) in sorted(enc.columns.items()):
            for signal, value in zip((uniform, role, code, xexp), key):
                ctx.set(signal, value)
            got = ctx.get(word)
            if got != op | shift << 2:
                mismatches.append(f"{key}: compiler op {op} shift {shift}, encoded {got & 3}, {got >> 2}")

    sim.add_testbench(bench)
    sim.run()
    assert not mismatches, f"{len(mismatches)} keys differ, first {mismatches[0]}"
    assert len(enc.columns) == 4 * (1 << fmt.wbits) * (1 << fmt.xbits)


def test_network_proof_fails_on_a_mutant(tmp_path):
    proof = PROOFS["recon_network"]
    fmt = NETWORK_FORMAT
    result = proof.run("recon_network-mutant", root=tmp_path,
                       harness=proof.build(BenesBitFlipped(fmt, fmt.ublock)))
    assert result.status == "FAIL" and result.trace is not None, result.summary()


class ClearsIgnored(ReconNetwork):
    """Mutant: no synchronous clear (the merge operands of ZERO and non-merging columns, and the
    low bits filled by the shift's top step keep their loaded values)."""

    def _load(self, m, reg, value, clear):
        super()._load(m, reg, value, C(0, 1))


#: The default format's two halves (the network cut at its merge registers, its last stage) and a
#: mutant each must catch.
HALVES = [("recon_merge", BenesBitFlipped), ("recon_shift", ClearsIgnored)]


@pytest.mark.parametrize("name", [name for name, _ in HALVES])
def test_default_format_half(name, tmp_path):
    result = PROOFS[name].run(name, root=tmp_path)
    assert result.passed, result.summary()


@pytest.mark.parametrize("name, mutant", HALVES)
def test_default_format_half_fails_on_a_mutant(name, mutant, tmp_path):
    proof, fmt = PROOFS[name], FormatConfig()
    result = proof.run(f"{name}-mutant", root=tmp_path, harness=proof.build(mutant(fmt, fmt.ublock)))
    assert result.status == "FAIL" and result.trace is not None, result.summary()


class LoadsWhileStalled(ReconNetwork):
    """Mutant: the merge operands and the shifter's low bits load with ``en = 0`` too."""

    def _load(self, m, reg, value, clear):
        with m.If(self.en & clear):
            m.d.sync += reg.eq(0)
        with m.Else():
            m.d.sync += reg.eq(value)


def test_hold_proof(tmp_path):
    result = PROOFS["recon_hold"].run("recon_hold", root=tmp_path)
    assert result.passed, result.summary()


def test_hold_proof_fails_on_a_mutant(tmp_path):
    proof = PROOFS["recon_hold"]
    fmt = NETWORK_FORMAT
    result = proof.run("recon_hold-mutant", root=tmp_path, harness=proof.build(LoadsWhileStalled(fmt, fmt.ublock)))
    assert result.status == "FAIL" and result.trace is not None, result.summary()
