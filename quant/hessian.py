"""Shared pieces of the GPTQ-family quantizers: Hessian damping, the upper Cholesky factor of
``H⁻¹`` and the blocked ("lazy batch") column sweep with error compensation.

The sweep is quantizer-agnostic: a :class:`ColumnQuantizer` decides what each column becomes
(uniform rounding, MicroScopiQ inliers/outliers/pruning, ...) and the sweep compensates the error
of every column on the columns not yet quantized, exactly as GPTQ (Frantar et al., 2023, Alg. 1):

``err = (w_k - q_k) / U[k,k]``, then ``W[:, k+1:] -= err ⊗ U[k, k+1:]``

with ``U`` the upper Cholesky factor of ``H⁻¹`` (``H⁻¹ = Uᵀ U``). Updates inside a block of
``block_size`` columns are applied column by column; the rest of the matrix receives the whole
block's errors in one matrix product at the end of the block. Blocks also end at every K-group
boundary, so :meth:`ColumnQuantizer.begin_group` always sees fully updated weights.

With more than one torch thread the product looks ahead: the next block's rows are updated at
once, the rows after it in a background thread while the next block's columns are quantized
(the column step is mostly serial Python, the product is BLAS, so the second core has work).
Every row still receives the blocks' updates in block order. For blocks of 32 columns and more
the row ranges of a product come out bit for bit as the whole product (MKL, 1 and 2 threads;
tests/quant/test_hessian.py), so the layer is the same as without look-ahead; for blocks of a few
columns BLAS may pick other kernels for the small range and the last bits can differ, as they
already do between thread counts.

Weights are handled **transposed**, ``(K, N)`` contiguous: column ``k`` of ``W`` is row ``k`` of
the working matrix, so every per-column operation reads and writes contiguous memory.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch

__all__ = [
    "HessianError", "ColumnQuantizer", "as_weight", "prepare_hessian", "inverse_cholesky_upper",
    "lazy_batch_sweep",
]


#: Size below which a triangular inverse is one triangular solve.
_TRIANGULAR_LEAF = 256


class HessianError(ValueError):
    """A calibration Hessian cannot be used (wrong shape, NaN/Inf, not positive definite)."""


class ColumnQuantizer(Protocol):
    """What :func:`lazy_batch_sweep` asks of a quantizer."""

    def begin_group(self, start: int, weights: torch.Tensor) -> None:
        """Called at every K-group start with the group's current columns, ``(G, N)``."""

    def quantize_column(self, index: int, column: torch.Tensor, hinv_diag: float) -> torch.Tensor:
        """Quantize column ``index`` (a ``(N,)`` view, current values); return the dequantized
        values the layer will hold (same shape and dtype). ``hinv_diag`` is ``U[k,k]``, the
        square root of ``[H⁻¹]_kk`` in GPTQ's factorisation (1 without a Hessian)."""


def _all_finite(tensor: torch.Tensor) -> bool:
    """Whether no element is NaN or ±Inf: the extremes propagate NaN and reach ±Inf, so checking
    them is exact (and one pass without a temporary, unlike ``isfinite(t).all()``)."""
    return tensor.numel() == 0 or bool(torch.isfinite(torch.stack(torch.aminmax(tensor))).all())


