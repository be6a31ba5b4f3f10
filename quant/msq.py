"""The MicroScopiQ quantizer (SPEC §4): MX-INT inliers, MX-FP outliers hosted by pruned partners,
GPTQ-style error compensation.

One pass over the input columns ``k`` (:func:`~microscopiq.quant.hessian.lazy_batch_sweep`):

* **Group start** (``k % G == 0``), per row ``n``: the group's *inliers* are the weights with
  ``|w| <= outlier_sigma · σ``, ``σ`` the row group's standard deviation by sigma clipping
  (recomputed over the previous round's inliers until the inlier set is stable, at most 10
  rounds, so a few large outliers do not inflate it); a group with no nonzero inlier takes all its weights. ``E[n,g]`` is the power of two that makes the b-bit
  signed code cover them: ``E_c = ceil(log2(max|inlier| / (2^(b-1) - 1)))``; of the
  ``exponent_span`` exponents ``E_c - span + 1, …, E_c`` the one with the smallest squared rounding
  error over the inliers is kept (the smallest on ties), clamped to int8. An all-zero row group gets
  ``E = 0``. A lower exponent clips the group's largest inliers: rounding would clip them, so they
  become outlier candidates (step 2) and are kept by an MX-FP outlier when that pays.
* **Column k**, all rows at once, in micro-blocks of ``U`` rows:

  1. every weight gets its inlier code ``q = clamp(round(w / 2^E), -2^(b-1), 2^(b-1) - 1)``;
  2. *outlier candidates* are the weights with ``|w| > outlier_sigma · σ`` (the group's clipped σ)
     or beyond the inlier range (``w / 2^E`` outside ``[-2^(b-1) - ½, 2^(b-1) - ½]``: rounding
     would clip); per micro-block the ``U/2`` candidates with the largest inlier error are kept;
  3. partners: the other rows (real rows, never padding) ordered by the OBS cost of pruning them
     instead of rounding them, ``(w² - (w - q·2^E)²) / [H⁻¹]_kk`` (the saliency ``w² / [H⁻¹]_kk``
     minus what rounding loses anyway), cheapest first; the i-th candidate is paired with the
     i-th cheapest partner;
  4. each candidate's MX-FP encoding: own exponent ``e`` and fraction ``f`` by round-to-nearest
     E(b-1)M(b) of ``|w| / 2^E`` (saturating at ``e = 2^(b-1) - 1``), for a shared ``X`` taken
     from ``X0 - 1, X0, X0 + 1`` (``X0`` the smallest ``X`` that reaches the largest candidate
     without clipping) to maximise the block's total net OBS gain ``Σ max(0, gain - cost)``, with
     ``gain = ((w - q·2^E)² - (w - ŵ_out)² - λ·R) / [H⁻¹]_kk``, where ``λ·R`` charges the
     outlier's metadata (``R = outlier_bits``, ``λ = (2 ln 2 / 12)·2^(2E)``, the distortion one bit
     buys a uniform quantizer of step ``2^E``); a pair is **accepted** when its gain exceeds its
     partner's cost;
  5. the outlier takes its MX-FP value, the partner becomes 0, everything else its inlier value;
     the sweep compensates every error (rounding and pruning alike) through ``H⁻¹``.

``quantize_mxint`` is the same pass with step 2–5 switched off (every weight an inlier, and the
exponents chosen over all weights of the group).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..config import FormatConfig
from .hessian import as_weight, inverse_cholesky_upper, lazy_batch_sweep, prepare_hessian
from .layer import MsqLayer, Role, padded

__all__ = ["QuantizeError", "MsqKnobs", "DEFAULT_KNOBS", "quantize_msq", "quantize_mxint_sweep"]


#: Most rounds of sigma clipping that estimate a row group's inlier spread (it stops earlier once
#: the inlier set no longer changes).
_CLIP_ROUNDS = 10


class QuantizeError(ValueError):
    """A quantizer parameter is out of range."""


@dataclass(frozen=True)
class MsqKnobs:
    """The quantizer's choices of which weights are outliers and where the inlier exponent sits.

    Attributes
    ----------
    outlier_sigma : float
        Outlier threshold in row-group standard deviations (sigma-clipped).
    outlier_bits : float
        Rate charged per accepted outlier (about the metadata bits it costs), traded against
        distortion at the high-resolution slope ``λ = (2 ln 2 / 12) · 2^(2E)`` per bit; 0 accepts
        every outlier that lowers the error.
    exponent_span : int
        How many exponents ``E_c - span + 1 … E_c`` each row group tries (by inlier rounding error).
    """

    outlier_sigma: float
    outlier_bits: float
    exponent_span: int


#: Defaults per bit width. b = 2 lets the exponent drop up to two steps below the one that covers every
#: inlier (the clipped weights become outlier candidates): the search in docs/quantization.md
#: ("MicroScopiQ at b = 2"; bench/bench_msq_w2.py).
DEFAULT_KNOBS = {2: MsqKnobs(outlier_sigma=3.0, outlier_bits=12.0, exponent_span=3),
                 3: MsqKnobs(outlier_sigma=3.0, outlier_bits=12.0, exponent_span=2),
                 4: MsqKnobs(outlier_sigma=3.0, outlier_bits=12.0, exponent_span=2)}


def _floor_log2(values: np.ndarray) -> np.ndarray:
    """``floor(log2(v))`` of float32 ``v >= 0`` exactly (via the binary exponent); -1000 for zero."""
    biased = values.view(np.int32) >> 23
    if np.minimum.reduce(biased, axis=None) > 0:      # all normal: the biased exponent field is the answer
        return biased - 127
    _, exponent = np.frexp(values)
    return np.where(values > 0, exponent - 1, -1000)


def _ceil_log2(values: torch.Tensor) -> torch.Tensor:
    """``ceil(log2(v))`` exactly; -1000 for zero."""
    mantissa, exponent = torch.frexp(values)
    exponent = exponent.to(torch.int32)
    return torch.where(values > 0, torch.where(mantissa == 0.5, exponent - 1, exponent), -1000)


def _pow2(exponent: torch.Tensor) -> torch.Tensor:
    """``2.0 ** exponent`` (float32, exact) for an integer tensor."""
    return torch.ldexp(torch.ones(exponent.shape, dtype=torch.float32, device=exponent.device), exponent)


class _MsqColumns:
    """The per-column MicroScopiQ step (a :class:`~microscopiq.quant.hessian.ColumnQuantizer`).

    Keeps the exponents of every group and, per column, the accepted pairs; the inlier codes are
    read back from the swept (dequantized) weights at the end (:meth:`layer`).

    Group statistics run in torch on the sweep's device; the column step runs in NumPy on the host
    (a column is a few thousand floats and the outlier search touches only the micro-blocks with
    candidates, so its cost is the number of array operations, which NumPy dispatches several
    times faster than torch). Both are float32 and give the same bits.
    """

    def __init__(self, fmt: FormatConfig, n: int, np_: int, kp: int, *, outliers: bool, knobs: MsqKnobs,
                 device):
        self.fmt, self.outliers, self.sigma = fmt, outliers, knobs.outlier_sigma
        self.span = knobs.exponent_span
        # Rate term of an outlier in units of 2^(2E): lambda = (2 ln 2 / 12) · Δ² per bit, Δ = 2^E.
        self.rate = np.float32(knobs.outlier_bits * 2 * math.log(2) / 12)
        self.qmin, self.qmax = np.float32(fmt.qmin), np.float32(fmt.qmax)
        self.emax = (1 << fmt.ebits) - 1
        self.xmax = (1 << fmt.xbits) - 1
        self.blocks = np_ // fmt.ublock
        self.half = fmt.max_outliers
        self.exps = torch.zeros((kp // fmt.group, np_), dtype=torch.int32, device=device)
        #: Per column with pairs: (column, hi rows, lo rows, hi codes, lo codes, X), one entry a pair.
        self.pairs: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        # Padding rows never host a partner (padding stays inlier zero).
        self.no_partner = np.arange(np_) >= n if n < np_ else None
        self.x_steps = np.array([0, -1, 1], dtype=np.int32)[:, None, None]
        # Row offsets inside a micro-block, and the flat start of every (micro-block, slot) row of
        # the (B', U) and (B', U/2) arrays of a column's candidate blocks.
        self.offsets = np.arange(fmt.ublock)
        self.block_start = np.arange(self.blocks)[:, None] * fmt.ublock
        self.half_start = np.arange(self.blocks)[:, None] * self.half
        self.scale = self.scale_sq = self.inv_scale = self.upper = self.lower = None

    # -- group start -----------------------------------------------------------------------------
    def begin_group(self, start: int, weights: torch.Tensor) -> None:
        mag, work = weights.abs(), torch.empty_like(weights)
        inlier = torch.ones_like(mag, dtype=torch.bool)
        # Masked sums are products with the 0/1 mask (a masked-out term is ±0) in a reused buffer.
        if self.outliers:
            kept = torch.empty_like(inlier)
            for _ in range(_CLIP_ROUNDS):
                count = inlier.sum(dim=0).clamp_(min=1)
                mean = torch.mul(weights, inlier, out=work).sum(dim=0).div_(count)
                spread = torch.sub(weights, mean, out=work).mul_(inlier).square_().sum(dim=0).div_(count).sqrt_()
                threshold = spread.mul_(self.sigma)
                kept, inlier = inlier, torch.le(mag, threshold, out=kept)
                if torch.equal(kept, inlier):
                    break
        peak = torch.where(inlier, mag, 0).amax(dim=0)
        # A group whose every weight is an "outlier" (e.g. one lone nonzero) is scaled as a whole.
        peak = torch.where(peak > 0, peak, mag.amax(dim=0))
        top = _ceil_log2(peak / float(self.qmax))
        best_err = best = None
        for exp in [top - j for j in range(self.span - 1, -1, -1)]:     # lowest first: it wins ties
            exp = exp.clamp(-128, 127)
            step = _pow2(exp)
            torch.div(weights, step, out=work).round_().clamp_(self.fmt.qmin, self.fmt.qmax).mul_(step)
            err = torch.sub(weights, work, out=work).mul_(inlier).square_().sum(dim=0)
            if best is None:
                best_err, best = err, exp
            else:
                better = err < best_err
                best_err, best = torch.where(better, err, best_err), torch.where(better, exp, best)
        best = torch.where(peak > 0, best, 0)
        self.exps[start // self.fmt.group] = best
        scale = _pow2(best)
        self.scale, self.inv_scale = scale.numpy(force=True), _pow2(-best).numpy(force=True)
        self.scale_sq = self.scale * self.scale
        if self.outliers:
            # Candidate iff |w| > threshold or w/2^E outside [qmin - 1/2, qmax + 1/2] (exact: 2^E).
            self.upper = torch.minimum(threshold, (self.fmt.qmax + 0.5) * scale).numpy(force=True)
            self.lower = torch.maximum(-threshold, (self.fmt.qmin - 0.5) * scale).numpy(force=True)

    # -- one column ------------------------------------------------------------------------------
    def quantize_column(self, index: int, column: torch.Tensor, hinv_diag: float) -> torch.Tensor:
        weights = column.numpy(force=True)
        scaled = weights * self.inv_scale
        q = np.rint(scaled)
        np.minimum(np.maximum(q, self.qmin, out=q), self.qmax, out=q)
        values = q * self.scale
        if self.outliers:
            cand = (weights > self.upper) | (weights < self.lower)
            blocks = np.logical_or.reduce(cand.reshape(self.blocks, -1), axis=1).nonzero()[0]
            if blocks.size:
                self._outliers(index, blocks, scaled, cand, q, values, hinv_diag)
        values = torch.from_numpy(values)
        return values if column.device.type == "cpu" else values.to(column.device)

    def _outliers(self, index, blocks, scaled, cand, q, values, hinv_diag) -> None:
        """Steps 2-5 of the module docstring on the micro-blocks ``blocks`` that have candidates;
        records the accepted pairs and writes their values into ``values``.

        Per-block arrays are ``(B', U)`` (``B'`` candidate blocks); ``top``/``partner`` hold flat
        indices into them, one per candidate slot ``(B', U/2)``."""
        b, half, count = self.fmt.wbits, self.half, blocks.size
        rows = blocks[:, None] * self.fmt.ublock + self.offsets            # (B', U) row of each slot
        sub, cand = scaled[rows], cand[rows]
        err2 = sub - q[rows]
        err2 *= err2                                                       # units of 2^E
        mag = np.abs(sub)
        # 2. the U/2 candidates with the largest inlier error (stable: the first on ties).
        top = np.where(cand, -err2, np.float32(1.0)).argsort(axis=1, kind="stable")[:, :half]
        top += self.block_start[:count]
        top_cand, top_mag = cand.take(top), mag.take(top)
        # 3. partners: OBS cost of pruning each non-candidate row; the i-th candidate gets the
        #    i-th cheapest partner.
        scale2 = self.scale_sq[rows] / np.float32(hinv_diag ** 2)
        cost = (mag * mag - err2) * scale2
        cost.put(top[top_cand], np.inf)
        if self.no_partner is not None:
            cost[self.no_partner[rows]] = np.inf
        partner = cost.argsort(axis=1, kind="stable")[:, :half]
        partner += self.block_start[:count]
        # 4. X from X0, X0 - 1, X0 + 1: the one with the largest total net OBS gain
        #    sum(max(0, gain - cost)) over the block's pairs (the first on ties, X0 first); e and f
        #    by rounding; a pair is accepted when its gain exceeds its partner's cost.
        t_star = _floor_log2(top_mag)
        x0 = np.maximum.reduce(np.where(top_cand, t_star, -1000), axis=1, keepdims=True) - self.emax
        shared = np.minimum(np.maximum(x0 + self.x_steps, 0), self.xmax)  # (3, B', 1)
        t, mant, err_out2 = self._encode(top_mag, t_star, shared)         # (3, B', U/2)
        net = (err2.take(top) - self.rate - err_out2) * scale2.take(top) - cost.take(partner)
        net = np.maximum(np.where(top_cand, net, np.float32(0.0)), np.float32(0.0))
        # Flat index into the (3, B', U/2) arrays of each slot's chosen X.
        choice = np.add.reduce(net, axis=2).argmax(axis=0)[:, None] * (count * half) + self.half_start[:count]
        choice = choice + self.offsets[:half]
        accept = (net.take(choice) > 0).ravel().nonzero()[0]
        if not accept.size:
            return
        # 5. the accepted pairs' values and records.
        choice, top = choice.take(accept), top.take(accept)
        t, mant, shared = t.take(choice), mant.take(choice), shared.take(choice // half)
        hi, lo = rows.take(top), rows.take(partner.take(accept))
        negative = sub.take(top) < 0
        magnitude = np.ldexp(mant, t - b) * self.scale[hi]
        values[hi] = np.where(negative, -magnitude, magnitude)
        values[lo] = 0.0
        # A mantissa of 2^(b+1) (rounding carried into the next binade) is exponent t + 1, fraction 0.
        carry = mant == (2 << b)
        expo, frac = t + carry, np.where(carry, 0.0, mant - (1 << b))
        self.pairs.append((index, hi, lo, (negative.astype(np.int32) << (b - 1)) | (expo - shared), frac, shared))

    def _encode(self, mag: np.ndarray, t_star: np.ndarray, shared: np.ndarray):
        """Round-to-nearest E(b-1)M(b) of ``mag`` (units of 2^E; ``t_star = floor(log2 mag)``)
        with shared exponent ``X = shared``: ``(t, m, squared error)``, the value being ``m · 2^(t-b)``
        with ``t = e + X`` in ``[X, X + 2^(b-1) - 1]`` and the mantissa ``m = 2^b + f`` in
        ``[2^b, 2^(b+1)]``. Magnitudes below ``2^X`` flush up to ``2^X``, those beyond the top binade
        saturate at ``m = 2^(b+1) - 1``; ``m = 2^(b+1)`` (below the top binade) is ``e + 1, f = 0``."""
        b = self.fmt.wbits
        top = shared + self.emax
        t = np.minimum(np.maximum(t_star, shared), top)
        mant = np.rint(np.ldexp(mag, b - t))
        np.minimum(np.maximum(mant, 1 << b, out=mant), np.float32(2 << b) - (t == top), out=mant)
        err = mag - np.ldexp(mant, t - b)
        return t, mant, err * err

    def layer(self, weights: torch.Tensor, n: int, k: int) -> MsqLayer:
        """The layer from the swept weights ``(Kp, Np)`` (inlier values) and the recorded pairs."""
        fmt = self.fmt
        u, groups = fmt.ublock, self.exps.shape[0]
        inv = _pow2(-self.exps)[:, None, :]
        q = (weights.view(groups, fmt.group, -1) * inv).round_().to(torch.int32)
        codes = (q.reshape(weights.shape).T & ((1 << fmt.wbits) - 1)).to(torch.uint8).cpu().numpy()
        np_, kp = codes.shape
        roles = np.zeros((np_, kp), dtype=np.uint8)
        mate = np.full((np_, kp), -1, dtype=np.int8)
        xexp = np.zeros((np_ // u, kp), dtype=np.uint8)
        if self.pairs:
            cols = np.concatenate([np.full(p[1].size, p[0]) for p in self.pairs])
            hi, lo, hi_code, lo_code, shared = (np.concatenate(f) for f in list(zip(*self.pairs))[1:])
            codes[hi, cols], codes[lo, cols] = hi_code, lo_code
            roles[hi, cols], roles[lo, cols] = Role.OUT_HI, Role.OUT_LO
            mate[hi, cols], mate[lo, cols] = lo % u, hi % u
            xexp[hi // u, cols] = shared
        return MsqLayer(fmt, n, k, codes, roles, mate, self.exps.T.cpu().numpy().astype(np.int16), xexp)


def _check_format(fmt) -> None:
    if not isinstance(fmt, FormatConfig):
        raise TypeError(f"fmt must be a FormatConfig, not {fmt!r}")
    if not fmt.msq_capable:
        raise QuantizeError(f"wbits={fmt.wbits} has no MicroScopiQ format (allowed: 2, 3, 4)")


def _knobs(wbits: int, outlier_sigma, outlier_bits, exponent_span) -> MsqKnobs:
    """The bit width's :data:`DEFAULT_KNOBS` with every given (not None) knob replacing its default."""
    default = DEFAULT_KNOBS[wbits]
    outlier_sigma = default.outlier_sigma if outlier_sigma is None else outlier_sigma
    outlier_bits = default.outlier_bits if outlier_bits is None else outlier_bits
    exponent_span = default.exponent_span if exponent_span is None else exponent_span
    if isinstance(outlier_sigma, bool) or not (isinstance(outlier_sigma, (int, float)) and outlier_sigma > 0):
        raise QuantizeError(f"outlier_sigma must be a number > 0, not {outlier_sigma!r}")
    if isinstance(outlier_bits, bool) or not (isinstance(outlier_bits, (int, float)) and outlier_bits >= 0):
        raise QuantizeError(f"outlier_bits must be a number >= 0, not {outlier_bits!r}")
    if isinstance(exponent_span, bool) or not (isinstance(exponent_span, int) and 1 <= exponent_span <= 8):
        raise QuantizeError(f"exponent_span must be an integer from 1 to 8, not {exponent_span!r}")
    return MsqKnobs(float(outlier_sigma), float(outlier_bits), exponent_span)


def _sweep(weight, hessian, fmt: FormatConfig, *, outliers: bool, damp: float, knobs: MsqKnobs,
           block_size: int, device) -> MsqLayer:
    n, k = np.shape(weight)[:2] if np.ndim(weight) == 2 else (0, 0)
    np_, kp = padded(max(n, 1), fmt.ublock), padded(max(k, 1), fmt.group)
    device = torch.device(device) if device is not None else torch.device("cpu")
    work = as_weight(weight, np_, kp, device)
    columns = _MsqColumns(fmt, n, np_, kp, outliers=outliers, knobs=knobs, device=device)
    if hessian is None:
        upper = None
    else:
        h, dead = prepare_hessian(hessian, k, kp, damp=damp, device=device)
        work[dead] = 0.0
        upper = inverse_cholesky_upper(h)
    # The column step is IEEE float32 NumPy, bit for bit what torch computes: extreme magnitudes
    # overflow to Inf/NaN there exactly as in torch, silently as in torch.
    with torch.no_grad(), np.errstate(over="ignore", invalid="ignore"):
        lazy_batch_sweep(work, upper, columns, block_size=block_size, group=fmt.group)
    return columns.layer(work, n, k).validate()


def quantize_msq(weight, hessian=None, fmt: FormatConfig = FormatConfig(), *, damp: float = 0.01,
                 outlier_sigma: float | None = None, outlier_bits: float | None = None,
                 exponent_span: int | None = None, block_size: int = 128, device=None) -> MsqLayer:
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
    outlier_sigma, outlier_bits, exponent_span : optional
        The :class:`MsqKnobs`; ``None`` takes the bit width's :data:`DEFAULT_KNOBS` (b = 2: 3.0, 12, 3;
        b = 3, 4: 3.0, 12, 2).
    block_size : int
        Columns per lazy batch update.
    device : str or torch.device, optional
        Where the sweep runs (``"cuda"`` when present); the result is NumPy either way.

    Returns
    -------
    MsqLayer
        Passes :meth:`~MsqLayer.validate`; padding slots are inlier code 0.
    """
    _check_format(fmt)
    knobs = _knobs(fmt.wbits, outlier_sigma, outlier_bits, exponent_span)
    return _sweep(weight, hessian, fmt, outliers=True, damp=damp, knobs=knobs, block_size=block_size,
                  device=device)


def quantize_mxint_sweep(weight, hessian, fmt: FormatConfig, *, damp: float, block_size: int,
                         device) -> MsqLayer:
    """The MicroScopiQ pass without outliers (every slot an inlier): the MX-INT baseline."""
    _check_format(fmt)
    return _sweep(weight, hessian, fmt, outliers=False, damp=damp, knobs=MsqKnobs(3.0, 0.0, 2),
                  block_size=block_size, device=device)
