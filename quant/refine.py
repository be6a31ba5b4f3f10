"""decoupleQ's block-wise refinement of the floats (Guo et al., 2024, §3.4): with the integer codes
``q`` of every quantized linear layer of one transformer block frozen, train the floats ``scale`` and
``zero`` of every (row, K-group) of those layers so that the block's output matches a reference
output (the FP32 block's) on the calibration activations.

The function is pure: it reads the block (its other parameters stay fixed and are never modified),
the layers and the data, and returns new layers and the loss history.

* **Objective.** Mean squared error over the real tokens (a mask drops padding positions) between
  the block's output, with each quantized layer's weight replaced by ``s ⊙ q + z``, and the target
  output; summed over all calibration batches (full batch: one optimiser step sees every token).
* **Variables.** Per layer, ``s = s₀ + u ⊙ a`` and ``z = z₀ + u ⊙ c`` with ``u = |s₀|`` (floored at
  ``1e-12`` of the layer's largest ``|s₀|``) and ``a, c`` (float64, zero at the start) trained by
  Adam. The learning rate is therefore relative: ``lr = 1e-2`` moves a float by at most about 1 % of
  its group's step per iteration, whatever the layer's weight scale.
* **Exact storage.** The forward pass rounds ``s`` and ``z`` to float32 (what :class:`UniformLayer`
  stores) and builds the weight as ``float32(float64(s)·q + float64(z))``, bit for bit what
  :func:`.dequant.dequantize` gives for the stored layer; every recorded loss is the loss of a layer
  that can be stored as is.
* **Best state kept.** ``losses[t]`` is the loss before step ``t`` (``losses[0]``: the unrefined
  layers; ``losses[steps]``: after the last step; the training stops early, history cut there, if the
  loss ever becomes NaN or Inf). The returned floats are those of the lowest recorded loss, so
  refinement never returns a worse block than it was given.

Nothing is random (full-batch Adam from a zero start), so two runs on the same data return the same
floats; there is no seed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
import torch

from .layer import UniformLayer

__all__ = ["RefineError", "RefineResult", "refine_block", "check_refine_knobs"]

#: Smallest step unit relative to the layer's largest ``|s₀|`` (a zero scale still gets a step).
_UNIT_FLOOR = 1e-12


class RefineError(ValueError):
    """A refinement knob or input is unusable; the message names the parameter and echoes the value."""


@dataclass
class RefineResult:
    """What :func:`refine_block` returns.

    Attributes
    ----------
    layers : dict of str to UniformLayer
        The refined layers, keyed like the ``layers`` argument (``q`` is the very same array).
    losses : list of float
        Block-output MSE before each step and after the last (``steps + 1`` values).
    best_step : int
        Index into ``losses`` of the returned floats.
    target_power : float
        Mean square of the target over the real tokens (``sqrt(loss / target_power)`` is the
        relative output error).
    seconds : float
    """

    layers: dict[str, UniformLayer]
    losses: list[float] = field(default_factory=list)
    best_step: int = 0
    target_power: float = float("nan")
    seconds: float = 0.0

    @property
    def initial_loss(self) -> float:
        return self.losses[0]

    @property
    def final_loss(self) -> float:
        """The loss of the returned floats."""
        return self.losses[self.best_step]

    def relative_error(self, loss: float) -> float:
        """``sqrt(loss / target_power)``: the block's relative output error."""
        return math.sqrt(loss / self.target_power) if self.target_power > 0 else 0.0


