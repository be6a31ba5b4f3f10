"""Quantizer speed and memory: MicroScopiQ (``quantize_msq``) and decoupleQ on a 4096×4096 layer with
heavy-tailed weights and 2048 calibration tokens, and on MiniLM's FFN layers with their real
calibration Hessians; decoupleQ also against its projected-gradient setting (the official implementation
itself, side by side: ``bench/bench_decoupleq_official.py``).

Every measurement runs in its own child process (so the peak resident memory, ``VmHWM``, is that
of one quantizer run): ``peak`` is the child's peak RSS, ``extra`` its growth during the quantizer call
(over the inputs already in memory). Writes ``docs/bench_quant.md``.

    python bench/bench_quant.py            # the full run (make bench-quant): about an hour on 2 cores
    python bench/bench_quant.py --quick    # small sizes, a smoke test of the script
    python bench/bench_quant.py --only-anchors --out build/bench_quant/anchors.md   # decoupleQ rows only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED = 2024

#: decoupleQ anchor problems.
ANCHORS = ("4096x4096 b=2 per-channel", "1024x1024 b=2 G=128")
#: Our solver with a projected-gradient chain (200 steps per outer iteration from the min-max grid, no
#: extrapolation): the PG setting, a stand-in for the paper's relaxed path. It is NOT the official
#: code's algorithm (with round_fn="gptq" that runs no projected-gradient step; see
#: docs/quantization.md and bench/bench_decoupleq_official.py).
PG_KNOBS = {"outer_iters": 4, "pg_steps": 200, "start": "minmax", "extrapolation": 0.0}
#: Rows of the 4096x4096 anchor the reference runs on unless --full-reference (about 50 CPU minutes
#: in full: 800 projected-gradient steps, each a 4096x4096x4096 product).
REFERENCE_ROWS = 512


def _status_mib(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS: now, VmHWM: peak of this process image)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def synthetic(n: int, k: int, tokens: int):
    """Student-t (ν = 3) weights and activations, a few hot input channels: heavy-tailed outliers."""
    rng = np.random.default_rng(SEED)
    w = (rng.standard_t(3, (n, k)) * 0.02).astype(np.float32)
    x = rng.standard_t(3, (tokens, k)).astype(np.float32)
    x[:, rng.choice(k, max(1, k // 256), replace=False)] *= 20
    h = 2.0 * (x.T.astype(np.float64) @ x.astype(np.float64))
    return w, h


def child(spec: dict) -> dict:
    """One measurement (runs in a fresh process)."""
    import torch

    from microscopiq.config import FormatConfig
    from microscopiq.quant.decoupleq import run_decoupleq
    from microscopiq.quant.dequant import dequantize
    from microscopiq.quant.ebw import effective_bits
    from microscopiq.quant.gptq import quantize_gptq
    from microscopiq.quant.models import output_energy, relative_output_error
    from microscopiq.quant.msq import quantize_msq

    torch.manual_seed(SEED)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    if "npz" in spec:
        with np.load(spec["npz"]) as data:
            w, h = data["weight"], data["hessian"]
    else:
        w, h = synthetic(spec["n"], spec["k"], spec["tokens"])
        w = w[:spec.get("rows", spec["n"])]
    fmt = FormatConfig(wbits=spec["wbits"], group=spec["group"])
    before = _status_mib("VmRSS")
    start, cpu = time.perf_counter(), time.process_time()
    out: dict = {}
    if spec["method"] == "microscopiq":
        layer = quantize_msq(w, h, fmt)
    elif spec["method"] == "gptq":
        layer = quantize_gptq(w, h, fmt)
    else:
        result = run_decoupleq(w, h, fmt, **spec.get("knobs", {}))
        layer = result.layer
        out.update(objective=result.final_objective, history=result.objective,
                   start_objective=result.gptq_objective)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = _status_mib("VmHWM")
    deq = dequantize(layer)
    out.update(seconds=seconds, cpu_seconds=cpu, threads=torch.get_num_threads(), peak_mib=peak, extra_mib=peak - before,
               ebw=effective_bits(layer).bits_per_weight)
    start = time.perf_counter()
    out.update(rel_error=relative_output_error(w.astype(np.float64), deq, h),
               error_seconds=time.perf_counter() - start)
    if "objective" not in out:
        out["objective"] = output_energy(w.astype(np.float64) - deq, h)
    return out


def measure(spec: dict) -> dict:
    # Idle OpenMP threads sleep instead of spinning: on a shared machine a spinning thread inflates the
    # CPU time, and a descheduled one stalls every parallel region (seconds over thousands of small ops).
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                          text=True, cwd=ROOT, env=env)
    if proc.returncode:
        raise RuntimeError(f"child failed for {spec}:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {spec['label']:34s} {spec['method']:10s} {spec.get('role', ''):10s} {result['seconds']:8.2f} s  cpu {result['cpu_seconds']:8.2f} s  "
          f"peak {result['peak_mib']:7.0f} MiB  objective {result['objective']:.6g}", file=sys.stderr)
    return dict(spec, **result)


def minilm_ffn(path: Path, calib_texts: int) -> list[tuple[str, Path]]:
    """Save layer 0's and layer 5's FFN weights with their FP32 calibration Hessians."""
    from microscopiq.quant import models

    model = models.load_minilm()
    layers = dict(models.linear_layers(model))
    names = [f"0.model.encoder.layer.{i}.{part}.dense" for i in (0, 5) for part in ("intermediate", "output")]
    hessians, _, _ = models.collect_hessians(model, {n: layers[n] for n in names},
                                             models.calibration_texts(calib_texts))
    saved = []
    for name in names:
        file = path / f"{name.removeprefix('0.model.')}.npz"
        np.savez(file, weight=layers[name].weight.detach().numpy(), hessian=hessians[name])
        saved.append((name.removeprefix("0.model.encoder."), file))
    return saved


def _table(rows: list[dict]) -> str:
    lines = ["| case | method | b | G | wall s | CPU s | peak RSS (MiB) | extra RSS (MiB) | EBW | rel. output error | its seconds |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['method']} | {r['wbits']} | {r['group']} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | "
                     f"{r['peak_mib']:.0f} | {r['extra_mib']:.0f} | {r['ebw']:.3f} | {r['rel_error']:.4f} | {r['error_seconds']:.2f} |")
    return "\n".join(lines)


def _anchor_plan(big: int, mid: int, tokens: int, full_reference: bool, threads: int) -> list[dict]:
    """Per anchor: GPTQ, our defaults, and the PG setting (``PG_KNOBS``); on the big anchor the
    reference and a second run of our defaults take the first REFERENCE_ROWS rows unless
    ``full_reference`` (the objective is a sum over rows, each row's floats its own)."""
    plan = []
    for key in sorted(ANCHORS, key=lambda k: k.startswith("4096")):
        size = big if key.startswith("4096") else mid
        base = {"label": f"random {size}x{size}, {tokens} tokens", "n": size, "k": size, "tokens": tokens,
                "wbits": 2, "group": size if "per-channel" in key else 128, "anchor": key, "threads": threads}
        plan += [dict(base, method="gptq", role="gptq"), dict(base, method="decoupleq", role="fast")]
        rows = size if full_reference or size <= 1024 else min(size, REFERENCE_ROWS * big // 4096)
        if rows < size:
            plan.append(dict(base, method="decoupleq", role="fast-rows", rows=rows))
        plan.append(dict(base, method="decoupleq", role="reference", rows=rows, knobs=PG_KNOBS))
    return plan


def _anchor_section(rows: list[dict], quick: bool) -> list[str]:
    """The decoupleQ section: our defaults against the PG setting, both our solver, in this run."""
    knobs = ", ".join(f"{k}={v}" for k, v in PG_KNOBS.items())
    lines = [
        "## decoupleQ: defaults against the projected-gradient setting", "",
        "Both rows are our solver in this run: **ours** is `run_decoupleq` at its defaults (clipped start "
        "grid, 4 outer iterations of GPTQ rounding onto the extrapolated best grid); the **PG setting** "
        f"is `run_decoupleq(..., {knobs})`. The PG setting is *not* the official implementation's "
        "algorithm (that one, run side by side, is `bench/bench_decoupleq_official.py`; "
        "docs/quantization.md describes it). Objective: `tr((W − W_q) H (W − W_q)ᵀ)` of the returned "
        "layer. *CPU s / threads* is the process CPU time divided by torch's thread count: about the "
        "wall time of an idle machine.", "",
        "| problem | ours wall s | ours CPU s / threads |",
        "| --- | ---: | ---: |",
    ]
    objective_lines = [
        "| problem | rows | PG setting objective | PG setting wall s | PG setting CPU s / threads | ours objective "
        "| ours ÷ PG setting | GPTQ objective (act-order off) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    histories = []
    for key in ANCHORS:
        got = {r["role"]: r for r in rows if r.get("anchor") == key}
        name = key + (" (quick: smaller)" if quick else "")
        if "fast" in got:
            fast = got["fast"]
            ideal = fast["cpu_seconds"] / fast["threads"]
            lines.append(f"| {name} | {fast['seconds']:.2f} | {ideal:.2f} |")
        ref, same = got.get("reference"), got.get("fast-rows", got.get("fast"))
        if ref and same:
            gptq = f"{got['gptq']['objective']:.5g} (all rows)" if "gptq" in got else "not run"
            objective_lines.append(
                f"| {name} | {ref.get('rows', ref['n'])} of {ref['n']} | {ref['objective']:.6g} | {ref['seconds']:.1f} | "
                f"{ref['cpu_seconds'] / ref['threads']:.1f} | {same['objective']:.6g} | "
                f"{same['objective'] / ref['objective']:.4f} | {gptq} |")
            histories += [f"* {name}, PG setting: " + ", ".join(f"{v:.5g}" for v in ref["history"]),
                          f"* {name}, ours: " + ", ".join(f"{v:.5g}" for v in same["history"])]
    return lines + ["", *objective_lines, "",
                    "Best objective after the start and after each outer iteration (same rows as above):",
                    "", *histories]


def _report(rows: list[dict], pending: list[dict], quick: bool, started: str) -> str:
    layer_rows = [r for r in rows if "anchor" not in r]
    lines = [
        "# Quantizer benchmark (`make bench-quant`)", "",
        f"Command: `make bench-quant` (= `.venv/bin/python bench/bench_quant.py{' --quick' if quick else ''}`), "
        f"started {started} on {os.cpu_count()} CPU cores, torch {__import__('torch').__version__}, CPU only.", "",
        "**Timings are noisy:** the machine was shared with other jobs while this ran (load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores when this file was written), so wall seconds "
        "are upper bounds of what an idle machine gives; *CPU s* (process CPU time, all threads) is "
        "less sensitive to the sharing.", "",
        "Each row runs in a fresh process: *peak RSS* is that process's peak resident memory (VmHWM, "
        "inputs included), *extra RSS* its growth during the quantizer call. *rel. output error* is "
        "`‖X(W − W_q)ᵀ‖_F / ‖XWᵀ‖_F` on the calibration tokens. Random layers: Student-t (ν = 3) "
        f"weights and activations with hot input channels (×20), seed {SEED}. MiniLM rows: the FFN "
        "layers of transformer blocks 0 and 5 with the Hessian of 64 calibration text chunks (FP32 model).",
        "", "## MicroScopiQ and decoupleQ, per layer", "", _table(layer_rows) if layer_rows else "(none yet)", "",
    ] + _anchor_section(rows, quick)
    if pending:
        lines += ["", "## Not measured in this run", "",
                  "The run was stopped before these measurements (the machine was heavily shared):", ""]
        lines += [f"* {p['label']}: {p['method']} b={p['wbits']} G={p['group']}"
                  + (f" ({p['role']} run for the anchor {p['anchor']})" if "anchor" in p else "") for p in pending]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_quant.md")
    parser.add_argument("--only-anchors", action="store_true",
                        help="only the decoupleQ anchor rows (defaults against the PG setting)")
    parser.add_argument("--full-reference", action="store_true",
                        help=f"the 4096x4096 reference on all rows, not the first {REFERENCE_ROWS} (~50 CPU min)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each measurement")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    big = 512 if args.quick else 4096
    mid = 256 if args.quick else 1024
    tokens = 256 if args.quick else 2048
    work = ROOT / "build" / "bench_quant"
    work.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"bench-quant: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    # Cheapest first, so that an interrupted run still documents most of the table.
    anchors = _anchor_plan(big, mid, tokens, args.full_reference, args.threads)
    first = sum(1 for spec in anchors if spec["n"] == mid)
    plan = anchors[:first]
    if not args.only_anchors:
        for name, file in minilm_ffn(work, 16 if args.quick else 64):
            plan += [{"label": f"MiniLM {name}", "npz": str(file), "wbits": 2, "group": 128, "method": m,
                      "threads": args.threads} for m in ("microscopiq", "decoupleq")]
    plan += anchors[first:]
    if not args.only_anchors:
        plan += [{"label": f"random {big}x{big}, {tokens} tokens", "n": big, "k": big, "tokens": tokens,
                  "wbits": 2, "group": 128, "method": m, "threads": args.threads}
                 for m in ("decoupleq", "microscopiq")]
    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for i, spec in enumerate(plan):
        rows.append(measure(spec))
        args.out.write_text(_report(rows, plan[i + 1:], args.quick, started))
        (work / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
