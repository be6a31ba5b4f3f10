"""The mixed-precision MiniLM on one accelerator (issue #13, item 4): every layer of a plan written by
``microscopiq quantize --model minilm --method microscopiq --wbits 2,4 --budget B --out DIR`` runs on
one 8×8 W4 multi-precision build (``microscopiq generate accel --preset 8x8-b4 --multi-precision``):
MicroScopiQ layers at b = 4 and, one slot per PE, at b = 2, chosen per pass by the stream header.

For each plan: every layer's cycles at M tokens from :func:`~microscopiq.host.stream_format.predict_cycles`
(the model; tests/hdl/test_top.py holds the RTL equal to it, on real MiniLM layers of each b too),
summed per b and over the model (M = 32 = 4R and M = 1, the decode step); with ``--rtl first`` one
layer of each b (the first of the first plan), with ``--rtl all`` every layer (``--rtl-layers N``:
the first N), runs on the native harness of the build (``--sim``: Verilator, or Icarus, tb/native.py)
with random activations, every result integer checked against the golden model and its cycles
printed beside the model's. The mean EBW comes from the plan; the embedding cosine of the same budget
from docs/quantization.md's table (``--cosine``, the ``bench/bench_mixed.py`` measurement: the plan
is the CLI's, the very same). The MIXED_RUN section of docs/performance.md ("MicroScopiQ at b = 2
and the mixed-precision MiniLM on one build") is rewritten between its markers; an Icarus run
rewrites MIXED_RUN_ICARUS after it (its RTL runs; the tables are the model's, the same).

    python bench/bench_mixed_run.py --plan DIR [DIR ...] [--cosine C [C ...]] [--tokens 32,1]
        [--rtl first|all [--rtl-layers N]] [--sim verilator|icarus]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from bench_qor import write_section   # bench/ is the script's folder, on sys.path
from microscopiq.config import PRESETS
from microscopiq.host.stream_format import check_layer, predict_cycles
from microscopiq.quant.pack import load_layer
from microscopiq.tb.native import SIMULATOR_NAMES
from microscopiq.tb.stimulus import Case, random_activations

ROOT = Path(__file__).resolve().parents[1]
#: The one build every layer runs on.
MP = PRESETS["8x8-b4"].replace(multi_precision=True)
SEED = 13
#: The docs/performance.md section a run of each simulator rewrites: an Icarus run (slow:
#: docs/verification.md) writes its own beside the Verilator one.
SECTIONS = {"verilator": "MIXED_RUN", "icarus": "MIXED_RUN_ICARUS"}


def plan_layers(folder: Path) -> tuple[dict, list[tuple[dict, object]]]:
    """``plan.json`` of a mixed-precision ``--out`` folder and each planned layer with its entry."""
    plan = json.loads((folder / "plan.json").read_text())
    layers = []
    for entry in plan["layers"]:
        layer = load_layer(folder / entry["file"])
        if layer.fmt.wbits != entry["b"]:
            raise SystemExit(f"bench_mixed_run: {entry['file']} holds b = {layer.fmt.wbits}, "
                             f"the plan says {entry['b']}")
        check_layer(MP, layer)
        layers.append((entry, layer))
    return plan, layers


def layer_cycles(layers, tokens: list[int]) -> list[dict]:
    """Per layer: its b, shape and predicted cycles at each M of ``tokens``."""
    return [{"layer": entry["layer"], "b": entry["b"], "n": layer.n, "k": layer.k,
             "cycles": {m: predict_cycles(MP, layer, m) for m in tokens}} for entry, layer in layers]


def rtl_runs(layers, tokens: int, every: bool, sim: str = "verilator") -> list[dict]:
    """The first layer of each b (``every``: every layer) on the native harness of ``sim`` (results
    checked), cycles beside the model's; each layer's outcome printed on stderr as it finishes."""
    from microscopiq.tb.native import build_harness, check_case
    exe = build_harness(MP, sim=sim, quiet=False)
    runs, seen = [], set()
    for entry, layer in layers:
        if entry["b"] in seen and not every:
            continue
        seen.add(entry["b"])
        x = random_activations(layer.fmt, tokens, layer.k, np.random.default_rng(SEED))
        check = check_case(MP, Case(entry["layer"], layer, x, SEED), executable=exe, sim=sim)
        if check.mismatches:
            raise SystemExit(f"bench_mixed_run: {entry['layer']}: the RTL differs from the golden model: "
                             f"{check.mismatches[0]}")
        runs.append({"layer": entry["layer"], "b": entry["b"], "rtl": check.run.cycles,
                     "model": check.predicted, "checked": check.checked, "seconds": check.run.seconds,
                     "cpu_seconds": check.run.cpu_seconds, "simulated": check.run.simulated_cycles})
        print(f"bench_mixed_run: {sim}: {entry['layer']} (b = {entry['b']}, M = {tokens}): {check.run.cycles:,} "
              f"cycles (model {check.predicted:,}), {check.checked:,} integers, no mismatch, "
              f"{check.run.seconds:.0f} s ({check.run.cycles_per_cpu_second:,.0f} cycles per CPU second)",
              file=sys.stderr, flush=True)
    return runs


def summary_rows(plan: dict, rows: list[dict], tokens: list[int], cosine) -> list[str]:
    """The plan's lines of the summary table: one per M."""
    def total(m: int, b: int | None = None) -> str:
        return f"{sum(r['cycles'][m] for r in rows if b is None or r['b'] == b):,}"

    count = {b: sum(r["b"] == b for r in rows) for b in (2, 4)}
    return [f"| {plan['budget']} | {plan['totals']['ebw']:.3f} | {cosine if cosine is not None else '—'} | "
            f"{count[2]} / {count[4]} | {m} | {total(m, 2)} | {total(m, 4)} | {total(m)} |" for m in tokens]


