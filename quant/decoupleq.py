"""decoupleQ (Guo et al., 2024): uniform quantization as a constrained optimisation problem.

Per layer, minimise the layer-output error

    f(q, s, z) = tr((W - W_q) H (W - W_q)ᵀ),   W_q[n,k] = s[n,g] · q[n,k] + z[n,g],  g = k // G,

over integers ``q`` in the signed b-bit box ``[qmin, qmax]`` and floats ``s, z`` (one pair per output
row and K-group), by alternation. Every step works on all rows at once:

* **float part, closed form.** Given ``q``, each row's ``(s, z)`` is a linear least-squares problem in
  the ``H``-norm; its normal equations (``2·groups`` unknowns per row) are assembled for all rows with
  matrix products over column blocks (the upper half of ``qᵀHq`` only, mirrored) and solved with one
  batched Cholesky solve. At the solution the objective is ``wᵀHw − θᵀ(Aᵀ H w)`` per row, so it costs
  nothing extra.
* **integer part.** GPTQ-style rounding (:func:`.gptq.gptq_round`, columns by decreasing ``H[k,k]``,
  error feedback through ``H⁻¹``) onto a grid derived from the best solution's floats ``θ``: after an
  outer iteration that lowered the objective, the extrapolated ``θ + β (θ − θ_prev)``, else ``θ``
  itself; the candidate's floats re-solved in closed form. With ``pg_steps > 0`` (the PG setting, a
  stand-in for the paper's relaxed path; the official code with ``round_fn="gptq"`` runs no projected
  gradient step) each iteration also runs projected gradient descent on the box-relaxed ``q``
  (step ``1/L`` per row, ``L`` a bound of the row's curvature), re-solves the relaxed chain's floats and
  rounds onto that grid: a second candidate.

The start point is act-order GPTQ onto the start grid (the min-max grid, or by default each (row,
group)'s min-max range clipped by the factor with the least ``diag H``-weighted rounding error:
:func:`.gptq.clipped_grid_groups`), then the floats re-solved, so decoupleQ never ends above that
GPTQ. A candidate is kept only if it lowers the objective, so
:attr:`DecoupleQResult.objective` (best integer objective after the start and after each outer
iteration) is non-increasing; :attr:`DecoupleQResult.candidates` and :attr:`DecoupleQResult.relaxed`
record every candidate and the relaxed chain.

The floats returned here are the exact layer-wise optimum for the final ``q``. The paper's optional
block-wise refinement (training ``s, z`` against a transformer block's output with ``q`` frozen) is
:func:`.refine.refine_block`, which :func:`.models.quantize_model` runs with ``refine_steps > 0``
(CLI ``--refine-steps``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from ..config import FormatConfig
from .gptq import (QuantInputError, _device, check_problem, clipped_grid_groups, expand_groups, gptq_round,
                   hessian_inverse_factor, minmax_grid_groups, to_uniform_layer)
from .layer import UniformLayer, padded

__all__ = ["DecoupleQResult", "STARTS", "run_decoupleq", "quantize_decoupleq", "layer_objective"]

#: Elements of the (groups × rows × K) temporary of the normal-equation assembly, per row chunk.
_CHUNK_ELEMENTS = 1 << 25
#: Relative ridge on the normal equations (keeps a group whose q is constant solvable).
_RIDGE = 1e-9


@dataclass
class DecoupleQResult:
    """What :func:`run_decoupleq` returns.

    Attributes
    ----------
    layer : UniformLayer
    objective : list of float
        Best integer objective ``f`` so far: after the start point, then after each outer iteration.
        These (and ``candidates``, ``relaxed``, ``gptq_objective``) come from the normal equations,
        ``wᵀHw − θᵀb`` with float32 products: where ``wᵀHw ≫ f`` (per-channel grids, hot input
        channels) they can be off by about 1 % (0.8 % on the 4096×4096 per-channel benchmark layer);
        ``final_objective`` is computed from the residual and is exact to float32 products.
    candidates : list of float
        Objective of every integer candidate (one per outer iteration, two with the relaxed chain;
        kept only when lower).
    relaxed : list of float
        Objective of the box-relaxed ``q`` after each outer iteration's projected-gradient steps.
    gptq_objective : float
        Objective of act-order GPTQ on the start grid: the start point, before the floats are solved.
    final_objective : float
        Objective of the returned layer (floats rounded to float32 as stored), from its residual
        ``E = W − W_q``: ``Σ (E H) ⊙ E``.
    seconds : float
    """

    layer: UniformLayer
    objective: list[float] = field(default_factory=list)
    candidates: list[float] = field(default_factory=list)
    relaxed: list[float] = field(default_factory=list)
    gptq_objective: float = float("nan")
    final_objective: float = float("nan")
    seconds: float = 0.0


def layer_objective(weight, hessian, q, scale, zero, group: int) -> float:
    """``tr((W - W_q) H (W - W_q)ᵀ)`` for unpadded ``q`` (N×K) and per-group floats."""
    w = torch.as_tensor(weight, dtype=torch.float64)
    h = torch.as_tensor(hessian, dtype=torch.float64)
    k = w.shape[1]
    wq = (expand_groups(torch.as_tensor(scale, dtype=torch.float64), group, k) * torch.as_tensor(q, dtype=torch.float64)
          + expand_groups(torch.as_tensor(zero, dtype=torch.float64), group, k))
    e = w - wq
    return float(((e @ h) * e).sum())


def _largest_eigenvalue(h: torch.Tensor, iters: int = 50, margin: float = 1.05) -> float:
    """``λmax`` of the PSD matrix ``h`` by power iteration, times a safety ``margin`` (the estimate
    approaches ``λmax`` from below)."""
    v = torch.ones(h.shape[0], dtype=torch.float64, device=h.device)
    h64 = h.double()
    value = 0.0
    for _ in range(iters):
        v = h64 @ v
        value = float(v.norm())
        if value == 0.0:
            return 1e-30
        v = v / value
    return margin * value


class _Fit:
    """An integer ``q`` (N×Kp) with its floats and their objective."""

    __slots__ = ("q", "scale", "zero", "objective")

    def __init__(self, q, scale, zero, objective: float):
        self.q, self.scale, self.zero, self.objective = q, scale, zero, objective


def _chunk_size(group: int) -> int:
    """Columns per block of the quadratic forms: a divisor of ``group`` of at most 512 (so that a
    per-channel group is still split and the symmetric half of ``qᵀHq`` is skipped)."""
    if group <= 512:
        return group
    best = max(d for d in range(1, 513) if group % d == 0)
    return best if best >= 64 else group


class _Problem:
    """The padded problem (K padded to a multiple of G with zero weights and zero Hessian), with the
    products that never change: ``HW = W H``, ``wᵀHw`` per row and the Hessian's group sums."""

    def __init__(self, w: torch.Tensor, h: torch.Tensor, fmt: FormatConfig):
        n, k = w.shape
        self.fmt, self.n, self.k, self.group = fmt, n, k, fmt.group
        self.kp = padded(k, fmt.group)
        self.groups = self.kp // fmt.group
        self.chunk = _chunk_size(fmt.group)
        self.w = torch.zeros((n, self.kp), dtype=w.dtype, device=w.device)
        self.w[:, :k] = w
        self.h = torch.zeros((self.kp, self.kp), dtype=w.dtype, device=w.device)
        self.h[:k, :k] = h
        self.hw = self.w @ self.h
        self.whw = (self.w.double() * self.hw.double()).sum(dim=1)
        g, gs = self.groups, self.group
        self.h_rowsum = self.h.reshape(g, gs, g, gs).sum(dim=3)          # [g, a, h]
        self.h_blocksum = self.h_rowsum.sum(dim=1).double()               # [g, h]
        self._lipschitz_h = None

    @property
    def lipschitz_h(self) -> float:
        if self._lipschitz_h is None:
            self._lipschitz_h = _largest_eigenvalue(self.h)
        return self._lipschitz_h

    def expand(self, values: torch.Tensor) -> torch.Tensor:
        return values.repeat_interleave(self.group, dim=1)

    def objective(self, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> float:
        """``f`` from the residual ``E = W − W_q`` (no cancellation against ``wᵀHw``)."""
        e = self.w - (self.expand(scale).to(self.w.dtype) * q + self.expand(zero).to(self.w.dtype))
        chunk = max(1, _CHUNK_ELEMENTS // self.kp)
        return sum(float(self._quadratic(e[r:r + chunk]).sum()) for r in range(0, self.n, chunk))

    def _quadratic(self, q: torch.Tensor) -> torch.Tensor:
        """``ss[n,g,h] = Σ_{a∈g, b∈h} q[n,a] H[a,b] q[n,b]`` (float64) for rows ``q``: the products
        ``q_i H[i, j]`` are formed for column blocks ``j >= i`` only and mirrored (half a matmul)."""
        rows, c = q.shape[0], self.chunk
        blocks = self.kp // c
        pairs = torch.empty((rows, blocks, blocks), dtype=torch.float64, device=q.device)
        for i in range(blocks):
            tail = q[:, i * c:].reshape(rows, blocks - i, c)
            t = (q[:, i * c:(i + 1) * c] @ self.h[i * c:(i + 1) * c, i * c:]).reshape(rows, blocks - i, c)
            pairs[:, i, i:] = (t * tail).sum(dim=2).double()
            pairs[:, i + 1:, i] = pairs[:, i, i + 1:]
        per = self.group // c
        return pairs.reshape(rows, self.groups, per, self.groups, per).sum(dim=(2, 4))

    def solve_floats(self, q: torch.Tensor, at: tuple[torch.Tensor, torch.Tensor] | None = None
                     ) -> tuple[_Fit, float | None]:
        """Closed-form ``(s, z)`` for ``q`` (N×Kp) with their objective, and the objective at the given
        floats ``at`` (or None); both from the normal equations ``Nθ = b`` of each row,
        ``f = wᵀHw − 2θᵀb + θᵀNθ`` (``wᵀHw − θᵀb`` at the solution)."""
        n, g, gs = self.n, self.groups, self.group
        scale = torch.empty((n, g), dtype=torch.float64, device=q.device)
        zero = torch.empty_like(scale)
        sums = [0.0, 0.0]
        chunk = max(1, _CHUNK_ELEMENTS // self.kp)
        eye = torch.eye(2 * g, dtype=torch.float64, device=q.device)
        for r1 in range(0, n, chunk):
            r2 = min(r1 + chunk, n)
            qb = q[r1:r2].reshape(r2 - r1, g, gs)
            ss = self._quadratic(q[r1:r2])
            sz = torch.einsum("nga,gah->ngh", qb, self.h_rowsum).double()
            zz = self.h_blocksum.expand(r2 - r1, g, g)
            normal = torch.cat([torch.cat([ss, sz], dim=2), torch.cat([sz.transpose(1, 2), zz], dim=2)], dim=1)
            hwb = self.hw[r1:r2].reshape(r2 - r1, g, gs)
            rhs = torch.cat([(qb * hwb).sum(dim=2), hwb.sum(dim=2)], dim=1).double()
            ridge = _RIDGE * torch.diagonal(normal, dim1=1, dim2=2).mean(dim=1).clamp_min(1e-30)
            lower, _ = torch.linalg.cholesky_ex(normal + ridge[:, None, None] * eye)
            theta = torch.cholesky_solve(rhs[:, :, None], lower)[:, :, 0]
            scale[r1:r2], zero[r1:r2] = theta[:, :g], theta[:, g:]
            whw = self.whw[r1:r2]
            sums[0] += float((whw - (theta * rhs).sum(dim=1)).sum())
            if at is not None:
                floats = torch.cat([at[0][r1:r2], at[1][r1:r2]], dim=1).double()
                quad = (floats[:, :, None] * normal * floats[:, None, :]).sum(dim=(1, 2))
                sums[1] += float((whw - 2.0 * (floats * rhs).sum(dim=1) + quad).sum())
        return _Fit(q, scale, zero, sums[0]), None if at is None else sums[1]

    def projected_gradient(self, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor,
                           steps: int) -> torch.Tensor:
        """``steps`` projected-gradient steps on the box-relaxed q, step ``1/L_n`` per row with
        ``L_n = 2 λmax(H) max_g s[n,g]²`` (an upper bound of the row's curvature, so a step does not
        raise the relaxed objective; ``λmax`` from :func:`_largest_eigenvalue`)."""
        fmt = self.fmt
        s = self.expand(scale).to(self.w.dtype)
        z = self.expand(zero).to(self.w.dtype)
        lip = 2.0 * self.lipschitz_h * scale.abs().amax(dim=1).clamp_min(1e-30) ** 2
        step = (1.0 / lip).to(self.w.dtype)[:, None]
        for _ in range(steps):
            e = self.w - (s * q + z)
            # df/dq = -2 s ⊙ (E H)
            q = torch.clamp(q + step * 2.0 * s * (e @ self.h), fmt.qmin, fmt.qmax)
        return q


#: Start grids of :func:`run_decoupleq`.
STARTS = ("clip", "minmax")


def run_decoupleq(weight, hessian, fmt: FormatConfig = FormatConfig(), *, outer_iters: int = 4,
                  pg_steps: int = 0, start: str = "clip", extrapolation: float = 0.75,
                  damp: float = 0.01, block_size: int = 128, device=None) -> DecoupleQResult:
    """Quantize one layer with decoupleQ and report the objective per outer iteration.

    The defaults are the fast setting; ``outer_iters=4, pg_steps=200, start="minmax",
    extrapolation=0`` is the PG setting (projected-gradient chain). Neither is the official
    implementation's algorithm (docs/quantization.md describes that one;
    bench/bench_decoupleq_official.py runs it side by side).

    Parameters
    ----------
    weight : array or Tensor (N, K)
    hessian : array or Tensor (K, K)
        ``H = 2 XᵀX`` of the calibration inputs.
    fmt : FormatConfig
        ``wbits`` (2, 3, 4 or 8), ``group`` (per-channel: ``group`` >= K) and ``ublock`` (padding).
    outer_iters : int
        Outer iterations (each: GPTQ rounding onto the best solution's grid, floats re-solved; with
        ``pg_steps > 0`` also the relaxed chain and its candidate).
    pg_steps : int
        Projected-gradient steps per outer iteration on the box-relaxed ``q``; 0 skips the relaxed
        chain and its rounding candidate.
    start : {"clip", "minmax"}
        Start grid of the first GPTQ rounding: each (row, group)'s min-max range, shrunk by the
        factor of :data:`.gptq.CLIP_RATIOS` with the least ``diag H``-weighted rounding error
        (:func:`.gptq.clipped_grid_groups`), or the min-max range itself.
    extrapolation : float
        ``β >= 0``: after an outer iteration that lowered the objective, the next rounding uses the
        grid ``θ + β (θ − θ_prev)`` (``θ`` the new best floats, ``θ_prev`` the previous best's), and
        the plain ``θ`` again after one that did not. 0: always the best solution's grid.
    damp, block_size :
        Of the GPTQ rounding (:func:`.gptq.quantize_gptq`).
    device : str or torch.device, optional
        Default: CUDA when present, else CPU.
    """
    begin = time.perf_counter()
    w_np, h_np = check_problem(weight, hessian)
    _check_knobs(outer_iters, pg_steps, start, extrapolation, block_size)
    dev = _device(device)
    h64 = torch.as_tensor(h_np, device=dev)
    w = torch.as_tensor(w_np, dtype=torch.float32, device=dev)
    diag = torch.diagonal(h64)
    w[:, diag == 0] = 0
    prob = _Problem(w, h64.float(), fmt)
    round_onto = _ActOrderRounding(w, h64, prob.kp, fmt, damp, block_size)
    s0, z0 = minmax_grid_groups(w, fmt) if start == "minmax" else clipped_grid_groups(w, diag, fmt)
    best, gptq_obj = prob.solve_floats(round_onto(s0, z0), at=(s0, z0))
    if gptq_obj <= best.objective:
        best = _Fit(best.q, s0.double(), z0.double(), gptq_obj)
    result = DecoupleQResult(layer=None, gptq_objective=gptq_obj, objective=[best.objective])
    best = _outer_iterations(prob, round_onto, best, result, outer_iters, pg_steps, extrapolation)
    scale, zero = best.scale.float(), best.zero.float()
    result.final_objective = prob.objective(best.q, scale, zero)
    result.layer = to_uniform_layer(best.q[:, :w.shape[1]], scale, zero, fmt)
    result.seconds = time.perf_counter() - begin
    return result


def _check_knobs(outer_iters, pg_steps, start, extrapolation, block_size) -> None:
    for name, value, low in (("outer_iters", outer_iters, 0), ("pg_steps", pg_steps, 0),
                             ("block_size", block_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise QuantInputError(f"{name} must be an integer >= {low}, not {value!r}")
    if start not in STARTS:
        raise QuantInputError(f"start must be one of {', '.join(STARTS)}, not {start!r}")
    if isinstance(extrapolation, bool) or not isinstance(extrapolation, (int, float)) or not 0 <= extrapolation < math.inf:
        raise QuantInputError(f"extrapolation must be a finite number >= 0, not {extrapolation!r}")


class _ActOrderRounding:
    """GPTQ rounding of the layer onto a given grid, columns by decreasing ``H[k,k]`` (the factor of
    the damped ``H⁻¹`` in that order computed once): called with ``(scale, zero)``, returns ``q``."""

    def __init__(self, w: torch.Tensor, h64: torch.Tensor, kp: int, fmt: FormatConfig, damp: float,
                 block_size: int):
        self.order = torch.argsort(torch.diagonal(h64), descending=True, stable=True)
        self.hinv, _ = hessian_inverse_factor(h64[self.order][:, self.order], damp, w.device)
        self.w = w[:, self.order].contiguous()
        self.kp, self.fmt, self.block_size = kp, fmt, block_size

    def __call__(self, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
        # A zero scale (a group whose q is constant) leaves q free: round on a unit step instead.
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        q_perm, _, _ = gptq_round(self.w, self.hinv, self.fmt, scale=scale.float(), zero=zero.float(),
                                  order=self.order, block_size=self.block_size)
        q = torch.zeros((self.w.shape[0], self.kp), dtype=q_perm.dtype, device=self.w.device)
        q[:, self.order] = q_perm
        return q


def _outer_iterations(prob: _Problem, round_onto: _ActOrderRounding, best: _Fit, result: DecoupleQResult,
                      outer_iters: int, pg_steps: int, extrapolation: float) -> _Fit:
    """Step 3 of the module docstring, ``outer_iters`` times from ``best``; records every objective in
    ``result`` and returns the best fit."""
    relaxed = best
    grid, previous = (best.scale, best.zero), None
    for _ in range(outer_iters):
        candidates = []
        if pg_steps:
            relaxed_q = prob.projected_gradient(relaxed.q, relaxed.scale, relaxed.zero, pg_steps)
            relaxed, _ = prob.solve_floats(relaxed_q)
            result.relaxed.append(relaxed.objective)
            candidates.append(prob.solve_floats(round_onto(relaxed.scale, relaxed.zero))[0])
        candidates.append(prob.solve_floats(round_onto(*grid))[0])
        result.candidates += [cand.objective for cand in candidates]
        winner = min(candidates, key=lambda cand: cand.objective)
        if winner.objective < best.objective:
            previous, best = best, winner
            grid = (best.scale + extrapolation * (best.scale - previous.scale),
                    best.zero + extrapolation * (best.zero - previous.zero))
        else:
            grid = (best.scale, best.zero)
        result.objective.append(best.objective)
    return best


def quantize_decoupleq(weight, hessian, fmt: FormatConfig = FormatConfig(), *, outer_iters: int = 4,
                       pg_steps: int = 0, start: str = "clip", extrapolation: float = 0.75,
                       damp: float = 0.01, block_size: int = 128, device=None) -> UniformLayer:
    """Quantize one layer with decoupleQ (see :func:`run_decoupleq`); return the layer only."""
    return run_decoupleq(weight, hessian, fmt, outer_iters=outer_iters, pg_steps=pg_steps, start=start,
                         extrapolation=extrapolation, damp=damp, block_size=block_size, device=device).layer
