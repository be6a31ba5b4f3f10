"""MicroScopiQ b/2 at two K rows per PE row (issues #12 and #13): the bounds, and what the built
pair passes need.

A ``--multi-precision`` build runs a MicroScopiQ layer at b/2 as a **pair pass** (docs/hardware.md,
"MicroScopiQ pair passes": each K-group's outlier rows in the PE rows' network slots) when no
K-group of an N-tile holds more than ``G/2`` outlier rows, else one slot per PE. This script
measures, on the 37 MiniLM layers quantized with MicroScopiQ at b = 2 (``make bench-stream``'s
folder):

* the **built design**: the most outlier rows in one K-group of one N-tile (``G`` K rows by ``C``
  columns) against its ``G/2`` network slots, and how many layers run as pair passes
  (:func:`~microscopiq.host.packed_stream.msq_pair_rows`);

* the **pair tiles**: ``2R`` K rows by ``C`` columns; a K row is an *outlier row* of its tile when
  one of its ``C`` slots is OUT_HI or OUT_LO;
* **one network per PE row, time-multiplexed** over the row's two K rows: a tile whose fullest PE
  row holds two outlier rows issues a token every 2 cycles (period ``T`` = 2, else 1). Issue cycles
  at M ≥ 4R relative to one slot per PE (``ΣT / (2·tiles)``; 0.5 is the pair rate):
  - ``as streamed``: PE row ``r`` holds K rows ``r`` and ``r + R`` of the tile;
  - ``balanced``: the host orders each tile's ``2R`` rows so that no PE row holds two outlier rows
    unless the tile has more than ``R`` (the activations permuted alike);
* **decode, M = 1, 32-bit bus**: a pair tile takes ``max(R, bus beats)`` cycles (the loader's row a
  cycle, or the bus), INT8 its ``2R·C·8 / 32`` beats: the ratio the pair rate would reach, from the
  layers' stream bits per weight (:func:`~microscopiq.host.packed_stream.stream_bits`).

    python bench/bench_msq_pairs.py [--layers build/stream-bits/minilm-b2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from microscopiq.config import PRESETS
from microscopiq.host.packed_stream import msq_pair_rows, stream_bits
from microscopiq.host.stream_format import periods_of
from microscopiq.quant.layer import Role
from microscopiq.quant.pack import load_layer

ROOT = Path(__file__).resolve().parents[1]
CFG = PRESETS["8x8-b4"].replace(multi_precision=True)
BUS = 32
INT8_BITS = 8


def outlier_rows_per_pair_tile(layer, rows: int, cols: int) -> np.ndarray:
    """``(N-tiles, pair tiles, 2, R)``: whether K row ``half·R + r`` of each pair tile is an outlier row."""
    outlier = layer.roles != Role.INLIER
    n_pad, k_pad = outlier.shape
    by_row = outlier.reshape(n_pad // cols, cols, k_pad).any(axis=1)
    return by_row.reshape(n_pad // cols, k_pad // (2 * rows), 2, rows)


def periods(outlier_rows: np.ndarray, balanced: bool) -> np.ndarray:
    """Each pair tile's period with one network per PE row: 2 when a PE row holds two outlier rows."""
    rows = outlier_rows.shape[-1]
    if balanced:
        return np.where(outlier_rows.sum(axis=(2, 3)) > rows, 2, 1)
    # A PE row is a "group" of its two K rows: the shared-ReCoN period rule.
    return np.array(periods_of(outlier_rows.reshape(-1, 2, rows).transpose(0, 2, 1)))


def group_outlier_rows(layer, cols: int, group: int) -> np.ndarray:
    """Outlier rows of every K-group of every N-tile (``G`` K rows by ``C`` columns)."""
    outlier = layer.roles != Role.INLIER
    n_pad, k_pad = outlier.shape
    return outlier.reshape(n_pad // cols, cols, k_pad).any(axis=1).reshape(n_pad // cols, k_pad // group, group).sum(axis=2)


def decode_ratio(layer, rows: int, cols: int) -> float:
    """INT8 cycles / pair-rate cycles per pair tile at M = 1 on the bus (bus-bound or ``R``)."""
    bits_per_weight = stream_bits(CFG, layer).total / (layer.n * layer.k)
    tile_weights = 2 * rows * cols
    pair_cycles = max(rows, tile_weights * bits_per_weight / BUS)
    return (tile_weights * INT8_BITS / BUS) / pair_cycles


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=Path, default=ROOT / "build" / "stream-bits" / "minilm-b2")
    args = parser.parse_args(argv)
    files = sorted(args.layers.glob("*.msq"))
    if not files:
        parser.error(f"no .msq layers in {args.layers} (make bench-stream quantizes them)")
    rows, cols = CFG.rows, CFG.cols
    tiles = two = groups = fullest = paired = 0
    sums = {"as streamed": 0, "balanced": 0}
    ratios = []
    for path in files:
        layer = load_layer(path)
        per_group = group_outlier_rows(layer, cols, CFG.fmt.group)
        groups += per_group.size
        fullest = max(fullest, int(per_group.max()))
        paired += msq_pair_rows(CFG, layer) is not None
        outlier_rows = outlier_rows_per_pair_tile(layer, rows, cols)
        tiles += outlier_rows.shape[0] * outlier_rows.shape[1]
        two += int((outlier_rows.sum(axis=2).max(axis=2) == 2).sum())
        for name in sums:
            sums[name] += int(periods(outlier_rows, name == "balanced").sum())
        ratios.append(decode_ratio(layer, rows, cols))
    print(f"{len(files)} layers of {args.layers.relative_to(ROOT) if args.layers.is_relative_to(ROOT) else args.layers}, "
          f"{tiles} pair tiles ({2 * rows}×{cols}); a PE row with two outlier rows in {two} "
          f"({two / tiles:.1%}) as streamed")
    print(f"built: the fullest of {groups} K-groups ({CFG.fmt.group} K rows × {cols} columns) holds {fullest} "
          f"outlier rows (network slots: {CFG.fmt.group // 2}); {paired} of {len(files)} layers run as pair passes")
    for name, total in sums.items():
        print(f"one network per PE row, {name}: {total / (2 * tiles):.3f}× the issue cycles of one slot per PE")
    print(f"decode M = 1, {BUS}-bit bus, pair rate: {min(ratios):.2f}–{max(ratios):.2f}× INT8 "
          f"(one slot per PE: at most {2 * rows * cols * INT8_BITS / BUS / (2 * rows):.2f}×)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
