"""The order in which a weight tile's ``R`` K rows travel to the array (pure Python and NumPy).

With ReCoN shared by ``S`` neighbouring PE rows (``AccelConfig.recon_share > 1``) a tile issues one
token every ``T`` cycles, ``T`` the most rows holding an outlier in one of its ``R/S`` groups, and
pays a gap of the largest group offset of an outlier row after its last token
(``docs/hardware.md``, "Cycle model"). Which K row sits in which PE row is free: a tile's products
are summed over its rows, inside one K-group. So the host sends every tile's rows in a balanced
order, the tile's outlier rows dealt round-robin over the groups, each group's first rows, and its
activation vectors in the same order: ``n`` outlier rows cost ``T = max(1, ceil(n·S/R))`` and a gap
of ``T − 1``, the least any order gives. Per-row ReCoN (``S = 1``) and rows without outliers keep
``k`` order.

:func:`tile_row_order` defines the order of one tile; :func:`tile_row_orders` applies it to every
tile of a layer. Every producer of the two streams (``packed_stream``'s rows, ``stream_format``'s
decoded tiles, activation beats and cycle model, ``tb.native``'s activation records) takes the
order from ``packed_stream.row_orders``, which calls these.
"""

from __future__ import annotations

import numpy as np

from ..config import AccelConfig

__all__ = ["tile_row_order", "tile_row_orders"]


def tile_row_order(cfg: AccelConfig, present) -> tuple[int, ...]:
    """Which of a tile's K rows each PE row carries: PE row ``r`` holds K row ``t·R + order[r]``.

    Parameters
    ----------
    cfg : AccelConfig
        The instance (``rows`` = ``R``, ``recon_share`` = ``S``).
    present : sequence of R bools
        Whether the tile's K row ``i`` (``t·R + i``) holds an outlier in any of its ``C`` columns.

    Returns
    -------
    tuple of R ints, a permutation of ``0 … R−1``
        Identity unless ReCoN is shared. Shared: the ``i``-th outlier row in ``k`` order goes to
        group ``i mod (R/S)`` at offset ``i div (R/S)`` (PE row ``(i mod (R/S))·S + i div (R/S)``),
        the other rows fill the free PE rows in ``k`` order.
    """
    rows = cfg.rows
    present = [bool(p) for p in present]
    if len(present) != rows:
        raise ValueError(f"present must have one entry per row of the tile ({rows}), not {len(present)}")
    if cfg.recon_share <= 1:
        return tuple(range(rows))
    share = cfg.recon_share
    groups = rows // share
    slots: list[int | None] = [None] * rows
    for i, k in enumerate(k for k in range(rows) if present[k]):
        slots[(i % groups) * share + i // groups] = k
    rest = iter(k for k in range(rows) if not present[k])
    return tuple(next(rest) if k is None else k for k in slots)


def tile_row_orders(cfg: AccelConfig, present) -> np.ndarray:
    """:func:`tile_row_order` of every tile: ``present`` ``(tiles, R)`` bools in ``k`` order, the
    result ``(tiles, R)`` int64 (each distinct pattern computed once)."""
    present = np.asarray(present, bool)
    if present.ndim != 2 or present.shape[1] != cfg.rows:
        raise ValueError(f"present must be (tiles, {cfg.rows}) bools, not shape {present.shape}")
    if cfg.recon_share <= 1 or not len(present):
        return np.broadcast_to(np.arange(cfg.rows), present.shape).copy()
    patterns, inverse = np.unique(present, axis=0, return_inverse=True)
    orders = np.array([tile_row_order(cfg, p) for p in patterns], np.int64)
    return orders[inverse.reshape(-1)]
