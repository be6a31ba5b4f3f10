"""Compare quantization methods on all-MiniLM-L6-v2: EBW, per-layer output error and the cosine
similarity of the sentence embeddings (quantized vs FP32) on held-out text.

Every (method, b) run starts from the FP32 weights, quantizes all 37 linear layers sequentially on the
calibration text (:func:`.models.quantize_model`) and embeds the evaluation text (disjoint from the
calibration text, :func:`.models.split_texts`). :func:`write_report` writes ``eval.json`` (every
number), ``eval.md`` (the tables) and ``eval.png`` (the plot).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import FormatConfig
from ..outputs import atomic_dir
from . import models

__all__ = ["MethodResult", "REPORT_FILES", "check_formats", "cosine_similarity", "evaluate", "write_report"]


@dataclass
class MethodResult:
    """One (method, b) run."""

    method: str
    wbits: int
    ebw: float
    cosine_mean: float
    cosine_min: float
    rel_error_mean: float
    rel_error_max: float
    seconds: float
    layers: list[dict] = field(default_factory=list)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two embedding matrices."""
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return num / np.where(den > 0, den, 1.0)


def evaluate(methods: list[str], wbits: list[int], *, group: int = 128, ublock: int = 8, xbits: int = 4,
             calib_texts: int = 64, eval_texts: int = 256, progress: bool = True) -> list[MethodResult]:
    """Run every method at every b (formats checked before any work starts)."""
    formats = check_formats(methods, wbits, group=group, ublock=ublock, xbits=xbits)
    model = models.load_minilm()
    fp32 = {k: v.clone() for k, v in model.state_dict().items()}
    calibration = models.calibration_texts(calib_texts)
    evaluation = models.evaluation_texts(eval_texts)
    reference = models.embed(model, evaluation)
    results = []
    for b, fmt in formats.items():
        for method in methods:
            model.load_state_dict(fp32)
            start = time.perf_counter()
            reports = models.quantize_model(model, method, fmt, calibration, progress=progress)
            seconds = time.perf_counter() - start
            cos = cosine_similarity(reference, models.embed(model, evaluation))
            errors = np.array([r.rel_error for r in reports])
            weights = np.array([r.shape[0] * r.shape[1] for r in reports])
            results.append(MethodResult(
                method=method, wbits=b, ebw=float(np.sum(weights * [r.ebw for r in reports]) / weights.sum()),
                cosine_mean=float(cos.mean()), cosine_min=float(cos.min()),
                rel_error_mean=float(errors.mean()), rel_error_max=float(errors.max()), seconds=seconds,
                layers=[r.to_json() for r in reports]))
    model.load_state_dict(fp32)
    return results


def check_formats(methods: list[str], wbits: list[int], *, group: int, ublock: int,
                  xbits: int) -> dict[int, FormatConfig]:
    """The format of every b, each method checked against each; raises before any work."""
    formats = {b: FormatConfig(wbits=b, group=group, ublock=ublock, xbits=xbits) for b in wbits}
    for method in methods:
        if method not in models.METHODS:
            raise models.ModelError(f"method must be one of {', '.join(models.METHODS)}, not {method!r}")
        for fmt in formats.values():
            check_method_format(method, fmt)
    return formats


def check_method_format(method: str, fmt: FormatConfig) -> None:
    """MicroScopiQ and MX-INT exist only for b in 2, 3, 4 (SPEC §2)."""
    if method in ("microscopiq", "mxint") and not fmt.msq_capable:
        raise models.ModelError(f"method {method} needs wbits 2, 3 or 4 (the MSQ format), not {fmt.wbits}")


def _short(name: str) -> str:
    return name.removeprefix("0.model.").replace("encoder.layer.", "L").replace("attention.", "att.")


def _table(results: list[MethodResult]) -> str:
    lines = ["| method | b | mean EBW (bits/weight) | embedding cosine, mean | embedding cosine, min | "
             "rel. output error, mean | rel. output error, max | seconds |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r.method} | {r.wbits} | {r.ebw:.3f} | {r.cosine_mean:.4f} | {r.cosine_min:.4f} | "
                     f"{r.rel_error_mean:.4f} | {r.rel_error_max:.4f} | {r.seconds:.0f} |")
    return "\n".join(lines)


def _layer_table(results: list[MethodResult]) -> str:
    head = "| layer | " + " | ".join(f"{r.method} b={r.wbits}" for r in results) + " |"
    lines = [head, "| --- |" + " ---: |" * len(results)]
    for i, layer in enumerate(results[0].layers):
        cells = " | ".join(f"{r.layers[i]['rel_error']:.4f}" for r in results)
        lines.append(f"| {_short(layer['name'])} | {cells} |")
    return "\n".join(lines)


def _zoomed(values, margin: float = 0.25) -> tuple[float, float]:
    """Axis limits around ``values`` with ``margin`` of their spread each side (at most 1.0 on top,
    room for the labels): on a 0-1 axis the b=4 methods' 0.938-0.983 looked equal."""
    values = list(values)
    low, high = min(values), max(values)
    spread = max(high - low, 0.01)
    return max(0.0, low - margin * spread), min(1.0 + margin * spread, high + margin * spread)


def _plot(results: list[MethodResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r.method for r in results))
    bits = list(dict.fromkeys(r.wbits for r in results))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 1.6]})
    width = 0.8 / len(bits)
    for j, b in enumerate(bits):
        values = [next(r.cosine_mean for r in results if r.method == m and r.wbits == b) for m in methods]
        bars = left.bar(np.arange(len(methods)) + (j - (len(bits) - 1) / 2) * width, values, width,
                        label=f"b = {b}")
        left.bar_label(bars, fmt="%.3f", fontsize=7)
    left.set_xticks(np.arange(len(methods)), methods)
    left.set_ylim(*_zoomed(r.cosine_mean for r in results))
    low = left.get_ylim()[0]
    left.set_ylabel("embedding cosine vs FP32 (mean)" + (f"; axis from {low:.3f}, not 0" if low > 0 else ""))
    left.set_title("Sentence embeddings, evaluation text")
    left.legend()
    styles = ["-", "--", ":", "-."]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for r in results:
        right.plot([layer["rel_error"] for layer in r.layers], styles[bits.index(r.wbits) % 4],
                   color=colors[methods.index(r.method) % len(colors)], label=f"{r.method} b={r.wbits}")
    right.set_yscale("log")
    right.set_xlabel("linear layer (forward order; 36 = pooler)")
    right.set_ylabel("relative output error (calibration)")
    right.set_title("Per-layer output error")
    right.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: The files :func:`write_report` writes (checked before an evaluation starts).
REPORT_FILES = ("eval.json", "eval.md", "eval.png")


def write_report(results: list[MethodResult], out: str | Path, command: str) -> None:
    """Write ``eval.json``, ``eval.md`` and ``eval.png`` into ``out`` (all or nothing)."""
    with atomic_dir(out, REPORT_FILES) as tmp:
        (tmp / "eval.json").write_text(json.dumps({"command": command,
                                                   "results": [r.__dict__ for r in results]}, indent=1,
                                                  allow_nan=False))
        (tmp / "eval.md").write_text(
            f"# MiniLM quantization: evaluation\n\nCommand: `{command}`\n\n{_table(results)}\n\n"
            f"![evaluation](eval.png)\n\n## Relative output error per layer\n\n{_layer_table(results)}\n")
        _plot(results, tmp / "eval.png")
