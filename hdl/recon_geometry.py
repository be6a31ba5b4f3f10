"""The geometry of the ReCoN network of one PE row: its Beneš stages, the fixed (Waksman) and
configurable switches, the column ops and the widths of every config field (pure Python).

Hardware (:class:`~microscopiq.hdl.recon_network.ReconNetwork`) and host (the routing compiler
:mod:`microscopiq.host.routing`) both size themselves from :class:`ReconGeometry`; nothing here
imports Amaranth, so the host can use it without elaborating anything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property

from ..config import FormatConfig

__all__ = ["ColumnOp", "ReconGeometry", "config_bits"]

class ColumnOp(enum.IntEnum):
    """What the merge and scale switches of one column do (2 bits); ``own`` is the column's own PE product,
    ``routed`` the product the Beneš network delivers to the column.

    * KEEP: ``routed << shift`` (an inlier, which the Beneš network routes to itself:
      ``shift = b``, or 0 in uniform mode);
    * ZERO: ``0`` (a partner, whose slot carried the outlier's fraction);
    * MERGE_ADD: ``((own << b) + routed) << shift`` (an outlier with ``s = 0``, ``shift = e + X``);
    * MERGE_SUB: ``((own << b) - routed) << shift`` (an outlier with ``s = 1``).

    The merge is formed in :attr:`ReconGeometry.merge_bits` (two's complement wrap-around beyond
    it, which PE products never reach) and the shifted value in ``fmt.product_bits``.
    """

    KEEP = 0
    ZERO = 1
    MERGE_ADD = 2
    MERGE_SUB = 3



@dataclass(frozen=True)
class ReconGeometry:
    """Sizes of the ReCoN network of one PE row of ``width`` columns, and its config layout.

    Parameters
    ----------
    fmt : FormatConfig
        Number formats; ``wbits`` must have an outlier format (2, 3 or 4).
    width : int
        Columns ``C`` of the row, a positive multiple of ``fmt.ublock``.
    """

    fmt: FormatConfig
    width: int

    def __post_init__(self):
        if not isinstance(self.fmt, FormatConfig):
            raise TypeError(f"fmt must be a FormatConfig, not {self.fmt!r}")
        if isinstance(self.width, bool) or not isinstance(self.width, int):
            raise TypeError(f"width must be an integer, not {self.width!r}")
        if not self.fmt.msq_capable:
            raise ValueError(f"ReCoN needs a wbits with an outlier format (2, 3 or 4), "
                             f"not wbits={self.fmt.wbits!r}")
        if self.width < 1 or self.width % self.fmt.ublock:
            raise ValueError(f"width must be a positive multiple of ublock ({self.fmt.ublock}), "
                             f"not {self.width!r}")

    @property
    def ublock(self) -> int:
        return self.fmt.ublock

    @property
    def blocks(self) -> int:
        """Micro-blocks in the row, ``width / U``."""
        return self.width // self.fmt.ublock

    @property
    def stage_dims(self) -> tuple[int, ...]:
        """Index bit each Beneš stage pairs lines on: ``log2(U)-1, …, 1, 0, 1, …, log2(U)-1``."""
        k = self.fmt.ublock.bit_length() - 1
        return tuple(range(k - 1, 0, -1)) + tuple(range(k))

    @property
    def stages(self) -> int:
        """Beneš stages per micro-block, ``2·log2(U) - 1``."""
        return len(self.stage_dims)

    @property
    def switches(self) -> int:
        """Switches per Beneš stage, ``U / 2``."""
        return self.fmt.ublock // 2

    def stage_pairs(self, stage: int) -> list[tuple[int, int]]:
        """Line pairs ``(lo, hi)`` of the switches of ``stage``, in switch order (``hi = lo | 2^d``)."""
        bit = 1 << self.stage_dims[stage]
        return [(lo, lo | bit) for lo in range(self.fmt.ublock) if not lo & bit]

    @cached_property
    def fixed_switches(self) -> frozenset[tuple[int, int]]:
        """``(stage, switch)`` of the switches that are always PASS (Waksman): the first switch of
        the last stage of the network and of every sub-network of 4 or more lines; ``U·log2(U) -
        U + 1`` switches remain (17 of 20 at U = 8)."""
        fixed, levels = set(), self.fmt.ublock.bit_length() - 2
        for depth in range(levels):  # sub-networks of U / 2^depth lines end at stage S-1-depth
            per_sub = self.switches >> depth
            fixed.update((self.stages - 1 - depth, sub * per_sub) for sub in range(1 << depth))
        return frozenset(fixed)

    @cached_property
    def routing_switches(self) -> tuple[tuple[int, int], ...]:
        """``(stage, switch)`` of the configurable switches, in config bit order (stage by stage,
        switch by switch, the fixed ones left out)."""
        return tuple((stage, index) for stage in range(self.stages) for index in range(self.switches)
                     if (stage, index) not in self.fixed_switches)

    @property
    def max_shift(self) -> int:
        """Largest shift a column must apply: ``max(e + X, b)``."""
        return max(self.fmt.max_outlier_shift, self.fmt.wbits)

    @property
    def merge_bits(self) -> int:
        """Signed width of a merged value ``(hi << b) ± lo``: ``a + b + 1``.

        Exact for every value the PEs produce: ``|hi| <= 2^(a-1)`` (``±x``) and
        ``|lo| <= 2^(a-1)·(2^b - 1)`` (``x·f``) give ``|(hi << b) ± lo| <= 2^(a-1)·(2^(b+1) - 1)
        < 2^(a+b)``, and an inlier's ``|x·q| <= 2^(a-1)·2^(b-1)``. Shifted by up to
        ``max_outlier_shift`` it fills ``fmt.product_bits`` exactly."""
        return self.fmt.pe_product_bits + 1

    @property
    def shift_bits(self) -> int:
        """Width of a column's ``shift`` field."""
        return self.max_shift.bit_length()

    @property
    def column_bits(self) -> int:
        """Bits of one column field: 2 (op) + ``shift_bits``."""
        return 2 + self.shift_bits

    @property
    def benes_bits(self) -> int:
        """Swap bits of one micro-block's routing network, one per configurable switch."""
        return len(self.routing_switches)

    @property
    def block_bits(self) -> int:
        """Config bits of one micro-block."""
        return self.benes_bits + self.fmt.ublock * self.column_bits

    @property
    def total_bits(self) -> int:
        """Config bits of the whole row."""
        return self.blocks * self.block_bits


def config_bits(fmt: FormatConfig, width: int) -> int:
    """Size in bits of the config of one PE row of ``width`` columns (the ``config`` port)."""
    return ReconGeometry(fmt, width).total_bits

