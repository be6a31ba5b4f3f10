"""Formal property harnesses of the packed weight stream's unpacker (:class:`~microscopiq.hdl.unpacker.Unpacker`).

Every harness drives the unpacker's input with free beats and a free reset in every cycle (any
``data``, any ``last``, ``valid`` any time: malformed passes included) and proves by k-induction:

* :class:`UnpackerStreamProof`, outputs' ``ready`` free — **the stream rules**: on ``header``,
  ``exps`` and ``rows``, a beat offered and not taken (``valid`` and not ``ready``) is offered again
  in the next cycle with the same payload (AXI4-Stream); and **every pass starts clean**: the first
  beat taken after a ``tlast`` beat (or after reset) lands in an empty buffer with the unpacker
  waiting for a header, so nothing of a pass, faulty or not, is read as part of the next.
* :class:`UnpackerProgressProof`, outputs always ready — **a malformed stream never hangs the
  unpacker**: ``i.ready`` is never low for ``bound`` cycles in a row, so a beat is taken within
  ``bound`` cycles of its arrival, whatever the beats before it were.
* :class:`UnpackerPassProof`, outputs' ``ready`` free — **a pass is whole or faulted**: between two
  header beats, a pass whose header was good gets exactly ``R`` rows per tile for its ``KT·NT``
  tiles and ``NT·(KT + 1)`` exponent beats (``E_min`` and an ``E`` per tile in MicroScopiQ mode,
  one K-tile per K-group; none raw), unless the unpacker raised ``fault`` during it; never more,
  and nothing after the fault; a refused header (its beat's ``fault`` set) gets nothing.

The harnesses reach the unpacker's registers for their induction invariants: by name
(:func:`~.formal.internal`: ``state``, ``fill``, ``need``, ``spare``, ``buffer``, ``last_taken``,
``row_offset``, the map queue's ``queue_prefix_i``) and the pass registers as ``Unpacker._pass_registers`` creates them
(:meth:`UnpackerPassProof._capture_pass_registers`); the block is not changed for the proofs.
"""

from __future__ import annotations

from amaranth import Elaboratable, Module, Mux, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Cover, ResetSignal

from ..config import AccelConfig, FormatConfig
from ..hdl.layouts import PACKED_HEADER, Fault, Mode, StreamLayouts
from ..hdl.unpacker import Unpacker, _Item
from .formal import elaborated, internal

__all__ = ["UnpackerStreamProof", "UnpackerProgressProof", "UnpackerPassProof", "unpacker_config"]

def unpacker_config(xbits: int = 1) -> AccelConfig:
    """8 columns × 4 rows, b = 2, U = 8 (one micro-block per row), one K-tile per K-group, passes of
    up to 2 K- and 2 N-tiles, an 8-bit weight bus: the 64-bit header takes 8 beats, the 72-bit
    buffer holds one item and one beat. With ``xbits`` 1 a record may be an odd number of bits; with
    2 every length is even (:attr:`~.unpacker.UnpackerSizes.granule` 2: the buffer's shifters leave
    out their lowest stage)."""
    return AccelConfig(fmt=FormatConfig(wbits=2, abits=4, ublock=8, group=4, xbits=xbits), rows=4, cols=8,
                       acc_bits=16, max_tokens=2, max_k=8, max_n=16, weight_bus=8)


_OUTPUTS = ("header", "exps", "rows")


class _Harness(Elaboratable):
    """Free beats on ``i`` and a free reset; ``ready`` of every output free, or 1 with
    ``outputs_ready``."""

    def __init__(self, cfg: AccelConfig | None = None, *, unpacker=None, outputs_ready: bool = False):
        self.cfg = unpacker_config() if cfg is None else cfg
        self.unpacker = Unpacker(self.cfg) if unpacker is None else unpacker
        self.outputs_ready = outputs_ready

    def _drive(self, m: Module):
        """Add the unpacker with free inputs; return its fragment."""
        m.d.comb += ResetSignal().eq(AnySeq(1))
        dut = self.unpacker
        m.submodules.unpacker = fragment = elaborated(dut)
        m.d.comb += [dut.i.valid.eq(AnySeq(1)), dut.i.payload.as_value().eq(AnySeq(len(dut.i.payload.as_value())))]
        for name in _OUTPUTS:
            m.d.comb += getattr(dut, name).ready.eq(1 if self.outputs_ready else AnySeq(1))
        return fragment

    @staticmethod
    def _waiting(m: Module, port, name: str):
        """Whether ``port``'s beat waited (offered, not taken) in the cycle before."""
        waited = Signal(name=f"{name}_waited")
        m.d.sync += waited.eq(port.valid & ~port.ready)
        return waited

    @staticmethod
    def _after_fault(m: Module, dut):
        """Whether ``fault`` was raised since reset (for covers)."""
        seen = Signal(name="fault_seen")
        with m.If(dut.fault != Fault.NONE):
            m.d.sync += seen.eq(1)
        return seen