def as_weight(weight, rows: int, cols: int, device=None) -> torch.Tensor:
    """A 2-D float weight (torch or NumPy) as a zero-padded transposed float32 tensor ``(cols, rows)``.

    Raises
    ------
    ValueError
        Not a 2-D matrix, empty, or holding NaN/Inf.
    """
    tensor = torch.as_tensor(np.asarray(weight) if not isinstance(weight, torch.Tensor) else weight)
    if tensor.ndim != 2 or tensor.numel() == 0:
        raise ValueError(f"weight must be a non-empty 2-D (N, K) matrix, got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float64)
    if not _all_finite(tensor):
        bad = tuple(int(i) for i in torch.nonzero(~torch.isfinite(tensor))[0])
        raise ValueError(f"weight holds NaN or Inf at {bad}")
    out = torch.zeros((cols, rows), dtype=torch.float32, device=device)
    out[:tensor.shape[1], :tensor.shape[0]] = tensor.detach().to(device=device, dtype=torch.float32).T
    return out


def prepare_hessian(hessian, k: int, size: int, *, damp: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Dampen a calibration Hessian ``H = 2XᵀX`` (``k × k``) and pad it to ``size``.

    As in GPTQ: *dead* inputs (``H[i,i] = 0``, never active in calibration) get ``H[i,i] = 1``
    (their weights are then irrelevant and the caller zeroes them), then ``damp · mean(diag H)`` is
    added to the diagonal. Padding inputs get an identity block (no coupling, so no error flows
    into padding).

    Returns
    -------
    (H, dead) : float32 ``(size, size)`` tensor and bool ``(size,)`` mask of dead inputs.
    """
    h = torch.as_tensor(np.asarray(hessian) if not isinstance(hessian, torch.Tensor) else hessian)
    if h.shape != (k, k):
        raise HessianError(f"hessian must be ({k}, {k}) for a weight with K={k}, got {tuple(h.shape)}")
    if not (isinstance(damp, (int, float)) and damp >= 0):
        raise HessianError(f"damp must be a number >= 0, not {damp!r}")
    h = h.detach().to(device=device, dtype=torch.float32)
    if not _all_finite(h):
        raise HessianError("hessian holds NaN or Inf")
    out = torch.eye(size, dtype=torch.float32, device=device)
    out[:k, :k] = h
    diag = torch.diagonal(out)
    dead = diag == 0
    diag[dead] = 1.0
    diag += damp * diag[:k].mean()
    return out, dead


def inverse_cholesky_upper(h: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor ``U`` of ``H⁻¹`` (``H⁻¹ = Uᵀ U``), the factor GPTQ sweeps with.

    Computed with one Cholesky factorisation and one triangular inverse instead of GPTQ's three
    factorisations: with ``J`` the reversal permutation and ``J H J = L Lᵀ``,
    ``H⁻¹ = (J L⁻¹ J)ᵀ (J L⁻¹ J)`` and ``J L⁻¹ J`` is upper triangular with a positive diagonal,
    so it *is* the (unique) upper Cholesky factor of ``H⁻¹``.
    """
    low, info = torch.linalg.cholesky_ex(h.flip(0, 1))
    if int(info):
        raise HessianError(f"hessian is not positive definite (Cholesky fails at column "
                           f"{h.shape[0] - int(info)}); increase damp")
    return _lower_inverse(low).flip(0, 1)


def _lower_inverse(low: torch.Tensor) -> torch.Tensor:
    """Inverse of a lower-triangular matrix by 2×2 block recursion,
    ``[[A, 0], [C, D]]⁻¹ = [[A⁻¹, 0], [-D⁻¹ C A⁻¹, D⁻¹]]``: about ``n³/3`` multiply-adds in
    matrix products, against ``n³/2`` for a triangular solve with the identity."""
    size = low.shape[0]
    if size <= _TRIANGULAR_LEAF:
        eye = torch.eye(size, dtype=low.dtype, device=low.device)
        return torch.linalg.solve_triangular(low, eye, upper=False)
    half = size // 2
    out = torch.zeros_like(low)
    top, bottom = _lower_inverse(low[:half, :half]), _lower_inverse(low[half:, half:])
    out[:half, :half], out[half:, half:] = top, bottom
    torch.mm(bottom, low[half:, :half] @ top, out=out[half:, :half])
    out[half:, :half].neg_()
    return out


def lazy_batch_sweep(weights: torch.Tensor, hinv_upper: torch.Tensor | None,
                     quantizer: ColumnQuantizer, *, block_size: int, group: int) -> float:
    """Quantize every column of ``weights`` (transposed, ``(K, N)``, modified in place) in order.

    Parameters
    ----------
    weights : Tensor ``(K, N)`` float32
        Transposed weights; on return row ``k`` holds the dequantized column ``k``.
    hinv_upper : Tensor ``(K, K)`` or None
        :func:`inverse_cholesky_upper` of the damped Hessian; ``None`` means no compensation
        (plain rounding, ``hinv_diag = 1``).
    quantizer : ColumnQuantizer
    block_size : int
        Columns per lazy batch (blocks also break at K-group starts).
    group : int
        K-group size: :meth:`ColumnQuantizer.begin_group` is called at multiples of it.

    Returns
    -------
    float
        GPTQ's proxy loss ``Σ_k ||w_k - q_k||² / U[k,k]²`` (half the increase of the layer's
        calibration error ``tr(ΔW H ΔWᵀ)`` up to damping).
    """
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, not {block_size!r}")
    pool = ThreadPoolExecutor(1, "lazy-batch") if hinv_upper is not None and torch.get_num_threads() > 1 else None
    try:
        return _sweep_blocks(weights, hinv_upper, quantizer, block_size, group, pool)
    finally:
        if pool is not None:
            pool.shutdown()


def _settled(pending: Future | None) -> None:
    """Wait for a background product (raising its error, if any); nothing is pending after it."""
    if pending is not None:
        pending.result()


def _sweep_blocks(weights, hinv_upper, quantizer, block_size, group, pool) -> float:
    """:func:`lazy_batch_sweep`'s loop; ``pool`` (or None) runs the trailing products."""
    size = weights.shape[0]

    def block_end(start):
        return min(start + block_size, (start // group + 1) * group, size)

    loss = torch.zeros((), dtype=torch.float64, device=weights.device)
    pending: Future | None = None       # the trailing product of the previous block, past this one
    start = 0
    while start < size:
        stop = block_end(start)
        if start % group == 0:
            if start + group > stop:                # the group reaches rows a pending product writes
                pending = _settled(pending)
            quantizer.begin_group(start, weights[start:start + group])
        block = weights[start:stop]
        if hinv_upper is None:
            for i in range(stop - start):
                q = quantizer.quantize_column(start + i, block[i], 1.0)
                loss += (block[i] - q).double().square().sum()
                block[i] = q
        else:
            hinv = hinv_upper[start:stop, start:stop]
            errors = torch.empty_like(block)
            for i, d in enumerate(torch.diagonal(hinv).tolist()):
                q = quantizer.quantize_column(start + i, block[i], d)
                torch.div(block[i] - q, d, out=errors[i])
                block[i] = q
                if start + i + 1 < stop:
                    block[i + 1:].addmm_(hinv[i, i + 1:, None], errors[i, None], alpha=-1.0)
            loss += errors.double().square().sum()
            if stop < size:
                ahead = block_end(stop) if pool is not None else size
                pending = _settled(pending)
                weights[stop:ahead].addmm_(hinv_upper[start:stop, stop:ahead].T, errors, alpha=-1.0)
                if ahead < size:
                    pending = pool.submit(weights[ahead:].addmm_, hinv_upper[start:stop, ahead:].T, errors,
                                          alpha=-1.0)
        start = stop
    return float(loss) / 2
