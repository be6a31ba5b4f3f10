"""GPTQ with an asymmetric uniform grid (SPEC §4 baseline, uniform mode of SPEC §3).

``W[n,k] ≈ scale[n,g] · q[n,k] + zero[n,g]`` with ``q`` a signed b-bit integer and one float
``scale``/``zero`` pair per output row ``n`` and K-group ``g = k // G``. The integers come from the
GPTQ column sweep (Frantar et al., 2023): columns are rounded one at a time and each rounding error is
spread over the columns not yet rounded through the upper Cholesky factor of ``H⁻¹``, in blocks of
``block_size`` columns with lazy batch updates.

The sweep is shared with decoupleQ (:mod:`.decoupleq`), which calls :func:`gptq_round` with a fixed
grid, and the input checks with every quantizer entry point of this package (:func:`check_problem`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import FormatConfig
from .layer import UniformLayer, padded

__all__ = ["QuantInputError", "check_problem", "minmax_grid", "hessian_inverse_factor", "gptq_round",
           "quantize_gptq", "to_uniform_layer", "expand_groups"]


class QuantInputError(ValueError):
    """A weight or Hessian handed to a quantizer is unusable; the message names the rule."""


def _first_bad(array: np.ndarray) -> tuple:
    return tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])


def check_problem(weight, hessian=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Check a weight matrix (N×K) and an optional Hessian (K×K); return them as float64 arrays.

    Raises
    ------
    QuantInputError
        Not 2-D, empty, NaN/Inf, or a Hessian whose shape does not match the weight's K.
    """
    w = _as_numpy(weight)
    if w.ndim != 2:
        raise QuantInputError(f"weight must be a 2-D matrix (out_features × in_features), got shape {w.shape}")
    if w.size == 0:
        raise QuantInputError(f"weight is empty (shape {w.shape})")
    if not np.isfinite(w).all():
        raise QuantInputError(f"weight has a NaN or Inf at {_first_bad(w)}")
    if hessian is None:
        return w, None
    h = _as_numpy(hessian)
    k = w.shape[1]
    if h.shape != (k, k):
        raise QuantInputError(f"hessian must be K×K = ({k}, {k}) for a weight with K = {k} columns, "
                              f"got shape {h.shape}")
    if not np.isfinite(h).all():
        raise QuantInputError(f"hessian has a NaN or Inf at {_first_bad(h)}")
    return w, h


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def _device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def minmax_grid(block: torch.Tensor, fmt: FormatConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric min-max grid of each row of ``block`` (rows × columns): ``min`` maps to ``qmin``,
    ``max`` to ``qmax``. A constant row gets ``scale = 1`` and ``zero`` = its value (exact with q = 0).
    Both are rounded to float32, the precision the layer stores."""
    lo, hi = block.amin(dim=1), block.amax(dim=1)
    flat = hi <= lo
    scale = torch.where(flat, torch.ones_like(lo), (hi - lo) / (fmt.qmax - fmt.qmin))
    zero = torch.where(flat, lo, lo - scale * fmt.qmin)
    return scale.float().to(block.dtype), zero.float().to(block.dtype)


def hessian_inverse_factor(hessian: torch.Tensor, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(U, dead)``: the upper Cholesky factor of ``(H + λI)⁻¹`` (float64) with
    ``λ = damp · mean(diag H)``, and the mask of dead inputs (``H[k,k] = 0``, given a unit diagonal)."""
    h = hessian.double().clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    k = h.shape[0]
    h += damp * torch.diagonal(h).mean() * torch.eye(k, dtype=h.dtype, device=h.device)
    lower, info = torch.linalg.cholesky_ex(h)
    if int(info):
        # Not positive definite even after damping (numerical rank deficiency): add more.
        h += torch.diagonal(h).mean() * 1e-2 * torch.eye(k, dtype=h.dtype, device=h.device)
        lower = torch.linalg.cholesky(h)
    inverse = torch.cholesky_inverse(lower)
    return torch.linalg.cholesky(inverse, upper=True), dead


def gptq_round(weight: torch.Tensor, hinv_upper: torch.Tensor, fmt: FormatConfig, *,
               scale: torch.Tensor | None = None, zero: torch.Tensor | None = None,
               order: torch.Tensor | None = None, block_size: int = 128):
    """The GPTQ sweep: round ``weight`` (N×K, columns in sweep order) to the uniform grid.

    Parameters
    ----------
    weight : Tensor (N, K)
        Columns already permuted into sweep order; ``hinv_upper`` in the same order.
    hinv_upper : Tensor (K, K)
        Upper Cholesky factor of the damped ``H⁻¹`` (:func:`hessian_inverse_factor`).
    scale, zero : Tensor (N, ceil(K/G)), optional
        A fixed grid indexed by original K-group. When omitted, each group's min-max grid is taken
        from the error-updated weights when the sweep reaches the group's first column (natural
        order only).
    order : Tensor (K,), optional
        Original column index of each sweep position (default: identity).

    Returns
    -------
    q : Tensor (N, K) float, integers in ``[qmin, qmax]``, in sweep order
    scale, zero : Tensor (N, ceil(K/G))
    """
    n, k = weight.shape
    group = fmt.group
    # Work on Wᵀ so that a column of W is a contiguous row.
    wt = weight.t().contiguous()
    hinv = hinv_upper.to(wt.dtype)
    dynamic = scale is None
    if dynamic:
        if order is not None:
            raise ValueError("a min-max grid taken during the sweep needs the natural column order")
        scale_t = torch.empty((-(-k // group), n), dtype=wt.dtype, device=wt.device)
        zero_t = torch.empty_like(scale_t)
    else:
        scale_t, zero_t = scale.t().contiguous().to(wt.dtype), zero.t().contiguous().to(wt.dtype)
    cols = torch.arange(k, device=wt.device) if order is None else order
    gidx = (cols // group).tolist()
    qt = torch.empty_like(wt)
    for i1 in range(0, k, block_size):
        i2 = min(i1 + block_size, k)
        w1 = wt[i1:i2].clone()
        err = torch.empty_like(w1)
        h1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            j = i1 + i
            if dynamic and j % group == 0:
                span = torch.cat([w1[i:], wt[i2:j + group]], dim=0)[:group]
                scale_t[j // group], zero_t[j // group] = minmax_grid(span.t(), fmt)
            s, z = scale_t[gidx[j]], zero_t[gidx[j]]
            row = w1[i]
            qr = torch.clamp(torch.round((row - z) / s), fmt.qmin, fmt.qmax)
            qt[j] = qr
            e = (row - (s * qr + z)) / h1[i, i]
            w1[i:] -= h1[i, i:, None] * e[None, :]
            err[i] = e
        wt[i2:] -= hinv[i1:i2, i2:].t() @ err
    return qt.t(), scale_t.t(), zero_t.t()


def expand_groups(values: torch.Tensor, group: int, k: int) -> torch.Tensor:
    """Repeat per-group values (N, ceil(K/G)) along K to shape (N, K)."""
    return values.repeat_interleave(group, dim=1)[:, :k]


def to_uniform_layer(q, scale, zero, fmt: FormatConfig) -> UniformLayer:
    """Pack unpadded ``q`` (N×K) and per-group ``scale``/``zero`` into a validated, padded
    :class:`UniformLayer` (padding: q = 0, scale = 1, zero = 0)."""
    q = _as_numpy(q)
    n, k = q.shape
    np_, kp = padded(n, fmt.ublock), padded(k, fmt.group)
    qp = np.zeros((np_, kp), dtype=np.int8)
    qp[:n, :k] = np.rint(q).astype(np.int8)
    sp = np.ones((np_, kp // fmt.group), dtype=np.float32)
    zp = np.zeros((np_, kp // fmt.group), dtype=np.float32)
    sp[:n] = _as_numpy(scale)
    zp[:n] = _as_numpy(zero)
    return UniformLayer(fmt=fmt, n=n, k=k, q=qp, scale=sp, zero=zp).validate()


def quantize_gptq(weight, hessian, fmt: FormatConfig = FormatConfig(), *, damp: float = 0.01,
                  block_size: int = 128, act_order: bool = False, device=None) -> UniformLayer:
    """Quantize one layer with GPTQ onto the asymmetric per-(row, K-group) uniform grid.

    Parameters
    ----------
    weight : array or Tensor (N, K)
    hessian : array or Tensor (K, K)
        ``H = 2 XᵀX`` of the layer's calibration inputs.
    fmt : FormatConfig
        ``wbits`` (2, 3, 4 or 8), ``group`` and ``ublock`` (padding of N) are used.
    damp : float
        Dampening, as a fraction of the mean Hessian diagonal, added before inversion.
    block_size : int
        Columns per lazy-batch block.
    act_order : bool
        Sweep columns by decreasing ``H[k,k]``; the grid is then fixed up front from the original
        weights ("static groups") so that q, scale and zero keep the natural group layout.
    device : str or torch.device, optional
        Default: CUDA when present, else CPU.
    """
    w_np, h_np = check_problem(weight, hessian)
    if not (isinstance(block_size, int) and block_size >= 1):
        raise QuantInputError(f"block_size must be a positive integer, not {block_size!r}")
    if not damp >= 0:
        raise QuantInputError(f"damp must be >= 0, not {damp!r}")
    dev = _device(device)
    w = torch.as_tensor(w_np, dtype=torch.float32, device=dev)
    h = torch.as_tensor(h_np, device=dev)
    w[:, torch.diagonal(h) == 0] = 0
    if not act_order:
        hinv, _ = hessian_inverse_factor(h, damp)
        q, scale, zero = gptq_round(w, hinv, fmt, block_size=block_size)
        return to_uniform_layer(q, scale, zero, fmt)
    order = torch.argsort(torch.diagonal(h), descending=True, stable=True)
    scale, zero = minmax_grid_groups(w, fmt)
    hinv, _ = hessian_inverse_factor(h[order][:, order], damp)
    q_perm, _, _ = gptq_round(w[:, order], hinv, fmt, scale=scale, zero=zero, order=order,
                              block_size=block_size)
    q = torch.empty_like(q_perm)
    q[:, order] = q_perm
    return to_uniform_layer(q, scale, zero, fmt)


def minmax_grid_groups(w: torch.Tensor, fmt: FormatConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-max grid of every (row, K-group) of ``w`` (N×K): two (N, ceil(K/G)) tensors."""
    n, k = w.shape
    kp = padded(k, fmt.group)
    # Pad the last group by repeating its last column, so padding never widens the range.
    wp = torch.cat([w, w[:, -1:].expand(n, kp - k)], dim=1)
    s, z = minmax_grid(wp.reshape(n * (kp // fmt.group), fmt.group), fmt)
    return s.reshape(n, -1), z.reshape(n, -1)