def check_refine_knobs(steps, lr, names: tuple[str, str] = ("refine_steps", "refine_lr")) -> None:
    """Raise :class:`RefineError` unless ``steps`` is an integer >= 0 and ``lr`` a finite number > 0;
    the message calls them by ``names`` (the CLI passes its option names)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise RefineError(f"{names[0]} must be an integer >= 0, not {steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise RefineError(f"{names[1]} must be a finite number > 0, not {lr!r}")


class _Floats:
    """The trainable floats of one layer and the weight they give (see the module docstring)."""

    def __init__(self, layer: UniformLayer, device: torch.device):
        self.layer = layer
        self.group = layer.fmt.group
        self.s0 = torch.as_tensor(layer.scale, dtype=torch.float64, device=device)
        self.z0 = torch.as_tensor(layer.zero, dtype=torch.float64, device=device)
        largest = float(self.s0.abs().max())
        self.unit = self.s0.abs().clamp_min((largest or 1.0) * _UNIT_FLOOR)
        self.a = torch.zeros_like(self.s0, requires_grad=True)
        self.c = torch.zeros_like(self.z0, requires_grad=True)
        self.q = torch.as_tensor(layer.q[:layer.n, :layer.k], dtype=torch.float64, device=device)

    def stored(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s, z)`` rounded to float32, as the layer stores them (differentiable)."""
        return (self.s0 + self.unit * self.a).float(), (self.z0 + self.unit * self.c).float()

    def weight(self) -> torch.Tensor:
        s, z = self.stored()
        n, k = self.layer.n, self.layer.k
        s = s.double().repeat_interleave(self.group, dim=1)[:n, :k]
        z = z.double().repeat_interleave(self.group, dim=1)[:n, :k]
        return (s * self.q + z).float()

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            s, z = self.stored()
        return s.cpu().numpy().copy(), z.cpu().numpy().copy()


def _check_inputs(block, layers, inputs, targets, masks) -> list[tuple[tuple, dict]]:
    if not isinstance(block, torch.nn.Module):
        raise RefineError(f"block must be a torch.nn.Module, not {type(block).__name__}")
    if not layers:
        raise RefineError("layers must name at least one quantized linear layer of the block")
    linears = {n: m for n, m in block.named_modules() if isinstance(m, torch.nn.Linear)}
    for name, layer in layers.items():
        module = linears.get(name)
        if module is None:
            raise RefineError(f"layers key {name!r} is not an nn.Linear of the block "
                              f"(linear layers: {', '.join(linears)})")
        if not isinstance(layer, UniformLayer):
            raise RefineError(f"layer {name!r} must be a UniformLayer (decoupleQ, GPTQ, RTN), "
                              f"not {type(layer).__name__}")
        if (layer.n, layer.k) != (module.out_features, module.in_features):
            raise RefineError(f"layer {name!r} is {layer.n}×{layer.k} but the block's nn.Linear is "
                              f"{module.out_features}×{module.in_features}")
    if len(inputs) == 0 or len(inputs) != len(targets):
        raise RefineError(f"inputs and targets must be non-empty lists of the same length, "
                          f"got {len(inputs)} and {len(targets)}")
    if masks is not None and len(masks) != len(inputs):
        raise RefineError(f"masks must have one entry per input batch ({len(inputs)}), got {len(masks)}")
    calls = []
    for item in inputs:
        if isinstance(item, torch.Tensor):
            calls.append(((item,), {}))
        elif (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], tuple)
              and isinstance(item[1], dict)):
            calls.append(item)
        else:
            raise RefineError("each input must be a Tensor or an (args tuple, kwargs dict) pair, "
                              f"not {type(item).__name__}")
    return calls