def rtl_line(plan: dict, runs: list[dict], layers: int, tokens: int, sim: str) -> str:
    """The RTL runs in one paragraph: which layers, integers checked, cycles against the model, time."""
    same = all(r["rtl"] == r["model"] for r in runs)
    verdict = " — equal to the model." if same else " — **differs from the model**."
    simulated = sum(r["simulated"] for r in runs)
    cpu = sum(r["cpu_seconds"] for r in runs)
    head = (f"RTL (native {SIMULATOR_NAMES[sim]} harness of the build, random activations at M = {tokens}, every "
            f"result integer checked against the golden model; {sum(r['seconds'] for r in runs):,.0f} s of "
            f"simulation, {simulated / max(cpu, 1e-9):,.0f} simulated cycles per CPU second): ")
    if len(runs) == layers:
        counts = {b: sum(r["b"] == b for r in runs) for b in (2, 4)}
        return (head + f"every layer of the budget-{plan['budget']} plan ({counts[2]} at b = 2, "
                f"{counts[4]} at b = 4): {sum(r['checked'] for r in runs):,} integers, no mismatch; "
                f"{sum(r['rtl'] for r in runs):,} cycles (model {sum(r['model'] for r in runs):,})" + verdict)
    return (head + ", ".join(f"{r['layer']} (b = {r['b']}): {r['rtl']:,} cycles (model {r['model']:,}, "
                             f"{r['checked']:,} integers)" for r in runs)
            + f"; {sum(r['checked'] for r in runs):,} integers, no mismatch" + verdict)