class UnpackerStreamProof(_Harness):
    """The stream rules on the three outputs and clean pass starts (module docstring)."""

    def elaborate(self, platform):
        m = Module()
        fragment = self._drive(m)
        dut = self.unpacker
        for name in _OUTPUTS:
            port = getattr(dut, name)
            payload = port.payload.as_value()
            before = Signal.like(payload, name=f"{name}_before")
            m.d.sync += before.eq(payload)
            m.d.comb += Assert(~self._waiting(m, port, name) | (port.valid & (payload == before)))
        # Clean pass starts: a beat taken at a pass boundary lands in the reset state.
        state, fill, need, spare, buffer, last_taken = (
            internal(fragment, name) for name in ("state", "fill", "need", "spare", "buffer", "last_taken"))
        taken = dut.i.valid & dut.i.ready
        boundary = Signal(init=1)
        with m.If(taken):
            m.d.sync += boundary.eq(dut.i.payload.last)
        clean = ((state == _Item.HEADER) & (fill == 0) & (buffer == 0) & (need == PACKED_HEADER.size)
                 & (spare == -PACKED_HEADER.size))
        m.d.comb += Assert(~(taken & boundary) | clean)
        # Invariants (k-induction): at a boundary the tlast beat waits to be parsed or the unpacker
        # is clean; a taken tlast beat means a boundary.
        m.d.comb += [Assert(~boundary | last_taken | clean), Assert(~last_taken | boundary)]
        m.d.comb += Cover(taken & boundary & (state == _Item.HEADER) & _Harness._after_fault(m, dut))
        return m


class UnpackerProgressProof(_Harness):
    """Progress (module docstring), the outputs always ready: ``i.ready`` is never low for
    ``bound`` cycles in a row.

    Parameters
    ----------
    bound : int
        Default :data:`PROGRESS_BOUND` (the smallest that k-induction proves for
        :func:`unpacker_config`; 7 does not close).
    invariants : bool
        Assert the induction invariants (register ranges) too, or only the property (a bounded
        check from reset, whose counterexample is a hang itself).
    """

    #: Cycles in a row the input may be refused, for :func:`unpacker_config`.
    PROGRESS_BOUND = 8

    def __init__(self, cfg=None, *, unpacker=None, bound: int | None = None, invariants: bool = True):
        super().__init__(cfg, unpacker=unpacker, outputs_ready=True)
        self.bound = self.PROGRESS_BOUND if bound is None else bound
        self.invariants = invariants

    def elaborate(self, platform):
        m = Module()
        fragment = self._drive(m)
        dut = self.unpacker
        refused = Signal(range(self.bound + 1))
        with m.If(dut.i.ready):
            m.d.sync += refused.eq(0)
        with m.Elif(refused != self.bound):
            m.d.sync += refused.eq(refused + 1)
        m.d.comb += Assert(refused < self.bound)
        if self.invariants:
            self._ranges(m, fragment)
        return m

    def _ranges(self, m, fragment):
        """Invariants: the state, lengths and fill hold values they can reach, and the copies of
        registers (the state flags, `spare`, `fill`, the outputs' `valid`) equal their registers."""
        state, fill, need, spare = (internal(fragment, name) for name in ("state", "fill", "need", "spare"))
        sizes = self.unpacker.sizes
        # The shortest item: a row of codes, or the prologue.
        shortest = min(self.cfg.cols * self.cfg.fmt.wbits, sizes.prologue_bits or PACKED_HEADER.size)
        m.d.comb += [Assert(state <= max(item.value for item in _Item)), Assert(fill <= sizes.capacity),
                     Assert(need <= sizes.item_bits), Assert(need >= shortest), Assert(spare == fill - need)]
        granular = [fill, need]
        # The copies the unpacker chooses its map queue's enables and its ready from equal the
        # registers they copy.
        for kind in Unpacker._PARSING:
            m.d.comb += [Assert(internal(fragment, f"{name}_{kind.name.lower()}") == (state == kind))
                         for name in ("state_is", "queue_in")]
        m.d.comb += Assert(internal(fragment, "fill_copy0") == fill)
        m.d.comb += [Assert(internal(fragment, copy) == spare) for copy in ("beat_spare", "queue_spare")] + [
            Assert(internal(fragment, f"{port}__valid_copy0") == getattr(self.unpacker, port).valid)
            for port in ("header", "exps", "rows")]
        # The map queue's prefixes (where a row's codes start) are map fields' lengths and its
        # bodies rows' codes and records, so a row's length stays an item's at most.
        depth = (sizes.placement.ahead + 1) * self.cfg.rows if sizes.record else 0
        codes = self.cfg.cols * self.cfg.fmt.wbits // (2 if self.cfg.multi_precision else 1)
        for i in range(depth):
            body = internal(fragment, f"queue_body_{i}")
            prefix = internal(fragment, f"queue_prefix_{i}")
            m.d.comb += [Assert(prefix <= sizes.prefix_bits), Assert(body >= codes), Assert(body <= sizes.row_bits)]
            granular += [prefix, body]
        # Every length is a whole number of granules (the shifters leave out the bits below one).
        low = sizes.granule.bit_length() - 1
        if low:
            m.d.comb += [Assert(count[:low] == 0) for count in granular]
        # The next row's length and what ``spare`` changes by for it are entry 1's, registered with it.
        if depth:
            length = internal(fragment, "row_length")
            m.d.comb += Assert(length == internal(fragment, "queue_body_1") + internal(fragment, "queue_prefix_1"))
            m.d.comb += [Assert((internal(fragment, f"row_change_{added}") + length)[:sizes.spare_bits] == added)
                         for added in (0, sizes.bus_bits)]


