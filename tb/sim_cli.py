"""Run layers through the simulated accelerator: the launcher of :mod:`microscopiq.tb.test_accel`
and the ``microscopiq sim`` command.

* :func:`generate_rtl` writes the accelerator's Verilog for a configuration into a build folder;
* :func:`run_accel` builds it (cached) on Icarus or Verilator and runs the cocotb regression with
  the given stimulus parameters, returning the per-layer records the tests wrote;
* ``microscopiq sim --layer FILE [--harness native|cocotb] [--sim icarus|verilator] [--config C]
  [--tokens M] [--activations FILE.npy] [--seed S]`` runs one packed layer
  (:func:`~microscopiq.quant.pack.load_layer`) with ``M`` random activations, or real ones from a
  ``.npy`` file quantized per token (SPEC §1), on the native harness (:mod:`microscopiq.tb.native`,
  the default) or the cocotb testbench, either on ``--sim`` (default Verilator), and prints the
  cycles, the result integers checked and the mismatches; exit status 1 on a mismatch.

Build folders follow the project's layout, ``build/cocotb/accel/<config>/{rtl,icarus,verilator}``:
the Verilog in ``rtl/``, one simulator build per configuration and simulator, reused while the
Verilog is unchanged. ``WAVES=1`` writes waves into the simulator's folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..config import PRESETS, AccelConfig, ConfigError, resolve_config
from ..validate import check_sim_layer
from .runner import SIMULATORS, CocotbFailure, run_cocotb, with_primitive_models

__all__ = ["BUILD_ROOT", "TEST_MODULE", "BUILD_ARGS", "HARNESSES", "config_name", "generate_rtl",
           "run_accel", "SimReport", "layer_activations", "simulate_layer_file", "add_commands"]

BUILD_ROOT = Path("build") / "cocotb" / "accel"
TEST_MODULE = "microscopiq.tb.test_accel"
#: Random activation rows ``sim`` streams when neither ``--tokens`` nor ``--activations`` says.
DEFAULT_TOKENS = 8
#: ``--harness``: the native harness (whole layers; fast on Verilator) or the cocotb testbench.
HARNESSES = ("native", "cocotb")
#: Extra simulator build options for the accelerator.
#:
#: * Verilator: its C++ for the accelerator is tens of MB; at the default -Os GCC needs about a CPU
#:   minute per file (half an hour for 16x16), at -O0 a second or two. The runs are short and
#:   their time is mostly cocotb's, so unoptimised code costs little.
#: * Icarus: cocotb compiles with -g2012, where a variable's declaration initializer raises no
#:   event at time 0. Yosys's Verilog relies on one (``reg $auto$...dump_module$N = 0;`` read by
#:   every ``always @*``) to evaluate combinational blocks once; under -g2012 a block whose inputs
#:   never change stays X, and the first result of a simulation came out all-X. Amaranth writes
#:   Verilog-2005: -g2005 (the last -g wins) simulates it as written.
BUILD_ARGS = {"verilator": ["-CFLAGS", "-O0"], "icarus": ["-g2005"]}


def config_name(cfg: AccelConfig) -> str:
    """The preset name of ``cfg`` (a descriptive one before ``default``, which aliases 8x8-b4), or
    ``cfg-<hash>`` for a configuration that is no preset."""
    names = [name for name, preset in PRESETS.items() if preset == cfg]
    if names:
        return sorted(names, key=lambda name: name == "default")[0]
    digest = hashlib.sha256(json.dumps(cfg.to_json(), sort_keys=True).encode()).hexdigest()[:10]
    return f"cfg-{digest}"


def generate_rtl(cfg: AccelConfig, out_dir: Path) -> tuple[dict, list[Path]]:
    """Write the accelerator's Verilog and manifest into ``out_dir``; return (manifest, sources:
    the Verilog and the models of the primitives it instantiates)."""
    from ..flow.generate import generate, read_manifest
    generate("accel", cfg, out_dir)
    manifest, files = read_manifest(out_dir)
    if AccelConfig.from_json(manifest["parameters"]) != cfg:
        raise RuntimeError(f"the manifest in {str(out_dir)!r} describes {manifest['parameters']}, "
                           f"not the configuration asked for ({cfg.to_json()})")
    # With the project's models of the vendor primitives it instantiates (a DSP build's
    # MULT18X18D), for the native harness as for cocotb.
    return manifest, with_primitive_models([path for path in files if path.suffix in (".v", ".sv")])


def run_accel(cfg: AccelConfig, sim: str, params: dict, *, build_dir: Path | None = None,
              seed: int | None = None, progress=None) -> list[dict]:
    """Generate, build (cached) and run the cocotb regression of ``cfg`` on ``sim``.

    ``params`` are :mod:`~microscopiq.tb.test_accel`'s parameters (``config`` and ``stats`` are
    filled in). Returns the per-layer records (kind, name, cycles, MACs, integers checked,
    mismatches). Raises :class:`~microscopiq.tb.runner.CocotbFailure` when a test fails.
    """
    if sim not in SIMULATORS:
        raise ValueError(f"--sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    folder = (BUILD_ROOT / config_name(cfg)).resolve()
    build_dir = Path(build_dir or folder / sim).resolve()
    if progress:
        progress(f"generating the Verilog of {config_name(cfg)}")
    manifest, sources = generate_rtl(cfg, folder / "rtl")
    build_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", dir=build_dir, delete=False) as stats:
        stats_path = Path(stats.name)
    try:
        params = {**params, "config": cfg.to_json(), "stats": str(stats_path)}
        try:
            run_cocotb(sim=sim, sources=sources, toplevel=manifest["top"], test_module=TEST_MODULE,
                       build_dir=build_dir, params=params, seed=seed, build_args=BUILD_ARGS,
                       progress=progress)
        except CocotbFailure as failure:
            failure.records = _records(stats_path)
            raise
        return _records(stats_path)
    finally:
        stats_path.unlink(missing_ok=True)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class SimReport:
    """Outcome of :func:`simulate_layer_file` (``cycles_per_second`` and ``cycles_per_cpu_second``:
    the native harness's simulated cycles per wall-clock and per CPU second, 0 for cocotb)."""

    name: str
    cycles: int
    predicted: int
    macs: int
    checked: int
    mismatches: int
    first_mismatch: str
    error: str = ""
    #: Result integers (MicroScopiQ mode: ``M x n``) and those the accelerator flagged as saturated
    #: (sticky overflow flag; 0 in uniform mode, whose raw sums never overflow).
    outputs: int = 0
    overflowed: int = 0
    cycles_per_second: float = 0.0
    cycles_per_cpu_second: float = 0.0
    #: Bits per weight of one pass on ``s_axis_weights`` (whole beats), and of the layer's file.
    stream_bits_per_weight: float = 0.0
    file_ebw: float = 0.0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def layer_activations(layer, cfg: AccelConfig, tokens: int | None, seed: int,
                      activations: str | os.PathLike | None = None):
    """``(x, source)``: ``tokens`` random activations (seed ``seed``), or the rows of the float
    ``(M, k)`` array in the ``.npy`` file ``activations`` (the first ``tokens`` if given) quantized
    per token as SPEC §1 says."""
    import numpy as np
    from ..quant.golden import ActivationError, quantize_activations
    from .stimulus import random_activations
    if activations is None:
        count = DEFAULT_TOKENS if tokens is None else tokens
        return random_activations(cfg.fmt, count, layer.k, np.random.default_rng(seed)), f"m={count} seed={seed}"
    try:
        values = np.load(activations, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ConfigError(f"--activations {str(activations)!r} is not a readable .npy array ({error})") from None
    if values.ndim != 2 or values.shape[1] != layer.k or not np.issubdtype(values.dtype, np.number):
        raise ConfigError(f"--activations must hold a numeric (M, k={layer.k}) array, not "
                          f"{values.dtype} {values.shape}")
    try:
        x, _ = quantize_activations(values[:tokens], cfg.fmt)
    except ActivationError as error:
        raise ConfigError(f"--activations {str(activations)!r}: {error}") from None
    return x, f"m={x.shape[0]} from {Path(activations).name}"


def simulate_layer_file(path: str | os.PathLike, cfg: AccelConfig, sim: str | None, tokens: int | None,
                        seed: int, *, harness: str = "native",
                        activations: str | os.PathLike | None = None, progress=None) -> SimReport:
    """Run the packed layer at ``path`` with ``tokens`` random activations (seed ``seed``) or the
    ``activations`` file (:func:`layer_activations`) on ``harness`` and ``sim`` (default
    Verilator). Every input is checked before anything is built
    (:func:`microscopiq.validate.check_sim_layer`)."""
    if harness not in HARNESSES:
        raise ConfigError(f"--harness must be one of {', '.join(HARNESSES)}, not {harness!r}")
    if sim not in (None, *SIMULATORS):
        raise ConfigError(f"--sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    layer = check_sim_layer(path, cfg, DEFAULT_TOKENS if tokens is None else tokens, seed)
    x, source = layer_activations(layer, cfg, tokens, seed, activations)
    report = _run_layer(cfg, layer, x, f"{path} (n={layer.n} k={layer.k} {source})", path, sim, harness,
                        seed, activations, progress)
    from ..host.packed_stream import stream_bits
    from ..quant.ebw import effective_bits
    return dataclasses.replace(report, file_ebw=effective_bits(layer).bits_per_weight,
                               stream_bits_per_weight=stream_bits(cfg, layer).bus_bits_per_weight(cfg.weight_bus))


def _run_layer(cfg, layer, x, name, path, sim, harness, seed, activations, progress) -> SimReport:
    sim = sim or "verilator"
    if harness == "native":
        return _simulate_native(cfg, layer, x, name, sim, progress)
    params = {"layer_file": str(Path(path).resolve()), "shape": {"m": x.shape[0]}, "seed": seed}
    with tempfile.TemporaryDirectory() as scratch:
        if activations is not None:
            import numpy as np
            params["activations_file"] = str(Path(scratch, "x.npy"))
            np.save(params["activations_file"], x)
        try:
            records = run_accel(cfg, sim, params, seed=seed, progress=progress)
            error = ""
        except CocotbFailure as failure:
            records, error = getattr(failure, "records", []), str(failure).splitlines()[1:2]
            error = error[0] if error else str(failure)
    if not records:
        raise CocotbFailure(error or "the simulation recorded no layer")
    rec = records[-1]
    return SimReport(rec["name"], rec["cycles"], rec["predicted"], rec["macs"], rec["checked"],
                     rec["mismatches"], rec["first_mismatch"], error, rec["outputs"], rec["overflowed"])


def _simulate_native(cfg: AccelConfig, layer, x, name: str, sim: str, progress=None) -> SimReport:
    from .accel_tb import saturation
    from .native import build_harness, check_case
    from .stimulus import Case
    case = Case(name, layer, x, 0)
    if progress is not None:
        progress(f"building (or reusing) the native {sim} harness of {config_name(cfg)}")
    executable = build_harness(cfg, sim=sim, quiet=False)
    if progress is not None:
        progress(f"running {x.shape[0]} tokens through the native {sim} harness")
    check = check_case(cfg, case, executable=executable, sim=sim)
    first = str(check.mismatches[0]) if check.mismatches else ""
    outputs, overflowed = saturation(case, check.run.results)
    return SimReport(name, check.run.cycles, check.predicted, case.macs, check.checked,
                     len(check.mismatches), first, outputs=outputs, overflowed=overflowed,
                     cycles_per_second=check.run.cycles_per_second,
                     cycles_per_cpu_second=check.run.cycles_per_cpu_second)


def _run_sim(args: argparse.Namespace) -> int:
    from ..progress import Stages
    cfg = resolve_config(args.config)
    stages = Stages("microscopiq sim")
    report = simulate_layer_file(args.layer, cfg, args.sim, args.tokens, args.seed, harness=args.harness,
                                 activations=args.activations, progress=stages)
    stages(f"checked {report.checked} result integers, {report.mismatches} mismatches")
    if args.json:
        print(json.dumps(report.to_json(), indent=1, allow_nan=False))
        return 1 if report.mismatches or report.error else 0
    from .native import SIMULATOR_NAMES
    sim = args.sim or "verilator"
    where = f"native {SIMULATOR_NAMES[sim]} harness" if args.harness == "native" else f"cocotb on {sim}"
    print(f"{report.name} on {config_name(cfg)} ({where})")
    print(f"cycles: {report.cycles} (predicted {report.predicted}), {report.macs} MACs, "
          f"{report.macs / max(report.cycles, 1):.1f} MACs/cycle")
    if report.cycles_per_second:
        print(f"harness speed: {report.cycles_per_second:,.0f} simulated cycles/s "
              f"({report.cycles_per_cpu_second:,.0f} per CPU second)")
    print(f"weight stream: {report.stream_bits_per_weight:.3f} bits/weight (file EBW {report.file_ebw:.3f})")
    print(f"results checked: {report.checked}, mismatches: {report.mismatches}")
    if report.overflowed:
        print(f"overflowed outputs: {report.overflowed} of {report.outputs} saturated at the "
              f"{cfg.acc_bits}-bit accumulator's range (overflow flag set; the golden model agrees)")
    if report.mismatches or report.error:
        print(f"first mismatch: {report.first_mismatch or report.error}", file=sys.stderr)
        return 1
    return 0


def add_commands(subparsers) -> None:
    """Add ``sim`` to the ``microscopiq`` command."""
    parser = subparsers.add_parser(
        "sim", help="run a packed layer through the simulated accelerator",
        description="Generate the accelerator for --config, build it (cached under "
                    "build/cocotb/accel/) for the native harness or for cocotb, on --sim, "
                    "stream the packed layer with M random or real (--activations) activations "
                    "through it and check every result integer against the golden model. Prints "
                    "the cycles, the integers checked and the mismatches; exits 1 on a mismatch. "
                    "WAVES=1 writes a waveform into the cocotb build folder.",
        epilog="example: microscopiq sim --layer build/layers/q.msq --config 8x8-b4 --tokens 64; "
               "microscopiq sim --layer q.msq --sim icarus --tokens 4; "
               "microscopiq sim --layer q.msq --harness cocotb --sim icarus --activations x.npy")
    parser.add_argument("--layer", required=True, metavar="FILE", help="packed layer (.msq)")
    parser.add_argument("--harness", choices=HARNESSES, default="native",
                        help="native: the file-driven testbench (whole layers at ~10^5 cycles/s on "
                             "Verilator, a few hundred on Icarus); cocotb: the cocotb testbench "
                             "(default native)")
    parser.add_argument("--sim", choices=SIMULATORS, default=None,
                        help="simulator of either harness (default verilator)")
    parser.add_argument("--config", default="8x8-b4", metavar="C",
                        help=f"preset ({', '.join(PRESETS)}) or a JSON configuration/manifest "
                             "(default 8x8-b4)")
    parser.add_argument("--tokens", type=int, default=None, metavar="M",
                        help=f"activation rows streamed, 1 to 65536 (default {DEFAULT_TOKENS} random ones, "
                             "or every row of --activations)")
    parser.add_argument("--activations", metavar="FILE.npy",
                        help="real activations: a float (M, k) array, quantized per token "
                             "(SPEC §1) (default: random integers)")
    parser.add_argument("--seed", type=int, default=1, metavar="S",
                        help="seed of the random activations, 0 to 2^32-1 (default 1)")
    parser.add_argument("--json", action="store_true",
                        help="print the report as one JSON object (strict JSON) instead of text")
    parser.set_defaults(func=_run_sim)
