"""``microscopiq run``: a whole model on the simulated accelerator.

``microscopiq run --model minilm --config 8x8-b4 --texts N --out DIR`` quantizes all-MiniLM-L6-v2
(:func:`~microscopiq.quant.models.quantize_model`, offline calibration text), then embeds ``N``
held-out texts (:func:`~microscopiq.quant.models.evaluation_texts`) three times:

1. **FP32** — the original model (the reference);
2. **golden** — every ``nn.Linear`` replaced by the accelerator's arithmetic from the golden model:
   the layer's real (non-padding) tokens quantized per token (SPEC §1), the integer results of
   :func:`~microscopiq.host.stream_format.expected_results`, scaled back by ``s_x[m]`` and
   ``2^(E_min[n] - b)`` (MicroScopiQ) or by the uniform scales and zeros, plus the bias;
3. **accelerator** — the same, with the integers coming out of the generated Verilog on the native
   Verilator harness (:mod:`microscopiq.tb.native`); every integer is checked against the golden
   model and each layer's cycles are recorded.

Everything else (embeddings, attention, layer norms, GELU, pooling) runs in PyTorch. Runs 2 and 3
must give identical embeddings, bit for bit; the cosine of each against FP32 is reported.
``DIR`` receives ``run.json`` (every number, per layer) and ``run.md`` (the table). Exit status 1
on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..config import PRESETS, AccelConfig, ConfigError
from ..outputs import atomic_dir

__all__ = ["MODELS", "LayerRecord", "ModelRun", "run_model", "add_commands"]

MODELS = ("minilm",)
#: Linear layers that see the same input go through the accelerator one after another; these
#: texts calibrate the quantizer (as ``microscopiq eval`` does by default for MiniLM).
CALIBRATION_TEXTS = 32
#: Processes encoding weight streams ahead of the simulation (the machine's two cores).
ENCODE_WORKERS = 2


@dataclass
class LayerRecord:
    """One ``nn.Linear`` call on the accelerator."""

    name: str
    n: int
    k: int
    tokens: int
    cycles: int
    predicted: int
    macs: int
    checked: int
    mismatches: int
    overflows: int
    simulated_cycles: int
    sim_seconds: float
    first_mismatch: str = ""


@dataclass
class ModelRun:
    """What :func:`run_model` measured."""

    model: str
    config: str
    method: str
    texts: int
    tokens: int
    cosine_fp32_mean: float
    cosine_fp32_min: float
    cosine_golden_min: float
    identical_to_golden: bool
    seconds: float
    quantize_seconds: float
    layers: list[LayerRecord] = field(default_factory=list)

    @property
    def mismatches(self) -> int:
        return sum(record.mismatches for record in self.layers)

    @property
    def cycles(self) -> int:
        return sum(record.cycles for record in self.layers)

    @property
    def simulated_cycles_per_second(self) -> float:
        return (sum(r.simulated_cycles for r in self.layers)
                / max(sum(r.sim_seconds for r in self.layers), 1e-9))


class _AcceleratedLinears:
    """Replaces the ``forward`` of the model's quantized ``nn.Linear`` s by the accelerator's
    arithmetic; ``backend(name, layer, x) -> integer results`` supplies the integers."""

    def __init__(self, model, layers: dict, cfg: AccelConfig, backend):
        import torch
        self.cfg, self.backend, self.layers = cfg, backend, layers
        self.mask: torch.Tensor | None = None
        modules = dict(model.named_modules())
        self.saved = {name: modules[name].forward for name in layers}
        for name in layers:
            modules[name].forward = self._forward(name, modules[name])
        self.modules = modules

    def _forward(self, name: str, module):
        import torch

        def forward(inputs: torch.Tensor) -> torch.Tensor:
            rows = inputs.reshape(-1, inputs.shape[-1])
            real = torch.ones(rows.shape[0], dtype=torch.bool)
            if inputs.dim() == 3 and self.mask is not None and self.mask.shape == inputs.shape[:2]:
                real = self.mask.reshape(-1).bool()   # padding tokens are never looked at again
            values = rows[real].detach().double().numpy()
            y = self._linear(name, values) + module.bias.detach().double().numpy()
            out = torch.zeros((rows.shape[0], module.out_features), dtype=inputs.dtype)
            out[real] = torch.as_tensor(y, dtype=inputs.dtype)
            return out.reshape(*inputs.shape[:-1], module.out_features)
        return forward

    def _linear(self, name: str, values: np.ndarray) -> np.ndarray:
        from ..quant.golden import quantize_activations
        from ..quant.layer import UniformLayer
        layer = self.layers[name]
        x, s_x = quantize_activations(values, self.cfg.fmt)
        first, second = self.backend(name, layer, x)
        if isinstance(layer, UniformLayer):
            # Y = s_x · Σ_g (scale·P + zero·S)   (SPEC §3 uniform mode, in float)
            scale = layer.scale[:layer.n].astype(np.float64)
            zero = layer.zero[:layer.n].astype(np.float64)
            y = (np.einsum("mng,ng->mn", first.astype(np.float64), scale)
                 + second.astype(np.float64) @ zero.T)
            return s_x[:, None] * y
        e_min = layer.exps[:layer.n].astype(np.int64).min(axis=1)
        # Y = s_x · 2^(E_min - b) · Y_int   (SPEC §3; exact in float64: |Y_int| < 2^acc_bits)
        return s_x[:, None] * first.astype(np.float64) * np.ldexp(1.0, e_min - self.cfg.fmt.wbits)[None, :]

    def close(self) -> None:
        for name, forward in self.saved.items():
            self.modules[name].forward = forward


def _embed(model, features, linears: _AcceleratedLinears | None = None) -> np.ndarray:
    import torch
    if linears is not None:
        linears.mask = features["attention_mask"]
    with torch.no_grad():
        out = model(dict(features))["sentence_embedding"]
    return out.double().numpy()


class _GoldenBackend:
    """Integers from the golden model; notes each layer's token count."""

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        self.tokens: dict[str, int] = {}

    def __call__(self, name: str, layer, x: np.ndarray):
        from ..host.stream_format import expected_results
        self.tokens[name] = x.shape[0]
        return expected_results(self.cfg, layer, x)


