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

A **MicroScopiQ pair pass** (a layer at ``b/2`` on a multi-precision instance with per-row ReCoN,
docs/hardware.md "Multi-precision PEs") runs two K rows per PE row: PE row ``r`` of a ``2R``-deep
K-tile holds a *network* slot (lane ``r``: its products go through the row's ReCoN) and an
*inlier* slot (lane ``R + r``: its products bypass the network, so it must hold no outlier). A
K-group's rows may sit in any of its ``G/2R`` pair tiles (the PPU sums the whole K-group), so
:func:`pair_slot_rows` places each K-group's outlier rows in network slots: possible exactly when
the K-group holds at most ``G/2`` outlier rows (in the N-tile's ``C`` columns).

:func:`tile_row_order` defines the order of one tile; :func:`tile_row_orders` applies it to every
tile of a layer. Every producer of the two streams (``packed_stream``'s rows, ``stream_format``'s
decoded tiles, activation beats and cycle model, ``tb.native``'s activation records) takes the
order from ``packed_stream.row_orders``, which calls these.
"""

from __future__ import annotations

import numpy as np

from ..config import AccelConfig

__all__ = ["tile_row_order", "tile_row_orders", "pair_slot_rows"]


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


def pair_slot_rows(rows: int, group: int, outlier) -> np.ndarray | None:
    """Which K row each slot of a MicroScopiQ pair pass carries, per N-tile.

    Slot ``s`` of a K-group is lane ``s mod 2R`` of its pair tile ``s div 2R``; lanes ``0 … R−1``
    are the network slots, ``R … 2R−1`` the inlier slots. Every K row starts in its own slot
    (``k`` order); then, per K-group in ``k`` order, the ``i``-th outlier row in an inlier slot
    trades places with the ``i``-th row without outliers in a network slot. So a K-group without
    outlier rows in inlier slots keeps ``k`` order (the uniform pair pass's).

    Parameters
    ----------
    rows : int
        ``R``.
    group : int
        ``G``, a multiple of ``2R``.
    outlier : array of bool, (N-tiles, Kp)
        Whether K row ``k`` holds an outlier (OUT_HI or OUT_LO) in one of the N-tile's ``C``
        columns; ``Kp`` a multiple of ``G``.

    Returns
    -------
    ndarray of int64, (N-tiles, Kp), or None
        Row ``j``: the K row of every slot ``0 … Kp−1`` (a permutation inside each K-group).
        None when some K-group of some N-tile holds more than ``G/2`` outlier rows (they do not
        fit in its network slots).
    """
    outlier = np.asarray(outlier, bool)
    if outlier.ndim != 2 or outlier.shape[1] % group or group % (2 * rows):
        raise ValueError(f"outlier must be (N-tiles, Kp) bools with Kp a multiple of G={group}, and G a "
                         f"multiple of 2R={2 * rows}; got shape {outlier.shape}")
    blocks = outlier.reshape(-1, group)                         # (N-tiles · groups, G)
    network = np.arange(group) % (2 * rows) < rows
    if (blocks.sum(axis=1) > network.sum()).any():
        return None
    slots = np.broadcast_to(np.arange(group), blocks.shape).copy()
    for block in np.flatnonzero((blocks & ~network).any(axis=1)):
        movers = np.flatnonzero(blocks[block] & ~network)
        hosts = np.flatnonzero(~blocks[block] & network)[:len(movers)]
        slots[block, movers], slots[block, hosts] = hosts, movers
    base = np.arange(outlier.shape[1]) // group * group
    return slots.reshape(outlier.shape) + base
