"""``microscopiq quantize`` and ``microscopiq eval``.

``quantize`` writes one packed ``.msq`` file per linear layer (:func:`.pack.save_layer`) and a
``summary.json`` into ``--out``, all or nothing (:func:`microscopiq.outputs.atomic_dir`). The source is
either ``--model minilm`` (37 layers, calibrated on standard-library docstrings, see :mod:`.models`) or
``--weights FILE`` holding one matrix:

* ``FILE.npz``: array ``weight`` (N×K, out_features × in_features) and optionally ``activations``
  (M×K calibration inputs; the Hessian is then ``2 XᵀX``, else the identity);
* ``FILE.pt``: a tensor (the weight) or a dict with the same keys, read with
  ``torch.load(weights_only=True)``.

**Mixed precision:** ``--wbits 2,4 --budget 3.0`` quantizes every layer at each listed b (for a model:
one sequential run per b), measures its packed bits and its loss (a model: the calibration embeddings'
distance from FP32 with only that layer quantized; ``--weights``: the squared relative output error),
and gives each layer one b so that the mean EBW stays within the budget (:mod:`.mixed`: greedy on the
loss reduction per extra bit); it writes the chosen layers' files (each in its own b), ``plan.json``
and ``plan.md`` (layer, b, EBW, error, loss) besides ``summary.json``.

``--refine-steps N`` (with ``--method decoupleq --model minilm``) adds decoupleQ's block-wise
refinement: after the six layers of each transformer block are quantized, their float scales and zeros
are trained for N Adam steps against the FP32 block's output, the integer codes frozen
(:mod:`.refine`); ``summary.json`` then lists every block's output error before and after.

Every parameter and the input are checked before any work: a bad value prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..config import FormatConfig
from ..outputs import atomic_dir, path_arg
from ..validate import check_out_dir
from .dequant import dequantize
from .ebw import effective_bits
from .evaluate import REPORT_FILES, check_formats, check_method_format, evaluate, write_report
from .gptq import QuantInputError, as_real_array, check_problem, check_weight_range
from .models import METHODS, LayerReport, calibration_texts, load_minilm, quantize_matrix, quantize_model
from .models import relative_output_error
from .mixed import EMBEDDING_LOSS, ERROR_LOSS, LayerOptions, Option, allocate, check_budget, embedding_losses
from .mixed import measure_model, plan_json, plan_markdown
from .pack import save_layer
from .refine import RefineResult, check_refine_knobs

__all__ = ["add_commands", "load_weights_file", "WEIGHT_KEY", "ACTIVATION_KEY"]

#: Keys of a ``--weights`` file.
WEIGHT_KEY = "weight"
ACTIVATION_KEY = "activations"
MODELS = ("minilm",)
#: Default learning rate of ``--refine-lr``.
REFINE_LR = 1e-2


def _wbits_list(text: str) -> tuple[int, ...]:
    """``--wbits``: one width, or several separated by commas (mixed precision, with ``--budget``)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer or comma-separated integers, not {text!r}") from None


def _format_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wbits", type=_wbits_list, required=True, metavar="B[,B...]",
                        help="bits per weight slot b: 2, 3, 4 (all methods) or 8 (uniform methods); several "
                             "(e.g. 2,4) with --budget choose one b per layer")
    parser.add_argument("--budget", type=float, metavar="BITS",
                        help="mixed precision: the average bits per weight (the layers' real EBW, weighted by "
                             "their weight counts) the per-layer b must fit; needs several --wbits")
    parser.add_argument("--group", type=int, default=128, metavar="G", help="K-group size (default 128)")
    parser.add_argument("--ublock", type=int, default=8, metavar="U", help="micro-block size (default 8)")
    parser.add_argument("--xbits", type=int, default=4, metavar="X",
                        help="shared outlier-exponent bits (default 4)")
    parser.add_argument("--calib-texts", type=int, default=64, metavar="N",
                        help="calibration text chunks for --model (default 64, about 4.5k tokens)")


