"""Formal proofs of ReCoN (flow/formal_recon.py): the switch table, the compiler encoding the
network proof assumes, and a mutant switch on which the proof fails."""

from __future__ import annotations

import numpy as np
import pytest

from microscopiq.config import FormatConfig
from microscopiq.flow.formal_props import PROOFS
from microscopiq.flow.formal_recon import _dst, _placement_rows, compiler_encoding
from microscopiq.hdl.recon_switch import Command, ReconSwitch
from microscopiq.host import routing

SEED = 19


class SwapKeepsOut1(ReconSwitch):
    """Mutant: SWAP forgets to move ``in0`` to ``out1``."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(self.cmd == Command.SWAP):
            m.d.comb += self.out1.eq(self.in1)
        return m


def test_switch_proof(tmp_path):
    result = PROOFS["recon_switch"].run("recon_switch", root=tmp_path)
    assert result.passed, result.summary()


def test_switch_proof_fails_on_a_mutant(tmp_path):
    fmt = FormatConfig()
    mutant = SwapKeepsOut1(fmt.pe_product_bits, fmt.pe_product_bits, merge_shift=0, max_shift=0)
    result = PROOFS["recon_switch"].run("recon_switch-mutant", root=tmp_path,
                                        harness=PROOFS["recon_switch"].build([mutant]))
    assert result.status == "FAIL" and result.trace is not None, result.summary()


@pytest.mark.parametrize("wbits", [2, 4])
def test_encoding_holds_every_compiled_configuration(wbits):
    """Every configuration the compiler writes for a placement of U = 8 (all 5937, random codes
    and X per column) is one the network proof assumes: its Beneš bits are the encoding's for its
    routing permutation and each column's op and shift the encoding's for its role, code and X."""
    fmt = FormatConfig(wbits=wbits)
    enc = compiler_encoding(fmt)
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    roles, mate = _placement_rows(fmt.ublock)
    for uniform in (False, True):
        if uniform:
            roles, mate = roles[:1] * 0, mate[:1] * 0 - 1
        codes = rng.integers(0, 1 << wbits, size=roles.shape)
        xexp = rng.integers(0, 1 << fmt.xbits, size=(roles.shape[0], 1))
        fields = routing.compile_fields(fmt, fmt.ublock, codes, roles, mate, xexp, uniform=uniform)
        geom = routing.ReconGeometry(fmt, fmt.ublock)
        configs = routing.pack_config(geom, fields)
        routes = dict(enc.routes)
        for row, (dst, config) in enumerate(zip(_dst(mate), configs)):
            swaps = config & ((1 << geom.benes_bits) - 1)
            assert routes.get(tuple(int(d) for d in dst)) == swaps, f"placement {row}: dst {dst} swaps {swaps:#x}"
            for col in range(fmt.ublock):
                key = (int(uniform), int(roles[row, col]), int(codes[row, col]), int(xexp[row, 0]))
                want = (int(fields.op[row, col]), int(fields.shift[row, col]))
                assert enc.columns[key] == want, f"placement {row} column {col}: {key} -> {want}, encoded {enc.columns[key]}"
    assert len(enc.routes) == 764  # the involutions of 8 elements: one route each
