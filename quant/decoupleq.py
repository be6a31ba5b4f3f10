"""decoupleQ (Guo et al., 2024): uniform quantization as a constrained optimisation problem.

Per layer, minimise the layer-output error

    f(q, s, z) = tr((W - W_q) H (W - W_q)ᵀ),   W_q[n,k] = s[n,g] · q[n,k] + z[n,g],  g = k // G,

over integers ``q`` in the signed b-bit box ``[qmin, qmax]`` and floats ``s, z`` (one pair per output
row and K-group), by alternation. Every step works on all rows at once:

* **float part, closed form.** Given ``q``, each row's ``(s, z)`` is a linear least-squares problem in
  the ``H``-norm; its normal equations (``2·groups`` unknowns per row) are assembled for all rows with
  batched matrix products and solved with one batched Cholesky solve. At the solution the objective is
  ``wᵀHw − θᵀ(Aᵀ H w)`` per row, so it costs nothing extra.
* **integer part.** Projected gradient descent on the box-relaxed ``q`` (step ``1/L`` per row, ``L`` a
  bound of the row's curvature), the floats re-solved for the relaxed ``q``; then two integer
  candidates by GPTQ-style rounding (:func:`.gptq.gptq_round`, columns by decreasing ``H[k,k]``, error
  feedback through ``H⁻¹``): onto the relaxed chain's grid and onto the best integer solution's grid;
  each candidate's floats are re-solved in closed form.

The start point is GPTQ's own (act-order GPTQ onto the min-max grid), then the floats re-solved, so
decoupleQ never ends above GPTQ. A candidate is kept only if it lowers the objective, so
:attr:`DecoupleQResult.objective` (best integer objective after the start and after each outer
iteration) is non-increasing; :attr:`DecoupleQResult.candidates` and :attr:`DecoupleQResult.relaxed`
record every candidate and the relaxed chain.

Not implemented: the paper's optional block-wise refinement of the floats (training ``s, z`` against a
transformer block's output with ``q`` frozen); here the floats are the exact layer-wise optimum for
the final ``q``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..config import FormatConfig
from .gptq import (QuantInputError, _device, check_problem, expand_groups, gptq_round,
                   hessian_inverse_factor, minmax_grid_groups, to_uniform_layer)
from .layer import UniformLayer, padded

__all__ = ["DecoupleQResult", "run_decoupleq", "quantize_decoupleq", "layer_objective"]

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
    candidates : list of float
        Objective of every integer candidate (two per outer iteration; kept only when lower).
    relaxed : list of float
        Objective of the box-relaxed ``q`` after each outer iteration's projected-gradient steps.
    gptq_objective : float
        Objective of act-order GPTQ on the min-max grid: the start point, before the floats are solved.
    final_objective : float
        Objective of the returned layer (floats rounded to float32 as stored).
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


class _Problem:
    """The padded problem (K padded to a multiple of G with zero weights and zero Hessian), with the
    products that never change: ``HW = W H``, ``wᵀHw`` per row and the Hessian's group sums."""

    def __init__(self, w: torch.Tensor, h: torch.Tensor, fmt: FormatConfig):
        n, k = w.shape
        self.fmt, self.n, self.k, self.group = fmt, n, k, fmt.group
        self.kp = padded(k, fmt.group)
        self.groups = self.kp // fmt.group
        self.w = torch.zeros((n, self.kp), dtype=w.dtype, device=w.device)
        self.w[:, :k] = w
        self.h = torch.zeros((self.kp, self.kp), dtype=w.dtype, device=w.device)
        self.h[:k, :k] = h
        self.hw = self.w @ self.h
        self.whw = (self.w.double() * self.hw.double()).sum(dim=1)
        g, gs = self.groups, self.group
        hb = self.h.reshape(g, gs, g, gs)
        self.h_rowsum = hb.sum(dim=3)                                     # [g, a, h]
        self.h_blocksum = self.h_rowsum.sum(dim=1).double()               # [g, h]
        self.h_batched = hb.permute(2, 3, 0, 1).reshape(g, gs, self.kp)  # [h, b, (g, a)]
        self.lipschitz_h = _largest_eigenvalue(self.h)

    def expand(self, values: torch.Tensor) -> torch.Tensor:
        return values.repeat_interleave(self.group, dim=1)

    def solve_floats(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Closed-form ``(s, z)`` for ``q`` (N×Kp) and the objective per row at that solution."""
        n, g, gs = self.n, self.groups, self.group
        scale = torch.empty((n, g), dtype=torch.float64, device=q.device)
        zero = torch.empty_like(scale)
        obj = torch.empty(n, dtype=torch.float64, device=q.device)
        chunk = max(1, _CHUNK_ELEMENTS // (g * self.kp))
        for r1 in range(0, n, chunk):
            r2 = min(r1 + chunk, n)
            qb = q[r1:r2].reshape(r2 - r1, g, gs)
            t = torch.bmm(qb.permute(1, 0, 2), self.h_batched)            # [h, n, (g, a)]
            t = t.reshape(g, r2 - r1, g, gs)
            ss = torch.einsum("nga,hnga->ngh", qb, t).double()
            sz = torch.einsum("nga,gah->ngh", qb, self.h_rowsum).double()
            zz = self.h_blocksum.expand(r2 - r1, g, g)
            normal = torch.cat([torch.cat([ss, sz], dim=2),
                                torch.cat([sz.transpose(1, 2), zz], dim=2)], dim=1)
            hwb = self.hw[r1:r2].reshape(r2 - r1, g, gs)
            rhs = torch.cat([(qb * hwb).sum(dim=2), hwb.sum(dim=2)], dim=1).double()
            ridge = _RIDGE * torch.diagonal(normal, dim1=1, dim2=2).mean(dim=1).clamp_min(1e-30)
            normal = normal + ridge[:, None, None] * torch.eye(2 * g, dtype=normal.dtype, device=q.device)
            lower, _ = torch.linalg.cholesky_ex(normal)
            theta = torch.cholesky_solve(rhs[:, :, None], lower)[:, :, 0]
            scale[r1:r2], zero[r1:r2] = theta[:, :g], theta[:, g:]
            obj[r1:r2] = self.whw[r1:r2] - (theta * rhs).sum(dim=1)
        return scale, zero, obj

    def objective(self, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> float:
        e = self.w - (self.expand(scale).to(self.w.dtype) * q + self.expand(zero).to(self.w.dtype))
        return float(((e @ self.h).double() * e.double()).sum())

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


def run_decoupleq(weight, hessian, fmt: FormatConfig = FormatConfig(), *, outer_iters: int = 4,
                  pg_steps: int = 4, damp: float = 0.01, block_size: int = 128,
                  device=None) -> DecoupleQResult:
    """Quantize one layer with decoupleQ and report the objective per outer iteration.

    Parameters
    ----------
    weight : array or Tensor (N, K)
    hessian : array or Tensor (K, K)
        ``H = 2 XᵀX`` of the calibration inputs.
    fmt : FormatConfig
        ``wbits`` (2, 3, 4 or 8), ``group`` (per-channel: ``group`` >= K) and ``ublock`` (padding).
    outer_iters : int
        Alternations of (projected gradient → floats → GPTQ rounding → floats).
    pg_steps : int
        Projected-gradient steps per outer iteration.
    damp, block_size :
        Of the GPTQ rounding (:func:`.gptq.quantize_gptq`).
    device : str or torch.device, optional
        Default: CUDA when present, else CPU.
    """
    start = time.perf_counter()
    w_np, h_np = check_problem(weight, hessian)
    for name, value, low in (("outer_iters", outer_iters, 0), ("pg_steps", pg_steps, 0),
                             ("block_size", block_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise QuantInputError(f"{name} must be an integer >= {low}, not {value!r}")
    dev = _device(device)
    h64 = torch.as_tensor(h_np, device=dev)
    w = torch.as_tensor(w_np, dtype=torch.float32, device=dev)
    w[:, torch.diagonal(h64) == 0] = 0
    prob = _Problem(w, h64.float(), fmt)
    k = w.shape[1]

    def pad(q):
        return torch.nn.functional.pad(q, (0, prob.kp - k))

    order = torch.argsort(torch.diagonal(h64), descending=True, stable=True)
    hinv_order, _ = hessian_inverse_factor(h64[order][:, order], damp, dev)

    def round_onto(scale, zero):
        q_perm, _, _ = gptq_round(w[:, order], hinv_order, fmt, scale=scale.float(), zero=zero.float(),
                                  order=order, block_size=block_size)
        q = torch.empty_like(q_perm)
        q[:, order] = q_perm
        return pad(q)

    s0, z0 = minmax_grid_groups(w, fmt)
    best_q = round_onto(s0, z0)
    gptq_obj = prob.objective(best_q, s0, z0)
    best_s, best_z, rows = prob.solve_floats(best_q)
    result = DecoupleQResult(layer=None, gptq_objective=gptq_obj)
    result.objective.append(min(float(rows.sum()), gptq_obj))
    if gptq_obj <= float(rows.sum()):
        best_s, best_z = s0.double(), z0.double()
    best_obj = result.objective[-1]
    relaxed_q, relaxed_s, relaxed_z = best_q, best_s, best_z
    for _ in range(outer_iters):
        relaxed_q = prob.projected_gradient(relaxed_q, relaxed_s, relaxed_z, pg_steps)
        relaxed_s, relaxed_z, rows = prob.solve_floats(relaxed_q)
        result.relaxed.append(float(rows.sum()))
        for grid in ((relaxed_s, relaxed_z), (best_s, best_z)):
            cand_q = round_onto(*grid)
            cand_s, cand_z, rows = prob.solve_floats(cand_q)
            cand = float(rows.sum())
            result.candidates.append(cand)
            if cand < best_obj:
                best_q, best_s, best_z, best_obj = cand_q, cand_s, cand_z, cand
        result.objective.append(best_obj)
    scale, zero = best_s.float(), best_z.float()
    result.final_objective = prob.objective(best_q, scale.double(), zero.double())
    result.layer = to_uniform_layer(best_q[:, :k], scale, zero, fmt)
    result.seconds = time.perf_counter() - start
    return result


def quantize_decoupleq(weight, hessian, fmt: FormatConfig = FormatConfig(), *, outer_iters: int = 4,
                       pg_steps: int = 4, damp: float = 0.01, block_size: int = 128,
                       device=None) -> UniformLayer:
    """Quantize one layer with decoupleQ (see :func:`run_decoupleq`); return the layer only."""
    return run_decoupleq(weight, hessian, fmt, outer_iters=outer_iters, pg_steps=pg_steps, damp=damp,
                         block_size=block_size, device=device).layer