def add_commands(subparsers) -> None:
    q = subparsers.add_parser(
        "quantize", help="quantize a model or one weight matrix into packed layer files",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    source = q.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", choices=MODELS, help="a bundled model (offline)")
    source.add_argument("--weights", type=path_arg, metavar="FILE", help="one matrix: .npz or .pt")
    q.add_argument("--method", choices=METHODS, required=True)
    _format_args(q)
    q.add_argument("--out", type=path_arg, required=True, metavar="DIR", help="output folder")
    q.add_argument("--refine-steps", type=int, default=0, metavar="N",
                   help="decoupleQ block-wise refinement of the floats: Adam steps per transformer block "
                        "(default 0: off; needs --method decoupleq and --model)")
    q.add_argument("--refine-lr", type=float, default=REFINE_LR, metavar="LR",
                   help=f"its learning rate, relative to each group's |scale| (default {REFINE_LR:g})")
    q.set_defaults(func=run_quantize)

    e = subparsers.add_parser(
        "eval", help="compare quantization methods on MiniLM (EBW, layer error, embedding cosine)",
        description="Quantize MiniLM with each method at each b from FP32, then write eval.md, eval.png "
                    "and eval.json into --out.")
    e.add_argument("--model", choices=MODELS, default="minilm")
    e.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    e.add_argument("--wbits", nargs="+", type=int, default=[2, 4], metavar="B")
    e.add_argument("--group", type=int, default=128, metavar="G")
    e.add_argument("--ublock", type=int, default=8, metavar="U")
    e.add_argument("--xbits", type=int, default=4, metavar="X")
    e.add_argument("--calib-texts", type=int, default=64, metavar="N")
    e.add_argument("--eval-texts", type=int, default=256, metavar="N")
    e.add_argument("--out", type=path_arg, required=True, metavar="DIR")
    e.set_defaults(func=run_eval)


def _check_count(name: str, value: int) -> None:
    if value < 1:
        raise QuantInputError(f"{name} must be >= 1, not {value!r}")


def load_weights_file(path: Path) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Read a ``--weights`` file; return the weight (N×K), the Hessian ``2XᵀX`` (None without
    activations) and the number of calibration tokens M."""
    if not path.is_file():
        raise QuantInputError(f"weights file {str(path)!r} "
                              f"{'is not a file' if path.exists() else 'does not exist'}")
    if path.suffix == ".npz":
        content = _load_npz(path)
    elif path.suffix == ".pt":
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many kinds for a bad file
            raise QuantInputError(f"weights file {str(path)!r} is not a readable .pt: "
                                  f"{str(error).splitlines()[0]}") from None
        if isinstance(content, torch.Tensor):
            content = {WEIGHT_KEY: content}
        if not isinstance(content, dict):
            raise QuantInputError(f"weights file {str(path)!r} must hold a tensor or a dict, "
                                  f"not {type(content).__name__}")
    else:
        raise QuantInputError(f"weights file {str(path)!r} must end in .npz or .pt")
    if WEIGHT_KEY not in content:
        raise QuantInputError(f"weights file {str(path)!r} has no {WEIGHT_KEY!r} entry "
                              f"(found: {', '.join(map(str, content)) or 'nothing'})")
    try:
        return _check_content(content)
    except QuantInputError as error:
        raise QuantInputError(f"weights file {str(path)!r}: {error}") from None


def _load_npz(path: Path) -> dict:
    """The arrays of an ``.npz``; any corruption (not a zip, a bad member, a ``.npy`` renamed) is a
    one-line error naming the file."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array (a .npy file?), not named arrays")
        with data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "pickled" in reason:  # NumPy's guess for bytes it cannot parse
            reason = "not a NumPy .npz archive"
        raise QuantInputError(f"weights file {str(path)!r} is not a readable .npz: {reason}") from None


def _check_content(content: dict) -> tuple[np.ndarray, np.ndarray | None, int]:
    weight, _ = check_problem(content[WEIGHT_KEY])
    if ACTIVATION_KEY not in content:
        return weight, None, 0
    x = as_real_array(content[ACTIVATION_KEY], repr(ACTIVATION_KEY))
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != weight.shape[1]:
        raise QuantInputError(f"{ACTIVATION_KEY!r} must be M×K with M >= 1 and K = {weight.shape[1]} "
                              f"(the weight's in_features), got shape {x.shape}")
    if not np.isfinite(x).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise QuantInputError(f"{ACTIVATION_KEY!r} has a NaN or Inf at {index}: {float(x[index])!r}")
    with np.errstate(over="ignore", invalid="ignore"):
        hessian = 2.0 * x.T @ x
    if not np.isfinite(hessian).all():
        index = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(x)), x.shape))
        raise QuantInputError(f"{ACTIVATION_KEY!r} are too large: their Hessian 2XᵀX overflows float64 "
                              f"(largest |x| is {ACTIVATION_KEY}{list(index)} = {float(x[index])!r})")
    return weight, hessian, x.shape[0]


def _file_name(name: str) -> str:
    return name.removeprefix("0.model.") + ".msq"


