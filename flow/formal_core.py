"""Formal property harness of the core's credit (:class:`~microscopiq.hdl.core.AcceleratorCore`):
the result FIFO never overflows, whatever the streams and the back-pressure on ``result`` do.

The core never stalls its array or its PPU; the issuer takes a token only with ``credit``, a
registered comparison of the core's ``committed`` count (tokens in the array plus the FIFO's beats)
with the FIFO's depth (``hdl/core.py``). :class:`CreditProof` drives every input port freely in
every cycle (weights, activations, ``result.ready``, and the reset) and proves by k-induction

* **no overflow**: the PPU never offers a beat (``ppu.result.valid``; it cannot wait) while the FIFO
  is full (``w_rdy`` low): no beat is dropped (a refused pass's one beat waits for room);
* **lanes**: each lane of the FIFO's storage is written exactly when the FIFO is (``w_lanes``, the
  copies of the writers' registers, equal ``w_stream.valid`` in every cycle);

with these invariants, asserted too (each holds in every reachable state, and together they are
inductive):

* the array is a pipeline of ``CoreTiming.array.latency(1)`` cycles: a token leaves it
  (``array.out``) exactly that many cycles after it was issued (``array.issue``, the core's issue
  register); the harness keeps the issue history of that length;
* the PPU emits a beat only for a token that entered it ``PPU.latency`` cycles earlier (a history of
  the array's ``out``);
* ``committed`` (the core's register, reached by name) = tokens in the issue register and the
  array + the FIFO's level;
* ``committed`` + the tokens in the PPU <= the FIFO's depth: room for every beat still to come;

and one assumption: no refused header (``refused``, reached by name, stays 0): a refused pass
issues no token and writes its one beat through a stream handshake, which the inductive invariants
above do not cover.

With ``refused_headers=True`` the assumption is dropped and a bounded check (``credit_refused``)
also asserts that a refused pass's beat (the core's ``refusal`` stream) never meets a PPU beat, is
written once, and that no activation is taken after it until the pass has ended.

The block is reached through its ports, its submodules' ports (``array``, ``ppu``,
``result_fifo``: ``level``, ``w_rdy``, ``w_lanes``), ``CoreTiming``'s constants and the named signals
``committed``, ``refused`` and ``refusal__valid``: the loader and issuer may change freely.
"""

from __future__ import annotations

from amaranth import Cat, Elaboratable, Module, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cover, ResetSignal

from ..config import AccelConfig, FormatConfig
from ..hdl.core import AcceleratorCore
from ..hdl.ppu import PPU
from .formal import elaborated, internal, subfragment

__all__ = ["CreditProof"]


def _history(m: Module, bit, length: int, name: str) -> Signal:
    """The last ``length`` values of ``bit``, the newest (one cycle old) in bit 0."""
    hist = Signal(length, name=name)
    m.d.sync += hist.eq(Cat(bit, hist[:-1]))
    return hist


def _popcount(bits) -> object:
    return sum(bits[i] for i in range(len(bits)))


