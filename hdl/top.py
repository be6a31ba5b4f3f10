"""The accelerator's top level: AXI4-Stream weights, activations and results around the array and
the PPU (docs/hardware.md has the ports, the stream layouts and the cycle model).

:class:`AcceleratorCore` is built on :mod:`amaranth.lib.stream` (``weights`` and ``act`` in,
``result`` out); :class:`Accelerator` exposes the same streams with AXI4-Stream port names
(``s_axis_weights_tdata``/``_tvalid``/``_tready``/``_tlast``, ``s_axis_act_*``, ``m_axis_result_*``)
so the Verilog drops into existing designs.

Control, per pass (one layer header, at most ``max_tokens`` tokens):

* the **loader** takes the header, then per weight tile the tile header (the PPU shifts ``d``) and
  the ``R`` row beats into the shadow banks; it waits while the shadow holds a tile whose first
  token has not yet reached the PPU;
* the **issuer** sends each tile's ``M`` activation vectors into the array, one per cycle (one every
  ``T`` cycles with shared ReCoN, after the previous tile drained), tagging each token with its
  index and the tile's place in its K-group and the layer;
* the **PPU** accumulates and emits result beats. Its full output register stalls everything
  (``en = ~result.valid | result.ready``).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import AccelConfig
from .array import Array
from .ppu import PPU, token_tag_layout
from .stream_format import MODE_RAW, SHIFT_BITS, StreamFormat

__all__ = ["AcceleratorCore", "Accelerator", "STREAMS"]

#: Top-level stream prefixes: (name, direction of tdata).
STREAMS = (("s_axis_weights", "in"), ("s_axis_act", "in"), ("m_axis_result", "out"))


def _beat(width: int) -> stream.Signature:
    return stream.Signature(data.StructLayout({"data": unsigned(width), "last": 1}))


class _Load(enum.Enum, shape=2):
    HEADER = 0
    TILE = 1
    ROWS = 2


def _field(word, offset_width):
    offset, width = offset_width
    return word[offset:offset + width]


class AcceleratorCore(wiring.Component):
    """The accelerator with :mod:`amaranth.lib.stream` ports.

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    weights : In(stream.Signature({"data": weights_width, "last": 1}))
        Layer header, tile headers and row beats (``last`` is not used by the hardware).
    act : In(stream.Signature({"data": R·a, "last": 1}))
        Activation vectors (``last`` is not used by the hardware).
    result : Out(stream.Signature({"data": result_width, "last": 1}))
        Result beats; ``last`` on the last beat of a pass.
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        self.format = sf = StreamFormat(cfg)
        super().__init__({
            "weights": In(_beat(sf.weights_width)),
            "act": In(_beat(sf.act_width)),
            "result": Out(_beat(sf.result_width)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, sf = self.cfg, self.format
        tag_layout = token_tag_layout(cfg)
        m.submodules.array = array = Array(cfg, tag_bits=tag_layout.size)
        m.submodules.ppu = ppu = PPU(cfg)
        wiring.connect(m, ppu=ppu.result, core=wiring.flipped(self.result))

        en = Signal()
        m.d.comb += en.eq(~ppu.result.valid | ppu.result.ready)
        m.d.comb += [array.en.eq(en), ppu.en.eq(en)]

        # -- pass registers (layer header) ------------------------------------------------------
        busy = Signal()
        mode = Signal()
        tokens = Signal(sf.header_fields["tokens"][1])
        k_tiles = Signal(sf.header_fields["k_tiles"][1])
        n_tiles = Signal(sf.header_fields["n_tiles"][1])
        m.d.comb += [array.raw.eq(mode == MODE_RAW), ppu.raw.eq(mode == MODE_RAW)]

        # shadow_full: a tile sits in the shadow banks; started: its first token has been issued.
        shadow_full = Signal()
        started = Signal()
        arrived = en & array.out.valid & array.out.first
        with m.If(arrived):
            m.d.sync += [shadow_full.eq(0), started.eq(0)]

        self._loader(m, en, busy, mode, tokens, k_tiles, n_tiles, shadow_full, array, ppu)
        self._issuer(m, en, busy, tokens, k_tiles, n_tiles, shadow_full, started, array, tag_layout)

        m.d.comb += [
            ppu.inp.valid.eq(array.out.valid),
            ppu.inp.first.eq(array.out.first),
            ppu.inp.tag.as_value().eq(array.out.tag),
            ppu.inp.sums.eq(array.out.sums),
            ppu.inp.act_sum.eq(array.out.act_sum),
        ]
        with m.If(self.result.valid & self.result.ready & self.result.payload.last):
            m.d.sync += busy.eq(0)
        return m

    def _loader(self, m, en, busy, mode, tokens, k_tiles, n_tiles, shadow_full, array, ppu):
        cfg, sf = self.cfg, self.format
        beat = self.weights
        word = beat.payload.data
        state = Signal(_Load)
        row = Signal(range(cfg.rows))
        tile_k = Signal.like(k_tiles)
        tile_n = Signal.like(n_tiles)
        take = beat.valid & beat.ready
        with m.Switch(state):
            with m.Case(_Load.HEADER):
                m.d.comb += beat.ready.eq(en & ~busy)
                with m.If(take):
                    m.d.sync += [
                        busy.eq(1),
                        mode.eq(_field(word, sf.header_fields["mode"])),
                        tokens.eq(_field(word, sf.header_fields["tokens"])),
                        k_tiles.eq(_field(word, sf.header_fields["k_tiles"])),
                        n_tiles.eq(_field(word, sf.header_fields["n_tiles"])),
                        tile_k.eq(0), tile_n.eq(0), state.eq(_Load.TILE),
                    ]
            with m.Case(_Load.TILE):
                m.d.comb += beat.ready.eq(en & ~shadow_full)
                m.d.comb += [ppu.shift_load.valid.eq(take),
                             ppu.shift_load.d.as_value().eq(word[:cfg.cols * SHIFT_BITS])]
                with m.If(take):
                    m.d.sync += [row.eq(0), state.eq(_Load.ROWS)]
            with m.Case(_Load.ROWS):
                m.d.comb += beat.ready.eq(en)
                cols, b = cfg.cols, cfg.fmt.wbits
                m.d.comb += [
                    array.load.valid.eq(take),
                    array.load.row.eq(row),
                    array.load.codes.as_value().eq(word[sf.code_offset:sf.code_offset + cols * b]),
                    array.load.roles.as_value().eq(word[sf.role_offset:sf.role_offset + 2 * cols]),
                ]
                if sf.config_bits:
                    m.d.comb += array.load.config.eq(word[sf.config_offset:sf.config_offset + sf.config_bits])
                with m.If(take):
                    m.d.sync += row.eq(row + 1)
                    with m.If(row == cfg.rows - 1):
                        m.d.sync += [shadow_full.eq(1), state.eq(_Load.TILE)]
                        with m.If(tile_k == k_tiles):
                            m.d.sync += tile_k.eq(0)
                            with m.If(tile_n == n_tiles):
                                # The next header waits in HEADER until this pass has ended.
                                m.d.sync += state.eq(_Load.HEADER)
                            with m.Else():
                                m.d.sync += tile_n.eq(tile_n + 1)
                        with m.Else():
                            m.d.sync += tile_k.eq(tile_k + 1)

    def _issuer(self, m, en, busy, tokens, k_tiles, n_tiles, shadow_full, started, array, tag_layout):
        cfg = self.cfg
        beat = self.act
        in_tile = Signal()
        done = Signal()
        token = Signal.like(tokens)
        tile_k = Signal.like(k_tiles)
        tile_n = Signal.like(n_tiles)
        period = Signal.like(array.next_period, init=1)
        wait = Signal.like(array.next_period)
        drained = ~array.busy if array.shared else 1
        can_start = busy & ~done & shadow_full & ~started & drained
        m.d.comb += beat.ready.eq(en & (wait == 0) & Mux(in_tile, 1, can_start))
        take = beat.valid & beat.ready

        per_group = cfg.fmt.group // cfg.rows
        place = tile_k % per_group if per_group > 1 else 0
        tag = Signal(tag_layout)
        last_token = token == tokens
        last_k = tile_k == k_tiles
        m.d.comb += [
            tag.m.eq(token),
            tag.group_first.eq(place == 0),
            tag.group_last.eq(place == per_group - 1),
            tag.k_first.eq(tile_k == 0),
            tag.k_last.eq(last_k),
            tag.last.eq(last_token & last_k & (tile_n == n_tiles)),
            array.issue.valid.eq(take),
            array.issue.first.eq(~in_tile),
            array.issue.tag.eq(tag),
            array.issue.x.as_value().eq(beat.payload.data),
        ]
        cur_period = Mux(in_tile, period, array.next_period)
        with m.If(en & (wait != 0)):
            m.d.sync += wait.eq(wait - 1)
        with m.If(take):
            m.d.sync += [wait.eq(cur_period - 1), period.eq(cur_period), token.eq(token + 1),
                         in_tile.eq(1)]
            with m.If(~in_tile):
                m.d.sync += started.eq(1)
            with m.If(last_token):
                m.d.sync += [token.eq(0), in_tile.eq(0)]
                with m.If(last_k):
                    m.d.sync += tile_k.eq(0)
                    with m.If(tile_n == n_tiles):
                        m.d.sync += [done.eq(1), tile_n.eq(0)]
                    with m.Else():
                        m.d.sync += tile_n.eq(tile_n + 1)
                with m.Else():
                    m.d.sync += tile_k.eq(tile_k + 1)
        with m.If(~busy):
            m.d.sync += done.eq(0)


class Accelerator(wiring.Component):
    """MicroScopiQ accelerator with AXI4-Stream ports (see :class:`AcceleratorCore`).

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    s_axis_weights_tdata : In(weights_width)
    s_axis_weights_tvalid, s_axis_weights_tlast : In(1)
    s_axis_weights_tready : Out(1)
    s_axis_act_tdata : In(R·a)
    s_axis_act_tvalid, s_axis_act_tlast : In(1)
    s_axis_act_tready : Out(1)
    m_axis_result_tdata : Out(result_width)
    m_axis_result_tvalid, m_axis_result_tlast : Out(1)
    m_axis_result_tready : In(1)
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        self.format = sf = StreamFormat(cfg)
        members = {}
        for name, width, outgoing in (("s_axis_weights", sf.weights_width, False),
                                      ("s_axis_act", sf.act_width, False),
                                      ("m_axis_result", sf.result_width, True)):
            flow, back = (Out, In) if outgoing else (In, Out)
            members.update({f"{name}_tdata": flow(width), f"{name}_tvalid": flow(1),
                            f"{name}_tlast": flow(1), f"{name}_tready": back(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = AcceleratorCore(self.cfg)
        for name, port in (("s_axis_weights", core.weights), ("s_axis_act", core.act)):
            m.d.comb += [
                port.payload.data.eq(getattr(self, f"{name}_tdata")),
                port.payload.last.eq(getattr(self, f"{name}_tlast")),
                port.valid.eq(getattr(self, f"{name}_tvalid")),
                getattr(self, f"{name}_tready").eq(port.ready),
            ]
        m.d.comb += [
            self.m_axis_result_tdata.eq(core.result.payload.data),
            self.m_axis_result_tlast.eq(core.result.payload.last),
            self.m_axis_result_tvalid.eq(core.result.valid),
            core.result.ready.eq(self.m_axis_result_tready),
        ]
        return m
