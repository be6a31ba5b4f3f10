"""The mixed-precision MiniLM on one accelerator (issue #13, item 4): every layer of a plan written by
``microscopiq quantize --model minilm --method microscopiq --wbits 2,4 --budget B --out DIR`` runs on
one 8×8 W4 multi-precision build (``microscopiq generate accel --preset 8x8-b4 --multi-precision``):
MicroScopiQ layers at b = 4 and, one slot per PE, at b = 2, chosen per pass by the stream header.

For each plan: every layer's cycles at M tokens from :func:`~microscopiq.host.stream_format.predict_cycles`
(the model; tests/hdl/test_top.py holds the RTL equal to it, on real MiniLM layers of each b too),
summed per b and over the model; with ``--rtl`` one layer of each b (the first of the plan) runs on
the native Verilator harness of the build with random activations, every result integer checked
against the golden model and its cycles printed beside the model's. The mean EBW comes from the
plan; the embedding cosine of the same budget from docs/quantization.md's table (``--cosine``, the
``bench/bench_mixed.py`` measurement: the plan is the CLI's, the very same). The section
"Mixed-precision MiniLM on one build" of docs/performance.md is rewritten between its markers.

    python bench/bench_mixed_run.py --plan build/minilm-mixed [--cosine 0.8954] [--tokens 32] [--rtl]
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

from microscopiq.config import PRESETS
from microscopiq.host.stream_format import check_layer, predict_cycles
from microscopiq.quant.pack import load_layer
from microscopiq.tb.stimulus import Case, random_activations

ROOT = Path(__file__).resolve().parents[1]
#: The one build every layer runs on.
MP = PRESETS["8x8-b4"].replace(multi_precision=True)
SEED = 13


def plan_layers(folder: Path) -> tuple[dict, list[tuple[dict, object]]]:
    """``plan.json`` of a mixed-precision ``--out`` folder and each planned layer with its entry."""
    plan = json.loads((folder / "plan.json").read_text())
    layers = []
    for entry in plan["layers"]:
        layer = load_layer(folder / entry["file"])
        if layer.fmt.wbits != entry["b"]:
            raise SystemExit(f"bench_mixed_run: {entry['file']} holds b = {layer.fmt.wbits}, the plan says {entry['b']}")
        check_layer(MP, layer)
        layers.append((entry, layer))
    return plan, layers


def layer_cycles(layers, tokens: int) -> list[dict]:
    return [{"layer": entry["layer"], "b": entry["b"], "n": layer.n, "k": layer.k,
             "cycles": predict_cycles(MP, layer, tokens)} for entry, layer in layers]


def rtl_runs(layers, tokens: int) -> list[dict]:
    """The first layer of each b on the native harness (results checked), cycles beside the model's."""
    from microscopiq.tb.native import build_harness, check_case
    exe = build_harness(MP, quiet=False)
    runs, seen = [], set()
    for entry, layer in layers:
        if entry["b"] in seen:
            continue
        seen.add(entry["b"])
        x = random_activations(layer.fmt, tokens, layer.k, np.random.default_rng(SEED))
        check = check_case(MP, Case(entry["layer"], layer, x, SEED), executable=exe)
        if check.mismatches:
            raise SystemExit(f"bench_mixed_run: {entry['layer']}: the RTL differs from the golden model: "
                             f"{check.mismatches[0]}")
        runs.append({"layer": entry["layer"], "b": entry["b"], "rtl": check.run.cycles,
                     "model": check.predicted, "checked": check.checked})
    return runs


def section(plan: dict, rows: list[dict], runs, tokens: int, cosine, command: str, seconds: float) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    totals = plan["totals"]
    per_b = {b: [r for r in rows if r["b"] == b] for b in sorted({r["b"] for r in rows})}
    total = sum(r["cycles"] for r in rows)
    lines = [f"Written {stamp} on {platform.machine()} ({platform.python_implementation()} "
             f"{platform.python_version()}) by `{command}` (`make bench-mixed-run`, {seconds:.0f} s). "
             f"Plan: `microscopiq quantize --model minilm --method microscopiq --wbits 2,4 --budget "
             f"{plan['budget']} --calib-texts 32 --out DIR`. Build: `microscopiq generate accel --preset 8x8-b4 "
             "--multi-precision` (8×8, b = 4, ReCoN per row, 32-bit weight bus): every layer of the plan "
             f"runs on it (`check_layer`); cycles: `predict_cycles` at M = {tokens} tokens per layer.", "",
             "| budget | mean EBW (bits/weight) | embedding cosine, mean | layers at b = 2 / 4 | cycles, b = 2 layers "
             "| cycles, b = 4 layers | cycles, whole model (8×8) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
             f"| {plan['budget']} | {totals['ebw']:.3f} | {cosine if cosine is not None else '—'} | "
             f"{len(per_b.get(2, []))} / {len(per_b.get(4, []))} | {sum(r['cycles'] for r in per_b.get(2, [])):,} | "
             f"{sum(r['cycles'] for r in per_b.get(4, [])):,} | {total:,} |", ""]
    lines += ["| layer | b | n × k | cycles |", "| --- | ---: | --- | ---: |"]
    lines += [f"| {r['layer']} | {r['b']} | {r['n']} × {r['k']} | {r['cycles']:,} |" for r in rows]
    if runs:
        same = all(r["rtl"] == r["model"] for r in runs)
        lines += ["", "RTL (native Verilator harness of the build, random activations, every result integer "
                  "checked against the golden model): "
                  + ", ".join(f"{r['layer']} (b = {r['b']}): {r['rtl']:,} cycles (model {r['model']:,}, "
                              f"{r['checked']:,} integers)" for r in runs)
                  + (" — equal to the model." if same else " — **differs from the model**.")]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", type=Path, default=ROOT / "build" / "minilm-mixed",
                        help="the --out folder of a mixed-precision 'microscopiq quantize' run")
    parser.add_argument("--tokens", type=int, default=32, help="M, tokens per layer")
    parser.add_argument("--cosine", help="the plan's embedding cosine (docs/quantization.md), printed as given")
    parser.add_argument("--rtl", action="store_true", help="also run one layer of each b on the native harness")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "performance.md",
                        help="the page whose MIXED_RUN section is rewritten")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    plan, layers = plan_layers(args.plan)
    rows = layer_cycles(layers, args.tokens)
    runs = rtl_runs(layers, args.tokens) if args.rtl else None
    command = " ".join(["python bench/bench_mixed_run.py", *(argv if argv is not None else sys.argv[1:])])
    text = section(plan, rows, runs, args.tokens, args.cosine, command, time.perf_counter() - start)
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_qor import write_section
    write_section(args.doc, "MIXED_RUN", text, "bench/bench_mixed_run.py")
    print(text)
    return 0


if __name__ == "__main__":
    np.seterr(all="raise")
    sys.exit(main())
