"""``microscopiq generate accel``: the accelerator's Verilog, manifest, FuseSoC core and lint
waivers (the hardware itself is :class:`microscopiq.hdl.top.Accelerator`)."""

from __future__ import annotations

from amaranth import Shape
from amaranth.lib import data

from ..config import PRESETS, AccelConfig, ConfigError, ReconSharing
from ..hdl.layouts import Mode, StreamLayouts
from ..hdl.top import Accelerator
from ..host.stream_format import CycleModel
from .generate import is_enum

__all__ = ["accel_top_name", "accel_manifest", "layout_fields", "generate_accel", "accel_options",
           "add_accel_options", "config_from_args", "add_accel_command",
           "CORE_NAME", "WAIVERS_NAME"]


# -- generation ---------------------------------------------------------------------------------------

CORE_NAME = "accel.core"
#: Verilator control file of the message-matched lint waivers, shipped with the core.
WAIVERS_NAME = "waivers.vlt"


def accel_top_name(cfg: AccelConfig) -> str:
    """Verilog module name of the accelerator: ``msq_accel_<R>x<C>_a<a>_w<b>_<recon>``."""
    recon = {0: "plain", 1: "rowrecon"}.get(cfg.recon_share, f"shared{cfg.recon_share}")
    return f"msq_accel_{cfg.rows}x{cfg.cols}_a{cfg.fmt.abits}_w{cfg.fmt.wbits}_{recon}"


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
                "header": layout_fields(layouts.header),
                "tile_header": layout_fields(layouts.tile),
                "row": layout_fields(layouts.row),
                "beats_per_tile": model.load_beats,
            },
            "s_axis_act": {"direction": "in", "width": layouts.act_width,
                           **layout_fields(data.StructLayout({"x": layouts.act}))},
            "m_axis_result": {
                "direction": "out", "width": layouts.result_width,
                "msq": layout_fields(layouts.msq_result),
                "raw": layout_fields(layouts.raw_result),
            },
        },
        "modes": {mode.name.lower(): mode.value for mode in Mode},
        "latency_cycles": {
            "act_to_ppu": model.depth,
            "act_to_result": model.depth + model.ppu_latency,
            "recon": model.timing.array.recon_latency,
            "ppu": model.ppu_latency,
        },
        "throughput_per_cycle": "1 token (R activations x C columns) per cycle per tile; 1/T with shared ReCoN",
        "cycle_model": {"rows": model.rows, "pipeline": model.pipeline, "load_beats": model.load_beats,
                        "shared": model.shared, "tile_gap": model.tile_gap,
                        "ppu_latency": model.ppu_latency, "result_fifo_depth": model.result_fifo_depth},
    }


def _core_file(cfg: AccelConfig, top_name: str, verilog_name: str) -> str:
    from .. import __version__
    from .lint import VERILATOR_WAIVERS
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
    from .generate import write_generated
    from .lint import waiver_control_file
    top_name = accel_top_name(cfg)
    extra = {CORE_NAME: _core_file(cfg, top_name, "accel.v"),
             WAIVERS_NAME: waiver_control_file().read_text()}
    return write_generated(out_dir, Accelerator(cfg), top_name, accel_manifest(cfg), basename="accel",
                           extra_files=extra)


def accel_options() -> tuple[tuple[str, str, str, str], ...]:
    """The generator options of the accelerator, once for ``generate accel`` and ``synth``:
    ``(flag, destination, metavar, help)``; every one is an integer field of :class:`AccelConfig` /
    :class:`~microscopiq.config.FormatConfig` but ``--recon`` (:class:`ReconSharing` text)."""
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
    )


def add_accel_options(parser) -> None:
    """:func:`accel_options`, then ``--preset`` and ``--config`` (the configuration they start
    from), on ``parser`` (a parser or an argument group); every default is ``None``."""
    for flag, dest, metavar, text in accel_options():
        parser.add_argument(flag, dest=dest, type=str if dest == "recon" else int, default=None,
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
    from ..tb.sim_cli import resolve_config
    if args.preset is not None and args.config is not None:
        raise ConfigError(f"--preset and --config both name a starting configuration: give one, "
                          f"not {args.preset!r} and {args.config!r}")
    base = resolve_config(args.config) if args.config is not None else PRESETS[args.preset or "default"]
    changes = {dest: getattr(args, dest) for _, dest, _, _ in accel_options()
               if dest != "recon" and getattr(args, dest) is not None}
    if args.recon is not None:
        changes["recon_share"] = ReconSharing.parse(args.recon)
    return base.replace(**changes)


def _run_accel(args) -> int:
    from pathlib import Path

    from ..outputs import OutputError
    from .generate import FILELIST_NAME, MANIFEST_NAME, _output_error, generate
    cfg = config_from_args(args)
    try:
        manifest = generate("accel", cfg, args.out)
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
    add_out_argument(parser, "build/accel")
    parser.set_defaults(func=_run_accel)