class _NativeBackend:
    """Integers from the native harness, each checked against the golden model; one record per call.

    The weight streams do not depend on the activations, only on the token count (known from the
    golden run), and encoding them (the ReCoN routing of every tile, in Python) costs more than
    simulating them: worker processes encode every layer's weights ahead, in forward order, while
    the harness simulates the earlier layers."""

    def __init__(self, cfg: AccelConfig, layers: dict, tokens: dict[str, int], bar):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from .accel_tb import Scoreboard
        from .native import build_harness, encode_weights
        self.cfg, self.bar, self.tokens = cfg, bar, tokens
        self.executable = build_harness(cfg, quiet=False)
        self.scoreboard = Scoreboard(cfg)
        self.records: list[LayerRecord] = []
        self.pool = ProcessPoolExecutor(ENCODE_WORKERS, mp_context=multiprocessing.get_context("spawn"))
        self.weights = {name: self.pool.submit(encode_weights, cfg, layers[name], count)
                        for name, count in tokens.items()}

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)

    def __call__(self, name: str, layer, x: np.ndarray):
        from .native import check_case
        from .stimulus import Case
        case = Case(f"{name} (n={layer.n} k={layer.k} m={x.shape[0]})", layer, x, 0)
        weights = self.weights[name].result() if self.tokens.get(name) == x.shape[0] else None
        check = check_case(self.cfg, case, self.scoreboard, executable=self.executable, weights=weights)
        run = check.run
        overflow = run.results.get("overflow")
        self.records.append(LayerRecord(
            name=name, n=layer.n, k=layer.k, tokens=x.shape[0], cycles=run.cycles, predicted=check.predicted,
            macs=case.macs, checked=check.checked, mismatches=len(check.mismatches),
            overflows=int(overflow.sum()) if overflow is not None else 0,
            simulated_cycles=run.simulated_cycles, sim_seconds=run.seconds,
            first_mismatch=str(check.mismatches[0]) if check.mismatches else ""))
        self.bar.update()
        self.bar.set_postfix_str(f"{name.removeprefix('0.model.')} {run.cycles_per_second:,.0f} cycles/s")
        return tuple(run.results[key] for key in (("P", "S") if "P" in run.results else ("y", "overflow")))


