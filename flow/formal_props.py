"""Property harnesses of the formal proofs (run by :func:`microscopiq.flow.formal.prove`).

Each harness is an Amaranth elaboratable that instantiates a block through its public constructor
(or takes one built by the caller: the mutation tests pass deliberately broken copies), drives its
inputs from free values (``AnyConst``: any value, fixed for the whole trace; ``AnySeq``: any value in
every cycle) and states the block's contract as ``Assert``s, constraining the inputs only with
``Assume``s that the block's environment guarantees. :data:`PROOFS` lists the proofs that ``make
formal`` and ``tests/formal/`` run, with their mode and depth (docs/verification.md, "Formal
proofs").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from amaranth import Elaboratable, Module, Mux, Signal, signed
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert

from ..config import FormatConfig
from ..hdl.recon_switch import Command, ReconSwitch
from .formal import FormalResult, prove

__all__ = ["SwitchProof", "Proof", "PROOFS"]


class SwitchProof(Elaboratable):
    """ReCoN 2×2 switches against the command table of ``docs/recon.md`` for every command, sign,
    shift and pair of inputs (combinational: one step is the whole proof).

    Parameters
    ----------
    switches : list of ReconSwitch
        The switches to prove, each with its own free inputs.
    """

    def __init__(self, switches):
        self.switches = list(switches)

    @staticmethod
    def expected(switch: ReconSwitch, in0, in1, cmd, sign, shift):
        """``(out0, out1)`` of the table, exact (Amaranth widens every operation), untruncated."""
        swapped = (cmd == Command.SWAP) | (cmd == Command.MERGE_TO_1)
        first, second = Mux(swapped, in1, in0), Mux(swapped, in0, in1)
        merged = ((first << switch.merge_shift) + Mux(sign, -second, second)) << shift
        passed, other = first << shift, second << shift
        out0 = Mux(cmd == Command.PASS, passed, Mux(cmd == Command.SWAP, passed,
                   Mux(cmd == Command.MERGE_TO_0, merged, 0)))
        out1 = Mux(cmd == Command.PASS, other, Mux(cmd == Command.SWAP, other,
                   Mux(cmd == Command.MERGE_TO_1, merged, 0)))
        return out0, out1

    def elaborate(self, platform):
        m = Module()
        for index, switch in enumerate(self.switches):
            m.submodules[f"dut{index}"] = switch
            in0, in1 = AnySeq(signed(switch.in_bits)), AnySeq(signed(switch.in_bits))
            cmd, sign = AnySeq(3), AnySeq(1)
            shift = AnySeq(switch.max_shift.bit_length()) if switch.max_shift else 0
            m.d.comb += [switch.in0.eq(in0), switch.in1.eq(in1), switch.cmd.as_value().eq(cmd),
                         switch.sign.eq(sign)]
            if switch.max_shift:
                m.d.comb += switch.shift.eq(shift)
            exact0, exact1 = self.expected(switch, in0, in1, cmd, sign, shift)
            want0, want1 = Signal(signed(switch.out_bits)), Signal(signed(switch.out_bits))
            m.d.comb += [want0.eq(exact0), want1.eq(exact1),  # truncated to out_bits
                         Assert(switch.out0 == want0), Assert(switch.out1 == want1)]
        return m


def recon_switches(fmt: FormatConfig) -> list[ReconSwitch]:
    """The switch shapes ReCoN builds for ``fmt`` (routing, merge, scale) and a general one with
    ``merge_shift = b`` and the largest outlier shift."""
    b, pe_bits = fmt.wbits, fmt.pe_product_bits
    shift_bits = max(fmt.max_outlier_shift, b).bit_length()
    return [
        ReconSwitch(pe_bits, pe_bits, merge_shift=0, max_shift=0),
        ReconSwitch(pe_bits + b, pe_bits + b + 1, merge_shift=0, max_shift=0),
        ReconSwitch(pe_bits + 1, fmt.product_bits, merge_shift=0, max_shift=(1 << (shift_bits - 1)) - 1),
        ReconSwitch(pe_bits, fmt.product_bits, merge_shift=b, max_shift=fmt.max_outlier_shift),
    ]


@dataclass(frozen=True)
class Proof:
    """One entry of :data:`PROOFS`: how to build the harness, and what to prove of it."""

    build: Callable[[], Elaboratable]
    mode: str
    depth: int
    quick: bool
    what: str

    def run(self, name: str | None = None, *, harness=None, **options) -> FormalResult:
        """Prove it (on ``harness`` instead of the default one, e.g. a mutant's)."""
        name = name or next(key for key, value in PROOFS.items() if value is self)
        return prove(name, harness if harness is not None else self.build(), mode=self.mode,
                     depth=self.depth, **options)


#: The proofs, by name: ``make formal`` runs them all, ``tests/formal/`` the quick ones.
PROOFS: dict[str, Proof] = {
    "recon_switch": Proof(lambda: SwitchProof(recon_switches(FormatConfig())), "prove", 1, True,
                          "ReCoN switch: every command, sign, shift and input pair (a=8, b=4)"),
}
