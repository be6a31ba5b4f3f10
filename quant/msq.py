"""The MicroScopiQ quantizer (SPEC §4): MX-INT inliers, MX-FP outliers hosted by pruned partners,
GPTQ-style error compensation.

One pass over the input columns ``k`` (:func:`~microscopiq.quant.hessian.lazy_batch_sweep`):

* **Group start** (``k % G == 0``), per row ``n``: the group's *inliers* are the weights with
  ``|w| <= outlier_sigma · std(W[n, group])``. ``E[n,g]`` is the power of two that makes the b-bit
  signed code cover them: ``E_c = ceil(log2(max|inlier| / (2^(b-1) - 1)))``; of ``E_c - 1`` and
  ``E_c`` the one with the smaller squared rounding error over the inliers is kept (the smaller on
  ties), clamped to int8. An all-zero row group gets ``E = 0``.
* **Column k**, all rows at once, in micro-blocks of ``U`` rows:

  1. every weight gets its inlier code ``q = clamp(round(w / 2^E), -2^(b-1), 2^(b-1) - 1)``;
  2. *outlier candidates* are the weights with ``|w| > outlier_sigma · std`` (the group's row std)
     or beyond the inlier range (``w / 2^E`` outside ``[-2^(b-1) - ½, 2^(b-1) - ½]``: rounding
     would clip); per micro-block the ``U/2`` candidates with the largest inlier error are kept;
  3. their shared exponent ``X`` is chosen from ``X0 - 1, X0, X0 + 1`` (``X0`` the smallest ``X``
     that reaches the largest candidate without clipping) to minimise the candidates' summed
     squared MX-FP error; each outlier's own exponent ``e`` and fraction ``f`` are then the
     round-to-nearest E(b-1)M(b) encoding of ``|w| / 2^E`` (saturating at ``e = 2^(b-1) - 1``);
  4. partners: the non-candidate rows (real rows, never padding) ordered by the OBS cost of
     pruning them instead of rounding them, ``(w² - (w - q·2^E)²) / [H⁻¹]_kk`` (the saliency
     ``w² / [H⁻¹]_kk`` minus what rounding loses anyway), cheapest first; the i-th candidate is
     paired with the i-th cheapest partner and **accepted** when its gain
     ``((w - q·2^E)² - (w - ŵ_out)²) / [H⁻¹]_kk`` exceeds that cost;
  5. the outlier takes its MX-FP value, the partner becomes 0, everything else its inlier value;
     the sweep compensates every error (rounding and pruning alike) through ``H⁻¹``.

``quantize_mxint`` is the same pass with step 2–5 switched off (every weight an inlier, and the
exponents chosen over all weights of the group).
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import FormatConfig
from .hessian import as_weight, inverse_cholesky_upper, lazy_batch_sweep, prepare_hessian
from .layer import MsqLayer, Role, padded

__all__ = ["QuantizeError", "quantize_msq", "quantize_mxint_sweep"]


class QuantizeError(ValueError):
    """A quantizer parameter is out of range."""


def _floor_log2(values: torch.Tensor) -> torch.Tensor:
    """``floor(log2(v))`` exactly (via the binary exponent); -1000 for zero."""
    _, exponent = torch.frexp(values)
    return torch.where(values > 0, exponent.to(torch.int32) - 1, -1000)


def _ceil_log2(values: torch.Tensor) -> torch.Tensor:
    """``ceil(log2(v))`` exactly; -1000 for zero."""
    mantissa, exponent = torch.frexp(values)
    exponent = exponent.to(torch.int32)
    return torch.where(values > 0, torch.where(mantissa == 0.5, exponent - 1, exponent), -1000)


class _MsqColumns:
    """The per-column MicroScopiQ step (a :class:`~microscopiq.quant.hessian.ColumnQuantizer`).

    Records codes, roles, mates and ``X`` transposed (``(Kp, Np)`` / ``(Kp, Np/U)``).
    """

    def __init__(self, fmt: FormatConfig, n: int, np_: int, kp: int, *, outliers: bool,
                 outlier_sigma: float, device):
        self.fmt, self.outliers, self.sigma = fmt, outliers, outlier_sigma
        b = fmt.wbits
        self.qmin, self.qmax = float(fmt.qmin), float(fmt.qmax)
        self.emax = (1 << fmt.ebits) - 1
        self.xmax = (1 << fmt.xbits) - 1
        self.blocks = np_ // fmt.ublock
        self.half = fmt.max_outliers
        self.codes = torch.zeros((kp, np_), dtype=torch.uint8, device=device)
        self.roles = torch.zeros((kp, np_), dtype=torch.uint8, device=device)
        self.mate = torch.full((kp, np_), -1, dtype=torch.int8, device=device)
        self.xexp = torch.zeros((kp, self.blocks), dtype=torch.uint8, device=device)
        self.exps = torch.zeros((kp // fmt.group, np_), dtype=torch.int16, device=device)
        self.mask = (1 << b) - 1
        # Padding rows never host a partner (padding stays inlier zero).
        self.no_partner = (torch.arange(np_, device=device) >= n).reshape(self.blocks, fmt.ublock)
        self.block_base = (torch.arange(self.blocks, device=device) * fmt.ublock)[:, None]
        self.scale = self.threshold = None

    # -- group start -----------------------------------------------------------------------------
    def begin_group(self, start: int, weights: torch.Tensor) -> None:
        mag = weights.abs()
        if self.outliers:
            self.threshold = self.sigma * weights.std(dim=0, unbiased=False)
            inlier = mag <= self.threshold
        else:
            self.threshold = None
            inlier = torch.ones_like(mag, dtype=torch.bool)
        peak = torch.where(inlier, mag, 0).amax(dim=0)
        top = _ceil_log2(peak / self.qmax)
        best_err, best = None, None
        for exp in (top - 1, top):
            exp = exp.clamp(-128, 127)
            step = torch.ldexp(torch.ones_like(peak), exp)
            err = torch.where(inlier, weights - (weights / step).round().clamp(self.qmin, self.qmax) * step,
                              0).square().sum(dim=0)
            if best is None:
                best_err, best = err, exp
            else:
                better = err < best_err
                best_err, best = torch.where(better, err, best_err), torch.where(better, exp, best)
        best = torch.where(peak > 0, best, 0)
        self.exps[start // self.fmt.group] = best.to(torch.int16)
        self.scale = torch.ldexp(torch.ones_like(peak), best)

    # -- one column ------------------------------------------------------------------------------
    def quantize_column(self, index: int, column: torch.Tensor, hinv_diag: float) -> torch.Tensor:
        scaled = column / self.scale
        q = scaled.round().clamp(self.qmin, self.qmax)
        codes = q.to(torch.int16) & self.mask
        if not self.outliers:
            self.codes[index] = codes.to(torch.uint8)
            return q * self.scale
        fmt, u, half = self.fmt, self.fmt.ublock, self.half
        b = fmt.wbits
        err_in = (scaled - q).reshape(self.blocks, u)          # inlier error, units of 2^E
        mag = scaled.abs().reshape(self.blocks, u)
        cand = ((column.abs() > self.threshold) | (scaled > self.qmax + 0.5)
                | (scaled < self.qmin - 0.5)).reshape(self.blocks, u)
        # 2. the U/2 candidates with the largest inlier error, per micro-block.
        key = torch.where(cand, err_in.square(), -1.0)
        order = torch.sort(key, dim=1, descending=True, stable=True).indices[:, :half]
        top_cand = torch.gather(cand, 1, order)
        top_mag = torch.gather(mag, 1, order)
        # 3. shared exponent X, then each outlier's e and f.
        t_star = _floor_log2(top_mag)
        x0 = (torch.where(top_cand, t_star, -1000).amax(dim=1) - self.emax).clamp(0, self.xmax)
        best_total = best = None
        for shared in (x0, x0 - 1, x0 + 1):
            shared = shared.clamp(0, self.xmax)[:, None]
            enc = (shared, *self._encode(top_mag, t_star, shared))
            total = torch.where(top_cand, enc[3], 0).sum(dim=1, keepdim=True)
            if best is None:
                best_total, best = total, enc
            else:
                pick = total < best_total
                best_total = torch.where(pick, total, best_total)
                best = tuple(torch.where(pick, new, old) for new, old in zip(enc, best))
        shared, expo, frac, err_out2 = best
        # 4. partners by OBS cost, pairing, acceptance.
        scale2 = self.scale.reshape(self.blocks, u).square()
        err_in2 = err_in.square()
        gain = (torch.gather(err_in2, 1, order) - err_out2) * torch.gather(scale2, 1, order) / hinv_diag ** 2
        cost = (mag.square() - err_in2) * scale2 / hinv_diag ** 2
        taken = torch.zeros_like(cand).scatter_(1, order, top_cand)
        cost = torch.where(taken | self.no_partner, torch.inf, cost)
        cheap = torch.sort(cost, dim=1, stable=True)
        partner, partner_cost = cheap.indices[:, :half], cheap.values[:, :half]
        accept = top_cand & (gain > partner_cost)
        # 5. values and codes.
        values = (q * self.scale).reshape(self.blocks, u)
        sign = torch.gather(scaled.reshape(self.blocks, u), 1, order) < 0
        out_val = torch.ldexp((1 << b) + frac, expo - b) * torch.where(sign, -1.0, 1.0)
        out_val = out_val * torch.gather(self.scale.reshape(self.blocks, u), 1, order)
        hi_code = (sign.to(torch.int16) << (b - 1)) | (expo - shared).to(torch.int16)
        blk, slot = torch.nonzero(accept, as_tuple=True)
        hi_off, lo_off = order[blk, slot], partner[blk, slot]
        values[blk, hi_off] = out_val[blk, slot]
        values[blk, lo_off] = 0.0
        codes = codes.reshape(self.blocks, u)
        codes[blk, hi_off] = hi_code[blk, slot]
        codes[blk, lo_off] = frac[blk, slot].to(torch.int16)
        roles = torch.zeros_like(codes, dtype=torch.uint8)
        roles[blk, hi_off], roles[blk, lo_off] = Role.OUT_HI, Role.OUT_LO
        mate = torch.full_like(roles, -1, dtype=torch.int8)
        mate[blk, hi_off], mate[blk, lo_off] = lo_off.to(torch.int8), hi_off.to(torch.int8)
        self.codes[index] = codes.reshape(-1).to(torch.uint8)
        self.roles[index] = roles.reshape(-1)
        self.mate[index] = mate.reshape(-1)
        self.xexp[index] = torch.where(accept.any(dim=1), shared[:, 0], 0).to(torch.uint8)
        return values.reshape(-1)

    def _encode(self, mag: torch.Tensor, t_star: torch.Tensor, shared: torch.Tensor):
        """Round-to-nearest E(b-1)M(b) of ``mag`` (units of 2^E) with shared exponent ``shared``:
        ``(t = e + X, f, squared error)``."""
        b = self.fmt.wbits
        lo, hi = shared, shared + self.emax
        t = torch.maximum(torch.minimum(t_star, hi), lo)
        frac = (torch.ldexp(mag, b - t) - (1 << b)).round()
        carry = frac >= (1 << b)
        t = torch.where(carry & (t < hi), t + 1, t)
        frac = torch.where(carry, torch.where(t == hi, float((1 << b) - 1), 0.0), frac)
        frac = frac.clamp(0, (1 << b) - 1)
        err = (mag - torch.ldexp((1 << b) + frac, t - b)).square()
        return t, frac, err

    def layer(self, n: int, k: int) -> MsqLayer:
        def host(t):
            return t.T.contiguous().cpu().numpy()
        return MsqLayer(self.fmt, n, k, host(self.codes), host(self.roles), host(self.mate),
                        host(self.exps).astype(np.int16), host(self.xexp))


def _sweep(weight, hessian, fmt: FormatConfig, *, outliers: bool, damp: float, outlier_sigma: float,
           block_size: int, device) -> MsqLayer:
    if not isinstance(fmt, FormatConfig):
        raise TypeError(f"fmt must be a FormatConfig, not {fmt!r}")
    if not fmt.msq_capable:
        raise QuantizeError(f"wbits={fmt.wbits} has no MicroScopiQ format (allowed: 2, 3, 4)")
    if not (isinstance(outlier_sigma, (int, float)) and outlier_sigma > 0):
        raise QuantizeError(f"outlier_sigma must be a number > 0, not {outlier_sigma!r}")
    n, k = np.shape(weight)[:2] if np.ndim(weight) == 2 else (0, 0)
    np_, kp = padded(max(n, 1), fmt.ublock), padded(max(k, 1), fmt.group)
    device = torch.device(device) if device is not None else torch.device("cpu")
    work = as_weight(weight, np_, kp, device)
    columns = _MsqColumns(fmt, n, np_, kp, outliers=outliers, outlier_sigma=outlier_sigma, device=device)
    if hessian is None:
        upper = None
    else:
        h, dead = prepare_hessian(hessian, k, kp, damp=damp, device=device)
        work[dead] = 0.0
        upper = inverse_cholesky_upper(h)
    with torch.no_grad():
        lazy_batch_sweep(work, upper, columns, block_size=block_size, group=fmt.group)
    return columns.layer(n, k).validate()


def quantize_msq(weight, hessian=None, fmt: FormatConfig = FormatConfig(), *, damp: float = 0.01,
                 outlier_sigma: float = 3.0, block_size: int = 128, device=None) -> MsqLayer:
    """Quantize a linear layer's weight into the MicroScopiQ format (see the module docstring).

    Parameters
    ----------
    weight : Tensor or ndarray, (N, K) float
        ``out_features × in_features``.
    hessian : Tensor or ndarray, (K, K), optional
        Calibration Hessian ``2 XᵀX``; ``None`` means identity (plain rounding, no compensation).
    fmt : FormatConfig
        ``wbits`` 2, 3 or 4; ``ublock``, ``group``, ``xbits``.
    damp : float
        Diagonal damping as a fraction of ``mean(diag H)`` (GPTQ's ``percdamp``).
    outlier_sigma : float
        Outlier threshold in row-group standard deviations.
    block_size : int
        Columns per lazy batch update.
    device : str or torch.device, optional
        Where the sweep runs (``"cuda"`` when present); the result is NumPy either way.

    Returns
    -------
    MsqLayer
        Passes :meth:`~MsqLayer.validate`; padding slots are inlier code 0.
    """
    return _sweep(weight, hessian, fmt, outliers=True, damp=damp, outlier_sigma=outlier_sigma,
                  block_size=block_size, device=device)


def quantize_mxint_sweep(weight, hessian, fmt: FormatConfig, *, damp: float, block_size: int,
                         device) -> MsqLayer:
    """The MicroScopiQ pass without outliers (every slot an inlier): the MX-INT baseline."""
    return _sweep(weight, hessian, fmt, outliers=False, damp=damp, outlier_sigma=3.0,
                  block_size=block_size, device=device)
