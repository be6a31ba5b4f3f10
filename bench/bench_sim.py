"""Simulation speed of the generated accelerator on Icarus and Verilator (``make bench-sim``).

For every configuration and simulator: the build is made (or found cached) first, then one timed
run streams the same random MicroScopiQ layer (no idle cycles, no back-pressure) through the cocotb
testbench, every result checked against the golden model. Reported: the build time, the wall time
of the timed run (simulator start-up and cocotb included), the simulated cycles, the layer's MACs,
the accelerator's MACs per cycle and the simulated MACs per wall-clock second.

The native Verilator harness (:mod:`microscopiq.tb.native`) gets the same rows, plus one for a
MiniLM-sized layer (384×384, 128 tokens: about 300,000 cycles), where its speed is the
simulation's and not the start-up's; for it the harness's own cycles per wall-clock and per CPU
second are reported too (on a shared machine the CPU figure is what one free core does). The
tables go to ``docs/bench_sim.md`` with the command that made them.

    python bench/bench_sim.py [--configs 4x8-b2 8x8-b4 ...] [--sims icarus verilator]
                              [--harnesses cocotb native] [--tokens M] [--out docs/bench_sim.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from microscopiq.config import PRESETS
from microscopiq.outputs import atomic_file
from microscopiq.tb.runner import SIMULATORS
from microscopiq.tb.sim_cli import run_accel

DEFAULT_CONFIGS = ["4x8-b2", "8x8-b4", "16x16-b4-shared"]


def layer_shape(preset: str, tokens: int) -> dict:
    """Two N-tiles and two K-groups of the configuration, ``tokens`` tokens."""
    cfg = PRESETS[preset]
    return {"n": 2 * cfg.cols, "k": 2 * cfg.fmt.group, "m": tokens}


def measure(preset: str, sim: str, tokens: int, seed: int = 1) -> dict:
    cfg = PRESETS[preset]
    base = {"cases": [["random", "none", "none"]], "extras": False, "check_cycles": False}
    start = time.perf_counter()
    run_accel(cfg, sim, {**base, "shape": {"n": cfg.cols, "k": 1, "m": 1}}, seed=seed)
    build = time.perf_counter() - start
    start = time.perf_counter()
    records = run_accel(cfg, sim, {**base, "shape": layer_shape(preset, tokens)}, seed=seed)
    wall = time.perf_counter() - start
    (record,) = records
    return {"config": preset, "sim": sim, "build_s": build, "wall_s": wall, "cycles": record["cycles"],
            "predicted": record["predicted"], "macs": record["macs"], "checked": record["checked"],
            "name": record["name"]}


#: The long native row: a MiniLM attention projection with 128 tokens.
LONG_SHAPE = {"n": 384, "k": 384, "m": 128}


def measure_native(preset: str, shape: dict, seed: int = 1) -> dict:
    """Build (or find) the native harness, then one timed run of a random layer of ``shape``."""
    from microscopiq.tb.native import build_harness, check_case
    from microscopiq.tb.stimulus import random_case
    cfg = PRESETS[preset]
    start = time.perf_counter()
    executable = build_harness(cfg)
    build = time.perf_counter() - start
    case = random_case(cfg, shape["n"], shape["k"], shape["m"], seed=seed)
    start = time.perf_counter()
    check = check_case(cfg, case, executable=executable)
    wall = time.perf_counter() - start
    if check.mismatches:
        raise AssertionError(f"{case.name}: {len(check.mismatches)} mismatches, first {check.mismatches[0]}")
    run = check.run
    return {"config": preset, "sim": "verilator", "harness": "native", "build_s": build, "wall_s": wall,
            "cycles": run.cycles, "predicted": check.predicted, "macs": case.macs, "checked": check.checked,
            "name": case.name, "harness_cps": run.cycles_per_second, "harness_cpu_cps": run.cycles_per_cpu_second}


def table(rows: list[dict]) -> str:
    lines = ["| config | harness | simulator | layer (n×k×M) | cycles (predicted) | MACs/cycle | build + 1st run s "
             "| timed run s | simulated MACs/s | simulated cycles/s | harness loop cycles/s (per CPU s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        shape = row["name"].split("(", 1)[1].split(" seed")[0].replace("msq ", "")
        loop = (f"{row['harness_cps']:,.0f} ({row['harness_cpu_cps']:,.0f})" if "harness_cps" in row else "")
        lines.append(f"| {row['config']} | {row.get('harness', 'cocotb')} | {row['sim']} | {shape} "
                     f"| {row['cycles']} ({row['predicted']}) "
                     f"| {row['macs'] / row['cycles']:.1f} | {row['build_s']:.1f} | {row['wall_s']:.1f} "
                     f"| {row['macs'] / row['wall_s']:,.0f} | {row['cycles'] / row['wall_s']:,.0f} | {loop} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(PRESETS))
    parser.add_argument("--sims", nargs="+", default=list(SIMULATORS), choices=SIMULATORS)
    parser.add_argument("--harnesses", nargs="+", default=["cocotb", "native"], choices=["cocotb", "native"])
    parser.add_argument("--tokens", type=int, default=32, help="tokens per layer (default 32)")
    parser.add_argument("--out", default="docs/bench_sim.md")
    args = parser.parse_args(argv)
    rows = []
    for preset in args.configs:
        todo = [lambda sim=sim: measure(preset, sim, args.tokens)
                for sim in args.sims if "cocotb" in args.harnesses]
        if "native" in args.harnesses:
            todo += [lambda: measure_native(preset, layer_shape(preset, args.tokens)),
                     lambda: measure_native(preset, LONG_SHAPE)]
        for job in todo:
            row = job()
            print(table([row]).splitlines()[-1], flush=True)
            rows.append(row)
    command = "python bench/bench_sim.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = (f"# Simulation speed\n\nMade by `make bench-sim` (`{command.strip()}`) on "
            f"{platform.machine()}, {os.cpu_count()} CPU(s), {time.strftime('%Y-%m-%d')}.\n\n"
            "Each row streams one random MicroScopiQ layer (two N-tiles, two K-groups) through the "
            "generated accelerator without idle cycles or back-pressure, checks every result "
            "integer against the golden model, and times the run (simulator start-up and cocotb "
            "included). *Build + 1st run* is the first call, which compiles the simulator unless "
            "its build is cached. *Cycles* are counted from the first weights handshake to the "
            "last result handshake as `stream_format.predict_cycles` (*predicted*) counts them; "
            "the regression asserts they are equal whenever no stream pauses. *Native* rows run the "
            "C++ Verilator harness (`microscopiq.tb.native`: Python encodes the streams into files, "
            "C++ drives them, Python checks every result); their timed run includes the encoding "
            "and the check, the last column is the harness's simulation loop alone, per wall-clock "
            "second and, in parentheses, per CPU second.\n\n"
            f"{table(rows)}\n")
    with atomic_file(args.out, "w") as handle:
        handle.write(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
