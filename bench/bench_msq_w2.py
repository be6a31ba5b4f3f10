"""MicroScopiQ at b = 2: the knob search behind ``DEFAULT_KNOBS[2]`` (docs/quantization.md).

For each setting of ``quantize_msq``'s knobs (G, outlier_sigma, outlier_bits, exponent_span):

* **layer:** MiniLM block 0's FFN up (1536×384) with its FP32 calibration Hessian (32 text chunks):
  EBW and ``rel² = ‖X(W − W_q)ᵀ‖² / ‖XWᵀ‖²``; decoupleQ b = 2 G = 128 on the same layer for reference;
* **model** (``--model``): all 37 layers quantized sequentially from FP32 exactly as ``microscopiq eval``
  does it (32 calibration chunks, 128 evaluation chunks), with the knobs bound into ``quantize_msq``
  for the run: weight-weighted EBW, mean embedding cosine against FP32, mean per-layer relative error.

Results are cached in ``build/bench_quant/msq_w2.jsonl`` (a rerun skips settings already there).

    python bench/bench_msq_w2.py            # layer only (a minute)
    python bench/bench_msq_w2.py --model    # and the whole model per setting (minutes each)
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from microscopiq.config import FormatConfig
from microscopiq.quant import models, msq
from microscopiq.quant.decoupleq import quantize_decoupleq
from microscopiq.quant.dequant import dequantize
from microscopiq.quant.ebw import effective_bits
from microscopiq.quant.evaluate import cosine_similarity

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "bench_quant" / "msq_w2.jsonl"
LAYER = "encoder.layer.0.intermediate.dense"
#: (G, outlier_sigma, outlier_bits, exponent_span); the first is the pre-search default, the last
#: ones the chosen default and its neighbours.
SETTINGS = [(128, 3.0, 12.0, 2), (64, 3.0, 12.0, 2), (32, 3.0, 12.0, 2),
            (128, 2.0, 12.0, 2), (128, 2.0, 20.0, 2), (128, 2.25, 12.0, 2), (128, 2.5, 12.0, 2),
            (128, 1.5, 12.0, 2), (64, 2.0, 12.0, 2), (128, 3.0, 16.0, 3), (128, 3.0, 12.0, 3),
            (128, 3.0, 12.0, 4)]


def knobs(setting) -> dict:
    _, sigma, bits, span = setting
    return {"outlier_sigma": sigma, "outlier_bits": bits, "exponent_span": span}


def layer_problem(model, texts):
    layers = dict(models.linear_layers(model))
    name = next(n for n in layers if n.endswith(LAYER))
    hessians, _, _ = models.collect_hessians(model, {name: layers[name]}, texts)
    return layers[name].weight.detach().double().numpy(), hessians[name]


def layer_row(w, h, quantize) -> dict:
    layer = quantize(w, h)
    rel = models.relative_output_error(w, dequantize(layer), h)
    return {"layer_ebw": effective_bits(layer).bits_per_weight, "layer_rel2": rel * rel}


def model_row(model, fp32, setting, calibration, evaluation, reference) -> dict:
    model.load_state_dict(fp32)
    original = msq.quantize_msq
    msq.quantize_msq = functools.partial(original, **knobs(setting))   # quantize_matrix looks it up per call
    try:
        start = time.perf_counter()
        reports = models.quantize_model(model, "microscopiq", FormatConfig(wbits=2, group=setting[0]), calibration,
                                        progress=False)
        seconds = time.perf_counter() - start
    finally:
        msq.quantize_msq = original
    cos = cosine_similarity(reference, models.embed(model, evaluation))
    sizes = np.array([r.shape[0] * r.shape[1] for r in reports])
    return {"ebw": float(np.sum(sizes * [r.ebw for r in reports]) / sizes.sum()), "cos_mean": float(cos.mean()),
            "cos_min": float(cos.min()), "rel_mean": float(np.mean([r.rel_error for r in reports])),
            "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="store_true", help="also quantize the whole model per setting")
    args = parser.parse_args()
    torch.set_num_threads(1)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    cached = {json.dumps(r["setting"]): r for r in map(json.loads, CACHE.read_text().splitlines())} \
        if CACHE.exists() else {}
    model = models.load_minilm()
    fp32 = {k: v.clone() for k, v in model.state_dict().items()}
    calibration, evaluation = models.calibration_texts(32), models.evaluation_texts(128)
    reference = models.embed(model, evaluation)
    w, h = layer_problem(model, calibration)
    dq = layer_row(w, h, lambda w, h: quantize_decoupleq(w, h, FormatConfig(wbits=2, group=128)))
    print(f"decoupleQ b=2 G=128 on {LAYER}: EBW {dq['layer_ebw']:.3f}, rel² {dq['layer_rel2']:.4f}")
    print("| G | outlier_sigma | outlier_bits | exponent_span | layer EBW | layer rel² | model EBW | "
          "cosine mean | cosine min | rel. error mean |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for setting in SETTINGS:
        row = cached.get(json.dumps(list(setting)), {"setting": list(setting)})
        if "layer_rel2" not in row:
            row.update(layer_row(w, h, lambda w, h: msq.quantize_msq(
                w, h, FormatConfig(wbits=2, group=setting[0]), **knobs(setting))))
        if args.model and "cos_mean" not in row:
            row.update(model_row(model, fp32, setting, calibration, evaluation, reference))
        cached[json.dumps(list(setting))] = row
        CACHE.write_text("".join(json.dumps(r) + "\n" for r in cached.values()))
        whole = (f"{row['ebw']:.3f} | {row['cos_mean']:.4f} | {row['cos_min']:.4f} | {row['rel_mean']:.4f}"
                 if "cos_mean" in row else "— | — | — | —")
        print(f"| {setting[0]} | {setting[1]} | {setting[2]:.0f} | {setting[3]} | {row['layer_ebw']:.3f} | "
              f"{row['layer_rel2']:.4f} | {whole} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
