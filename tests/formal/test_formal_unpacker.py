"""Formal proofs of the packed weight stream's unpacker (flow/formal_unpacker.py): the stream rules
and clean pass starts, progress on any stream, whole or faulted passes; per property a mutant of
the unpacker on which the proof fails (a bounded check from reset finds the broken behaviour)."""

from __future__ import annotations

import pytest
from amaranth import Mux
from microscopiq.flow.formal import prove
from microscopiq.flow.formal_props import PROOFS
from microscopiq.flow.formal_unpacker import (UnpackerPassProof, UnpackerProgressProof, UnpackerStreamProof,
                                              unpacker_config)
from microscopiq.hdl.unpacker import Unpacker, UnpackerSizes, _Item


def _assigned(m, name: str):
    """The one signal named ``name`` that a statement of module ``m`` (not yet elaborated) assigns."""
    found = {id(s): s for statements in m._statements.values() for statement in statements
             for s in statement._lhs_signals() if s.name == name}
    assert len(found) == 1, f"{len(found)} signals named {name!r}"
    return next(iter(found.values()))


class LoadsWhileWaiting(Unpacker):
    """Mutant: the exponent and row output registers take the next item while their beat waits
    (overwritten)."""

    def _ready(self, flags, valids):
        return super()._ready(flags, (valids[0], 0, 0))


class TakesAfterLast(Unpacker):
    """Mutant: beats are taken while the buffer has room, also after the pass's tlast beat (the next
    pass's first beats land behind the old pass's bits)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        fill = _assigned(m, "fill")
        m.d.comb += self.i.ready.eq(fill <= self.sizes.capacity - self.bus_bits)
        return m


class PrologueNeverParsed(Unpacker):
    """Mutant: the prologue waits for an output that never frees: the unpacker holds a pass's bits
    and takes no beat."""

    def _ready(self, flags, valids):
        return Mux(flags[_Item.PROLOGUE], 0, super()._ready(flags, valids))


class ShortPass(Unpacker):
    """Mutant: a pass ends after the first K-tile of each N-tile (``KT`` read as 1)."""

    def _next_row(self, m, state, regs, per_group, parse):
        k_tiles = regs["k_tiles"]
        return super()._next_row(m, state, dict(regs, k_tiles=k_tiles ^ k_tiles), per_group, parse)


@pytest.mark.parametrize("name", ["unpacker_stream", "unpacker_progress", "unpacker_granules", "unpacker_passes",
                                  "unpacker_cover"])
def test_unpacker_proof(tmp_path, name):
    result = PROOFS[name].run(name, root=tmp_path)
    assert result.passed, result.summary()


class FlagsLag(Unpacker):
    """Mutant: the map queue's state flags are loaded from the state, not its next value (a cycle
    late)."""

    @classmethod
    def _state_flags(cls, m, state, state_next, name):
        return super()._state_flags(m, state, state if name == "queue_in" else state_next, name)


class QuadSizes(UnpackerSizes):
    """Sizes that claim a granule of 4 bits where the lengths are only even."""

    granule = 4


class QuadGranules(Unpacker):
    """Mutant: the buffer's shifters leave out their two lowest stages (a granule of 4) on a
    configuration whose records may be 2 bits off a multiple of 4."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.sizes = QuadSizes(cfg, self.bus_bits)


@pytest.mark.parametrize("harness, depth", [
    # Two refused (truncated) headers: the second header beat overwrites the first (step 5).
    (lambda: UnpackerStreamProof(unpacker=LoadsWhileWaiting(unpacker_config())), 24),
    # A tlast beat, then one more beat taken (step 1).
    (lambda: UnpackerStreamProof(unpacker=TakesAfterLast(unpacker_config())), 6),
    # A MicroScopiQ header, the buffer filled behind the prologue, then 8 cycles refused.
    (lambda: UnpackerProgressProof(unpacker=PrologueNeverParsed(unpacker_config()), invariants=False), 40),
    # A raw pass of 2 K-tiles ended after one, no fault, then a header (step 20).
    (lambda: UnpackerPassProof(unpacker=ShortPass(unpacker_config()), invariants=False), 26),
    # The header parsed: the state moves on, its queue copy a cycle later (the copies' invariant).
    (lambda: UnpackerProgressProof(unpacker=FlagsLag(unpacker_config())), 16),
    # The prologue parsed: a map-queue body of two pairs' records, 2 bits off a granule of 4.
    (lambda: UnpackerProgressProof(unpacker_config(xbits=2), unpacker=QuadGranules(unpacker_config(xbits=2))), 20),
], ids=["LoadsWhileWaiting", "TakesAfterLast", "PrologueNeverParsed", "ShortPass", "FlagsLag", "QuadGranules"])
def test_unpacker_proof_fails_on_a_mutant(tmp_path, harness, depth):
    result = prove("unpacker-mutant", harness(), mode="bmc", depth=depth, root=tmp_path)
    assert result.status == "FAIL" and result.trace is not None, result.summary()


def test_unpacker_pass_proof_refuses_several_tiles_per_group():
    with pytest.raises(ValueError, match=r"^UnpackerPassProof counts one K-tile per K-group: group must equal rows"):
        UnpackerPassProof(unpacker_config().replace(group=8))
