"""The table of formal proofs: which harness, which mode and depth (docs/verification.md).

``make formal`` runs every entry (``python -m microscopiq.flow.formal --deep``); ``tests/formal/``
runs the quick ones and, for each property, a mutant of the block on which the proof must fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from amaranth import Elaboratable

from ..config import FormatConfig
from ..hdl.meta_decoder import MetaDecoder
from ..hdl.recon_network import ReconNetwork
from .formal import FormalResult, prove
from .formal_axi import AxiProof
from .formal_core import CreditProof
from .formal_decoders import ExpProof, MetaProof
from .formal_pe import PEProof
from .formal_hold import HoldProof
from .formal_recon import NetworkProof, ShiftStageProof, SwitchProof, recon_switches
from .formal_unpacker import UnpackerPassProof, UnpackerProgressProof, UnpackerStreamProof, unpacker_config

__all__ = ["Proof", "PROOFS", "NETWORK_FORMAT"]

#: The network proof's formats: U = 8 at the smallest b and X of the format; the solver does not
#: finish at b = 4 (docs/verification.md).
NETWORK_FORMAT = FormatConfig(wbits=2, xbits=1)
#: The metadata proofs' decoder latency (U = 8 in each) and the edges after reset from which the
#: decoder's and the network's state is any function of the last rows alone (no feedback).
_META_LATENCY = MetaDecoder.latency_of(NETWORK_FORMAT)
_META_EDGES = _META_LATENCY + ReconNetwork.latency


def _output_waits(block):
    """A stream block's stall: its output beat is offered and not taken."""
    return block.o.valid & ~block.o.ready


@dataclass(frozen=True)
class Proof:
    """One entry of :data:`PROOFS`: how to build the harness, and what to prove of it.

    ``mode``/``depth`` as in :func:`~microscopiq.flow.formal.prove`; ``quick`` proofs also run in
    ``make test``; ``why`` says why the depth covers the block (or what the bound is). An
    ``explicit`` proof runs only when named (``make formal PROOFS=name``): one that does not yet
    reach a verdict in reasonable time (docs/verification.md)."""

    build: Callable[..., Elaboratable]
    mode: str
    depth: int
    quick: bool
    what: str
    why: str
    explicit: bool = False
    timeout: int | None = None

    def run(self, name: str, *, harness: Elaboratable | None = None, **options) -> FormalResult:
        """Prove it (on ``harness`` instead of the default one, e.g. a mutant's)."""
        options.setdefault("timeout", self.timeout)
        return prove(name, self.build() if harness is None else harness, mode=self.mode,
                     depth=self.depth, **options)


