"""``microscopiq synth``: synthesise and place-and-route a generated block, print its QoR.

The design comes either from a generated folder (``--from DIR``, the output of ``microscopiq
generate``, read through its ``manifest.json``) or from generator parameters (``--design pe|accel``
plus the options of ``microscopiq generate accel``, the same table), generated into ``<out>/rtl/`` first. The flow is
:func:`microscopiq.flow.synth.synthesize`; its logs, netlist and nextpnr report stay in ``--out``
beside ``synth.json`` (written atomically: the report, the flow parameters and the design's
manifest parameters).

Exit status: 0 when the flow ran (a missed frequency target is reported, not an error), 1 when a
tool failed, timed out or the design does not fit (the message names the resource), 2 for a bad
parameter.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import FormatConfig
from ..outputs import atomic_file
from ..validate import check_out_dir
from . import synth
from .accel import accel_options, add_accel_options, config_from_args
from .generate import MANIFEST_NAME, generate, read_manifest

__all__ = ["add_commands", "generate_design", "run_synth", "DESIGNS"]

DESIGNS = ("pe", "accel")
#: Parameters that choose the accelerator's starting configuration, beside its options.
_BASES = (("--preset", "preset"), ("--config", "config"))
#: Generator parameters the PE takes (the format flags).
_PE_DESTS = ("wbits", "abits")


def generate_design(design: str, params: dict, out_dir: Path) -> tuple[dict, list[Path]]:
    """Generate ``design`` ("pe" or "accel") with ``params`` (the destinations of
    :func:`~microscopiq.flow.accel.accel_options`, ``preset`` and ``config``; absent or ``None`` =
    not given) into ``out_dir`` with :func:`~microscopiq.flow.generate.generate`; return the
    manifest and the Verilog files."""
    if design not in DESIGNS:
        raise synth.FlowParameterError(f"design must be one of {', '.join(DESIGNS)}, not {design!r}")
    given = [(flag, dest) for flag, dest, *_ in (*accel_options(), *_BASES) if params.get(dest) is not None]
    if design == "pe":
        ignored = [flag for flag, dest in given if dest not in _PE_DESTS]
        if ignored:
            raise synth.FlowParameterError(f"{', '.join(ignored)}: generator parameters of --design accel "
                                           f"only, not of --design {design}")
        defaults = FormatConfig()
        cfg = FormatConfig(abits=params.get("abits") or defaults.abits, wbits=params.get("wbits") or defaults.wbits)
    else:
        dests = [dest for _, dest, *_ in (*accel_options(), *_BASES)]
        cfg = config_from_args(argparse.Namespace(**{dest: params.get(dest) for dest in dests}))
    generate(design, cfg, out_dir)
    return read_manifest(out_dir)


def run_synth(manifest: dict, files: list[Path], out: Path, **flow) -> synth.SynthReport:
    """Run the flow on a generated design and write ``out/synth.json``; return the report.

    On :class:`~microscopiq.flow.synth.DoesNotFit` the synthesis-only report is written (with the
    error) before the exception propagates.
    """
    try:
        report = synth.synthesize(files, manifest["top"], workdir=out, **flow)
        error = None
    except synth.DoesNotFit as failure:
        report, error = failure.report, failure
    document = {"design": {"top": manifest["top"], "block": manifest.get("block"),
                           "parameters": manifest.get("parameters", {})},
                "report": report.to_json() if report is not None else None,
                "error": None if error is None else str(error)}
    with atomic_file(out / "synth.json", "w") as handle:
        json.dump(document, handle, indent=2, allow_nan=False)
        handle.write("\n")
    if error is not None:
        raise error
    return report


def _check_design(args: argparse.Namespace) -> None:
    """The generator parameters of ``--design`` (preset included), checked as ``generate`` checks
    them but before anything is written."""
    if args.from_dir is not None:
        return
    if args.design == "pe":
        defaults = FormatConfig()
        FormatConfig(wbits=defaults.wbits if args.wbits is None else args.wbits,
                     abits=defaults.abits if args.abits is None else args.abits)
    else:
        config_from_args(argparse.Namespace(**{**vars(args), "preset": args.preset or "default"}))


def _run(args: argparse.Namespace) -> int:
    family = args.family
    device = args.device or synth.DEFAULT_DEVICE.get(family, "")
    # Every parameter before anything is written: a bad one costs nothing (docs/verification.md).
    synth.check_flow_parameters(family, args.device, args.package, args.freq, args.io,
                                not args.no_dsp, seed=args.seed, timeout_s=args.timeout)
    _check_design(args)
    if args.out is not None:
        check_out_dir(args.out)
    if args.from_dir is not None:
        folder = Path(args.from_dir)
        if not (folder / MANIFEST_NAME).is_file():
            raise synth.FlowParameterError(f"--from must be a folder written by 'microscopiq "
                                           f"generate' (with {MANIFEST_NAME}), not {str(folder)!r}")
        manifest, files = read_manifest(folder)
        out = Path(args.out or Path("build") / "synth" / f"{manifest['top']}-{family}-{device}")
    else:
        out = Path(args.out or Path("build") / "synth" / f"{args.design}-{family}-{device}")
        manifest, files = generate_design(args.design, vars(args), out / "rtl")
    try:
        report = run_synth(manifest, files, out, family=family, device=args.device,
                           package=args.package, freq_mhz=args.freq, seed=args.seed,
                           use_dsp=not args.no_dsp, io=args.io, timeout_s=args.timeout)
    except synth.DoesNotFit as error:
        if error.report is not None:
            print(synth.format_report(error.report))
        print(f"microscopiq: error: {error}", file=sys.stderr)
        return 1
    except synth.SynthError as error:
        print(f"microscopiq: error: {error}", file=sys.stderr)
        return 1
    print(synth.format_report(report))
    print(f"wrote {out / 'synth.json'} (logs and netlist in {out}/)")
    return 0


def add_commands(subparsers) -> None:
    """Add ``synth`` to the ``microscopiq`` command."""
    parser = subparsers.add_parser(
        "synth", help="synthesise (Yosys) and place and route (nextpnr) a generated block",
        description="Synthesise a block with Yosys (synth_ecp5 / synth_ice40) and place and route "
                    "it with nextpnr at a fixed seed; print LUTs, FFs, DSPs, BRAMs, Fmax and the "
                    "critical path, and write synth.json.",
        epilog="examples: microscopiq synth --design accel --rows 8 --cols 8 --wbits 4 --family "
               "ecp5 --device 45k --freq 100;  microscopiq synth --from build/pe --family ice40")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--from", dest="from_dir", metavar="DIR",
                        help="a folder written by 'microscopiq generate' (with manifest.json)")
    source.add_argument("--design", choices=DESIGNS, default="accel",
                        help="generate this block from the parameters below (default accel)")
    add_accel_options(parser.add_argument_group("generator parameters (with --design; those of "
                                                "'microscopiq generate accel')"))
    flow = parser.add_argument_group("flow")
    flow.add_argument("--family", choices=tuple(synth.DEVICES), default="ecp5",
                      help="FPGA family (default ecp5)")
    flow.add_argument("--device", default=None,
                      help="nextpnr device: ecp5 " + "/".join(synth.DEVICES["ecp5"]) + "; ice40 "
                           + "/".join(synth.DEVICES["ice40"]) + " (default 25k / up5k)")
    flow.add_argument("--package", default=None, help="package (default: nextpnr's for the device)")
    flow.add_argument("--freq", type=float, default=100.0, metavar="MHZ",
                      help="target clock frequency in MHz (default 100)")
    flow.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    flow.add_argument("--no-dsp", action="store_true",
                      help="map multipliers to LUTs instead of DSP blocks")
    flow.add_argument("--io", choices=("auto", "pins", "ooc"), default="auto",
                      help="ports on package pins, out of context (ECP5), or pins when they fit "
                           "(default auto)")
    flow.add_argument("--timeout", type=float, default=1800.0, metavar="S",
                      help="time limit per tool run in seconds (default 1800)")
    flow.add_argument("--out", default=None, metavar="DIR",
                      help="folder for synth.json, logs and netlist (default "
                           "build/synth/<design>-<family>-<device>)")
    parser.set_defaults(func=_run)
