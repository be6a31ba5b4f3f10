"""Run-time precision on one build (issue #13, part 1): cycles of uniform layers at b = 4 and at
b = 2 on the same 8×8 multi-precision build (``--wbits 4 --multi-precision``: two 2-bit slots per PE
at b = 2), at M = 4R = 32 tokens on the MiniLM layer shapes, and at M = 1 against the INT8 array on
a 32-bit weight bus; with ``--synth`` the Yosys LUT4s of the build against the fixed b = 4 build
(``make bench-multi-precision``). The same for **MicroScopiQ**: the MiniLM layer 0 layers
quantized at b = 2 (``bench_decode``'s ``msq-b2`` folder, quantized first if missing), which run
as pair passes (two K rows per PE row), against random MicroScopiQ b = 4 layers of the same shapes
(at M = 32 the 8×8 is compute-bound: a b = 4 layer's cycles depend on its shape, not on where its
outliers are; tiles have period 1 with ReCoN per row).

Every cycle count is :func:`~microscopiq.host.stream_format.predict_cycles` (the model; the tests
hold the RTL equal to it: tests/hdl/test_top.py ``test_multi_precision_*`` and the cocotb case on
both simulators); ``--rtl`` also runs the 384×384 layer at b = 4 and b = 2, M = 32 and M = 1, through
the native Verilator harness of the 8×8 multi-precision build (every result integer checked against
the golden model) and prints its cycles beside the model's. A uniform layer's cycles depend only on
its shape (no outliers: every tile has period 1, every row ``C·b`` bits), so the layers are random
codes of the MiniLM shapes. The section "Run-time precision" of docs/performance.md is rewritten
between its markers.

    python bench/bench_multi_precision.py [--rtl] [--synth BASE_DIR MP_DIR] [--doc docs/performance.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import numpy as np

from bench_decode import DESIGNS, LAYERS, quantize_missing   # bench/ is the script's folder, on sys.path
from bench_qor import write_section
from microscopiq.config import PRESETS
from microscopiq.host.stream_format import layer_pairs, predict_cycles
from microscopiq.quant.pack import load_layer
from microscopiq.tb.stimulus import half_uniform_case, random_case, random_uniform_case

ROOT = Path(__file__).resolve().parents[1]
#: The build: the 8×8 b = 4 preset with run-time b = 2 for uniform layers.
MP = PRESETS["8x8-b4"].replace(multi_precision=True)
#: The INT8 array of bench/bench_decode.py (no ReCoN, ``acc_bits`` 48 for K = 4096).
INT8 = PRESETS["8x8-b4"].replace(wbits=8, recon_share=0, acc_bits=48)
#: The fixed b = 2 build (what a W2 layer ran on before: one 2-bit slot per PE).
B2 = PRESETS["8x8-b4"].replace(wbits=2)
SHAPES = {"attn 384×384": (384, 384), "FFN up 1536×384": (1536, 384), "FFN down 384×1536": (384, 1536)}
#: Issue #13's target: W2 ≤ 0.55 × W4 cycles at M ≥ 4R; issue #12's: W2 ≥ 3× INT8 at M = 1, 32-bit bus.
W2_OVER_W4, M_TARGET = 0.55, 4 * MP.rows
W2_OVER_INT8 = 3.0
#: The growth in LUT4s the issue allows for the multi-precision build.
LUT_GROWTH = 0.15
RTL_LAYER = "attn 384×384"
SEED = 13
#: The MiniLM layers quantized by MicroScopiQ at b = 2.
MSQ_B2 = next(d for d in DESIGNS if d.name == "msq-b2")


def layers(cfg, n: int, k: int, m: int) -> dict:
    """The b = 4 (or the build's own b) and the b = 2 uniform layer of shape n × k with m tokens."""
    out = {"w4": random_uniform_case(cfg, n, k, m, SEED)}
    if cfg.multi_precision:
        out["w2"] = half_uniform_case(cfg, n, k, m, SEED + 1)
    return out


def precision_rows(tokens: int) -> list[dict]:
    """Per MiniLM shape: W4 and W2 cycles on the multi-precision build at ``tokens`` tokens."""
    rows = []
    for label, (n, k) in SHAPES.items():
        cases = layers(MP, n, k, tokens)
        w4, w2 = (predict_cycles(MP, cases[b].layer, tokens) for b in ("w4", "w2"))
        rows.append({"layer": label, "tokens": tokens, "w4": w4, "w2": w2, "ratio": w2 / w4})
    return rows


def msq_layers(n: int, k: int, m: int, label: str) -> dict:
    """The MicroScopiQ b = 4 (random, of shape n × k) and b = 2 (MiniLM's, ``label``) layers."""
    return {"w4": random_case(MP, n, k, m, SEED).layer,
            "w2": load_layer(ROOT / MSQ_B2.folder / f"{LAYERS[label]}.msq")}


def msq_rows(tokens: int) -> list[dict]:
    """Per MiniLM shape: MicroScopiQ W4 and W2 cycles on the multi-precision build at ``tokens``."""
    quantize_missing(MSQ_B2)
    rows = []
    for label, (n, k) in SHAPES.items():
        layers = msq_layers(n, k, tokens, label)
        w4, w2 = (predict_cycles(MP, layers[b], tokens) for b in ("w4", "w2"))
        rows.append({"layer": label, "tokens": tokens, "w4": w4, "w2": w2, "ratio": w2 / w4,
                     "pairs": layer_pairs(MP, layers["w2"])})
    return rows


def decode_rows() -> list[dict]:
    """Per MiniLM shape at M = 1, 32-bit bus: W2 and W4 on the multi-precision build, W2 on the fixed
    b = 2 build, INT8 on the INT8 array."""
    rows = []
    for label, (n, k) in SHAPES.items():
        mp = layers(MP, n, k, 1)
        rows.append({"layer": label,
                     "w2": predict_cycles(MP, mp["w2"].layer, 1), "w4": predict_cycles(MP, mp["w4"].layer, 1),
                     "b2": predict_cycles(B2, random_uniform_case(B2, n, k, 1, SEED).layer, 1),
                     "int8": predict_cycles(INT8, random_uniform_case(INT8, n, k, 1, SEED).layer, 1)})
    return rows


def rtl_cycles() -> dict:
    """The native harness's cycles of the 384×384 layer at b = 4 and 2, M = 32 and 1, uniform, and
    at M = 32 MicroScopiQ (keys ``msq-w4``, ``msq-w2``) (results checked)."""
    from microscopiq.tb.native import build_harness, check_case
    from microscopiq.tb.stimulus import Case, random_activations
    exe = build_harness(MP, quiet=False)
    n, k = SHAPES[RTL_LAYER]
    out = {}
    for tokens in (M_TARGET, 1):
        cases = dict(layers(MP, n, k, tokens))
        if tokens == M_TARGET:
            x = random_activations(MP.fmt, tokens, k, np.random.default_rng(SEED))
            for name, layer in msq_layers(n, k, tokens, RTL_LAYER).items():
                cases[f"msq-{name}"] = Case(f"msq-{name} {n}×{k} m={tokens}", layer, x, SEED)
        for name, case in cases.items():
            check = check_case(MP, case, executable=exe)
            if check.mismatches:
                raise SystemExit(f"bench_multi_precision: {case.name}: the RTL differs from the golden model: "
                                 f"{check.mismatches[0]}")
            out[name, tokens] = check.run.cycles
    return out


def synth_luts(folder: Path) -> dict:
    """The resources of a ``microscopiq synth`` run's synth.json."""
    report = json.loads((folder / "synth.json").read_text())["report"]
    return report["resources"] | {"top": report["top"], "yosys_s": report["seconds"]["yosys"],
                                  "mapper": report["lut_mapper"]}


def _verdict(met: bool) -> str:
    return "met" if met else "**NOT met**"


def msq_section(rows, rtl) -> list[str]:
    """The MicroScopiQ W2-vs-W4 lines of :func:`section`."""
    worst = max(r["ratio"] for r in rows if r["tokens"] == M_TARGET)
    lines = ["", f"* MicroScopiQ W2 ≤ {W2_OVER_W4} × W4 cycles on one build at M = {M_TARGET} (4R): "
             f"{_verdict(worst <= W2_OVER_W4)} — worst {worst:.3f}. W2: MiniLM layer 0's layers quantized by "
             f"`microscopiq quantize --model minilm --method microscopiq --wbits 2` ({MSQ_B2.folder}); W4: "
             "random MicroScopiQ b = 4 layers of the same shapes (compute-bound at M = 32: their cycles "
             "follow the shape).", "",
             "| layer | M | MicroScopiQ W4 cycles | MicroScopiQ W2 cycles | W2 / W4 | W2 pass |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    lines += [f"| {r['layer']} | {r['tokens']} | {r['w4']:,} | {r['w2']:,} | {r['ratio']:.3f} | "
              f"{'pairs' if r['pairs'] else 'one slot per PE'} |" for r in rows]
    if rtl:
        model = {m: next(r for r in rows if r["layer"] == RTL_LAYER and r["tokens"] == m) for m in {r["tokens"] for r in rows}}
        keys = [(f"msq-{b}", m) for m in model for b in ("w4", "w2")]
        same = all(rtl[name, m] == model[m][name[4:]] for name, m in keys)
        lines += ["", f"RTL (native Verilator harness, MicroScopiQ {RTL_LAYER}, every result integer checked): "
                  + ", ".join(f"{name[4:].upper()} M = {m}: {rtl[name, m]:,} cycles (model {model[m][name[4:]]:,})"
                              for name, m in keys)
                  + (" — equal to the model." if same else " — **differs from the model**.")]
    return lines


def synth_section(synth) -> list[str]:
    """The LUT4 lines of :func:`section`: per LUT mapper, the fixed and the multi-precision build."""
    lines = [""]
    for base, mp in synth:
        growth = mp["luts"] / base["luts"] - 1
        lines += [f"* LUT4s of the multi-precision 8×8 ≤ +{LUT_GROWTH:.0%} over the fixed b = 4 build, "
                  f"{base['mapper'].upper()} mapping: {_verdict(growth <= LUT_GROWTH)} — {growth:+.1%}"]
    lines += ["", "| build | LUT mapper | LUT4s | logic | carry cells | FFs | LUT RAMs | Yosys s |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {name} (`{r['top']}`) | {r['mapper'].upper()} | {r['luts']:,} | {r['logic_luts']:,} | "
              f"{r['carries']:,} | {r['ffs']:,} | {r['lutram']:,} | {r['yosys_s']:.0f} |"
              for pair in synth for name, r in zip(("b = 4", "b = 4, --multi-precision"), pair)]
    lines += ["", "(`microscopiq synth --design accel --preset 8x8-b4 [--multi-precision] --no-dsp --no-place "
              "[--mapper abc]`: Yosys synth_ecp5, multipliers in LUTs as `make synth`, with its default LUT "
              "mapper (ABC9) and with ABC, `make synth`'s; not placed, so no Fmax.)"]
    return lines


def section(target_rows, decode, rtl, synth, command: str, msq=None) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    worst = max(r["ratio"] for r in target_rows)
    lines = [f"Written {stamp} on {platform.machine()} ({platform.python_implementation()} "
             f"{platform.python_version()}) by `{command}` (`make bench-multi-precision`). Build: "
             f"`microscopiq generate accel --preset 8x8-b4 --multi-precision` (8×8, b = 4, ReCoN per row, "
             "32-bit weight bus). Cycles: `predict_cycles` (the model), random uniform codes of each "
             "MiniLM shape (a uniform layer's cycles depend only on its shape).", "",
             f"* W2 ≤ {W2_OVER_W4} × W4 cycles on one build at M = {M_TARGET} (4R): {_verdict(worst <= W2_OVER_W4)} "
             f"— worst {worst:.3f}", ""]
    lines += ["| layer | M | W4 cycles | W2 cycles | W2 / W4 |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['layer']} | {r['tokens']} | {r['w4']:,} | {r['w2']:,} | {r['ratio']:.3f} |" for r in target_rows]
    speed = [r["int8"] / r["w2"] for r in decode]
    lines += ["", f"* W2 ≥ {W2_OVER_INT8}× fewer cycles than INT8 at M = 1, 32-bit bus (issue #12), W2 on "
              f"this build: {_verdict(min(speed) >= W2_OVER_INT8)} — {min(speed):.2f}–{max(speed):.2f}×", "",
              "| layer (M = 1, 32-bit bus) | W2, this build | W4, this build | W2, fixed b = 2 build | INT8 array "
              "| W2 ×INT8 | W2 vs the fixed b = 2 build |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['layer']} | {r['w2']:,} | {r['w4']:,} | {r['b2']:,} | {r['int8']:,} | "
              f"{r['int8'] / r['w2']:.2f} | {r['w2'] / r['b2']:.3f} |" for r in decode]
    if rtl:
        model = {("w4", M_TARGET): next(r["w4"] for r in target_rows if r["layer"] == RTL_LAYER),
                 ("w2", M_TARGET): next(r["w2"] for r in target_rows if r["layer"] == RTL_LAYER),
                 ("w4", 1): next(r["w4"] for r in decode if r["layer"] == RTL_LAYER),
                 ("w2", 1): next(r["w2"] for r in decode if r["layer"] == RTL_LAYER)}
        same = all(rtl[key] == model[key] for key in model)
        lines += ["", f"RTL (native Verilator harness, {RTL_LAYER}, every result integer checked): "
                  + ", ".join(f"{name.upper()} M = {m}: {rtl[name, m]:,} cycles (model {model[name, m]:,})"
                              for name, m in model)
                  + (" — equal to the model." if same else " — **differs from the model**.")]
    if msq:
        lines += msq_section(msq, rtl)
    if synth:
        lines += synth_section(synth)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtl", action="store_true", help="also run the 384×384 layer on the native harness")
    parser.add_argument("--synth", nargs=2, type=Path, metavar=("BASE_DIR", "MP_DIR"), action="append",
                        help="the --out folders of 'microscopiq synth' for the fixed b = 4 and the "
                             "multi-precision build (once per LUT mapper)")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "performance.md",
                        help="the page whose MULTI_PRECISION section is rewritten")
    args = parser.parse_args(argv)
    target_rows = precision_rows(M_TARGET)
    decode = decode_rows()
    msq = msq_rows(M_TARGET)
    rtl = rtl_cycles() if args.rtl else None
    synth = [tuple(synth_luts(folder) for folder in pair) for pair in args.synth] if args.synth else None
    command = " ".join(["python bench/bench_multi_precision.py", *(argv if argv is not None else sys.argv[1:])])
    text = section(target_rows, decode, rtl, synth, command, msq)
    write_section(args.doc, "MULTI_PRECISION", text, "bench/bench_multi_precision.py")
    print(text)
    return 0


if __name__ == "__main__":
    np.seterr(all="raise")
    sys.exit(main())