def _summary(source: str, args, fmt: FormatConfig, reports: list[LayerReport], seconds: float) -> dict:
    weights = sum(r.shape[0] * r.shape[1] for r in reports)
    return {
        "source": source, "method": args.method,
        "format": {"wbits": fmt.wbits, "group": fmt.group, "ublock": fmt.ublock, "xbits": fmt.xbits},
        "layers": [dict(r.to_json(), file=_file_name(r.name)) for r in reports],
        "totals": {
            "layers": len(reports), "weights": weights,
            "ebw": sum(r.ebw * r.shape[0] * r.shape[1] for r in reports) / weights,
            "rel_error_mean": sum(r.rel_error for r in reports) / len(reports),
            "seconds": seconds,
        },
    }


def _check_refine(args) -> None:
    check_refine_knobs(args.refine_steps, args.refine_lr, names=("--refine-steps", "--refine-lr"))
    if args.refine_steps and args.method != "decoupleq":
        raise QuantInputError(f"--refine-steps needs --method decoupleq, not {args.method}")
    if args.refine_steps and args.weights is not None:
        raise QuantInputError("--refine-steps needs --model (it refines transformer blocks), "
                              "not --weights")


def _block_json(block: str, result: RefineResult) -> dict:
    return {"block": block.removeprefix("0.model."), "steps": len(result.losses) - 1,
            "best_step": result.best_step, "rel_error_before": result.relative_error(result.initial_loss),
            "rel_error_after": result.relative_error(result.final_loss), "seconds": result.seconds}


def _check_widths(args) -> dict[int, FormatConfig]:
    """The format of every ``--wbits`` value, and the rules tying several of them to ``--budget``."""
    formats = {b: FormatConfig(wbits=b, group=args.group, ublock=args.ublock, xbits=args.xbits)
               for b in args.wbits}
    for fmt in formats.values():
        check_method_format(args.method, fmt)
    listed = ",".join(map(str, args.wbits))
    if len(formats) != len(args.wbits):
        raise QuantInputError(f"--wbits values must be distinct, not {listed}")
    if len(formats) == 1 and args.budget is not None:
        raise QuantInputError(f"--budget needs several --wbits values to choose from (e.g. --wbits 2,4), "
                              f"not {listed}")
    if len(formats) > 1:
        if args.budget is None:
            raise QuantInputError(f"--wbits {listed} needs --budget (the average bits per weight to fit)")
        check_budget(args.budget, formats)
        if args.refine_steps:
            raise QuantInputError(f"--refine-steps needs a single --wbits value, not {listed}")
    return formats


def run_quantize(args) -> int:
    formats = _check_widths(args)
    _check_count("--calib-texts", args.calib_texts)
    _check_refine(args)
    if len(formats) > 1:
        return _run_mixed(args, formats)
    fmt = formats[args.wbits[0]]
    names = ("summary.json", "weight.msq") if args.weights is not None else ("summary.json",)
    check_out_dir(args.out, names)
    start = time.perf_counter()
    if args.weights is not None:
        weight, hessian, tokens = _load_weights_checked(args.weights, fmt.group)
        with atomic_dir(args.out, names) as tmp:
            t = time.perf_counter()
            layer = quantize_matrix(args.method, weight, hessian, fmt)
            h = np.eye(weight.shape[1]) if hessian is None else hessian
            report = LayerReport(name="weight", shape=weight.shape, ebw=effective_bits(layer).bits_per_weight,
                                 rel_error=relative_output_error(weight, dequantize(layer), h),
                                 seconds=time.perf_counter() - t, tokens=tokens)
            save_layer(tmp / "weight.msq", layer)
            summary = _summary(str(args.weights), args, fmt, [report], time.perf_counter() - start)
            (tmp / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=False))
    else:
        model = load_minilm()
        blocks = []
        with atomic_dir(args.out, names) as tmp:
            reports = quantize_model(model, args.method, fmt, calibration_texts(args.calib_texts),
                                     on_layer=lambda name, layer, _: save_layer(tmp / _file_name(name), layer),
                                     refine_steps=args.refine_steps, refine_lr=args.refine_lr,
                                     on_block=lambda block, result: blocks.append(_block_json(block, result)))
            summary = _summary(args.model, args, fmt, reports, time.perf_counter() - start)
            if args.refine_steps:
                summary["refine"] = {"steps": args.refine_steps, "lr": args.refine_lr, "blocks": blocks,
                                     "seconds": sum(b["seconds"] for b in blocks)}
            (tmp / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=False))
    totals = summary["totals"]
    print(f"{args.method} b={fmt.wbits}: {totals['layers']} layer(s), EBW {totals['ebw']:.3f} bits/weight, "
          f"mean relative output error {totals['rel_error_mean']:.4f}, {totals['seconds']:.1f} s -> {args.out}")
    return 0


