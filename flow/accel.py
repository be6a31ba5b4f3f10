"""``microscopiq generate accel``: the accelerator's Verilog, manifest, FuseSoC core and lint
waivers (the hardware itself is :class:`microscopiq.hdl.top.Accelerator`).

:func:`generate_accel` writes ``accel.v`` (reproducible, with a header comment:
:mod:`~microscopiq.flow.provenance`), ``manifest.json``, ``files.f``, the FuseSoC core
``accel.core`` (:mod:`~microscopiq.flow.fusesoc`), its ``waivers.vlt`` and smoke testbench. The top
module is named by :func:`~microscopiq.flow.naming.accel_top_name` unless ``name`` is given; with
non-default :class:`~microscopiq.hdl.soc.SocPorts` the top level is the
:class:`~microscopiq.hdl.soc.SocAccelerator` wrapper.
"""

from __future__ import annotations

import argparse

from amaranth import Shape
from amaranth.lib import data

from ..config import DSP_TARGETS, PRESETS, AccelConfig, ConfigError, ReconSharing, resolve_config
from ..hdl.core import LOAD_STAGE, ROW_BUFFER_DEPTH
from ..hdl.dsp_mult import VERILOG_MODEL
from ..hdl.layouts import PACKED_HEADER, STREAM_VERSION, Fault, Mode, StreamLayouts
from ..hdl.soc import RESET_STYLES, STREAMS, SocAccelerator, SocPorts
from ..hdl.top import Accelerator
from ..hdl.weight_decoder import WeightDecoder
from ..host.stream_format import CycleModel
from .generate import is_enum
from .naming import accel_top_name, add_name_argument, check_name, option_values
from .provenance import generate_command

__all__ = ["accel_manifest", "layout_fields", "generate_accel", "soc_manifest", "accel_options",
           "add_accel_options", "config_from_args", "add_accel_command", "add_soc_arguments",
           "soc_ports_from_args",
           "CORE_NAME", "WAIVERS_NAME"]


# -- generation ---------------------------------------------------------------------------------------

CORE_NAME = "accel.core"
#: Verilator control file of the message-matched lint waivers, shipped with the core.
WAIVERS_NAME = "waivers.vlt"


def layout_fields(layout: data.StructLayout) -> dict:
    """The manifest's description of a beat layout: per field its ``offset`` and ``width`` (an
    array's element width, with ``count``), ``signed`` when signed, ``enum`` (name: value) for an
    enumeration; a nested layout (the ReCoN configuration) as one field of its whole width."""
    out = {}
    for name, field in layout:
        shape, entry = field.shape, {"offset": field.offset}
        if isinstance(shape, data.ArrayLayout) and not isinstance(shape.elem_shape, data.Layout):
            shape, entry["count"] = shape.elem_shape, shape.length
        cast = Shape.cast(shape)
        entry["width"] = cast.width
        if cast.signed:
            entry["signed"] = True
        if is_enum(shape):
            entry["enum"] = {member.name: member.value for member in shape}
        out[name] = entry
    return out


