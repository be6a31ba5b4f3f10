"""Mixed-precision MicroScopiQ on all-MiniLM-L6-v2: budget -> mean EBW -> embedding cosine
(docs/quantization.md, "Mixed precision").

MiniLM is quantized sequentially from FP32 once per width (32 calibration chunks, as the
``microscopiq eval`` results table), which measures every layer's packed bits and relative output error
at each width (:func:`microscopiq.quant.mixed.measure_model`), then each layer's embedding distance
on the calibration text at each width (:func:`~.mixed.embedding_losses`): what
``microscopiq quantize --wbits 2,4 --budget B`` measures. The quantized layers and the measurements are
kept in ``build/bench_quant/mixed/`` (a rerun reuses them). For each budget, :func:`~.mixed.allocate`
plans the widths twice, on the embedding distance (the CLI's loss) and on the squared layer error (for
comparison); the planned layers are put into the FP32 model and the 128 evaluation chunks (held out
from the calibration text) are embedded; the cosine is against FP32's embeddings. The uniform rows are
exactly the models ``microscopiq eval`` measures.

    python bench/bench_mixed.py [--wbits 2,4] [--budgets 2.25,2.5,3.0,3.5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
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
CALIB_TEXTS, EVAL_TEXTS = 32, 128


def _file(name: str, b: int) -> Path:
    return CACHE / f"b{b}" / (name.removeprefix("0.model.") + ".msq")


def _measure(model, wbits: list[int]) -> None:
    """Quantize the model at each width in ``wbits`` and cache the layers and ``b<b>/options.json``."""
    start = time.perf_counter()
    options, layers, _ = mixed.measure_model(model, METHOD, {b: FormatConfig(wbits=b) for b in wbits},
                                             models.calibration_texts(CALIB_TEXTS),
                                             quantize_model=models.quantize_model, effective_bits=effective_bits)
    print(f"measured {len(options)} layers at b = {', '.join(map(str, wbits))} in "
          f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    for b in wbits:
        for layer in options:
            _file(layer.name, b).parent.mkdir(parents=True, exist_ok=True)
            save_layer(_file(layer.name, b), layers[layer.name, b])
        (CACHE / f"b{b}" / "options.json").write_text(json.dumps(
            [dict(name=layer.name, weights=layer.weights, bits=layer.option(b).bits, error=layer.option(b).error)
             for layer in options],
            indent=1))


def measured(model, wbits: list[int]) -> tuple[list[mixed.LayerOptions], dict]:
    """Every layer's options (with the embedding loss) and quantized layers at each width: from the
    cache, measured where missing."""
    missing = [b for b in wbits if not (CACHE / f"b{b}" / "options.json").exists()]
    if missing:
        _measure(model, missing)
    entries = {b: json.loads((CACHE / f"b{b}" / "options.json").read_text()) for b in wbits}
    first = entries[wbits[0]]
    options = [mixed.LayerOptions(e["name"], e["weights"], tuple(
        mixed.Option(b, entries[b][i]["bits"], entries[b][i]["error"], entries[b][i].get("embedding_loss", -1.0))
        for b in wbits)) for i, e in enumerate(first)]
    layers = {(o.name, b): load_layer(_file(o.name, b)) for o in options for b in wbits}
    unscored = [b for b in wbits if any("embedding_loss" not in e for e in entries[b])]
    if unscored:
        start = time.perf_counter()
        options = mixed.embedding_losses(model, options, layers, models.calibration_texts(CALIB_TEXTS))
        print(f"embedding losses of {len(options)} layers in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        for b in wbits:
            for entry, layer in zip(entries[b], options):
                entry["embedding_loss"] = layer.option(b).loss
            (CACHE / f"b{b}" / "options.json").write_text(json.dumps(entries[b], indent=1))
    return options, layers


def _rows(options, wbits: list[int], budgets: list[float]) -> list[tuple[str, str, mixed.Plan | str]]:
    """(loss, plan name, plan): the uniform plans at the narrowest and widest width, and each budget's
    plan with either loss; a budget no plan meets has the reason instead of a plan."""
    by_error = [mixed.LayerOptions(o.name, o.weights, tuple(replace(x, loss=x.error ** 2) for x in o.options))
                for o in options]
    rows: list[tuple[str, str, mixed.Plan | str]] = [
        ("—", f"uniform b = {min(wbits)}", _uniform(options, min(wbits)))]
    for budget in budgets:
        for loss, table in (("embedding distance", options), ("layer error²", by_error)):
            try:
                rows.append((loss, f"budget {budget:g}", mixed.allocate(table, budget)))
            except mixed.MixedError as error:
                reason = str(error).split(": no plan")[0].removeprefix(f"--budget {budget:g} ")
                rows.append((loss, f"budget {budget:g}", reason))
                break
    return rows + [("—", f"uniform b = {max(wbits)}", _uniform(options, max(wbits)))]


def _uniform(options, b: int) -> mixed.Plan:
    return mixed.Plan(tuple(options), tuple(b for _ in options), float(b))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="2.25,2.5,3.0,3.5", help="comma-separated bits per weight")
    parser.add_argument("--wbits", default="2,4", help="comma-separated widths to choose from")
    args = parser.parse_args()
    budgets = [float(x) for x in args.budgets.split(",")]
    wbits = sorted(int(x) for x in args.wbits.split(","))
    torch.set_num_threads(1)
    model = models.load_minilm()
    options, layers = measured(model, wbits)
    fp32 = {k: v.clone() for k, v in model.state_dict().items()}
    evaluation = models.evaluation_texts(EVAL_TEXTS)
    reference = models.embed(model, evaluation)
    print(f"Command: `python bench/bench_mixed.py --wbits {args.wbits} --budgets {args.budgets}` ({METHOD}, "
          f"{CALIB_TEXTS} calibration and {EVAL_TEXTS} evaluation chunks)\n")
    print(f"| plan | loss allocated on | mean EBW (bits/weight) | layers at b = {' / '.join(map(str, wbits))} | "
          "embedding cosine, mean | embedding cosine, min |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for loss, label, plan in _rows(options, wbits, budgets):
        if isinstance(plan, str):
            print(f"| {label} | — | no plan: {plan} | | | |", flush=True)
            continue
        model.load_state_dict(fp32)
        mixed.apply_plan(model, plan, layers, dequantize)
        cos = cosine_similarity(reference, models.embed(model, evaluation))
        counts = " / ".join(str(plan.widths.count(b)) for b in wbits)
        print(f"| {label} | {loss} | {plan.ebw:.3f} | {counts} | {cos.mean():.4f} | {cos.min():.4f} |", flush=True)
    model.load_state_dict(fp32)
    return 0


if __name__ == "__main__":
    sys.exit(main())
