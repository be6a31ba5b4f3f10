"""GPTQ with an asymmetric uniform grid (SPEC §4 baseline, uniform mode of SPEC §3).

``W[n,k] ≈ scale[n,g] · q[n,k] + zero[n,g]`` with ``q`` a signed b-bit integer and one float
``scale``/``zero`` pair per output row ``n`` and K-group ``g = k // G``. The integers come from the
GPTQ column sweep (Frantar et al., 2023): columns are rounded one at a time and each rounding error is
spread over the columns not yet rounded through the upper Cholesky factor of ``H⁻¹``, in blocks of
``block_size`` columns with lazy batch updates.

The sweep itself is :func:`.hessian.lazy_batch_sweep` (shared with MicroScopiQ); this module supplies
its column quantizer. The rounding is shared with decoupleQ (:mod:`.decoupleq`), which calls :func:`gptq_round` with a fixed
grid, and the input checks with every quantizer entry point of this package (:func:`check_problem`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import FormatConfig
from .hessian import inverse_cholesky_upper, lazy_batch_sweep, prepare_hessian
from .layer import UniformLayer, padded

__all__ = ["QuantInputError", "check_problem", "check_weight_range", "as_real_array", "MAX_K", "PEAK_MIN",
           "PEAK_MAX", "minmax_grid", "hessian_inverse_factor", "gptq_round",
           "quantize_gptq", "to_uniform_layer", "expand_groups", "minmax_grid_groups", "clipped_grid_groups"]

#: Shrink factors of :func:`clipped_grid_groups`: 1, 0.95, ..., 0.2 (GPTQ's ``maxshrink = 0.8``).
CLIP_RATIOS = tuple(1.0 - 0.05 * i for i in range(17))


#: Largest K (in_features): the quantizers hold a K×K Hessian in float64, 2 GiB at this K.
MAX_K = 16384
#: Range of a row group's largest |w| (row n, K-group g) that every quantizer handles exactly as it
#: handles the same weights at scale 1 (power-of-two scaling only moves the exponents; checked at
#: both ends in tests/test_bad_input.py). MicroScopiQ, MX-INT and decoupleQ square weights in
#: float32, which overflows above about 2^62 and loses them below about 2^-64; outside the range a
#: group would quantize to garbage or to 0, so it is refused instead.
PEAK_MIN, PEAK_MAX = 2.0 ** -60, 2.0 ** 60


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
    w = as_real_array(weight, "weight")
    if w.ndim != 2:
        raise QuantInputError(f"weight must be a 2-D matrix (out_features × in_features), got shape {w.shape}")
    if w.size == 0:
        raise QuantInputError(f"weight is empty (shape {w.shape})")
    if not np.isfinite(w).all():
        raise QuantInputError(f"weight has a NaN or Inf at {_first_bad(w)}: "
                              f"{float(w[_first_bad(w)])!r}")
    if w.shape[1] > MAX_K:
        raise QuantInputError(f"weight has K = {w.shape[1]} input columns, at most {MAX_K}: the "
                              f"quantizers hold a K×K float64 Hessian (2 GiB at K = {MAX_K})")
    if hessian is None:
        return w, None
    h = as_real_array(hessian, "hessian")
    k = w.shape[1]
    if h.shape != (k, k):
        raise QuantInputError(f"hessian must be K×K = ({k}, {k}) for a weight with K = {k} columns, "
                              f"got shape {h.shape}")
    if not np.isfinite(h).all():
        raise QuantInputError(f"hessian has a NaN or Inf at {_first_bad(h)}")
    return w, h


def as_real_array(value, name: str) -> np.ndarray:
    """``value`` (array, tensor or nested lists) as float64; refuses complex, string and object
    data, which a cast would silently drop or garble."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise QuantInputError(f"{name} must hold real numbers, not {value.dtype}")
        value = value.detach().cpu().double().numpy()
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged nested lists
        raise QuantInputError(f"{name} must be a rectangular array of real numbers: {error}") from None
    if array.dtype.kind not in "biuf":
        raise QuantInputError(f"{name} must hold real numbers, not dtype {array.dtype}")
    return array.astype(np.float64)