def run_model(model_name: str, cfg: AccelConfig, texts: int, *, method: str = "microscopiq",
              max_seq_length: int = 64, calibration: int = CALIBRATION_TEXTS, progress: bool = True,
              config_label: str = "") -> ModelRun:
    """Quantize ``model_name``, embed ``texts`` evaluation texts in FP32, on the golden model and on
    the simulated accelerator; see the module docstring."""
    from tqdm import tqdm

    from ..quant import models
    from ..quant.evaluate import check_method_format, cosine_similarity
    if model_name not in MODELS:
        raise ConfigError(f"--model must be one of {', '.join(MODELS)}, not {model_name!r}")
    if texts < 1:
        raise ConfigError(f"--texts must be >= 1, not {texts!r}")
    if max_seq_length < 2:
        raise ConfigError(f"--max-seq-length must be >= 2, not {max_seq_length!r}")
    check_method_format(method, cfg.fmt)
    if method in ("microscopiq", "mxint") and not cfg.has_recon:
        raise ConfigError(f"method {method} needs ReCoN: --config {config_label or cfg} has recon 'none'")
    start = time.perf_counter()
    model = models.load_minilm()
    model.max_seq_length = max_seq_length
    features = model.preprocess(models.evaluation_texts(texts))
    reference = _embed(model, features)
    layers: dict = {}
    models.quantize_model(model, method, cfg.fmt, models.calibration_texts(calibration),
                          on_layer=lambda name, layer, report: layers.__setitem__(name, layer),
                          progress=progress)
    quantize_seconds = time.perf_counter() - start
    golden_backend = _GoldenBackend(cfg)
    golden = _AcceleratedLinears(model, layers, cfg, golden_backend)
    try:
        on_golden = _embed(model, features, golden)
    finally:
        golden.close()
    bar = tqdm(total=len(layers), desc=f"{model_name} on the simulated {config_label or 'accelerator'}",
               unit="layer", file=sys.stderr, disable=not progress)
    native = _NativeBackend(cfg, layers, golden_backend.tokens, bar)
    accelerated = _AcceleratedLinears(model, layers, cfg, native)
    try:
        on_accel = _embed(model, features, accelerated)
    finally:
        accelerated.close()
        native.close()
        bar.close()
    cos_fp32 = cosine_similarity(reference, on_accel)
    cos_golden = cosine_similarity(on_golden, on_accel)
    return ModelRun(model=model_name, config=config_label, method=method, texts=texts,
                    tokens=int(features["attention_mask"].sum()),
                    cosine_fp32_mean=float(cos_fp32.mean()), cosine_fp32_min=float(cos_fp32.min()),
                    cosine_golden_min=float(cos_golden.min()),
                    identical_to_golden=bool(np.array_equal(on_golden, on_accel)),
                    seconds=time.perf_counter() - start, quantize_seconds=quantize_seconds,
                    layers=native.records)