def accel_manifest(cfg: AccelConfig) -> dict:
    """Block-specific manifest entries: parameters, stream widths and beat layouts (from
    :class:`~microscopiq.hdl.layouts.StreamLayouts`), latencies and the cycle-model constants
    (``docs/hardware.md`` explains each)."""
    layouts = StreamLayouts(cfg)
    model = CycleModel.of(cfg)
    return {
        "block": "accel",
        "parameters": cfg.to_json(),
        "streams": {
            "s_axis_weights": {
                "direction": "in", "width": layouts.weights_width,
                "format": f"packed weight stream version {STREAM_VERSION} (docs/format.md)",
                "header": layout_fields(PACKED_HEADER),
                # What the on-chip decoders make of it (docs/hardware.md, "Weight front end").
                "decoded": {"header": layout_fields(layouts.header), "tile": layout_fields(layouts.tile),
                            "row": layout_fields(layouts.row)},
            },
            "s_axis_act": {"direction": "in", "width": layouts.act_width,
                           **layout_fields(data.StructLayout({"x": layouts.act}))},
            "m_axis_result": {
                "direction": "out", "width": layouts.result_width,
                "msq": layout_fields(layouts.msq_result),
                "raw": layout_fields(layouts.raw_result),
                "fault": layout_fields(layouts.result)["fault"],
            },
        },
        "status": {"fault": {"width": Fault.as_shape().width,
                             "enum": {member.name: member.value for member in Fault}}},
        "modes": {mode.name.lower(): mode.value for mode in Mode},
        "latency_cycles": {
            "act_to_ppu": model.depth,
            "act_to_result": model.depth + model.ppu_latency,
            "recon": model.timing.array.recon_latency,
            "ppu": model.ppu_latency,
        },
        "throughput_per_cycle": "1 token (R activations x C columns) per cycle per tile; 1/T with shared ReCoN",
        "cycle_model": {"rows": model.rows, "pipeline": model.pipeline, "shared": model.shared,
                        "tile_gap": model.tile_gap, "front_end_latency": WeightDecoder.latency_of(cfg),
                        "ppu_latency": model.ppu_latency, "result_fifo_depth": model.result_fifo_depth,
                        "load_stage": LOAD_STAGE, "row_buffer_depth": ROW_BUFFER_DEPTH,
                        "shift_queue_depth": model.shift_queue_depth, "tile_spacing": model.tile_spacing},
    }


def soc_manifest(manifest: dict, ports: SocPorts) -> dict:
    """``manifest`` (from :func:`accel_manifest`) with the ports' view: each
    stream's ``tdata_width`` beside its payload ``width`` and the ``used_bits`` of ``tdata``, the
    clock and reset when they are ``aclk``/``aresetn``, and ``soc_ports``."""
    streams = {}
    for prefix, _ in STREAMS:
        stream = dict(manifest["streams"][prefix])
        stream["tdata_width"] = ports.tdata_width(stream["width"])
        stream["used_bits"] = {"offset": 0, "width": stream["width"]}
        streams[prefix] = stream
    extra = {**manifest, "streams": streams,
             "soc_ports": {"tdata_bytes": ports.tdata_bytes, "reset_style": ports.reset_style}}
    if ports.reset_active_low:
        extra["clock"] = {"name": ports.clock, "edge": "rising"}
        extra["reset"] = {"name": ports.reset, "active": "low", "kind": "synchronous"}
    return extra


def generate_accel(cfg: AccelConfig, out_dir, *, name: str | None = None,
                   ports: SocPorts | None = None) -> dict:
    """Write the accelerator for ``cfg`` into ``out_dir`` (see the module doc); return the manifest.
    Nothing is written if anything fails."""
    from .. import __version__
    from .fusesoc import SMOKE_TB_NAME, accel_core, core_vlnv, smoke_testbench
    from .generate import signature_ports, write_generated
    from .lint import waiver_control_file
    ports = ports or SocPorts()
    top_name = check_name(name) if name is not None else accel_top_name(cfg, ports.options())
    options = option_values(cfg) | ports.options() | ({"name": name} if name is not None else {})
    command = generate_command("accel", options)
    component = SocAccelerator(cfg, ports) if ports.wrapped else Accelerator(cfg)
    implicit = [] if ports.reset_active_low else [
        {"name": port, "direction": "in", "width": 1} for port in ("clk", "rst")]
    description = (f"MicroScopiQ accelerator {cfg.rows}x{cfg.cols}, a={cfg.fmt.abits}, "
                   f"b={cfg.fmt.wbits}, recon {options['recon']}, AXI4-Stream")
    # A DSP build ships the project's model of the primitive for the core's lint and simulations.
    models = {VERILOG_MODEL.name: VERILOG_MODEL.read_text()} if cfg.dsp != "none" else {}
    extra = {
        **models,
        CORE_NAME: accel_core(vlnv=core_vlnv(top_name, __version__), top_name=top_name,
                              description=description, command=command, verilog_name="accel.v",
                              waivers_name=WAIVERS_NAME, sim_models=tuple(models)),
        WAIVERS_NAME: waiver_control_file().read_text(),
        SMOKE_TB_NAME: smoke_testbench(cfg, top_name, implicit + signature_ports(component), ports),
    }
    return write_generated(out_dir, component, top_name, soc_manifest(accel_manifest(cfg), ports),
                           basename="accel", extra_files=extra, command=command)


