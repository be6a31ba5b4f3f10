"""Run layers through the simulated accelerator: the launcher of :mod:`microscopiq.tb.test_accel`
and the ``microscopiq sim`` command.

* :func:`generate_rtl` writes the accelerator's Verilog for a configuration into a build folder;
* :func:`run_accel` builds it (cached) on Icarus or Verilator and runs the cocotb regression with
  the given stimulus parameters, returning the per-layer records the tests wrote;
* ``microscopiq sim --layer FILE --sim icarus|verilator [--config C] [--tokens M] [--seed S]`` runs
  one packed layer (:func:`~microscopiq.quant.pack.load_layer`) with ``M`` random activations and
  prints the cycles, the result integers checked and the mismatches; exit status 1 on a mismatch.

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
from .runner import SIMULATORS, CocotbFailure, run_cocotb

__all__ = ["BUILD_ROOT", "TEST_MODULE", "BUILD_ARGS", "config_name", "generate_rtl", "run_accel",
           "SimReport", "simulate_layer_file", "add_commands"]

BUILD_ROOT = Path("build") / "cocotb" / "accel"
TEST_MODULE = "microscopiq.tb.test_accel"
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
    """Write the accelerator's Verilog and manifest into ``out_dir``; return (manifest, sources)."""
    from ..flow.generate import generate, read_manifest
    generate("accel", cfg, out_dir)
    manifest, files = read_manifest(out_dir)
    if AccelConfig.from_json(manifest["parameters"]) != cfg:
        raise RuntimeError(f"the manifest in {str(out_dir)!r} describes {manifest['parameters']}, "
                           f"not the configuration asked for ({cfg.to_json()})")
    return manifest, [path for path in files if path.suffix in (".v", ".sv")]


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
    """Outcome of :func:`simulate_layer_file`."""

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

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def simulate_layer_file(path: str | os.PathLike, cfg: AccelConfig, sim: str, tokens: int,
                        seed: int, progress=None) -> SimReport:
    """Run the packed layer at ``path`` with ``tokens`` random activations (seed ``seed``); every
    input is checked before anything is built (:func:`microscopiq.validate.check_sim_layer`)."""
    check_sim_layer(path, cfg, tokens, seed)
    params = {"layer_file": str(Path(path).resolve()), "shape": {"m": tokens}, "seed": seed}
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


def _run_sim(args: argparse.Namespace) -> int:
    from ..progress import Stages
    cfg = resolve_config(args.config)
    stages = Stages("microscopiq sim")
    report = simulate_layer_file(args.layer, cfg, args.sim, args.tokens, args.seed, progress=stages)
    stages(f"checked {report.checked} result integers, {report.mismatches} mismatches")
    if args.json:
        print(json.dumps(report.to_json(), indent=1, allow_nan=False))
        return 1 if report.mismatches or report.error else 0
    print(f"{report.name} on {config_name(cfg)} ({args.sim})")
    print(f"cycles: {report.cycles} (predicted {report.predicted}), {report.macs} MACs, "
          f"{report.macs / max(report.cycles, 1):.1f} MACs/cycle")
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
        description="Generate the accelerator for --config, build it on --sim (cached under "
                    "build/cocotb/accel/), stream the packed layer with M random activations through it "
                    "and check every result integer against the golden model. Prints the cycles, "
                    "the integers checked and the mismatches; exits 1 on a mismatch. WAVES=1 "
                    "writes a waveform into the build folder.",
        epilog="example: microscopiq sim --layer build/layers/q.msq --sim verilator --config 8x8-b4 "
               "--tokens 16 --seed 1")
    parser.add_argument("--layer", required=True, metavar="FILE", help="packed layer (.msq)")
    parser.add_argument("--sim", choices=SIMULATORS, default="verilator",
                        help="simulator (default verilator)")
    parser.add_argument("--config", default="8x8-b4", metavar="C",
                        help=f"preset ({', '.join(PRESETS)}) or a JSON configuration/manifest "
                             "(default 8x8-b4)")
    parser.add_argument("--tokens", type=int, default=8, metavar="M",
                        help="activation rows streamed, 1 to 65536 (default 8)")
    parser.add_argument("--seed", type=int, default=1, metavar="S",
                        help="seed of the random activations, 0 to 2^32-1 (default 1)")
    parser.add_argument("--json", action="store_true",
                        help="print the report as one JSON object (strict JSON) instead of text")
    parser.set_defaults(func=_run_sim)
