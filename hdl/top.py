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
  ``T`` cycles with shared ReCoN, plus the array's tile gap after a tile), tagging each token with its
  index and the tile's place in its K-group and the layer;
* the **PPU** accumulates and emits result beats into the result FIFO. The array and the PPU never
  stall: the issuer takes a token only while the FIFO has room for it and for every token already
  on its way (a registered credit check), so back-pressure on the output stops the input and
  nothing else, and no enable net fans out to the array's registers.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..config import AccelConfig
from .array import Array, load_layout
from .ppu import PPU, token_tag_layout
from ..host.stream_format import MODE_MSQ, MODE_RAW, PPU_LATENCY, SHIFT_BITS, CycleModel, StreamFormat, _recon_latency

__all__ = ["AcceleratorCore", "Accelerator", "accel_top_name", "accel_manifest",
           "generate_accel", "CORE_NAME", "WAIVERS_NAME"]

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
        # Free-running: Yosys folds the blocks' enables away (see the module docstring).
        m.d.comb += [array.en.eq(1), ppu.en.eq(1)]
        credit = self._result_fifo(m, array, ppu)

        # -- pass registers (layer header) ------------------------------------------------------
        busy = Signal()
        mode = Signal()
        tokens = Signal(sf.header_fields["tokens"][1])
        k_tiles = Signal(sf.header_fields["k_tiles"][1])
        n_tiles = Signal(sf.header_fields["n_tiles"][1])
        m.d.comb += [array.raw.eq(mode == MODE_RAW), ppu.raw.eq(mode == MODE_RAW)]

        # shadow_full: a tile's rows are being taken or sit in the shadow banks (the loader waits);
        # shadow_ready: its last row has been written into the shadow (the issuer may start it);
        # started: its first token has been issued.
        shadow_full = Signal()
        shadow_ready = Signal()
        started = Signal()
        arrived = array.out.valid & array.out.first
        with m.If(array.load.valid & (array.load.row == cfg.rows - 1)):
            m.d.sync += shadow_ready.eq(1)
        with m.If(arrived):
            m.d.sync += [shadow_full.eq(0), shadow_ready.eq(0), started.eq(0)]

        self._loader(m, busy, mode, tokens, k_tiles, n_tiles, shadow_full, array, ppu)
        self._issuer(m, credit, busy, tokens, k_tiles, n_tiles, shadow_ready, started, array, tag_layout)

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

    def _result_fifo(self, m, array, ppu):
        """The result FIFO after the PPU's result register, and the credit the issuer needs.

        Every token in the array (issued, not yet at the PPU) or in the PPU's
        :data:`~microscopiq.host.stream_format.PPU_LATENCY` stages may still write one beat, so the
        FIFO cannot overflow while ``committed + PPU_LATENCY ≤ depth``, ``committed`` being the
        tokens in the array plus the FIFO's beats. ``credit`` for the next cycle compares this
        cycle's ``committed`` register with a constant (a short path, whatever the handshakes do),
        leaving room for the two beats by which ``committed`` can grow in this cycle (a token
        issued, a beat written) and for the token the credit admits. Depth:
        :attr:`~microscopiq.host.stream_format.CycleModel.result_fifo_depth`."""
        depth = CycleModel.of(self.cfg, _recon_latency(self.cfg)).result_fifo_depth
        m.submodules.result_fifo = out = SyncFIFO(width=len(ppu.result.payload.as_value()), depth=depth)
        m.d.comb += [
            out.w_en.eq(ppu.result.valid),
            out.w_data.eq(ppu.result.payload.as_value()),
            out.r_en.eq(self.result.ready),
            self.result.valid.eq(out.r_rdy),
            self.result.payload.as_value().eq(out.r_data),
        ]
        committed = Signal(range(depth + 1))
        grows = array.issue.valid + ppu.result.valid
        shrinks = array.out.valid + (out.r_rdy & self.result.ready)
        credit = Signal(init=1)
        m.d.sync += [committed.eq(committed + grows - shrinks),
                     credit.eq(committed + 2 + PPU_LATENCY + 1 <= depth)]
        return credit

    def _loader(self, m, busy, mode, tokens, k_tiles, n_tiles, shadow_full, array, ppu):
        cfg, sf = self.cfg, self.format
        beat = self.weights
        # A taken tile header (the PPU shifts) or row beat reaches the PPU and the array one cycle
        # later (LOAD_STAGE), from registers: the input port and the loader's state then
        # drive no path across the die into the shadow registers' enables. The issuer starts the
        # tile once its last row is in the shadow (shadow_ready), so the shadow's period and banks
        # are complete when its first token swaps them in.
        shift_next = Signal.like(ppu.shift_load)
        load_next = Signal(load_layout(cfg))
        m.d.sync += [ppu.shift_load.eq(shift_next), array.load.eq(load_next)]
        # tdata is only looked at with tvalid (4-state simulators drive X before the first beat).
        word = Mux(beat.valid, beat.payload.data, 0)
        state = Signal(_Load)
        row = Signal(range(cfg.rows))
        # Only the valid flags depend on the loader's state: the fields take the word every cycle,
        # so the wide registers need no reset or enable from the state (one fan-out net less).
        cols, b = cfg.cols, cfg.fmt.wbits
        m.d.comb += [
            shift_next.d.as_value().eq(word[:cols * SHIFT_BITS]),
            load_next.row.eq(row),
            load_next.codes.as_value().eq(word[sf.code_offset:sf.code_offset + cols * b]),
            load_next.roles.as_value().eq(word[sf.role_offset:sf.role_offset + 2 * cols]),
        ]
        if sf.config_bits:
            m.d.comb += load_next.config.eq(word[sf.config_offset:sf.config_offset + sf.config_bits])
        tile_k = Signal.like(k_tiles)
        tile_n = Signal.like(n_tiles)
        take = beat.valid & beat.ready
        with m.Switch(state):
            with m.Case(_Load.HEADER):
                m.d.comb += beat.ready.eq(~busy)
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
                m.d.comb += beat.ready.eq(~shadow_full)
                m.d.comb += shift_next.valid.eq(take)
                with m.If(take):
                    m.d.sync += [row.eq(0), state.eq(_Load.ROWS)]
            with m.Case(_Load.ROWS):
                m.d.comb += [beat.ready.eq(1), load_next.valid.eq(take)]
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

    def _issuer(self, m, credit, busy, tokens, k_tiles, n_tiles, shadow_ready, started, array, tag_layout):
        cfg = self.cfg
        beat = self.act
        in_tile = Signal()
        done = Signal()
        token = Signal.like(tokens)
        tile_k = Signal.like(k_tiles)
        tile_n = Signal.like(n_tiles)
        period = Signal.like(array.next_period, init=1)
        wait = Signal(range(array.max_period + array.tile_gap_extra + 1))
        can_start = busy & ~done & shadow_ready & ~started
        m.d.comb += beat.ready.eq(credit & (wait == 0) & Mux(in_tile, 1, can_start))
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
            array.issue.x.as_value().eq(Mux(beat.valid, beat.payload.data, 0)),
        ]
        cur_period = Mux(in_tile, period, array.next_period)
        with m.If(wait != 0):
            m.d.sync += wait.eq(wait - 1)
        with m.If(take):
            # Tokens T apart; after a tile's last one, also the array's tile gap.
            m.d.sync += [wait.eq(cur_period - 1 + Mux(last_token, array.tile_gap_extra, 0)),
                         period.eq(cur_period), token.eq(token + 1), in_tile.eq(1)]
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