def accel_options() -> tuple[tuple[str, str, str, str], ...]:
    """The generator options of the accelerator, once for ``generate accel`` and ``synth``:
    ``(flag, destination, metavar, help)``; every one is an integer field of :class:`AccelConfig` /
    :class:`~microscopiq.config.FormatConfig` but ``--recon`` (:class:`ReconSharing` text),
    ``--dsp`` (text) and the flags of :data:`FLAG_OPTIONS` (no value)."""
    defaults = AccelConfig()
    fmt = defaults.fmt
    return (
        ("--rows", "rows", "R", f"PE rows R = input columns k per weight tile; divides --group (default {defaults.rows})"),
        ("--cols", "cols", "C", f"PE columns C = outputs n per tile, a multiple of --ublock (default {defaults.cols})"),
        ("--wbits", "wbits", "B", "weight slot width b: 2, 3 or 4 (MicroScopiQ), 8 (uniform mode, --recon "
                                  f"none) (default {fmt.wbits})"),
        ("--abits", "abits", "A", f"activation width a, signed: 4 or 8 (default {fmt.abits})"),
        ("--ublock", "ublock", "U", f"micro-block size U, a power of two (default {fmt.ublock})"),
        ("--group", "group", "G", f"K-group size G, a power of two and a multiple of R (default {fmt.group})"),
        ("--xbits", "xbits", "XB", f"bits of the shared outlier exponent X, 1 to 6 (default {fmt.xbits})"),
        ("--acc-bits", "acc_bits", "N", f"saturating accumulator width, 16 to 64, enough for --max-k "
                                        f"(default {defaults.acc_bits})"),
        ("--recon", "recon", "per-row|shared:S|none",
         "ReCoN arrangement: one network per PE row, one per S rows (time-multiplexed), or none "
         f"(uniform layers only) (default {ReconSharing.format(defaults.recon_share)})"),
        ("--max-tokens", "max_tokens", "T", f"tokens per pass (PPU token memory depth) (default {defaults.max_tokens})"),
        ("--max-k", "max_k", "K", f"largest layer K accepted (default {defaults.max_k})"),
        ("--max-n", "max_n", "N", f"largest layer N accepted (default {defaults.max_n})"),
        ("--weight-bus", "weight_bus", "BITS", "s_axis_weights tdata bits, a multiple of 8: the packed "
                                               f"weight stream's rate (default {defaults.weight_bus})"),
        ("--act-bus", "act_bus", "BITS", "s_axis_act tdata bits, a multiple of 8 holding one activation "
                                         "vector R*a (default: R*a rounded up to whole bytes)"),
        ("--multi-precision", "multi_precision", "",
         "run-time slot width: uniform layers also at b/2 (header wbits), two b/2-bit slots per PE, "
         "twice the MACs per cycle; needs b 4 or 8 and --group a multiple of 2R; the activation "
         "vector is then 2R*a (default off)"),
        ("--dsp", "dsp", "|".join(DSP_TARGETS),
         "PE multipliers: none (fabric logic, or what synthesis infers) or ecp5 (one MULT18X18D "
         "instance per PE with its input and output registers; same latencies; not with "
         f"--multi-precision) (default {defaults.dsp})"),
    )


#: Destinations of :func:`accel_options` that are flags (given: True; absent: the base's value).
FLAG_OPTIONS = ("multi_precision",)
#: Destinations of :func:`accel_options` that take text, not an integer.
TEXT_OPTIONS = ("recon", "dsp")


