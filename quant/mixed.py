"""Mixed-precision quantization: each linear layer gets its own slot width ``b`` under a budget of
average bits per weight.

**Sensitivity.** Each layer is quantized at every candidate ``b`` and measured by what it costs and what
it loses: its packed file's real size in bits (:func:`.ebw.effective_bits`, so the budget is the honest
EBW: codes, metadata, scales and header) and its relative output error
``‖X Wᵀ − X W_qᵀ‖_F / ‖X Wᵀ‖_F`` on the calibration inputs (the Hessian-weighted error of
:func:`.models.relative_output_error`). For a whole model the layers come from one sequential
:func:`.models.quantize_model` run per ``b`` (:func:`measure_model`); the all-lowest and all-highest
plans are therefore exactly the uniform models ``microscopiq eval`` measures.

**Loss.** Each option carries the loss the allocator adds up over the layers:

* for a model (:func:`embedding_losses`): the *embedding distance* ``mean(1 − cos)`` between the FP32
  model's sentence embeddings of the calibration text and those of the FP32 model with only this layer
  quantized at this ``b``: what the layer at this width costs the model's output. On MiniLM it beats
  the squared layer error by 0.02–0.05 of held-out embedding cosine at budgets 2.5–3.25
  (docs/quantization.md, "Mixed precision"): the layer error does not know that an FFN layer's noise
  reaches the embedding more than a query's;
* for one matrix (``--weights``): the squared relative output error, its noise-to-signal energy.

**Allocation** (:func:`allocate`): minimise the summed loss. Every layer starts at its cheapest width;
then, while some upgrade fits the remaining bits, the upgrade (a layer to any wider ``b``) with the
largest loss reduction per extra bit is taken (ties: the earlier layer, then the smaller ``b``). This is
the greedy solution of the multiple-choice knapsack; it is deterministic, and its plan never exceeds
``floor(budget · weights)`` bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Callable, Iterable

__all__ = ["MixedError", "Option", "LayerOptions", "Plan", "budget_bits", "check_budget", "allocate",
           "plan_json", "plan_markdown", "measure_model", "embedding_losses", "apply_plan",
           "EMBEDDING_LOSS", "ERROR_LOSS"]

#: What :func:`allocate` minimises, as ``plan.json`` names it, per kind of loss.
EMBEDDING_LOSS = ("sum over layers of the embedding distance mean(1 - cos) on the calibration text with only "
                  "that layer quantized")
ERROR_LOSS = "sum over layers of the squared relative output error"
ALLOCATOR = "greedy: largest loss reduction per extra bit first, within floor(budget * weights) bits"


class MixedError(ValueError):
    """A budget or a set of widths no plan can satisfy."""


@dataclass(frozen=True)
class Option:
    """One layer quantized at one width: ``bits`` of its packed file, its relative output error and the
    loss the allocator sums (module docstring)."""

    b: int
    bits: int
    error: float
    loss: float


@dataclass(frozen=True)
class LayerOptions:
    """A layer's name, its weight count ``n · k`` and its :class:`Option` per width (increasing ``b``)."""

    name: str
    weights: int
    options: tuple[Option, ...]

    def option(self, b: int) -> Option:
        return next(o for o in self.options if o.b == b)


@dataclass(frozen=True)
class Plan:
    """The chosen width of every layer (in the order of the layers given to :func:`allocate`)."""

    layers: tuple[LayerOptions, ...]
    widths: tuple[int, ...]
    budget: float

    @property
    def chosen(self) -> list[Option]:
        return [layer.option(b) for layer, b in zip(self.layers, self.widths)]

    @property
    def weights(self) -> int:
        return sum(layer.weights for layer in self.layers)

    @property
    def bits(self) -> int:
        return sum(o.bits for o in self.chosen)

    @property
    def ebw(self) -> float:
        return self.bits / self.weights

    @property
    def objective(self) -> float:
        """The summed loss."""
        return sum(o.loss for o in self.chosen)


def budget_bits(budget: float, weights: int) -> int:
    """Most bits a plan may spend: ``floor(budget · weights)``, exact for the decimal the user wrote
    (``3.3`` is 33/10 here, not the binary float just below it)."""
    return math.floor(Fraction(repr(float(budget))) * weights)


def check_budget(budget: float, wbits: Iterable[int]) -> None:
    """The up-front rules: a finite number, at least the narrowest width (every packed file spends at
    least ``b`` bits per weight on its codes, so nothing smaller can be met)."""
    lowest = min(wbits)
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget):
        raise MixedError(f"--budget must be a finite number of bits per weight, not {budget!r}")
    if budget < lowest:
        raise MixedError(f"--budget {budget:g} is below the narrowest --wbits {lowest}: no plan fits "
                         f"(every layer spends at least b bits per weight)")


def allocate(layers: Iterable[LayerOptions], budget: float) -> Plan:
    """The greedy plan (module docstring) for ``budget`` bits per weight.

    Raises
    ------
    MixedError
        Even the cheapest width of every layer exceeds the budget.
    """
    layers = tuple(layers)
    weights = sum(layer.weights for layer in layers)
    cap = budget_bits(budget, weights)
    current = [min(layer.options, key=lambda o: (o.bits, o.b)) for layer in layers]
    spent = sum(o.bits for o in current)
    if spent > cap:
        lowest = min(o.b for layer in layers for o in layer.options)
        raise MixedError(f"--budget {budget:g} is below {spent / weights:.4f} bits per weight, the mean EBW "
                         f"with every layer at its narrowest b ({lowest}): no plan fits")
    while True:
        best = None
        for index, (layer, now) in enumerate(zip(layers, current)):
            for option in layer.options:
                cost = option.bits - now.bits
                gain = now.loss - option.loss
                if option.b <= now.b or gain <= 0 or spent + cost > cap:
                    continue
                rate = math.inf if cost <= 0 else gain / cost
                if best is None or rate > best[0]:   # strict: ties keep the earlier layer, smaller b
                    best = (rate, index, option)
        if best is None:
            break
        _, index, option = best
        spent += option.bits - current[index].bits
        current[index] = option
    return Plan(layers, tuple(o.b for o in current), budget)


