"""Mixed-precision MicroScopiQ on all-MiniLM-L6-v2: budget -> mean EBW -> embedding cosine
(docs/quantization.md, "Mixed precision").

MiniLM is quantized sequentially from FP32 once per width (2 and 4; 32 calibration chunks, as the
``microscopiq eval`` results table), which measures every layer's packed bits and relative output error
at each width (:func:`microscopiq.quant.mixed.measure_model`); the quantized layers are kept in
``build/bench_quant/mixed/`` (a rerun reuses them). Then, for each budget, :func:`~.mixed.allocate`
plans the widths, the planned layers are put into the FP32 model and the 128 evaluation chunks are
embedded; the cosine is against FP32's embeddings. The all-b=2 and all-b=4 rows are the uniform
models (the same layers ``microscopiq eval`` would produce).

    python bench/bench_mixed.py [--budgets 2.25,2.5,3.0,3.5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from microscopiq.config import FormatConfig
from microscopiq.quant import mixed, models
from microscopiq.quant.dequant import dequantize
from microscopiq.quant.ebw import effective_bits
from microscopiq.quant.evaluate import cosine_similarity
from microscopiq.quant.pack import load_layer, save_layer

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "bench_quant" / "mixed"
METHOD = "microscopiq"
WBITS = (2, 4)
CALIB_TEXTS, EVAL_TEXTS = 32, 128


def _file(name: str, b: int) -> Path:
    return CACHE / f"b{b}" / (name.removeprefix("0.model.") + ".msq")


def measured(model) -> tuple[list[mixed.LayerOptions], dict]:
    """Every layer's options and quantized layers: from the cache, or measured and cached."""
    index = CACHE / "options.json"
    if index.exists():
        entries = json.loads(index.read_text())
        options = [mixed.LayerOptions(e["name"], e["weights"], tuple(mixed.Option(**o) for o in e["options"]))
                   for e in entries]
        return options, {(o.name, x.b): load_layer(_file(o.name, x.b)) for o in options for x in o.options}
    formats = {b: FormatConfig(wbits=b) for b in WBITS}
    start = time.perf_counter()
    options, layers, _ = mixed.measure_model(model, METHOD, formats, models.calibration_texts(CALIB_TEXTS),
                                             quantize_model=models.quantize_model, effective_bits=effective_bits)
    print(f"measured {len(options)} layers at b = {', '.join(map(str, WBITS))} in "
          f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    for (name, b), layer in layers.items():
        _file(name, b).parent.mkdir(parents=True, exist_ok=True)
        save_layer(_file(name, b), layer)
    index.write_text(json.dumps([{"name": o.name, "weights": o.weights,
                                  "options": [x.__dict__ for x in o.options]} for o in options], indent=1))
    return options, layers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="2.25,2.5,3.0,3.5", help="comma-separated bits per weight")
    args = parser.parse_args()
    budgets = [float(x) for x in args.budgets.split(",")]
    torch.set_num_threads(1)
    model = models.load_minilm()
    options, layers = measured(model)
    fp32 = {k: v.clone() for k, v in model.state_dict().items()}
    evaluation = models.evaluation_texts(EVAL_TEXTS)
    reference = models.embed(model, evaluation)
    lowest = mixed.Plan(tuple(options), tuple(min(WBITS) for _ in options), 0.0)
    highest = mixed.Plan(tuple(options), tuple(max(WBITS) for _ in options), 0.0)
    rows = [(f"uniform b = {min(WBITS)}", lowest)]
    rows += [(f"budget {b:g}", mixed.allocate(options, b)) for b in budgets]
    rows += [(f"uniform b = {max(WBITS)}", highest)]
    print(f"Command: `python bench/bench_mixed.py --budgets {args.budgets}` ({METHOD}, b in "
          f"{{{', '.join(map(str, WBITS))}}}, {CALIB_TEXTS} calibration and {EVAL_TEXTS} evaluation chunks)\n")
    print("| plan | mean EBW (bits/weight) | layers at b = 2 / 4 | objective Σ rel² | "
          "embedding cosine, mean | embedding cosine, min |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, plan in rows:
        model.load_state_dict(fp32)
        mixed.apply_plan(model, plan, layers, dequantize)
        cos = cosine_similarity(reference, models.embed(model, evaluation))
        counts = " / ".join(str(plan.widths.count(b)) for b in WBITS)
        print(f"| {label} | {plan.ebw:.3f} | {counts} | {plan.objective:.4f} | {cos.mean():.4f} | "
              f"{cos.min():.4f} |", flush=True)
    model.load_state_dict(fp32)
    return 0


if __name__ == "__main__":
    sys.exit(main())
