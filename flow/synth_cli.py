"""``microscopiq synth``: synthesise and place-and-route a generated block, print its QoR.

The design comes either from a generated folder (``--from DIR``, the output of ``microscopiq
generate``, read through its ``manifest.json``) or from generator parameters (``--design pe|accel``
plus the options of ``microscopiq generate accel``, the same table), generated into ``<out>/rtl/`` first. The flow is
:func:`microscopiq.flow.synth.synthesize`; its logs, netlist and nextpnr report stay in ``--out``
beside ``synth.json`` (written atomically: the report, the flow parameters and the design's
manifest parameters). ``--no-place`` stops after Yosys (the cell counts in minutes, ``synth.json``
alike, without Fmax); ``--seed 1,2,3`` places and routes the one netlist with each seed, prints every
seed's Fmax and the worst, and ``synth.json``'s report is the worst seed's. Stage lines with the
elapsed time go to stderr while the tools run.

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

__all__ = ["add_commands", "generate_design", "run_synth", "synth_runs", "parse_seeds", "DESIGNS"]

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


def parse_seeds(text: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]``: distinct non-negative nextpnr seeds."""
    parts = [part.strip() for part in str(text).split(",")]
    if not all(part.isdigit() for part in parts) or len(set(parts)) != len(parts):
        raise synth.FlowParameterError(f"seeds must be distinct non-negative integers separated by "
                                       f"commas, like 1,2,3, not {text!r}")
    return [int(part) for part in parts]


def run_synth(manifest: dict, files: list[Path], out: Path, *, seeds: list[int] | None = None,
              **flow) -> synth.SynthReport:
    """Run the flow on a generated design and write ``out/synth.json``; return the report (the
    worst seed's; :func:`synth_runs` gives every seed's)."""
    return _worst(synth_runs(manifest, files, out, seeds=seeds, **flow))


def _worst(runs: list[synth.SynthReport]) -> synth.SynthReport:
    return min(runs, key=lambda run: run.fmax if run.fmax is not None else float("inf"))


def synth_runs(manifest: dict, files: list[Path], out: Path, *, seeds: list[int] | None = None,
               **flow) -> list[synth.SynthReport]:
    """Run the flow on a generated design and write ``out/synth.json``; return the report of each
    seed (one run unless ``seeds`` has several).

    With several ``seeds`` the netlist (Yosys runs once) is placed and routed with each; the report
    returned and written is the worst seed's (lowest Fmax) and ``synth.json`` adds ``seeds`` (each
    seed's Fmax, timing verdict and critical path delay) and ``fmax_worst``. On
    :class:`~microscopiq.flow.synth.DoesNotFit` the synthesis-only report is written (with the
    error) before the exception propagates.
    """
    runs, error = [], None
    try:
        for seed in seeds or [flow.pop("seed", 1)]:
            runs.append(synth.synthesize(files, manifest["top"], workdir=out, seed=seed, **flow))
    except synth.DoesNotFit as failure:
        runs, error = [failure.report], failure
    report = _worst(runs) if runs[0] is not None else None
    document = {"design": {"top": manifest["top"], "block": manifest.get("block"),
                           "parameters": manifest.get("parameters", {})},
                "report": report.to_json() if report is not None else None,
                "error": None if error is None else str(error)}
    if len(runs) > 1:
        document["seeds"] = [{"seed": run.seed, "fmax": run.fmax, "fmax_mhz": run.fmax_mhz,
                              "meets_timing": run.meets_timing,
                              "critical_path_ns": run.critical_path.delay_ns if run.critical_path else None}
                             for run in runs]
        document["fmax_worst"] = {"mhz": report.fmax, "seed": report.seed}
    with atomic_file(out / "synth.json", "w") as handle:
        json.dump(document, handle, indent=2, allow_nan=False)
        handle.write("\n")
    if error is not None:
        raise error
    return runs


def _seed_summary(runs: list[synth.SynthReport]) -> str:
    lines = [f"seed {run.seed:<6} Fmax {run.fmax:.2f} MHz ({'meets' if run.meets_timing else 'MISSES'} "
             f"{run.freq_mhz:g} MHz)" for run in runs]
    worst = _worst(runs)
    lines.append(f"worst Fmax over seeds {', '.join(str(run.seed) for run in runs)}: {worst.fmax:.2f} MHz "
                 f"(seed {worst.seed}); best {max(run.fmax for run in runs):.2f} MHz")
    return "\n".join(lines)