class CreditProof(Elaboratable):
    """The core's result FIFO never overflows (module docstring).

    Parameters
    ----------
    cfg : AccelConfig, optional
        Default :meth:`config`; without shared ReCoN (every tile's period is 1).
    core : AcceleratorCore, optional
        The block under proof (default ``AcceleratorCore(cfg)``; the mutation tests pass a broken one).
    invariants : bool
        Assert the invariants (True: what k-induction needs) or only the property (a bounded check
        whose counterexample is an overflow itself).
    refused_headers : bool
        False: assume no header is refused (the k-induction proof). True: headers are free too, and
        a refused pass's one beat must never meet a PPU beat (it would replace it in the FIFO's
        write port); a bounded check (the invariants above do not say that a refused pass finds
        the array and the PPU empty).
    """

    def __init__(self, cfg: AccelConfig | None = None, *, core=None, invariants: bool = True,
                 refused_headers: bool = False):
        self.cfg = self.config() if cfg is None else cfg
        if self.cfg.recon_share > 1:
            self._MustUse__silence = True  # refused: never elaborated
            raise ValueError(f"CreditProof counts period-1 tiles: recon_share must be 0 or 1, not "
                             f"{self.cfg.recon_share!r}")
        self.core = AcceleratorCore(self.cfg) if core is None else core
        self.invariants = invariants
        self.refused_headers = refused_headers

    @staticmethod
    def config() -> AccelConfig:
        """2×2 PEs, a = 4, b = 2, U = 2, no ReCoN; passes of up to 16 tokens × 2 × 2 tiles, so a
        pass owes more result beats than the FIFO holds."""
        return AccelConfig(fmt=FormatConfig(wbits=2, abits=4, ublock=2, group=2, xbits=1), rows=2,
                           cols=2, acc_bits=16, recon_share=0, max_tokens=16, max_k=4, max_n=4)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += ResetSignal().eq(AnySeq(1))
        core = self.core
        m.submodules.core = fragment = elaborated(core)
        for port in (core.weights, core.act):
            m.d.comb += [port.valid.eq(AnySeq(1)), port.payload.as_value().eq(AnySeq(len(port.payload.as_value())))]
        m.d.comb += core.result.ready.eq(AnySeq(1))
        array = subfragment(fragment, "array").origins[0]
        ppu = subfragment(fragment, "ppu").origins[0]
        fifo = subfragment(fragment, "result_fifo").origins[0]
        # The property: the PPU, which cannot wait, never writes a full FIFO (a refused pass's one
        # beat is a stream handshake: it waits for room). The weight streams are those whose
        # headers the front end accepts: a refused pass issues no token (docs/verification.md).
        m.d.comb += Assert(~ppu.result.valid | fifo.w_rdy)
        # Each lane of the FIFO is written by its own copies of the writers' registers: every
        # lane's enable is the FIFO's write, in every cycle.
        m.d.comb += Assert(fifo.w_lanes == fifo.w_stream.valid.replicate(fifo.lanes))
        refused = internal(fragment, "refused")
        # Not vacuous: the credit holds a token back while the FIFO has beats to give.
        holds_back = core.act.valid & ~core.act.ready & (fifo.level == fifo.depth - 2)
        if self.refused_headers:
            # A refused pass's beat (the core's ``refusal`` stream into the FIFO) is offered only
            # while no PPU beat is; it is written once, and after it nothing of the activation
            # stream is taken until the pass has ended (its beat taken, ``refused`` cleared).
            refusal = internal(fragment, "refusal__valid")
            sent, ever = Signal(name="refusal_sent"), Signal(name="refusal_ever")
            with m.If(refusal & fifo.w_rdy):
                m.d.sync += [sent.eq(1), ever.eq(1)]
            with m.If(~refused):
                m.d.sync += sent.eq(0)
            m.d.comb += [Assert(~(refusal & ppu.result.valid)), Assert(~(sent & refusal)),
                         Assert(~(sent & core.act.ready))]
            # Not vacuous: after a refused pass, a pass writes results (within credit_refused's
            # depth) and fills the FIFO up to the credit (deeper).
            m.d.comb += [Cover(ever & ppu.result.valid), Cover(ever & holds_back)]
        else:
            m.d.comb += Assume(~refused)
            m.d.comb += Cover(holds_back)
        if not self.invariants:
            return m
        # The invariants. The period of the tile being issued is always 1 without shared ReCoN (a
        # token of period 0, an unreachable state, would leave the array early).
        committed = internal(fragment, "committed")
        m.d.comb += Assert(internal(fragment, "period", "array") == 1)
        in_array = _history(m, array.issue.valid, core.timing.array.latency(1), "issued")
        in_ppu = _history(m, array.out.valid, PPU.latency, "arrived")
        m.d.comb += [
            Assert(array.out.valid == in_array[-1]),
            Assert(~ppu.result.valid | in_ppu[-1]),
            Assert(committed == array.issue.valid + _popcount(in_array) + fifo.level),
            Assert(committed + _popcount(in_ppu) <= fifo.depth),
            # The issuer's ``startable`` register is the pass state it stands for.
            Assert(internal(fragment, "startable")
                   == (internal(fragment, "busy") & ~refused & ~internal(fragment, "done"))),
        ]
        return m