class UnpackerPassProof(_Harness):
    """Whole passes or faults (module docstring), by k-induction; one K-tile per K-group
    (``group == rows``: an exponent vector ``E`` before every tile).

    Its invariants relate the harness's counts to the unpacker's pass registers: in a pass (states
    EMIN … END) the registers hold the last header beat's fields, and the rows and exponent beats
    loaded so far are those of the tiles and rows before ``(tile_n, tile_k, row)``.

    Parameters
    ----------
    invariants : bool
        Assert the invariants too, or only the property (a bounded check from reset).
    """

    def __init__(self, cfg=None, *, unpacker=None, invariants: bool = True):
        cfg = unpacker_config() if cfg is None else cfg
        if cfg.fmt.group != cfg.rows:
            self._MustUse__silence = True  # refused: never elaborated
            raise ValueError(f"UnpackerPassProof counts one K-tile per K-group: group must equal rows "
                             f"({cfg.rows}), not {cfg.fmt.group!r}")
        super().__init__(cfg, unpacker=unpacker)
        self.invariants = invariants

    def elaborate(self, platform):
        m = Module()
        regs = self._capture_pass_registers()
        fragment = self._drive(m)
        dut, cfg = self.unpacker, self.cfg
        # A beat is new when it is offered and the one before did not wait: it was loaded in the
        # cycle before, in the order the unpacker parses its items.
        new = {name: getattr(dut, name).valid & ~self._waiting(m, getattr(dut, name), name) for name in _OUTPUTS}
        header = dut.header.payload
        fields = header.fields
        tiles = (fields.k_tiles + 1) * (fields.n_tiles + 1)
        good = header.fault == Fault.NONE
        raw = fields.mode == Mode.RAW
        # Counters wide enough for the longest pass's rows (and its E_min and E beats).
        sf = StreamLayouts(cfg)
        width = (sf.max_k_tiles * sf.max_n_tiles * max(cfg.rows, 2)).bit_length() + 1
        due_rows, due_exps, got_rows, got_exps = (Signal(width, name=n) for n in
                                                  ("due_rows", "due_exps", "got_rows", "got_exps"))
        faulted = Signal()
        with m.If(dut.fault != Fault.NONE):
            m.d.sync += faulted.eq(1)
        with m.If(new["rows"]):
            m.d.sync += got_rows.eq(got_rows + 1)
        with m.If(new["exps"]):
            m.d.sync += got_exps.eq(got_exps + 1)
        # This cycle's pass: a new header beat starts the count.
        now_due_rows = Mux(new["header"], Mux(good, tiles * cfg.rows, 0), due_rows)
        now_due_exps = Mux(new["header"], Mux(good & ~raw, tiles + fields.n_tiles + 1, 0), due_exps)  # E, E_min
        now_faulted = faulted & ~new["header"]
        with m.If(new["header"]):
            m.d.sync += [due_rows.eq(now_due_rows), due_exps.eq(now_due_exps), got_rows.eq(new["rows"]),
                         got_exps.eq(new["exps"]), faulted.eq(dut.fault != Fault.NONE)]
            # The pass before is whole, or it faulted.
            m.d.comb += Assert(faulted | ((got_rows == due_rows) & (got_exps == due_exps)))
        # Never more than due, nothing after a fault.
        now_got_rows = Mux(new["header"], 0, got_rows)
        now_got_exps = Mux(new["header"], 0, got_exps)
        m.d.comb += [Assert(~new["rows"] | ((now_got_rows < now_due_rows) & ~now_faulted)),
                     Assert(~new["exps"] | ((now_got_exps < now_due_exps) & ~now_faulted))]
        m.d.comb += Cover(new["header"] & ~faulted & (due_exps != 0) & (got_rows == due_rows)
                          & (got_exps == due_exps))
        if self.invariants:
            self._invariants(m, fragment, regs, now_got_rows + new["rows"], now_got_exps + new["exps"],
                             now_due_rows, now_due_exps, now_faulted)
        return m

    def _capture_pass_registers(self) -> dict:
        """The pass registers (unnamed signals in a dict), as the unpacker's
        ``_pass_registers`` creates them while it elaborates: the harness wraps that method on
        the instance, the block's code unchanged."""
        dut, regs = self.unpacker, {}
        create = dut._pass_registers

        def capture(m):
            regs.update(create(m))
            return regs
        dut._pass_registers = capture
        return regs

    def _invariants(self, m, fragment, regs, rows, exps, due_rows, due_exps, faulted):
        """``rows``/``exps``: the beats loaded before this cycle in this cycle's pass."""
        cfg, header = self.cfg, self.unpacker.header.payload
        state = internal(fragment, "state")
        # Named copies of the unnamed pass registers (for the counterexample traces).
        named = {name: Signal.like(reg, name=f"pass_{name}") for name, reg in regs.items()}
        m.d.comb += [named[name].eq(reg) for name, reg in regs.items()]
        regs = named
        k_tiles, n_tiles = regs["k_tiles"], regs["n_tiles"]
        # (``refused``: the cycle after a refused header's parse, in the state a good one leads to,
        # the refused beat waiting on ``header`` so that nothing is parsed: no pass.)
        refused = internal(fragment, "refused")
        with m.If(refused):
            m.d.comb += [Assert(header.fault == Fault.HEADER), Assert(self.unpacker.header.valid),
                         Assert((state == _Item.PROLOGUE) | (state == _Item.ROW))]
        in_pass = ((state != _Item.HEADER) & (state != _Item.DRAIN) & (state <= max(item.value for item in _Item))
                   & ~refused)
        tiles_before = regs["tile_n"] * (k_tiles + 1) + regs["tile_k"]
        first = (state == _Item.EMIN) | (state == _Item.PROLOGUE)
        exps_before = Mux(regs["raw"], 0, regs["tile_n"] * (k_tiles + 2)
                          + Mux(first, 0, Mux(state == _Item.EXPS, 1, 2) + regs["tile_k"]))
        with m.If(in_pass):
            m.d.comb += [
                Assert(header.fault == Fault.NONE),
                Assert(k_tiles == header.fields.k_tiles), Assert(n_tiles == header.fields.n_tiles),
                Assert(regs["raw"] == (header.fields.mode == Mode.RAW)),
                Assert(due_rows == (k_tiles + 1) * (n_tiles + 1) * cfg.rows),
                Assert(due_exps == Mux(regs["raw"], 0, (n_tiles + 1) * (k_tiles + 2))),
                Assert(regs["row"] < cfg.rows), Assert(regs["tile_k"] <= k_tiles),
                Assert(regs["tile_n"] <= n_tiles), Assert(~faulted),
                Assert(~regs["raw"] | (state == _Item.ROW) | (state == _Item.END)),
            ]
            with m.If(state == _Item.END):
                m.d.comb += [Assert(rows == due_rows), Assert(exps == due_exps)]
            with m.Else():
                m.d.comb += [Assert(rows == tiles_before * cfg.rows + regs["row"]), Assert(exps == exps_before)]
                with m.If(state != _Item.ROW):
                    m.d.comb += Assert(regs["row"] == 0)
                with m.If(state == _Item.EMIN):
                    m.d.comb += Assert(regs["tile_k"] == 0)
                with m.If(state == _Item.PROLOGUE):
                    m.d.comb += [Assert(regs["tile_k"] == 0), Assert(regs["tile_n"] == 0)]
        with m.Else():
            # Between passes (HEADER) and while dropping one (DRAIN): the pass is whole or faulted.
            m.d.comb += Assert(faulted | ((rows == due_rows) & (exps == due_exps)))
            m.d.comb += [Assert(rows <= due_rows), Assert(exps <= due_exps)]
