"""Decode a quantized layer back to real weights (float64), as the hardware's arithmetic implies."""

from __future__ import annotations

import numpy as np

from .golden import slot_values
from .layer import MsqLayer, UniformLayer

__all__ = ["dequantize"]


def dequantize(layer: MsqLayer | UniformLayer) -> np.ndarray:
    """The real weights ``W_deq`` (float64, shape ``(n, k)``, padding removed).

    * MicroScopiQ: ``v[n,k] · 2^(E[n,g] - b)`` with ``v`` from :func:`golden.slot_values` (outliers
      carry their full value, their partners 0). Exact: ``v`` has at most ``2b + 1`` significant
      bits and the power of two is applied with ``ldexp``.
    * Uniform: ``scale[n,g] · q[n,k] + zero[n,g]`` evaluated in float64 from the stored float32
      ``scale`` and ``zero``.
    """
    fmt = layer.fmt
    if isinstance(layer, MsqLayer):
        values = slot_values(layer).astype(np.float64)
        exps = np.repeat(layer.exps.astype(np.int64), fmt.group, axis=1) - fmt.wbits
        full = np.ldexp(values, exps)
    elif isinstance(layer, UniformLayer):
        scale = np.repeat(layer.scale.astype(np.float64), fmt.group, axis=1)
        zero = np.repeat(layer.zero.astype(np.float64), fmt.group, axis=1)
        full = scale * layer.q.astype(np.float64) + zero
    else:
        raise TypeError(f"layer must be an MsqLayer or a UniformLayer, not {type(layer).__name__}")
    return full[:layer.n, :layer.k]
