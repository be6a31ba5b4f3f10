"""Formal property harness of the accelerator's AXI4-Stream ports (:class:`~microscopiq.hdl.top.Accelerator`).

:class:`AxiProof` drives the three streams of a small accelerator with free beats, free
back-pressure and a free reset in every cycle. It assumes of its sources only what AXI4-Stream
requires of any source (a beat offered is held, with its ``tdata``/``tlast``, until taken; the
reset may interrupt it) and keeps, beside the core, the count the stream format implies: a layer
header announces ``M`` tokens, ``KT`` K-tiles and ``NT`` N-tiles; each activation beat the core takes
is one token of one tile and owes one result beat in its N-tile's last K-tile (MicroScopiQ mode) or
in every tile (raw mode, one tile per K-group), so a pass owes ``M·NT`` (``M·KT·NT``) result beats.
It asserts:

* **stable output**: while ``m_axis_result_tvalid`` is high and ``tready`` low, the next cycle keeps
  ``tvalid`` high and ``tdata``/``tlast`` unchanged (unless reset);
* **no spurious or duplicated beat**: the result beats taken never outnumber the result beats owed
  by the activation beats taken since the reset — in particular nothing appears after a reset
  before a new activation beat that owes a result (no stale beat);
* **no lost beat**: the beat with ``tlast`` is the pass's ``M·NT``-th (``M·KT·NT``-th) result beat,
  and every activation beat the pass needs has been taken by then.

``AxiProof.config()`` is the small configuration the proof runs on (``docs/verification.md``).
"""

from __future__ import annotations

from amaranth import Elaboratable, Module, Mux, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cover, ResetSignal

from ..config import AccelConfig, FormatConfig
from ..hdl.layouts import Mode, StreamLayouts
from ..hdl.top import Accelerator
from .formal import elaborated, internal

__all__ = ["AxiProof"]


class AxiProof(Elaboratable):
    """The AXI4-Stream properties of the module docstring on ``Accelerator(cfg)``.

    Parameters
    ----------
    cfg : AccelConfig, optional
        Default :meth:`config`. One K-tile per K-group (``group == rows``).
    accel : Accelerator, optional
        The block under proof (default ``Accelerator(cfg)``; the mutation tests pass a broken one).
    """

    def __init__(self, cfg: AccelConfig | None = None, *, accel=None):
        self.cfg = self.config() if cfg is None else cfg
        if self.cfg.fmt.group != self.cfg.rows:
            self._MustUse__silence = True  # refused: never elaborated
            raise ValueError(f"AxiProof counts one K-tile per K-group: group must equal rows "
                             f"({self.cfg.rows}), not {self.cfg.fmt.group!r}")
        self.accel = Accelerator(self.cfg) if accel is None else accel

    @staticmethod
    def config() -> AccelConfig:
        """2×2 PEs, a = 4, b = 2, U = 2, no ReCoN, 2 tokens, 2 K-tiles and 2 N-tiles at most."""
        return AccelConfig(fmt=FormatConfig(wbits=2, abits=4, ublock=2, group=2, xbits=1), rows=2,
                           cols=2, acc_bits=16, recon_share=0, max_tokens=2, max_k=4, max_n=4)

    def _source(self, m: Module, rst, prefix: str, width: int):
        """Free beats on ``<prefix>_t*``, held while offered and not taken (AXI4-Stream); return
        the 'beat taken' signal and the data."""
        accel = self.accel
        valid, data, last = (getattr(accel, f"{prefix}_t{name}") for name in ("valid", "data", "last"))
        ready = getattr(accel, f"{prefix}_tready")
        m.d.comb += [valid.eq(AnySeq(1)), data.eq(AnySeq(width)), last.eq(AnySeq(1))]
        held = Signal(name=f"{prefix}_held")
        held_data, held_last = Signal(width, name=f"{prefix}_held_data"), Signal(name=f"{prefix}_held_last")
        m.d.sync += [held.eq(valid & ~ready), held_data.eq(data), held_last.eq(last)]
        m.d.comb += Assume(~held | rst | (valid & (data == held_data) & (last == held_last)))
        return valid & ready, data

    def elaborate(self, platform):
        m = Module()
        rst = AnySeq(1)
        m.d.comb += ResetSignal().eq(rst)
        accel = self.accel
        m.submodules.accel = fragment = elaborated(accel)
        sf = StreamLayouts(self.cfg)
        self._source(m, rst, "s_axis_weights", sf.weights_width)
        act_taken, _ = self._source(m, rst, "s_axis_act", sf.act_width)
        m.d.comb += accel.m_axis_result_tready.eq(AnySeq(1))

        # The pass the weight front end decoded: the core's pass registers (set when the loader takes
        # a header; activations are taken only within a pass). A refused header (one marked result
        # beat, docs/hardware.md) is assumed away: the accounting below is that of a running pass.
        fields = {name: internal(fragment, name, "core") for name in ("mode", "tokens", "k_tiles", "n_tiles")}
        m.d.comb += Assume(~internal(fragment, "refused", "core"))
        token, tile_k = Signal.like(fields["tokens"]), Signal.like(fields["k_tiles"])
        tile_n = Signal(range(sf.max_n_tiles + 1))  # N-tiles whose every token has been taken
        owed = Signal(16)       # result beats owed by the activation beats taken in this pass
        emitted = Signal(16)    # result beats taken in this pass
        raw = fields["mode"] == Mode.RAW.value
        with m.If(act_taken):
            with m.If(raw | (tile_k == fields["k_tiles"])):
                m.d.sync += owed.eq(owed + 1)
            m.d.sync += token.eq(token + 1)
            with m.If(token == fields["tokens"]):
                m.d.sync += [token.eq(0), tile_k.eq(tile_k + 1)]
                with m.If(tile_k == fields["k_tiles"]):
                    m.d.sync += [tile_k.eq(0), tile_n.eq(tile_n + 1)]

        valid, ready = accel.m_axis_result_tvalid, accel.m_axis_result_tready
        data, last = accel.m_axis_result_tdata, accel.m_axis_result_tlast
        result_taken = valid & ready
        tokens, k_tiles, n_tiles = (fields[name] + 1 for name in ("tokens", "k_tiles", "n_tiles"))
        due = tokens * n_tiles * Mux(raw, k_tiles, 1)
        with m.If(result_taken):
            m.d.sync += emitted.eq(emitted + 1)
            with m.If(last):
                m.d.sync += [emitted.eq(0), owed.eq(0), token.eq(0), tile_k.eq(0), tile_n.eq(0)]

        # Stable output under back-pressure.
        stalled = Signal()
        stalled_data, stalled_last = Signal.like(data), Signal()
        m.d.sync += [stalled.eq(valid & ~ready), stalled_data.eq(data), stalled_last.eq(last)]
        m.d.comb += Assert(~stalled | (valid & (data == stalled_data) & (last == stalled_last)))
        # Nothing spurious, stale or duplicated; nothing lost.
        m.d.comb += Assert(~result_taken | (emitted < owed))
        with m.If(result_taken & last):
            m.d.comb += [Assert(emitted + 1 == due), Assert(owed == due), Assert(tile_n == n_tiles)]
        # Not vacuous: a whole pass fits in the depth (checked by the cover task).
        m.d.comb += Cover(result_taken & last & (emitted + 1 == due))
        return m