# -- generation ---------------------------------------------------------------------------------------

CORE_NAME = "accel.core"
#: Verilator control file of the message-matched lint waivers, shipped with the core.
WAIVERS_NAME = "waivers.vlt"


def accel_top_name(cfg: AccelConfig) -> str:
    """Verilog module name of the accelerator: ``msq_accel_<R>x<C>_a<a>_w<b>_<recon>``."""
    recon = {0: "plain", 1: "rowrecon"}.get(cfg.recon_share, f"shared{cfg.recon_share}")
    return f"msq_accel_{cfg.rows}x{cfg.cols}_a{cfg.fmt.abits}_w{cfg.fmt.wbits}_{recon}"


def accel_manifest(cfg: AccelConfig) -> dict:
    """Block-specific manifest entries: parameters, stream widths and layouts, latencies and the
    cycle-model constants (``docs/hardware.md`` explains each)."""
    sf = StreamFormat(cfg)
    model = CycleModel.of(cfg, _recon_latency(cfg))
    cols, b = cfg.cols, cfg.fmt.wbits
    return {
        "block": "accel",
        "parameters": cfg.to_json(),
        "streams": {
            "s_axis_weights": {
                "direction": "in", "width": sf.weights_width,
                "header": {name: {"offset": o, "width": w} for name, (o, w) in sf.header_fields.items()},
                "tile_header": {"d": {"offset": 0, "width": SHIFT_BITS, "count": cols}},
                "row": {"codes": {"offset": sf.code_offset, "width": b, "count": cols},
                        "roles": {"offset": sf.role_offset, "width": 2, "count": cols},
                        "recon_config": {"offset": sf.config_offset, "width": sf.config_bits}},
                "beats_per_tile": model.load_beats,
            },
            "s_axis_act": {"direction": "in", "width": sf.act_width,
                           "x": {"offset": 0, "width": cfg.fmt.abits, "count": cfg.rows}},
            "m_axis_result": {
                "direction": "out", "width": sf.result_width,
                "msq": {"y_int": {"offset": 0, "width": cfg.acc_bits, "count": cols, "signed": True},
                        "overflow": {"offset": cols * cfg.acc_bits, "width": 1, "count": cols}},
                "raw": {"p": {"offset": 0, "width": sf.partial_bits, "count": cols, "signed": True},
                        "s": {"offset": cols * sf.partial_bits, "width": sf.sum_bits, "signed": True}},
            },
        },
        "modes": {"msq": MODE_MSQ, "raw": MODE_RAW},
        "latency_cycles": {
            "act_to_ppu": model.depth,
            "act_to_result": model.depth + model.ppu_latency,
            "recon": model.pipeline - int(model.shared),
            "ppu": model.ppu_latency,
        },
        "throughput_per_cycle": "1 token (R activations x C columns) per cycle per tile; 1/T with shared ReCoN",
        "cycle_model": {"rows": model.rows, "pipeline": model.pipeline, "load_beats": model.load_beats,
                        "shared": model.shared, "tile_gap": model.tile_gap,
                        "ppu_latency": model.ppu_latency, "result_fifo_depth": model.result_fifo_depth},
    }


