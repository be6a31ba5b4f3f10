"""Formal proof of the accelerator's AXI4-Stream ports (flow/formal_axi.py): the proof, its cover
(a whole pass fits the depth), and one mutant per property on which the proof fails."""

from __future__ import annotations

import pytest
from amaranth import Signal

from microscopiq.flow.formal_axi import AxiProof
from microscopiq.flow.formal_props import PROOFS
from microscopiq.hdl.top import Accelerator


class Mutant(Accelerator):
    """The accelerator with its result port rewired by :meth:`mutate`."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        toggle = Signal()
        m.d.sync += toggle.eq(~toggle)
        self.mutate(m, m.submodules.core.result, toggle)
        return m


class UnstableData(Mutant):
    """tdata changes while a beat waits for tready."""

    def mutate(self, m, result, toggle):
        m.d.comb += self.m_axis_result_tdata.eq(result.payload.data ^ toggle)


class StaleBeat(Mutant):
    """A beat appears right after reset, before any activation."""

    def mutate(self, m, result, toggle):
        fresh = Signal(init=1)
        m.d.sync += fresh.eq(0)
        m.d.comb += self.m_axis_result_tvalid.eq(result.valid | fresh)


class DropsBeats(Mutant):
    """Every other cycle a waiting beat that is not the last is consumed without being offered."""

    def mutate(self, m, result, toggle):
        drop = toggle & ~result.payload.last
        m.d.comb += [self.m_axis_result_tvalid.eq(result.valid & ~drop),
                     result.ready.eq(self.m_axis_result_tready | drop)]


@pytest.mark.parametrize("name", ["axi", "axi_cover"])
def test_axi_proof(tmp_path, name):
    result = PROOFS[name].run(name, root=tmp_path)
    assert result.passed, result.summary()


@pytest.mark.parametrize("mutant", [UnstableData, StaleBeat, DropsBeats])
def test_axi_proof_fails_on_a_mutant(tmp_path, mutant):
    proof = PROOFS["axi"]
    result = proof.run(f"axi-{mutant.__name__}", root=tmp_path,
                       harness=proof.build(mutant(AxiProof.config())))
    assert result.status == "FAIL" and result.trace is not None, result.summary()


def test_axi_proof_refuses_several_tiles_per_group():
    with pytest.raises(ValueError, match=r"^AxiProof counts one K-tile per K-group: group must equal rows"):
        AxiProof(AxiProof.config().replace(group=4))
