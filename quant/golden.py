"""The integer golden model of SPEC §1 and §3: the single source of arithmetic truth.

Everything here is integer arithmetic (NumPy int64 where the widths of :mod:`microscopiq.config`
prove it cannot overflow, Python ints where shifts are unbounded). Testbenches import these
functions; they never re-derive the arithmetic.

Block-level contracts the hardware matches:

* :func:`pe_product` — what one INT PE outputs for one activation and one slot;
* :func:`recon_merge` — what ReCoN makes of an outlier's two PE products;
* :func:`slot_values` / :func:`group_partial_sums` — ``v[n,k]`` and ``P[m,n,g]``;
* :func:`mx_accumulate` — the saturating shift-accumulate over K-groups with the sticky flag;
* :func:`uniform_raw` — ``P`` and ``S`` of uniform mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import FormatConfig
from .layer import MsqLayer, Role, UniformLayer

__all__ = [
    "to_signed", "split_hi", "pe_product", "recon_merge", "slot_values", "group_partial_sums",
    "mx_accumulate", "MxResult", "msq_matmul", "uniform_raw", "quantize_activations",
    "ActivationError",
]


class ActivationError(ValueError):
    """Activations that cannot be quantized (NaN, Inf, wrong rank, empty)."""


def _exact(arrays, magnitude_bound: int):
    """``arrays`` as int64 when every result stays below ``magnitude_bound < 2^62``, else as Python
    ints (object arrays): the formats allow outlier shifts (xbits = 6) that no fixed width holds."""
    dtype = np.int64 if magnitude_bound < (1 << 62) else object
    return [np.asarray(a).astype(dtype) for a in arrays]


def _max_abs(array) -> int:
    array = np.asarray(array)
    return int(np.abs(array).max()) if array.size else 0


def to_signed(code, bits: int):
    """Two's-complement value of an unsigned ``bits``-wide code (scalar or array)."""
    code = np.asarray(code, dtype=np.int64)
    return np.where(code >= (1 << (bits - 1)), code - (1 << bits), code)


def split_hi(code, wbits: int):
    """An OUT_HI code ``[s | e]`` as ``(s, e)``: sign bit (MSB) and the ``b-1``-bit exponent."""
    code = np.asarray(code, dtype=np.int64)
    return code >> (wbits - 1), code & ((1 << (wbits - 1)) - 1)


def pe_product(x, code, role, wbits: int):
    """One INT PE's output for activation ``x`` (signed) and a slot (SPEC §5).

    * INLIER: ``x · q`` with ``q`` the signed code (ReCoN later scales it by ``2^b``);
    * OUT_HI: ``(-1)^s · x`` — the sign and the implicit one;
    * OUT_LO: ``x · f`` with ``f`` the unsigned code — the fraction;
    * role value 3 (unused by the format): 0.
    """
    x = np.asarray(x, dtype=np.int64)
    code = np.asarray(code, dtype=np.int64)
    role = np.asarray(role)
    sign, _ = split_hi(code, wbits)
    return np.select([role == Role.INLIER, role == Role.OUT_HI, role == Role.OUT_LO],
                     [x * to_signed(code, wbits), np.where(sign == 1, -x, x), x * code], 0)


def recon_merge(hi_product, lo_product, sign, shift: int, wbits: int):
    """An outlier's contribution from its two PE products (SPEC §5 ReCoN).

    ``hi_product`` already carries the sign (see :func:`pe_product`); the fraction product gets it
    from the configuration: ``((hi << b) + (-1)^s · lo) << (e + X)``.
    """
    bound = ((_max_abs(hi_product) << wbits) + _max_abs(lo_product)) << _max_abs(shift)
    hi, lo, shift = _exact([hi_product, lo_product, shift], bound)
    signed_lo = np.where(np.asarray(sign) == 1, -lo, lo)
    return ((hi << wbits) + signed_lo) << shift


def slot_values(layer: MsqLayer) -> np.ndarray:
    """``v[n,k]`` of SPEC §3 in units of ``2^(E[n,g]-b)``, shape (Np, Kp): int64, or Python ints
    when the format's largest outlier does not fit in 62 bits (xbits = 6)."""
    fmt = layer.fmt
    b = fmt.wbits
    (codes,) = _exact([layer.codes], fmt.max_slot_magnitude)
    sign, e = split_hi(codes, b)
    rows = np.arange(layer.np_)[:, None]
    mate_row = rows - rows % fmt.ublock + np.maximum(layer.mate, 0)
    cols = np.arange(layer.kp)[None, :]
    frac = codes[mate_row, cols]
    shared_x = np.repeat(layer.xexp.astype(codes.dtype), fmt.ublock, axis=0)
    outlier = np.where(sign == 1, -1, 1) * (((1 << b) + frac) << (e + shared_x))
    inlier = np.where(codes >= (1 << (b - 1)), codes - (1 << b), codes) << b
    return np.select([layer.roles == Role.INLIER, layer.roles == Role.OUT_HI],
                     [inlier, outlier], 0).astype(codes.dtype)