def _progress(line: str) -> None:
    print(f"synth: {line}", file=sys.stderr, flush=True)


def check_dsp_family(dsp: str, family: str) -> None:
    """A DSP build instantiates one family's primitive: refuse it for another family."""
    if dsp != "none" and dsp != family:
        raise synth.FlowParameterError(f"--dsp {dsp} instantiates {dsp.upper()} DSP primitives, which "
                                       f"--family {family} does not have: use --family {dsp} or --dsp none")


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
        cfg = config_from_args(argparse.Namespace(**{**vars(args), "preset": args.preset or "default"}))
        check_dsp_family(cfg.dsp, args.family)


def _run(args: argparse.Namespace) -> int:
    family = args.family
    device = args.device or synth.DEFAULT_DEVICE.get(family, "")
    seeds = parse_seeds(args.seed)
    if args.no_place and len(seeds) > 1:
        raise synth.FlowParameterError(f"--no-place runs no place and route: --seed {args.seed} has "
                                       f"no effect there")
    # Every parameter before anything is written: a bad one costs nothing (docs/verification.md).
    for seed in seeds:
        synth.check_flow_parameters(family, args.device, args.package, args.freq, args.io,
                                    not args.no_dsp, args.mapper, seed=seed, timeout_s=args.timeout,
                                    placer=args.placer, speed=args.speed)
    _check_design(args)
    if args.out is not None:
        check_out_dir(args.out)
    if args.from_dir is not None:
        folder = Path(args.from_dir)
        if not (folder / MANIFEST_NAME).is_file():
            raise synth.FlowParameterError(f"--from must be a folder written by 'microscopiq "
                                           f"generate' (with {MANIFEST_NAME}), not {str(folder)!r}")
        manifest, files = read_manifest(folder)
        check_dsp_family(manifest.get("parameters", {}).get("dsp", "none"), family)
        out = Path(args.out or Path("build") / "synth" / f"{manifest['top']}-{family}-{device}")
    else:
        out = Path(args.out or Path("build") / "synth" / f"{args.design}-{family}-{device}")
        manifest, files = generate_design(args.design, vars(args), out / "rtl")
    try:
        runs = synth_runs(manifest, files, out, family=family, device=args.device,
                           package=args.package, freq_mhz=args.freq, seeds=seeds,
                           use_dsp=not args.no_dsp, io=args.io, timeout_s=args.timeout,
                           place_route=not args.no_place, progress=_progress, placer=args.placer,
                           mapper=args.mapper, speed=args.speed)
    except synth.DoesNotFit as error:
        if error.report is not None:
            print(synth.format_report(error.report))
        print(f"microscopiq: error: {error}", file=sys.stderr)
        return 1
    except synth.SynthError as error:
        print(f"microscopiq: error: {error}", file=sys.stderr)
        return 1
    print(synth.format_report(_worst(runs)))
    if len(runs) > 1:
        print(_seed_summary(runs))
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
    flow.add_argument("--seed", default="1", metavar="N[,N...]",
                      help="nextpnr placement seed, or several separated by commas (each placed and "
                           "reported, the worst Fmax summarised; default 1)")
    flow.add_argument("--placer", choices=synth.PLACERS, default=synth.PLACERS[0],
                      help="nextpnr placer (default heap; static places the ECP5 DSP builds, on which "
                           "heap stalls)")
    flow.add_argument("--speed", type=int, choices=synth.SPEED_GRADES["ecp5"], default=None,
                      help="ECP5 speed grade the timing is for (default 6, the slowest part; 8 the fastest)")
    flow.add_argument("--mapper", choices=synth.MAPPERS, default=synth.MAPPERS[0],
                      help="Yosys LUT mapper (default abc9; abc, ECP5 only, is what make bench-qor uses; "
                           "abc-wide, ECP5 only, ABC with wide LUTs of up to 7 inputs)")
    flow.add_argument("--no-place", action="store_true",
                      help="stop after Yosys: cell counts (LUT4s, FFs, DSPs, LUT RAMs) in synth.json "
                           "without place and route")
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
