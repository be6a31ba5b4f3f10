"""Formal proof of the core's credit (flow/formal_core.py): the result FIFO never overflows, and a
core whose credit keeps too small a margin overflows it (a bounded counterexample); with refused
headers, a refused pass writes one beat and takes nothing after it, and a core that drains the
next pass's activations after that beat is caught, as is one whose result FIFO lane misses the
refused beat's write enable."""

from __future__ import annotations

import re
from pathlib import Path
from unittest import mock

from amaranth import Signal

from microscopiq.flow import formal_core
from microscopiq.flow.formal import prove
from microscopiq.flow.formal_core import CreditProof
from microscopiq.flow.formal_props import PROOFS
from microscopiq.hdl import core as core_module
from microscopiq.hdl.core import AcceleratorCore, CoreTiming


class LooseCredit(AcceleratorCore):
    """Mutant: the credit keeps ``margin`` beats free instead of ``CREDIT_MARGIN``, the FIFO keeps
    its depth."""

    def __init__(self, cfg, margin: int):
        super().__init__(cfg)
        self.margin = margin

    def elaborate(self, platform):
        depth = self.timing.result_fifo_depth
        with mock.patch.object(core_module, "CREDIT_MARGIN", self.margin), \
                mock.patch.object(CoreTiming, "result_fifo_depth", depth):
            return super().elaborate(platform)


def test_credit_proof(tmp_path):
    result = PROOFS["credit"].run("credit", root=tmp_path)
    assert result.passed, result.summary()


def test_credit_proof_fails_on_a_looser_credit(tmp_path):
    """Margin 1: the FIFO overflows (a beat is dropped) 33 cycles after reset; the bounded check of
    the property alone (no invariants) finds it. (Margin 2 is proven safe: docs/verification.md.)"""
    harness = CreditProof(core=LooseCredit(CreditProof.config(), 1), invariants=False)
    result = prove("credit-mutant", harness, mode="bmc", depth=44, root=tmp_path)
    assert result.status == "FAIL" and result.trace is not None, result.summary()


class DrainsOn(AcceleratorCore):
    """Mutant (the refusal before the fix, a copy): after a refused pass's beat is written, the
    core drains activations again while the beat waits, so under back-pressure the next pass's
    activations are dropped and answered with another refusal beat."""

    def _refusal(self, m, refused, refusal, offers):
        drained = Signal()
        m.d.comb += [offer.eq(refusal.valid) for offer in offers]
        with m.If(refused & ~drained):
            m.d.comb += self.act.ready.eq(1)
            with m.If(self.act.valid & self.act.payload.last):
                m.d.sync += drained.eq(1)
        with m.If(refused & drained):
            m.d.comb += refusal.valid.eq(1)
            with m.If(refusal.ready):
                m.d.sync += drained.eq(0)


def test_credit_proof_with_refused_headers_fails_on_a_core_that_drains_on(tmp_path):
    """A refused header (its one weight beat and one activation beat), the refusal beat held by
    back-pressure, then an activation taken for it again (step 5)."""
    harness = CreditProof(core=DrainsOn(CreditProof.config()), invariants=False, refused_headers=True)
    result = prove("credit-refused-mutant", harness, mode="bmc", depth=12, root=tmp_path)
    assert result.status == "FAIL" and result.trace is not None, result.summary()


class LaneMissesRefusal(AcceleratorCore):
    """Mutant: lane 0 of the result FIFO is not offered the refused pass's beat (its copy of the
    beat's ``valid`` held at 0), so that lane's write enable misses the beat's write."""

    def _refusal(self, m, refused, refusal, offers):
        held = Signal()
        super()._refusal(m, refused, refusal, [held, *offers[1:]])
        m.d.comb += offers[0].eq(0)


def test_credit_proof_with_refused_headers_fails_on_a_lane_that_misses_the_refusal(tmp_path):
    """The lanes assertion fails at step 5, when the refused pass's beat is written (a refused
    header's one weight beat and one activation beat, then the offer)."""
    harness = CreditProof(core=LaneMissesRefusal(CreditProof.config()), invariants=False, refused_headers=True)
    result = prove("credit-lane-mutant", harness, mode="bmc", depth=12, root=tmp_path)
    assert result.status == "FAIL" and result.trace is not None, result.summary()
    source = Path(formal_core.__file__)
    line = next(number for number, text in enumerate(source.read_text().splitlines(), 1)
                if "Assert(fifo.w_lanes ==" in text)
    failed = re.search(r"failed assertion \S+ at (\S+) step (\d+)", (result.workdir / "logfile.txt").read_text())
    assert failed is not None, result.summary()
    assert (failed.group(1), int(failed.group(2))) == (f"{source}:{line}", 5), failed.group(0)