def _core_file(cfg: AccelConfig, top_name: str, verilog_name: str) -> str:
    from .. import __version__
    from ..flow.lint import VERILATOR_WAIVERS
    options = "".join(f"\n          - {arg}"
                      for arg in ["-Wall", *(f"-Wno-{name}" for name in VERILATOR_WAIVERS)])
    return f"""CAPI=2:
# FuseSoC core of a generated MicroScopiQ accelerator (recon {cfg.to_json()['recon']}).
name: microscopiq:accel:{top_name}:{__version__}
description: MicroScopiQ accelerator {cfg.rows}x{cfg.cols}, a={cfg.fmt.abits}, b={cfg.fmt.wbits}, AXI4-Stream

filesets:
  rtl:
    files:
      - {verilog_name}
    file_type: verilogSource
  waivers:
    files:
      - {WAIVERS_NAME}
    file_type: vlt

targets:
  default:
    filesets: [rtl]
    toplevel: {top_name}
  lint:
    default_tool: verilator
    filesets: [waivers, rtl]
    toplevel: {top_name}
    tools:
      verilator:
        mode: lint-only
        verilator_options:{options}
"""


def generate_accel(cfg: AccelConfig, out_dir) -> dict:
    """Write the accelerator for ``cfg`` into ``out_dir``: ``accel.v``, ``manifest.json``,
    ``files.f``, the FuseSoC core ``accel.core`` (targets ``default`` and ``lint``: Verilator
    ``-Wall`` with the project's named waivers) and its ``waivers.vlt``; return the manifest.
    Nothing is written if anything fails."""
    from ..flow.lint import waiver_control_file
    from ..flow.generate import write_generated
    top_name = accel_top_name(cfg)
    extra = {CORE_NAME: _core_file(cfg, top_name, "accel.v"),
             WAIVERS_NAME: waiver_control_file().read_text()}
    return write_generated(out_dir, Accelerator(cfg), top_name, accel_manifest(cfg), basename="accel",
                           extra_files=extra)


#: ``generate accel`` options that map to :class:`AccelConfig` / :class:`FormatConfig` fields.
_OPTION_FIELDS = ("rows", "cols", "wbits", "abits", "ublock", "group", "xbits", "acc_bits",
                  "max_tokens", "max_k", "max_n")


def config_from_args(args) -> AccelConfig:
    """The :class:`AccelConfig` of ``generate accel``'s options: the ``--preset`` (default
    ``default``) with every option given on the command line replacing its value. The config's
    own checks refuse invalid combinations, naming the rule."""
    from ..config import PRESETS, ConfigError, ReconSharing
    if args.preset not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, not {args.preset!r}")
    changes = {name: getattr(args, name) for name in _OPTION_FIELDS if getattr(args, name) is not None}
    if args.recon is not None:
        changes["recon_share"] = ReconSharing.parse(args.recon)
    return PRESETS[args.preset].replace(**changes)