def _load_weights_checked(path: Path, group: int) -> tuple[np.ndarray, np.ndarray | None, int]:
    weight, hessian, tokens = load_weights_file(path)
    try:
        check_weight_range(weight, group)
    except QuantInputError as error:
        raise QuantInputError(f"weights file {str(path)!r}: {error}") from None
    return weight, hessian, tokens


def _measure_matrix(args, formats: dict[int, FormatConfig]) -> tuple[list[LayerOptions], dict, dict]:
    """:func:`.mixed.measure_model` for the one matrix of ``--weights``."""
    weight, hessian, tokens = _load_weights_checked(args.weights, args.group)
    h = np.eye(weight.shape[1]) if hessian is None else hessian
    options, layers, reports = [], {}, {}
    for b, fmt in sorted(formats.items()):
        t = time.perf_counter()
        layer = quantize_matrix(args.method, weight, hessian, fmt)
        layers["weight", b] = layer
        reports["weight", b] = LayerReport(
            name="weight", shape=weight.shape, ebw=effective_bits(layer).bits_per_weight,
            rel_error=relative_output_error(weight, dequantize(layer), h), seconds=time.perf_counter() - t,
            tokens=tokens)
        error = reports["weight", b].rel_error
        options.append(Option(b, effective_bits(layer).total_bits, error, error ** 2))
    return [LayerOptions("weight", weight.size, tuple(options))], layers, reports


def _run_mixed(args, formats: dict[int, FormatConfig]) -> int:
    """``--wbits B,B... --budget BITS``: measure every layer at every b, plan, write the chosen files."""
    names = ("summary.json", "plan.json", "plan.md") + (("weight.msq",) if args.weights is not None else ())
    check_out_dir(args.out, names)
    start = time.perf_counter()
    if args.weights is not None:
        options, layers, reports = _measure_matrix(args, formats)
        objective = ERROR_LOSS
    else:
        model, texts = load_minilm(), calibration_texts(args.calib_texts)
        options, layers, reports = measure_model(model, args.method, formats, texts,
                                                 quantize_model=quantize_model, effective_bits=effective_bits)
        options, objective = embedding_losses(model, options, layers, texts), EMBEDDING_LOSS
    plan = allocate(options, args.budget)
    files = {layer.name: "weight.msq" if args.weights is not None else _file_name(layer.name) for layer in options}
    with atomic_dir(args.out, names) as tmp:
        for layer, b in zip(options, plan.widths):
            save_layer(tmp / files[layer.name], layers[layer.name, b])
        chosen = [reports[layer.name, b] for layer, b in zip(options, plan.widths)]
        summary = _summary(str(args.weights) if args.weights is not None else args.model, args,
                           formats[min(formats)], chosen, time.perf_counter() - start)
        summary["format"]["wbits"] = sorted(formats)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=False))
        plan_data = plan_json(plan, method=args.method, files=files, objective=objective)
        (tmp / "plan.json").write_text(json.dumps(plan_data, indent=1, allow_nan=False))
        (tmp / "plan.md").write_text(plan_markdown(plan, method=args.method, objective=objective,
                                                   short=lambda name: name.removeprefix("0.model.")))
    counts = ", ".join(f"{plan.widths.count(b)} at b={b}" for b in sorted(formats))
    print(f"{args.method} b={','.join(map(str, sorted(formats)))} budget {args.budget:g}: {len(options)} layer(s) "
          f"({counts}), EBW {plan.ebw:.3f} bits/weight, {time.perf_counter() - start:.1f} s -> {args.out}")
    return 0


def run_eval(args) -> int:
    check_out_dir(args.out, REPORT_FILES)
    for name in ("--calib-texts", "--eval-texts"):
        _check_count(name, getattr(args, name[2:].replace("-", "_")))
    check_formats(args.methods, args.wbits, group=args.group, ublock=args.ublock, xbits=args.xbits)
    results = evaluate(args.methods, args.wbits, group=args.group, ublock=args.ublock, xbits=args.xbits,
                       calib_texts=args.calib_texts, eval_texts=args.eval_texts)
    command = (f"microscopiq eval --model {args.model} --methods {' '.join(args.methods)} "
               f"--wbits {' '.join(map(str, args.wbits))} --group {args.group} --ublock {args.ublock} "
               f"--xbits {args.xbits} --calib-texts {args.calib_texts} --eval-texts {args.eval_texts} "
               f"--out {shlex.quote(str(args.out))}")
    write_report(results, args.out, command)
    for r in results:
        print(f"{r.method:12s} b={r.wbits}: EBW {r.ebw:.3f}  cosine {r.cosine_mean:.4f}  "
              f"rel. error {r.rel_error_mean:.4f}")
    print(f"wrote {args.out}/eval.md, eval.png, eval.json")
    return 0