def add_accel_options(parser) -> None:
    """:func:`accel_options`, then ``--preset`` and ``--config`` (the configuration they start
    from), on ``parser`` (a parser or an argument group); every default is ``None``."""
    for flag, dest, metavar, text in accel_options():
        if dest in FLAG_OPTIONS:
            parser.add_argument(flag, dest=dest, action="store_const", const=True, default=None, help=text)
            continue
        parser.add_argument(flag, dest=dest, type=str if dest in TEXT_OPTIONS else int, default=None,
                            metavar=metavar, help=text)
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS), metavar="NAME",
                        help="start from a named configuration of microscopiq/config.py "
                             f"({', '.join(PRESETS)}); the options above replace its values; the "
                             "defaults shown are those of 'default' (default: default)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="start from a configuration file instead, as 'microscopiq sim' takes it: "
                             "a preset name or a JSON file (a generated manifest.json)")


def config_from_args(args) -> AccelConfig:
    """The :class:`AccelConfig` of the generator options: ``--config`` or the ``--preset``
    (default ``default``) with every option given on the command line replacing its value. The
    config's own checks refuse invalid combinations, naming the rule."""
    if args.preset is not None and args.config is not None:
        raise ConfigError(f"--preset and --config both name a starting configuration: give one, "
                          f"not {args.preset!r} and {args.config!r}")
    base = resolve_config(args.config) if args.config is not None else PRESETS[args.preset or "default"]
    changes = {dest: getattr(args, dest) for _, dest, _, _ in accel_options()
               if dest != "recon" and getattr(args, dest) is not None}
    if args.recon is not None:
        changes["recon_share"] = ReconSharing.parse(args.recon)
    return base.replace(**changes)


def add_soc_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tdata-bytes`` and ``--reset-style`` (:class:`~microscopiq.hdl.soc.SocPorts`)."""
    parser.add_argument("--tdata-bytes", action="store_true",
                        help="pad every tdata to whole bytes (payload in the low bits; the manifest "
                             "gives tdata_width and used_bits per stream)")
    parser.add_argument("--reset-style", choices=RESET_STYLES, default="rst",
                        help="clk and active-high rst (Amaranth's), or aclk and active-low aresetn "
                             "(AXI); synchronous in both (default rst)")


def soc_ports_from_args(args) -> SocPorts:
    return SocPorts(tdata_bytes=args.tdata_bytes, reset_style=args.reset_style)


def _run_accel(args) -> int:
    from pathlib import Path

    from ..outputs import OutputError, check_output_dir
    from .fusesoc import SMOKE_TB_NAME
    from .generate import FILELIST_NAME, MANIFEST_NAME, _output_error, generate
    cfg = config_from_args(args)
    try:
        check_output_dir(args.out)  # before the elaboration, which takes seconds to minutes
        manifest = generate("accel", cfg, args.out, name=args.name, ports=soc_ports_from_args(args))
    except (OutputError, OSError) as error:
        raise _output_error(args.out, error) from error
    streams = manifest["streams"]
    print(f"wrote {Path(args.out) / manifest['files'][0]} (module {manifest['top']}; tdata widths: "
          f"weights {streams['s_axis_weights']['width']}, act {streams['s_axis_act']['width']}, "
          f"result {streams['m_axis_result']['width']}; latency act->result "
          f"{manifest['latency_cycles']['act_to_result']} cycles), {MANIFEST_NAME}, {FILELIST_NAME}, "
          f"{CORE_NAME}, {WAIVERS_NAME}, {SMOKE_TB_NAME}")
    return 0


def add_accel_command(generators) -> None:
    """``microscopiq generate accel``."""
    from .generate import FILELIST_NAME, MANIFEST_NAME, add_out_argument
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
    add_accel_options(parser)
    add_name_argument(parser)
    add_soc_arguments(parser)
    add_out_argument(parser, "build/accel")
    parser.set_defaults(func=_run_accel)