def check_weight_range(weight: np.ndarray, group: int) -> None:
    """Refuse a float64 weight (N×K) with a row group (row ``n``, K-group of ``group`` columns) whose
    largest |w| is neither 0 nor between :data:`PEAK_MIN` and :data:`PEAK_MAX`, naming the weight
    and its value."""
    n, k = weight.shape
    magnitude = np.zeros((n, padded(k, group)))
    magnitude[:, :k] = np.abs(weight)
    peaks = magnitude.reshape(n, -1, group).max(axis=2)
    bad = (peaks != 0) & ((peaks < PEAK_MIN) | (peaks > PEAK_MAX))
    if bad.any():
        row, g = (int(i) for i in np.argwhere(bad)[0])
        col = g * group + int(np.argmax(magnitude[row, g * group:(g + 1) * group]))
        raise QuantInputError(
            f"weight[{row}, {col}] = {float(weight[row, col])!r} is the largest |w| of row {row}, K-group {g}: "
            f"a row group's largest |w| must be 0 or between 2^-60 and 2^60 (about {PEAK_MIN:.2g} to "
            f"{PEAK_MAX:.2g}); outside that range the quantizers cannot represent it")


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


def hessian_inverse_factor(hessian, damp: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(U, dead)``: the upper Cholesky factor of the damped ``H⁻¹`` and the mask of dead
    inputs (``H[k,k] = 0``), via :func:`.hessian.prepare_hessian` and
    :func:`.hessian.inverse_cholesky_upper`."""
    k = hessian.shape[0]
    h, dead = prepare_hessian(hessian, k, k, damp=damp, device=device)
    return inverse_cholesky_upper(h), dead


class _UniformColumns:
    """The :class:`.hessian.ColumnQuantizer` of the uniform grid: a fixed grid, or a min-max grid
    taken from each K-group's error-updated weights when the sweep reaches it."""

    def __init__(self, n: int, k: int, fmt: FormatConfig, scale, zero, order, device):
        self.fmt = fmt
        self.dynamic = scale is None
        groups = -(-k // fmt.group)
        if self.dynamic:
            self.scale_t = torch.empty((groups, n), dtype=torch.float32, device=device)
            self.zero_t = torch.empty_like(self.scale_t)
        else:
            self.scale_t = scale.t().to(device=device, dtype=torch.float32).contiguous()
            self.zero_t = zero.t().to(device=device, dtype=torch.float32).contiguous()
        cols = torch.arange(k) if order is None else order.cpu()
        self.gidx = (cols // fmt.group).tolist()
        self.q_t = torch.empty((k, n), dtype=torch.float32, device=device)

    def begin_group(self, start: int, weights: torch.Tensor) -> None:
        if self.dynamic:
            g = start // self.fmt.group
            self.scale_t[g], self.zero_t[g] = minmax_grid(weights.t(), self.fmt)

    def quantize_column(self, index: int, column: torch.Tensor, hinv_diag: float) -> torch.Tensor:
        g = self.gidx[index]
        s, z = self.scale_t[g], self.zero_t[g]
        q = torch.sub(column, z, out=self.q_t[index]).div_(s).round_().clamp_(self.fmt.qmin, self.fmt.qmax)
        return torch.addcmul(z, s, q)


def gptq_round(weight: torch.Tensor, hinv_upper: torch.Tensor, fmt: FormatConfig, *,
               scale: torch.Tensor | None = None, zero: torch.Tensor | None = None,
               order: torch.Tensor | None = None, block_size: int = 128):
    """The GPTQ sweep (:func:`.hessian.lazy_batch_sweep`) onto the uniform grid.

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
    q : Tensor (N, K) float32, integers in ``[qmin, qmax]``, in sweep order
    scale, zero : Tensor (N, ceil(K/G)) float32
    """
    if scale is None and order is not None:
        raise ValueError("a min-max grid taken during the sweep needs the natural column order")
    n, k = weight.shape
    columns = _UniformColumns(n, k, fmt, scale, zero, order, weight.device)
    work = weight.t().to(torch.float32).contiguous()
    with torch.no_grad():
        lazy_batch_sweep(work, hinv_upper.to(torch.float32), columns, block_size=block_size,
                         group=fmt.group if order is None else k)
    return columns.q_t.t(), columns.scale_t.t(), columns.zero_t.t()


def expand_groups(values: torch.Tensor, group: int, k: int) -> torch.Tensor:
    """Repeat per-group values (N, ceil(K/G)) along K to shape (N, K)."""
    return values.repeat_interleave(group, dim=1)[:, :k]


def to_uniform_layer(q, scale, zero, fmt: FormatConfig) -> UniformLayer:
    """Pack unpadded ``q`` (N×K) and per-group ``scale``/``zero`` into a validated, padded
    :class:`UniformLayer` (padding: q = 0, scale = 1, zero = 0)."""
    q = as_real_array(q, "q")
    n, k = q.shape
    np_, kp = padded(n, fmt.ublock), padded(k, fmt.group)
    qp = np.zeros((np_, kp), dtype=np.int8)
    qp[:n, :k] = np.rint(q).astype(np.int8)
    sp = np.ones((np_, kp // fmt.group), dtype=np.float32)
    zp = np.zeros((np_, kp // fmt.group), dtype=np.float32)
    sp[:n] = as_real_array(scale, "scale")
    zp[:n] = as_real_array(zero, "zero")
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
        hinv, _ = hessian_inverse_factor(h, damp, dev)
        q, scale, zero = gptq_round(w, hinv, fmt, block_size=block_size)
        return to_uniform_layer(q, scale, zero, fmt)
    order = torch.argsort(torch.diagonal(h), descending=True, stable=True)
    scale, zero = minmax_grid_groups(w, fmt)
    hinv, _ = hessian_inverse_factor(h[order][:, order], damp, dev)
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


def clipped_grid_groups(w: torch.Tensor, weight_of_column: torch.Tensor, fmt: FormatConfig,
                        ratios=CLIP_RATIOS) -> tuple[torch.Tensor, torch.Tensor]:
    """The min-max grid of every (row, K-group) of ``w`` (N×K) with its range shrunk by the factor of
    ``ratios`` (``min·r`` and ``max·r``) that minimises the weighted rounding error
    ``Σ_k weight_of_column[k] · (w[n,k] - W_q[n,k])²`` of plain rounding (GPTQ's clipping search,
    weighted; with ``weight_of_column = diag H`` the diagonal part of the layer-output error).
    Returns two (N, ceil(K/G)) float32-valued tensors of ``w``'s dtype; ratio 1 is the min-max grid."""
    n, k = w.shape
    kp = padded(k, fmt.group)
    wp = torch.cat([w, w[:, -1:].expand(n, kp - k)], dim=1).reshape(n, kp // fmt.group, fmt.group)
    dp = torch.zeros(kp, dtype=w.dtype, device=w.device)
    dp[:k] = weight_of_column.to(w.dtype)
    dp = dp.reshape(1, kp // fmt.group, fmt.group)
    lo, hi = wp.amin(dim=2), wp.amax(dim=2)
    best = None
    for ratio in ratios:
        scale, zero = minmax_grid(torch.stack([lo * ratio, hi * ratio], dim=-1).reshape(-1, 2), fmt)
        scale, zero = scale.reshape(lo.shape)[..., None], zero.reshape(lo.shape)[..., None]
        q = torch.clamp(torch.round((wp - zero) / scale), fmt.qmin, fmt.qmax)
        err = ((q * scale + zero - wp).square_() * dp).sum(dim=2)
        if best is None:
            best = err, scale[..., 0], zero[..., 0]
        else:
            better = err < best[0]
            best = tuple(torch.where(better, new, old) for new, old in zip((err, scale[..., 0], zero[..., 0]), best))
    return best[1], best[2]