def group_partial_sums(x: np.ndarray, weights: np.ndarray, group: int) -> np.ndarray:
    """``P[m,n,g] = Σ_{k in g} x[m,k] · w[n,k]``, shape (M, N, K // group).

    ``x`` is (M, Kp) and ``weights`` (N, Kp); ``Kp`` a multiple of ``group``. int64 when the bound
    ``max|x| · max|w| · group`` proves no sum can overflow, Python ints otherwise.
    """
    x, weights = _exact([x, weights], _max_abs(x) * _max_abs(weights) * group)
    m, kp = x.shape
    groups = kp // group
    xg = x.reshape(m, groups, group)
    wg = weights.reshape(weights.shape[0], groups, group)
    # Exact in either dtype; reduce per group so no sum ever mixes groups.
    return np.einsum("mgk,ngk->mng", xg, wg, dtype=x.dtype)


@dataclass(frozen=True)
class MxResult:
    """Output of :func:`mx_accumulate`: ``y_int`` (M, N) as Python-int-safe int64, the sticky
    ``overflow`` flags (M, N) and ``e_min`` (N,)."""

    y_int: np.ndarray
    overflow: np.ndarray
    e_min: np.ndarray


def mx_accumulate(partial_sums: np.ndarray, exps: np.ndarray, acc_bits: int) -> MxResult:
    """SPEC §3 MX accumulation, saturating, groups taken in ascending order.

    ``acc ← clamp(acc + P[m,n,g] · 2^(E[n,g] - E_min[n]))`` for g = 0, 1, …, with the clamp to the
    signed ``acc_bits`` range; ``overflow[m,n]`` is set for good once any step clamps.
    """
    m, n, groups = partial_sums.shape
    exps = np.asarray(exps, dtype=np.int64)
    e_min = exps.min(axis=1)
    shifts = exps - e_min[:, None]
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    acc = np.zeros((m, n), dtype=object)
    overflow = np.zeros((m, n), dtype=bool)
    ps = partial_sums.astype(object)
    for g in range(groups):
        # Python ints: a shift of up to 255 would overflow any fixed-width NumPy type.
        step = acc + ps[:, :, g] * np.array([1 << int(s) for s in shifts[:, g]], dtype=object)[None, :]
        clamped = np.minimum(np.maximum(step, lo), hi)
        overflow |= (clamped != step).astype(bool)
        acc = clamped
    return MxResult(y_int=acc.astype(np.int64), overflow=overflow, e_min=e_min)


def msq_matmul(x: np.ndarray, layer: MsqLayer, acc_bits: int) -> MxResult:
    """``Y_int`` of SPEC §3 for activations ``x`` (M, k or Kp) through a MicroScopiQ layer.

    Columns of ``x`` beyond ``k`` are taken as zero padding. The result covers the padded ``Np``
    output rows (padding rows are zero).
    """
    x = _pad_activations(x, layer.kp)
    partial = group_partial_sums(x, slot_values(layer), layer.fmt.group)
    return mx_accumulate(partial, layer.exps, acc_bits)


def uniform_raw(x: np.ndarray, layer: UniformLayer) -> tuple[np.ndarray, np.ndarray]:
    """Uniform mode: ``P[m,n,g] = Σ x·q`` and ``S[m,g] = Σ x`` (int64), SPEC §3."""
    x = _pad_activations(x, layer.q.shape[1])
    group = layer.fmt.group
    partial = group_partial_sums(x, layer.q, group)
    sums = x.reshape(x.shape[0], -1, group).sum(axis=2, dtype=np.int64)
    return partial, sums


def _pad_activations(x: np.ndarray, kp: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    if x.ndim != 2 or x.shape[1] > kp:
        raise ActivationError(f"activations must be (M, K<= {kp}), got shape {x.shape}")
    return np.pad(x, ((0, 0), (0, kp - x.shape[1])))


def quantize_activations(values: np.ndarray, fmt: FormatConfig) -> tuple[np.ndarray, np.ndarray]:
    """SPEC §1 per-token symmetric INT-a: ``(x int64 (M,K), s_x float64 (M,))``.

    ``s_x[m] = max|X[m,:]| / (2^(a-1)-1)`` (1 for an all-zero row); ``x = clamp(round(X/s_x))``
    with round-half-to-even (NumPy's ``rint``).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ActivationError(f"activations must be a non-empty (M, K) matrix, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ActivationError(f"activations contain NaN or Inf at {tuple(np.argwhere(~np.isfinite(values))[0])}")
    amax = fmt.amax
    peak = np.abs(values).max(axis=1)
    scale = np.where(peak > 0, peak / amax, 1.0)
    x = np.clip(np.rint(values / scale[:, None]), -amax, amax).astype(np.int64)
    return x, scale
