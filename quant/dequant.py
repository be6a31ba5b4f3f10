"""Decode a quantized layer back to real weights (float64), as the hardware's arithmetic implies."""

from __future__ import annotations

import numpy as np

from .golden import split_hi, to_signed
from .layer import MsqLayer, Role, UniformLayer

__all__ = ["dequantize"]


def dequantize(layer: MsqLayer | UniformLayer) -> np.ndarray:
    """The real weights ``W_deq`` (float64, shape ``(n, k)``, padding removed).

    * MicroScopiQ: ``v[n,k] · 2^(E[n,g] - b)`` with ``v`` the slot value of SPEC §3 (equal to
      :func:`golden.slot_values`; outliers carry their full value, their partners 0). Exact for
      every format: ``v`` is taken as a mantissa of at most ``b + 1`` bits and a shift ``e + X``,
      applied together with ``E - b`` by ``ldexp`` (no int64 shift, which would overflow for
      ``xbits = 6``).
    * Uniform: ``scale[n,g] · q[n,k] + zero[n,g]`` evaluated in float64 from the stored float32
      ``scale`` and ``zero``.
    """
    if not isinstance(layer, (MsqLayer, UniformLayer)):
        raise TypeError(f"layer must be an MsqLayer or a UniformLayer, not {type(layer).__name__}")
    fmt = layer.fmt
    if isinstance(layer, MsqLayer):
        mantissa, shift = _slot_mantissa(layer)
        exps = np.repeat(layer.exps.astype(np.int64), fmt.group, axis=1) - fmt.wbits
        full = np.ldexp(mantissa, shift + exps)
    else:
        scale = np.repeat(layer.scale.astype(np.float64), fmt.group, axis=1)
        zero = np.repeat(layer.zero.astype(np.float64), fmt.group, axis=1)
        full = scale * layer.q.astype(np.float64) + zero
    return full[:layer.n, :layer.k]


def _slot_mantissa(layer: MsqLayer) -> tuple[np.ndarray, np.ndarray]:
    """``v[n,k] = mantissa · 2^shift`` (float64, int64): inlier ``(q·2^b, 0)``, OUT_HI
    ``((-1)^s·(2^b + f), e + X)`` with ``f`` from the partner, OUT_LO ``(0, 0)``."""
    fmt = layer.fmt
    b = fmt.wbits
    codes = layer.codes.astype(np.int64)
    sign, e = split_hi(codes, b)
    rows = np.arange(layer.np_)[:, None]
    frac = codes[rows - rows % fmt.ublock + np.maximum(layer.mate, 0), np.arange(layer.kp)[None, :]]
    outlier = layer.roles == Role.OUT_HI
    mantissa = np.select([layer.roles == Role.INLIER, outlier],
                         [to_signed(codes, b) << b, np.where(sign == 1, -1, 1) * ((1 << b) + frac)], 0)
    shift = np.where(outlier, e + np.repeat(layer.xexp.astype(np.int64), fmt.ublock, axis=0), 0)
    return mantissa.astype(np.float64), shift