def _run_accel(args) -> int:
    from pathlib import Path

    from ..outputs import OutputError, check_output_dir
    from ..flow.generate import FILELIST_NAME, MANIFEST_NAME, _output_error
    cfg = config_from_args(args)
    try:
        check_output_dir(args.out)  # before the elaboration, which takes seconds to minutes
        manifest = generate_accel(cfg, args.out)
    except (OutputError, OSError) as error:
        raise _output_error(args.out, error) from error
    streams = manifest["streams"]
    print(f"wrote {Path(args.out) / manifest['files'][0]} (module {manifest['top']}; tdata widths: "
          f"weights {streams['s_axis_weights']['width']}, act {streams['s_axis_act']['width']}, "
          f"result {streams['m_axis_result']['width']}; latency act->result "
          f"{manifest['latency_cycles']['act_to_result']} cycles), {MANIFEST_NAME}, {FILELIST_NAME}, "
          f"{CORE_NAME}, {WAIVERS_NAME}")
    return 0


def add_accel_command(generators) -> None:
    """``microscopiq generate accel``."""
    from ..config import PRESETS
    from ..flow.generate import FILELIST_NAME, MANIFEST_NAME, add_out_argument
    defaults = AccelConfig()
    fmt = defaults.fmt
    parser = generators.add_parser(
        "accel", help="the whole accelerator with AXI4-Stream ports",
        description="Generate the MicroScopiQ accelerator: an RxC weight-stationary INT PE array with "
                    "ReCoN (per row, shared by S rows, or none), the post-processing unit and "
                    "AXI4-Stream weights/activations/results ports. Writes accel.v, "
                    f"{MANIFEST_NAME} (parameters, ports, stream widths and layouts, latencies, "
                    f"cycle-model constants), {FILELIST_NAME} and the FuseSoC core {CORE_NAME}. "
                    "Invalid combinations are refused with the rule they break (exit 2, nothing "
                    "written).",
        epilog="example: microscopiq generate accel --rows 8 --cols 8 --wbits 4 --recon per-row "
               "--out build/accel/")
    parser.add_argument("--rows", type=int, metavar="R",
                        help=f"PE rows R = input columns k per weight tile; divides --group (default {defaults.rows})")
    parser.add_argument("--cols", type=int, metavar="C",
                        help=f"PE columns C = outputs n per tile, a multiple of --ublock (default {defaults.cols})")
    parser.add_argument("--wbits", type=int, metavar="B",
                        help="weight slot width b: 2, 3 or 4 (MicroScopiQ), 8 (uniform mode, --recon "
                             f"none) (default {fmt.wbits})")
    parser.add_argument("--abits", type=int, metavar="A",
                        help=f"activation width a, signed: 4 or 8 (default {fmt.abits})")
    parser.add_argument("--ublock", type=int, metavar="U",
                        help=f"micro-block size U, a power of two (default {fmt.ublock})")
    parser.add_argument("--group", type=int, metavar="G",
                        help=f"K-group size G, a power of two and a multiple of R (default {fmt.group})")
    parser.add_argument("--xbits", type=int, metavar="XB",
                        help=f"bits of the shared outlier exponent X, 1 to 6 (default {fmt.xbits})")
    parser.add_argument("--acc-bits", type=int, metavar="N",
                        help=f"saturating accumulator width, 16 to 64, enough for --max-k "
                             f"(default {defaults.acc_bits})")
    parser.add_argument("--recon", metavar="per-row|shared:S|none",
                        help="ReCoN arrangement: one network per PE row, one per S rows "
                             "(time-multiplexed), or none (uniform layers only) (default per-row)")
    parser.add_argument("--max-tokens", type=int, metavar="T",
                        help=f"tokens per pass (PPU token memory depth) (default {defaults.max_tokens})")
    parser.add_argument("--max-k", type=int, metavar="K",
                        help=f"largest layer K accepted (default {defaults.max_k})")
    parser.add_argument("--max-n", type=int, metavar="N",
                        help=f"largest layer N accepted (default {defaults.max_n})")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS), metavar="NAME",
                        help="start from a named configuration of microscopiq/config.py "
                             f"({', '.join(PRESETS)}); the options above replace its values; the "
                             "defaults shown are those of 'default' (default: default)")
    add_out_argument(parser, "build/accel")
    parser.set_defaults(func=_run_accel)
