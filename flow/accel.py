"""``microscopiq generate accel``: the accelerator's Verilog, manifest, FuseSoC core and lint
waivers (the hardware itself is :class:`microscopiq.hdl.top.Accelerator`)."""

from __future__ import annotations

from ..config import AccelConfig
from ..hdl.top import Accelerator
from ..host.stream_format import MODE_MSQ, MODE_RAW, SHIFT_BITS, CycleModel, StreamFormat, _recon_latency

__all__ = ["accel_top_name", "accel_manifest", "generate_accel", "config_from_args", "add_accel_command",
           "CORE_NAME", "WAIVERS_NAME"]


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

    from ..outputs import OutputError
    from ..flow.generate import FILELIST_NAME, MANIFEST_NAME, _output_error
    cfg = config_from_args(args)
    try:
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
