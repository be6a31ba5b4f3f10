"""Formal proofs of the on-chip decoders (flow/formal_decoders.py, flow/formal_hold.py): the
exponent decoder's proof, the metadata decoder's stall proof, and per property a mutant on which the
proof fails. The composed metadata-decoder proof (about three minutes) and its mutants run in
``make formal`` only (``formal_deep``)."""

from __future__ import annotations

import pytest
from amaranth import C

from microscopiq.config import FormatConfig
from microscopiq.flow.formal import prove
from microscopiq.flow.formal_props import NETWORK_FORMAT, PROOFS
from microscopiq.hdl.exp_decoder import ExpDecoder
from microscopiq.hdl.meta_decoder import MetaDecoder


class AlwaysReady(ExpDecoder):
    """Mutant: ``i.ready`` stays high while the output is stalled (the stalled beat's successor
    is taken and lost)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.i.ready.eq(1)
        return m


class ErrorOnEqual(ExpDecoder):
    """Mutant: ``E == E_min`` counts as an error."""

    @staticmethod
    def _below_minimum(d):
        return d <= 0


class BenesBitFlipped(MetaDecoder):
    """Mutant: the first configurable routing switch's swap bit is inverted."""

    def _outputs(self, state):
        out = super()._outputs(state)
        out["config"] = out["config"] ^ 1
        return out


class NoError(MetaDecoder):
    """Mutant: a slot named twice is not flagged."""

    def _records(self):
        state = super()._records()
        state["error"] = C(0, 1)
        return state


class IgnoresBackPressure(MetaDecoder):
    """Mutant: the pipeline advances (and takes input) while its output beat waits."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self._advance.eq(1)
        return m


def test_exp_decoder_proof(tmp_path):
    result = PROOFS["exp_decoder"].run("exp_decoder", root=tmp_path)
    assert result.passed, result.summary()


def _fails(name, harness, tmp_path, **options):
    proof = PROOFS[name]
    result = proof.run(f"{name}-mutant", root=tmp_path, harness=harness, **options)
    assert result.status == "FAIL" and result.trace is not None, result.summary()


def test_exp_decoder_proof_fails_on_mutants(tmp_path):
    for mutant in (AlwaysReady, ErrorOnEqual):
        proof = PROOFS["exp_decoder"]
        # k-induction's base case finds the counterexample from reset.
        _fails("exp_decoder", proof.build(decoder=mutant(2)), tmp_path / mutant.__name__)


def test_meta_hold_proof(tmp_path):
    result = PROOFS["meta_hold"].run("meta_hold", root=tmp_path)
    assert result.passed, result.summary()


def test_meta_hold_proof_fails_on_a_mutant(tmp_path):
    """From reset, the first output beat comes ``latency`` cycles later: a bounded check two steps
    beyond finds the mutant's first stall."""
    fmt = NETWORK_FORMAT
    mutant = IgnoresBackPressure(fmt, fmt.ublock)
    harness = PROOFS["meta_hold"].build(mutant)
    result = prove("meta_hold-mutant", harness, mode="bmc", depth=mutant.latency + 2, root=tmp_path)
    assert result.status == "FAIL" and result.trace is not None, result.summary()


@pytest.mark.formal_deep
def test_meta_decoder_b4_proof_fails_on_a_mutant(tmp_path):
    fmt = FormatConfig()
    _fails("meta_decoder_b4", PROOFS["meta_decoder_b4"].build(decoder=BenesBitFlipped(fmt, fmt.ublock)), tmp_path)


@pytest.mark.formal_deep
def test_meta_decoder_proof_fails_on_mutants(tmp_path):
    fmt = NETWORK_FORMAT
    for mutant in (BenesBitFlipped, NoError):
        proof = PROOFS["meta_decoder"]
        _fails("meta_decoder", proof.build(decoder=mutant(fmt, fmt.ublock)), tmp_path / mutant.__name__)