def header(plans, command: str, seconds: float, target: str = "make bench-mixed-run") -> str:
    """Who wrote the section, when, with what command, and on which plans and build."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"Written {stamp} on {platform.machine()} ({platform.python_implementation()} "
            f"{platform.python_version()}) by `{command}` (`{target}`, {seconds:.0f} s). "
            "Plans: `microscopiq quantize --model minilm --method microscopiq --wbits 2,4 --budget "
            f"B --calib-texts 32 --out DIR`, B = {', '.join(str(p['budget']) for p, _, _ in plans)}. "
            "Build: `microscopiq generate accel --preset 8x8-b4 "
            "--multi-precision` (8×8, b = 4, ReCoN per row, 32-bit weight bus) "
            "runs every layer of every plan (`check_layer`); cycles: `predict_cycles` per layer at M tokens.")


def icarus_section(plans, runs, tokens: list[int], command: str, seconds: float) -> str:
    """The Icarus run: the header and the RTL paragraph (the tables are the model's, as above)."""
    plan, rows, _ = plans[0]
    return (header(plans, command, seconds, "make bench-mixed-run-icarus") + "\n\n"
            + rtl_line(plan, runs, len(rows), tokens[0], "icarus"))


def section(plans: list[tuple[dict, list[dict], str | None]], runs, tokens: list[int], command: str,
            seconds: float) -> str:
    """The summary of every plan, then the first plan's layers and the RTL runs."""
    plan, rows, _ = plans[0]
    lines = [header(plans, command, seconds), "",
             "| budget | mean EBW (bits/weight) | embedding cosine, mean | layers at b = 2 / 4 | M "
             "| cycles, b = 2 layers | cycles, b = 4 layers | cycles, whole model (8×8) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for one in plans:
        lines += summary_rows(*one[:2], tokens, one[2])
    lines += ["", f"Budget {plan['budget']}, per layer:", "",
              "| layer | b | n × k | " + " | ".join(f"cycles, M = {m}" for m in tokens) + " |",
              "| --- | ---: | --- |" + " ---: |" * len(tokens)]
    lines += [f"| {r['layer']} | {r['b']} | {r['n']} × {r['k']} | "
              + " | ".join(f"{r['cycles'][m]:,}" for m in tokens) + " |" for r in rows]
    if runs:
        lines += ["", rtl_line(plan, runs, len(rows), tokens[0], "verilator")]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", type=Path, nargs="+", default=[ROOT / "build" / "minilm-mixed-3.0"],
                        help="the --out folders of mixed-precision 'microscopiq quantize' runs (the "
                             "first: per-layer table and RTL)")
    parser.add_argument("--tokens", default="32,1",
                        help="M, tokens per layer (comma-separated; the RTL runs the first)")
    parser.add_argument("--cosine", nargs="+", default=[],
                        help="each plan's embedding cosine (docs/quantization.md), printed as given")
    parser.add_argument("--rtl", choices=("first", "all"),
                        help="also run on the native harness the first plan's first layer of each b, or all its layers")
    parser.add_argument("--rtl-layers", type=int, default=None, metavar="N",
                        help="with --rtl all: only the plan's first N layers (an encoder block is 6)")
    parser.add_argument("--sim", choices=tuple(SECTIONS), default="verilator",
                        help="the simulator of the --rtl runs (default verilator; icarus rewrites its "
                             "own section, MIXED_RUN_ICARUS)")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "performance.md",
                        help="the page whose MIXED_RUN section is rewritten")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if len(args.cosine) > len(args.plan):
        parser.error(f"{len(args.cosine)} --cosine values for {len(args.plan)} --plan folders")
    if args.sim != "verilator" and not args.rtl:
        parser.error(f"--sim {args.sim} is the simulator of the --rtl runs; give --rtl")
    if args.rtl_layers is not None and (args.rtl != "all" or args.rtl_layers < 1):
        parser.error(f"--rtl-layers takes N >= 1 with --rtl all, not {args.rtl_layers} with --rtl {args.rtl}")
    tokens = [int(m) for m in args.tokens.split(",")]
    plans, runs = [], None
    for index, folder in enumerate(args.plan):
        plan, layers = plan_layers(folder)
        plans.append((plan, layer_cycles(layers, tokens), args.cosine[index] if index < len(args.cosine) else None))
        if index == 0 and args.rtl:
            runs = rtl_runs(layers[:args.rtl_layers], tokens[0], args.rtl == "all", args.sim)
    command = " ".join(["python bench/bench_mixed_run.py", *(argv if argv is not None else sys.argv[1:])])
    made = icarus_section if args.sim == "icarus" else section
    text = made(plans, runs, tokens, command, time.perf_counter() - start)
    write_section(args.doc, SECTIONS[args.sim], text, "bench/bench_mixed_run.py")
    print(text)
    return 0


if __name__ == "__main__":
    np.seterr(all="raise")
    sys.exit(main())