def _table(run: ModelRun) -> str:
    lines = ["| layer | n×k | tokens | cycles (predicted) | MACs/cycle | integers checked | mismatches "
             "| overflows | harness cycles/s |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in run.layers:
        lines.append(f"| {r.name.removeprefix('0.model.')} | {r.n}×{r.k} | {r.tokens} | {r.cycles} ({r.predicted}) "
                     f"| {r.macs / max(r.cycles, 1):.1f} | {r.checked} | {r.mismatches} | {r.overflows} "
                     f"| {r.simulated_cycles / max(r.sim_seconds, 1e-9):,.0f} |")
    return "\n".join(lines)


def summary(run: ModelRun) -> list[str]:
    """The lines ``microscopiq run`` prints."""
    checked = sum(r.checked for r in run.layers)
    return [
        f"{run.model} ({run.method}) on the simulated {run.config}: {len(run.layers)} linear layers, "
        f"{run.texts} texts, {run.tokens} tokens",
        f"  integers   {checked} checked against the golden model, {run.mismatches} mismatches",
        f"  cycles     {run.cycles} measured, {sum(r.predicted for r in run.layers)} predicted, "
        f"harness {run.simulated_cycles_per_second:,.0f} simulated cycles/s",
        f"  embeddings cosine vs FP32 mean {run.cosine_fp32_mean:.4f} (min {run.cosine_fp32_min:.4f}); "
        f"vs the golden model {'identical' if run.identical_to_golden else 'DIFFERENT'} "
        f"(min cosine {run.cosine_golden_min:.6f})",
        f"  time       {run.seconds:.0f} s ({run.quantize_seconds:.0f} s quantizing)",
    ]


def _run(args: argparse.Namespace) -> int:
    from .sim_cli import config_name, resolve_config
    cfg = resolve_config(args.config)
    out = Path(args.out)
    run = run_model(args.model, cfg, args.texts, method=args.method, max_seq_length=args.max_seq_length,
                    calibration=args.calib_texts, config_label=config_name(cfg))
    lines = summary(run)
    command = "microscopiq " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["run"] else "microscopiq run"
    with atomic_dir(out) as staging:
        data = {**{k: v for k, v in asdict(run).items() if k != "layers"}, "command": command,
                "cycles": run.cycles, "mismatches": run.mismatches,
                "simulated_cycles_per_second": run.simulated_cycles_per_second,
                "layers": [asdict(r) for r in run.layers]}
        (staging / "run.json").write_text(json.dumps(data, indent=2) + "\n")
        (staging / "run.md").write_text(f"# {run.model} on the simulated accelerator\n\nCommand: `{command}`\n\n"
                                        + "\n".join(f"    {line}" for line in lines) + "\n\n" + _table(run) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / 'run.json'}, {out / 'run.md'}")
    return 0 if run.mismatches == 0 and run.identical_to_golden else 1


def add_commands(subparsers) -> None:
    """Add ``run`` to the ``microscopiq`` command."""
    from ..quant.models import METHODS
    parser = subparsers.add_parser(
        "run", help="run a whole model with every linear layer on the simulated accelerator",
        description="Quantize the model, then embed --texts held-out texts with every nn.Linear "
                    "executed by the generated accelerator on the native Verilator harness "
                    "(activations quantized per token, results scaled back), everything else in "
                    "PyTorch. Every result integer is checked against the golden model; reports "
                    "cycles per layer and the embedding cosine against FP32 and against the same "
                    "quantized model on the golden model (which must agree exactly).",
        epilog="example: microscopiq run --model minilm --config 8x8-b4 --texts 2 --out build/run")
    parser.add_argument("--model", choices=MODELS, default="minilm", help="model (default minilm)")
    parser.add_argument("--config", default="8x8-b4", metavar="C",
                        help=f"preset ({', '.join(PRESETS)}) or a JSON configuration/manifest (default 8x8-b4)")
    parser.add_argument("--texts", type=int, default=2, metavar="N", help="evaluation texts (default 2)")
    parser.add_argument("--max-seq-length", type=int, default=64, metavar="L",
                        help="tokens per text at most, [CLS] and [SEP] included (default 64)")
    parser.add_argument("--method", choices=METHODS, default="microscopiq",
                        help="quantization method (default microscopiq)")
    parser.add_argument("--calib-texts", type=int, default=CALIBRATION_TEXTS, metavar="N",
                        help=f"calibration texts of the quantizer (default {CALIBRATION_TEXTS})")
    parser.add_argument("--out", default="build/run", metavar="DIR",
                        help="output folder for run.json and run.md (default build/run)")
    parser.set_defaults(func=_run)
