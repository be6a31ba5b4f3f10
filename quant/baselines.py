"""Baseline quantizers at the same ``b`` and ``G`` (SPEC §4): round-to-nearest (uniform) and MX-INT
(the MicroScopiQ format without outliers)."""

from __future__ import annotations

import numpy as np
import torch

from ..config import FormatConfig
from .hessian import as_weight
from .layer import MsqLayer, UniformLayer, padded
from .msq import quantize_mxint_sweep

__all__ = ["quantize_rtn", "quantize_mxint"]


def quantize_rtn(weight, fmt: FormatConfig = FormatConfig()) -> UniformLayer:
    """Asymmetric min/max round-to-nearest per (row, K-group), uniform mode.

    For the real weights ``w`` of one row group (padding excluded), with ``lo = min w``,
    ``hi = max w`` and the signed code range ``[qmin, qmax] = [-2^(b-1), 2^(b-1) - 1]``:

    * ``scale = (hi - lo) / (2^b - 1)``, rounded to float32;
    * ``zero = lo - scale · qmin`` (float32), so ``lo ↦ qmin`` and ``hi ↦ qmax``;
    * ``q = clamp(round((w - zero) / scale), qmin, qmax)`` (round half to even); the weight is
      ``scale · q + zero``.

    A constant group (``hi == lo``) gets ``scale = 1``, ``zero = lo``, ``q = 0``; padding rows
    ``scale = 1, zero = 0``; padding slots ``q = 0``.
    """
    if not isinstance(fmt, FormatConfig):
        raise TypeError(f"fmt must be a FormatConfig, not {fmt!r}")
    n, k = np.shape(weight) if np.ndim(weight) == 2 else (0, 0)
    np_, kp = padded(max(n, 1), fmt.ublock), padded(max(k, 1), fmt.group)
    groups = kp // fmt.group
    w = as_weight(weight, np_, kp).T.reshape(np_, groups, fmt.group).double()
    real = torch.zeros((np_, kp), dtype=torch.bool)
    real[:n, :k] = True
    real = real.reshape(np_, groups, fmt.group)
    lo = torch.where(real, w, torch.inf).amin(dim=2)
    hi = torch.where(real, w, -torch.inf).amax(dim=2)
    row_real = real.any(dim=2)
    lo, hi = torch.where(row_real, lo, 0.0), torch.where(row_real, hi, 0.0)
    scale = torch.where(hi > lo, (hi - lo) / ((1 << fmt.wbits) - 1), 1.0).float()
    zero = torch.where(hi > lo, lo - scale.double() * fmt.qmin, lo).float()
    q = ((w - zero.double()[..., None]) / scale.double()[..., None]).round().clamp(fmt.qmin, fmt.qmax)
    q = torch.where(real, q, 0.0).reshape(np_, kp).to(torch.int8)
    return UniformLayer(fmt, n, k, q.numpy(), scale.numpy(), zero.numpy()).validate()


def quantize_mxint(weight, hessian=None, fmt: FormatConfig = FormatConfig(), *, damp: float = 0.01,
                   block_size: int = 128, device=None) -> MsqLayer:
    """MX-INT: the MicroScopiQ format with every slot an inlier (no outliers, no pruning).

    Exponents ``E[n,g]`` are chosen over all weights of the row group (there is no outlier format to
    take the large ones). Without ``hessian`` this is plain rounding; with it, the GPTQ sweep of
    :func:`~microscopiq.quant.msq.quantize_msq` compensates the rounding errors.
    """
    return quantize_mxint_sweep(weight, hessian, fmt, damp=damp, block_size=block_size, device=device)