#: The proofs, by name.
PROOFS: dict[str, Proof] = {
    "recon_switch": Proof(
        lambda switches=None: SwitchProof(switches or recon_switches(FormatConfig())), "bmc", 1, True,
        "ReCoN switch: every command, sign, shift and input pair; ReCoN's three shapes and a general "
        "one (a=8, b=4)",
        "combinational: one step covers every input"),
    "pe": Proof(
        lambda pe=None: PEProof(FormatConfig(), pe=pe), "bmc", 6, True,
        "PE ping-pong banks: product = pe_product(act, slot) of the load/swap reference (a=8, b=4)",
        "every state of the PE and the reference is reached within 3 steps from reset (load, "
        "swap+load, swap+load+en); 6 steps check every step from each"),
    "recon_network": Proof(
        lambda network=None: NetworkProof(NETWORK_FORMAT, network=network, stalls=False),
        "bmc", 4, False,
        "ReCoN network, U=8, b=2, xbits=1, en=1: contributions = merge/shift of SPEC 3 for every "
        "compiled configuration and every product in the PE ranges",
        "no feedback: at full rate the state 3 edges after reset is any function of the last 3 rows"),
    "recon_network_b3": Proof(
        lambda network=None: NetworkProof(FormatConfig(wbits=3, xbits=1), network=network, stalls=False),
        "bmc", 4, False,
        "ReCoN network as recon_network, b=3, xbits=1", "as recon_network"),
    "recon_network_b4": Proof(
        lambda network=None: NetworkProof(FormatConfig(wbits=4, xbits=1), network=network, stalls=False),
        "bmc", 4, False,
        "ReCoN network as recon_network, b=4, xbits=1", "as recon_network"),
    "recon_merge": Proof(
        lambda network=None: NetworkProof(FormatConfig(), network=network, stalls=False, cut=True),
        "bmc", 3, True,
        "ReCoN network at the default format (U=8, b=4, xbits=4), en=1, cut at its merge registers: "
        "merged = the merge and scale = the shift of SPEC 3 for every compiled configuration and "
        "every product in the PE ranges (with recon_shift: the contributions)",
        "no feedback: at full rate the state 2 edges after reset is any function of the last 2 rows"),
    "recon_shift": Proof(
        lambda network=None: ShiftStageProof(FormatConfig(), network=network), "prove", 4, True,
        "ReCoN network's last stage at the default format (U=8, b=4, xbits=4), every input free: "
        "after an enabled edge contributions = merged << scale as they were before it, from any state",
        "k-induction: unbounded (a one-cycle property of every state)"),
    "recon_hold": Proof(
        lambda network=None: HoldProof(network or ReconNetwork(NETWORK_FORMAT, NETWORK_FORMAT.ublock),
                                       lambda net: ~net.en), "prove", 2, True,
        "ReCoN network, U=8, b=2, xbits=1: a cycle with en=0 holds every flip-flop, from any state "
        "(with recon_network: the contributions are right under any en stalls)",
        "k-induction: unbounded (a one-cycle property of every state)"),
    "axi": Proof(
        lambda accel=None: AxiProof(accel=accel), "bmc", 29, True,
        "AXI4-Stream: stable result beats under back-pressure; no spurious, stale, duplicated or "
        "lost result beat (2x2, a=4, b=2, no ReCoN)",
        "bounded: a whole pass takes at least 24 steps (cover: axi_cover)"),
    "axi_cover": Proof(
        lambda accel=None: AxiProof(accel=accel), "cover", 29, True,
        "AXI4-Stream harness not vacuous: a whole pass ends with its last beat within the depth",
        "reached at step 23"),
    "axi_deep": Proof(
        lambda accel=None: AxiProof(accel=accel), "bmc", 30, False,
        "AXI4-Stream, as axi, deeper (passes of up to 2 tokens x 2 tiles with back-pressure)",
        "bounded"),
    "exp_decoder": Proof(
        lambda decoder=None: ExpProof(2, decoder=decoder), "prove", 2, True,
        "ExpDecoder (2 columns): shifts = E - E_min (0 and error exactly where negative); i.ready = "
        "~o.valid | o.ready; one output beat per exponent beat taken, held until taken",
        "k-induction: unbounded (invariant: the decoder's minima are the reference's)"),
    "meta_decoder": Proof(
        lambda decoder=None: MetaProof(NETWORK_FORMAT, decoder=decoder), "bmc", _META_EDGES + 1, False,
        "MetaDecoder -> ReconNetwork, U=8, b=2, xbits=1, full rate: codes, roles and error of every "
        "record; the network configured by the decoder gives the merge/shift of SPEC 3 for every "
        "legal record and every product in the PE ranges",
        f"no feedback at full rate: the state {_META_EDGES} edges after reset (decoder latency "
        f"{_META_LATENCY}, network {ReconNetwork.latency}) is any function of the last {_META_EDGES} rows"),
    "meta_decoder_b3": Proof(
        lambda decoder=None: MetaProof(FormatConfig(wbits=3, xbits=1), decoder=decoder), "bmc", _META_EDGES + 1, False,
        "MetaDecoder -> ReconNetwork as meta_decoder, b=3, xbits=1", "as meta_decoder"),
    **{f"recon_merge_b{b}": Proof(
        lambda network=None, b=b: NetworkProof(FormatConfig(wbits=b), network=network, stalls=False, cut=True),
        "bmc", 3, False, f"ReCoN network as recon_merge, b={b}, xbits=4", "as recon_merge") for b in (2, 3)},
    **{f"recon_shift_b{b}": Proof(
        lambda network=None, b=b: ShiftStageProof(FormatConfig(wbits=b), network=network), "prove", 4, False,
        f"ReCoN network's last stage as recon_shift, b={b}, xbits=4", "as recon_shift") for b in (2, 3)},
    "meta_decoder_b4": Proof(
        lambda decoder=None: MetaProof(FormatConfig(), decoder=decoder, cut=True), "bmc", _META_EDGES, False,
        "MetaDecoder -> ReconNetwork as meta_decoder at the default format (U=8, b=4, xbits=4), the "
        "network cut at its merge registers (with recon_shift: the contributions)",
        f"no feedback at full rate: the state {_META_EDGES - 1} edges after reset (decoder latency "
        f"{_META_LATENCY}, network to its merge registers {ReconNetwork.latency - 1}) is any function of "
        f"the last {_META_EDGES - 1} rows"),
    "meta_hold": Proof(
        lambda decoder=None: HoldProof(decoder or MetaDecoder(NETWORK_FORMAT, NETWORK_FORMAT.ublock),
                                       _output_waits, lambda dec: [dec.i.ready == ~_output_waits(dec)]),
        "prove", 2, True,
        "MetaDecoder, U=8, b=2, xbits=1: while its output beat waits (o.valid, not o.ready) every "
        "flip-flop holds and i.ready is low, from any state (with meta_decoder: right under any "
        "back-pressure)",
        "k-induction: unbounded (a one-cycle property of every state)"),
    "credit": Proof(
        lambda core=None: CreditProof(core=core), "prove", 10, True,
        "Core (2x2, a=4, b=2, passes of up to 16 tokens x 2 x 2 tiles): the result FIFO never "
        "overflows, free streams, back-pressure and reset",
        "k-induction: unbounded (invariants: array and PPU as fixed-latency pipelines, committed = "
        "tokens in the array + FIFO level, committed + tokens in the PPU <= depth)"),
    "unpacker_stream": Proof(
        lambda unpacker=None: UnpackerStreamProof(unpacker=unpacker), "prove", 2, True,
        "Unpacker (8x4, b=2, U=8, 8-bit bus), free beats and back-pressure: header, exps and rows "
        "hold valid and payload while not taken; the first beat after a tlast lands in an empty "
        "buffer waiting for a header",
        "k-induction: unbounded (invariant: at a pass boundary the tlast beat waits or the unpacker "
        "is clean)"),
    "unpacker_progress": Proof(
        lambda unpacker=None: UnpackerProgressProof(unpacker=unpacker), "prove",
        UnpackerProgressProof.PROGRESS_BOUND + 2, True,
        "Unpacker, free beats (malformed included), outputs always ready: i.ready is never low for "
        f"{UnpackerProgressProof.PROGRESS_BOUND} cycles in a row (a beat is taken within that many "
        "cycles of its arrival)",
        "k-induction: unbounded (invariants: state, fill and item lengths in their reachable ranges)"),
    "unpacker_granules": Proof(
        lambda unpacker=None: UnpackerProgressProof(unpacker_config(xbits=2), unpacker=unpacker), "prove",
        UnpackerProgressProof.PROGRESS_BOUND + 2, True,
        "unpacker_progress on the unpacker with xbits = 2, whose lengths are all even (granule 2): "
        "fill, need, the prefixes and bodies stay whole granules, so the shifters' left-out lowest "
        "stage changes nothing",
        "k-induction: unbounded (invariants: unpacker_progress's, the lengths' bits below the granule zero)"),
    "unpacker_passes": Proof(
        lambda unpacker=None: UnpackerPassProof(unpacker=unpacker), "prove", 4, True,
        "Unpacker, free beats and back-pressure: between two header beats a good pass gets R rows "
        "per tile for KT*NT tiles and NT*(KT+1) exponent beats (none raw), or a fault; never more, "
        "nothing after the fault, nothing after a refused header",
        "k-induction: unbounded (invariants: the pass registers hold the header's fields, the "
        "counts are those of the tiles and rows before the current one)"),
    "unpacker_cover": Proof(
        lambda unpacker=None: UnpackerPassProof(unpacker=unpacker), "cover", 42, True,
        "unpacker_passes not vacuous: a whole MicroScopiQ pass without a fault, then a header",
        "reached at step 40"),
    "credit_refused": Proof(
        lambda core=None: CreditProof(core=core, invariants=False, refused_headers=True), "bmc", 32, False,
        "Core as credit, refused headers too: no overflow; a refused pass's one beat never meets a "
        "PPU beat, is written once, and no activation is taken after it until the pass has ended",
        "bounded: a refused pass, its beat, and the next pass's first result beats (cover "
        "credit_refused_cover); k-induction does not close without the assumption"),
    "credit_refused_cover": Proof(
        lambda core=None: CreditProof(core=core, invariants=False, refused_headers=True), "cover", 43, False,
        "credit_refused not vacuous: after a refused pass's beat, a pass writes results, and fills the "
        "FIFO up to the credit", "reached at steps 25 (a result beat after a refused pass's beat) and 40"),
    "credit_cover": Proof(
        lambda core=None: CreditProof(core=core), "cover", 40, False,
        "credit harness not vacuous: the credit holds a token back with the FIFO two beats short "
        "of full",
        "reached at step 37"),
}