def plan_json(plan: Plan, *, method: str, files: dict[str, str], objective: str) -> dict:
    """``plan.json``: per layer (forward order) the chosen ``b``, its EBW, error and file, and every
    measured option; the totals against the budget."""
    return {
        "method": method, "budget": plan.budget, "objective": objective, "allocator": ALLOCATOR,
        "wbits": sorted({o.b for layer in plan.layers for o in layer.options}),
        "layers": [{"layer": layer.name, "b": o.b, "ebw": o.bits / layer.weights, "error": o.error,
                    "loss": o.loss, "bits": o.bits, "weights": layer.weights, "file": files[layer.name],
                    "options": [{"b": x.b, "ebw": x.bits / layer.weights, "error": x.error, "loss": x.loss,
                                 "bits": x.bits}
                                for x in layer.options]}
                   for layer, o in zip(plan.layers, plan.chosen)],
        "totals": {"layers": len(plan.layers), "weights": plan.weights, "bits": plan.bits, "ebw": plan.ebw,
                   "budget_bits": budget_bits(plan.budget, plan.weights), "objective": plan.objective,
                   "layers_per_b": {str(b): plan.widths.count(b) for b in sorted(set(plan.widths))}},
    }


def plan_markdown(plan: Plan, *, method: str, objective: str, short: Callable[[str], str] = str) -> str:
    """``plan.md``: the plan as a table, one row per layer, with the error at every measured width."""
    widths = sorted({o.b for layer in plan.layers for o in layer.options})
    head = ("| layer | weights | b | EBW | rel. output error | loss | "
            + " | ".join(f"loss at b = {b}" for b in widths) + " |")
    lines = [f"# Mixed-precision plan: {method}, budget {plan.budget:g} bits/weight", "",
             f"Mean EBW {plan.ebw:.4f} bits/weight ({plan.bits} of {budget_bits(plan.budget, plan.weights)} "
             f"bits allowed, {plan.weights} weights); objective ({objective}) {plan.objective:.6g}.", "",
             head, "| --- | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * len(widths)]
    for layer, o in zip(plan.layers, plan.chosen):
        losses = " | ".join(f"{layer.option(b).loss:.4g}" for b in widths)
        lines.append(f"| {short(layer.name)} | {layer.weights} | {o.b} | {o.bits / layer.weights:.4f} | "
                     f"{o.error:.4f} | {o.loss:.4g} | {losses} |")
    return "\n".join(lines) + "\n"


def measure_model(model, method: str, formats: dict, texts: list[str], *, quantize_model,
                  effective_bits) -> tuple[list[LayerOptions], dict, dict]:
    """Quantize ``model`` from its current (FP32) weights once per width with ``quantize_model``
    (sequentially, :func:`.models.quantize_model`), restoring the weights after each run. Returns every
    layer's :class:`LayerOptions` (forward order; their loss is the squared error until
    :func:`embedding_losses` replaces it), the quantized layers ``{(name, b): layer}`` and their reports
    ``{(name, b): LayerReport}``."""
    fp32 = {k: v.clone() for k, v in model.state_dict().items()}
    layers, reports, found = {}, {}, {}
    try:
        for b, fmt in sorted(formats.items()):
            def keep(name, layer, report, b=b):
                layers[name, b], reports[name, b] = layer, report
                found.setdefault(name, (report.shape[0] * report.shape[1], {}))[1][b] = Option(
                    b, effective_bits(layer).total_bits, report.rel_error, report.rel_error ** 2)
            model.load_state_dict(fp32)
            quantize_model(model, method, fmt, texts, on_layer=keep)
    finally:
        model.load_state_dict(fp32)
    options = [LayerOptions(name, weights, tuple(by_b[b] for b in sorted(by_b)))
               for name, (weights, by_b) in found.items()]
    return options, layers, reports


def embedding_losses(model, options: list[LayerOptions], layers: dict, texts: list[str]) -> list[LayerOptions]:
    """``options`` with each loss replaced by the embedding distance ``mean(1 − cos)`` on ``texts``
    between the model as given (FP32) and the model with only that layer set to that quantized layer
    (clamped at 0: float noise can make it a hair negative). The model is left as given."""
    import numpy as np
    import torch

    from .dequant import dequantize
    from .evaluate import cosine_similarity
    from .models import embed

    reference = embed(model, texts)
    modules = dict(model.named_modules())
    scored = []
    for layer in options:
        weight = modules[layer.name].weight
        original = weight.detach().clone()
        found = []
        try:
            for option in layer.options:
                with torch.no_grad():
                    weight.copy_(torch.as_tensor(dequantize(layers[layer.name, option.b]), dtype=weight.dtype))
                distance = float(np.mean(1.0 - cosine_similarity(reference, embed(model, texts))))
                found.append(replace(option, loss=max(0.0, distance)))
        finally:
            with torch.no_grad():
                weight.copy_(original)
        scored.append(LayerOptions(layer.name, layer.weights, tuple(found)))
    return scored


def apply_plan(model, plan: Plan, layers: dict, dequantize) -> None:
    """Set every planned layer's weight of ``model`` to its chosen quantized layer, dequantized."""
    import torch

    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, b in zip((layer.name for layer in plan.layers), plan.widths):
            weight = modules[name].weight
            weight.copy_(torch.as_tensor(dequantize(layers[name, b]), dtype=weight.dtype))