def _output(out) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def refine_block(block: torch.nn.Module, layers: Mapping[str, UniformLayer],
                 inputs: Sequence, targets: Sequence[torch.Tensor], *, steps: int, lr: float = 1e-2,
                 masks: Sequence[torch.Tensor | None] | None = None) -> RefineResult:
    """Train the floats of the block's quantized layers against the target output, ``q`` frozen.

    Parameters
    ----------
    block : nn.Module
        The block (e.g. a ``BertLayer``), in the mode it runs in (``eval()``: no dropout). Its
        parameters are read, never changed; the weights of the layers in ``layers`` are replaced,
        inside the forward pass only, by ``s ⊙ q + z``.
    layers : mapping of str to UniformLayer
        Quantized layers keyed by their name inside the block (``block.get_submodule(name)`` is an
        ``nn.Linear`` of the same shape).
    inputs : sequence
        One entry per calibration batch: a Tensor (the block's only argument) or a pair
        ``(args, kwargs)`` the block is called with.
    targets : sequence of Tensor
        The wanted output of each batch (the FP32 block's). A block returning a tuple is compared by
        its first element.
    steps : int
        Adam steps (>= 0; 0 evaluates the loss only and returns the layers unchanged).
    lr : float
        Adam learning rate, relative to each group's ``|scale|`` (see the module docstring).
    masks : sequence of Tensor or None, optional
        Per batch, a ``(batch, seq)`` tensor, non-zero at the real tokens; the loss ignores the others.

    Returns
    -------
    RefineResult

    Raises
    ------
    RefineError
        A bad knob, a layer that is not a UniformLayer or does not match its ``nn.Linear``, or
        inputs, targets and masks of different lengths.
    """
    check_refine_knobs(steps, lr)
    calls = _check_inputs(block, layers, inputs, targets, masks)
    start = time.perf_counter()
    masks = list(masks) if masks is not None else [None] * len(calls)
    device = next(block.parameters()).device
    floats = {name: _Floats(layer, device) for name, layer in layers.items()}
    targets = [_output(t).detach() for t in targets]
    selected = [t if m is None else t[m.bool()] for t, m in zip(targets, masks)]
    count = sum(t.numel() for t in selected)
    result = RefineResult(layers={}, target_power=sum(float(t.double().pow(2).sum()) for t in selected) / count)
    loss = _BlockLoss(block, floats, calls, targets, masks, count)
    best = _train(loss, floats, steps, lr, result)
    result.layers = {name: replace(layer, scale=best[name][0], zero=best[name][1]).validate()
                     for name, layer in layers.items()}
    result.seconds = time.perf_counter() - start
    return result


class _BlockLoss:
    """The full-batch loss of the block with the floats' current weights: the summed squared error
    over the real tokens of every batch, divided by ``count`` (their number × the output width)."""

    def __init__(self, block, floats: dict[str, _Floats], calls, targets, masks, count: int):
        self.block, self.floats, self.count = block, floats, count
        self.batches = list(zip(calls, targets, masks))
        self.frozen = {name: p.detach() for name, p in block.named_parameters()}

    def __call__(self, train: bool) -> float:
        """The loss; with ``train`` the gradients of every ``a, c`` are accumulated."""
        total = 0.0
        with torch.set_grad_enabled(train):
            params = dict(self.frozen)
            params.update({f"{name}.weight": f.weight() for name, f in self.floats.items()})
            for (args, kwargs), target, mask in self.batches:
                diff = _output(torch.func.functional_call(self.block, params, args, kwargs)) - target
                if mask is not None:
                    diff = diff[mask.bool()]
                loss = diff.pow(2).sum() / self.count
                if train:
                    loss.backward(retain_graph=True)
                total += float(loss.detach())
        return total


def _train(loss: _BlockLoss, floats: dict[str, _Floats], steps: int, lr: float,
           result: RefineResult) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Adam on every ``a, c``: records the loss before every step and after the last in ``result``
    (``losses``, ``best_step``) and returns the stored floats of the lowest loss."""
    optimizer = torch.optim.Adam([v for f in floats.values() for v in (f.a, f.c)], lr=lr)
    best = {name: f.snapshot() for name, f in floats.items()}
    for step in range(steps + 1):
        optimizer.zero_grad(set_to_none=True)
        value = loss(train=step < steps)
        if not math.isfinite(value):
            if step == 0:
                raise RefineError(f"the block's output error is {value} before any step: "
                                  "the inputs, targets or layers hold a NaN or Inf")
            break
        result.losses.append(value)
        if value < result.losses[result.best_step]:
            result.best_step = step
            best = {name: f.snapshot() for name, f in floats.items()}
        if step < steps:
            optimizer.step()
    return best
