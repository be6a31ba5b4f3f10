"""Accelerator cycles on real quantized layers against the ideal ``ceil(K/R)·ceil(N/C)·M``
(``make bench-cycles``).

Reads every linear layer of all-MiniLM-L6-v2 quantized with MicroScopiQ at b = 4 by ``microscopiq
quantize`` (the folder ``make bench-stream`` and the decode table share, quantized first when
missing), then counts cycles with :func:`~microscopiq.host.stream_format.predict_cycles` — the cycle
model that the top-level and cocotb tests prove equal to the RTL's cycle counts — for an 8×8 array
with ReCoN per row and shared by 2, 4 and 8 rows, at M = 4R, 8R and 16R tokens. Shared ReCoN's cost
depends on where the outliers sit (rows with an outlier per group and tile, each tile's rows
balanced over the groups by the host: ``host/row_order.py``); per-row does not. At M = 4R it also
bounds what each lever can buy: the same model with every tile gap 0 (the periods alone), every
period 1 (the gaps alone), each tile's rows in ``k`` order (the stream before the balancing), the gap
before issue #14 (``max(S - 1, L + H)`` after every tile, rows in ``k`` order), and, from the rows
in ``k`` order, groups of interleaved rows and the layer's ``k`` reordered once.
Writes ``docs/bench_cycles.md``.

    python bench/bench_cycles.py [--out docs/bench_cycles.md]
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys

import numpy as np
from pathlib import Path

from bench_decode import DESIGNS, ROOT, quantize_missing   # bench/ is the script's folder, on sys.path
from microscopiq.config import PRESETS
from microscopiq.hdl.array import ArrayTiming
from microscopiq.host.packed_stream import row_orders
from microscopiq.host.stream_format import (gaps_of, periods_of, predict_cycles, tile_gaps, tile_outlier_rows,
                                            tile_periods)
from microscopiq.outputs import atomic_file
from microscopiq.quant.pack import load_layer

SHARING = (1, 2, 4, 8)
TOKEN_FACTORS = (4, 8, 16)


def ideal_cycles(cfg, layer, tokens: int) -> int:
    return math.ceil(layer.k / cfg.rows) * math.ceil(layer.n / cfg.cols) * tokens


def reordered_periods(cfg, rows, k_tiles: int) -> list[int]:
    """The tiles' periods after one reordering of the layer's ``k`` inside each K-group (the same
    for every N-tile, so the host would permute the layer's weights and activations once, outside
    the accelerator): the ``k`` sorted by the number of N-tiles where they hold an outlier, dealt
    back and forth over the K-group's ReCoN groups. ``rows``: :func:`k_order_rows`."""
    outlier = rows.reshape(-1, k_tiles * cfg.rows)               # (N-tiles, K): k holds an outlier
    groups = cfg.fmt.group // cfg.recon_share                    # ReCoN groups per K-group
    order = []
    for start in range(0, outlier.shape[1], cfg.fmt.group):
        weight = outlier[:, start:start + cfg.fmt.group].sum(axis=0)
        dealt = [[] for _ in range(groups)]
        for i, k in enumerate(np.argsort(-weight, kind="stable")):
            turn, pos = divmod(i, groups)
            dealt[pos if turn % 2 == 0 else groups - 1 - pos].append(start + int(k))
        order += [k for group in dealt for k in group]
    per_group = outlier[:, order].reshape(len(outlier), -1, cfg.recon_share).sum(axis=2)
    return [max(1, int(v)) for v in per_group.reshape(len(outlier), k_tiles, -1).max(axis=2).reshape(-1)]


def k_order_rows(cfg, layer) -> np.ndarray:
    """:func:`tile_outlier_rows` with every tile's rows put back in ``k`` order (the stream before
    the host balanced them): (tiles, R / S, S) booleans."""
    rows = tile_outlier_rows(cfg, layer)
    stream = rows.reshape(len(rows), cfg.rows)
    natural = np.empty_like(stream)
    np.put_along_axis(natural, row_orders(cfg, layer), stream, axis=1)
    return natural.reshape(rows.shape)


def lever_bounds(cfg, layer) -> dict[str, tuple[list[int], list[int]]]:
    """Per bound, the tiles' (periods, gaps) to give :func:`predict_cycles`."""
    periods, gaps = tile_periods(cfg, layer), tile_gaps(cfg, layer)
    timing = ArrayTiming.of(cfg)
    # Rows in k order: the most outlier rows of a group, and the largest offset of one in its group.
    rows = k_order_rows(cfg, layer)
    k_periods, k_gaps = periods_of(rows), gaps_of(rows)
    # Interleaved: group g the rows r with r mod (R/S) = g.
    interleaved = periods_of(rows.reshape(len(rows), cfg.recon_share, -1).transpose(0, 2, 1))
    return {
        "now": (periods, gaps),
        "gap 0 (periods alone)": (periods, [0] * len(gaps)),
        "T = 1 (gaps alone)": ([1] * len(periods), gaps),
        "rows in k order": (k_periods, k_gaps),
        "before issue #14: k order, gap max(S − 1, L + H)": (
            k_periods, [max(cfg.recon_share - 1, timing.recon_latency + timing.hold)] * len(gaps)),
        "groups interleaved, gap 0": (interleaved, [0] * len(gaps)),
        "k reordered per layer, gap 0": (reordered_periods(cfg, rows, math.ceil(layer.k / cfg.fmt.group)
                                                           * cfg.fmt.group // cfg.rows), [0] * len(gaps)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_cycles.md")
    args = parser.parse_args(argv)

    base = PRESETS["8x8-b4"]
    source = next(d for d in DESIGNS if d.name == "msq-b4")
    quantize_missing(source)
    layers = {path.stem: load_layer(path) for path in sorted((ROOT / source.folder).glob("*.msq"))}
    # One row per distinct shape: the layer of that shape with the most outliers (the worst case
    # for shared ReCoN), plus the whole model summed.
    rows = []
    totals = {}
    for share in SHARING:
        cfg = base.replace(recon_share=share)
        for factor in TOKEN_FACTORS:
            tokens = factor * cfg.rows
            cycles = sum(predict_cycles(cfg, layer, tokens) for layer in layers.values())
            ideal = sum(ideal_cycles(cfg, layer, tokens) for layer in layers.values())
            totals[share, factor] = (cycles, ideal)
    bounds = {}
    for share in SHARING[1:]:
        cfg = base.replace(recon_share=share)
        tokens = 4 * cfg.rows
        per_layer = [lever_bounds(cfg, layer) for layer in layers.values()]
        for name in per_layer[0]:
            cycles = sum(predict_cycles(cfg, layer, tokens, periods=b[name][0], gaps=b[name][1])
                         for layer, b in zip(layers.values(), per_layer))
            bounds[share, name] = 100 * totals[share, 4][1] / cycles
    bound_names = list(lever_bounds(base.replace(recon_share=2), next(iter(layers.values()))))
    by_shape = {}
    for name, layer in layers.items():
        outliers = int((layer.roles == 1).sum())
        key = (layer.n, layer.k)
        if key not in by_shape or outliers > by_shape[key][2]:
            by_shape[key] = (name, layer, outliers)
    for (n, k), (name, layer, outliers) in sorted(by_shape.items()):
        for share in SHARING:
            cfg = base.replace(recon_share=share)
            tokens = 4 * cfg.rows
            cycles, ideal = predict_cycles(cfg, layer, tokens), ideal_cycles(cfg, layer, tokens)
            rows.append(f"| {name} | {n}×{k} | {outliers} | "
                        f"{'per-row' if share == 1 else f'shared:{share}'} | {tokens} | {cycles} | "
                        f"{ideal} | {100 * ideal / cycles:.1f} % |")
    summary = [f"| {'per-row' if share == 1 else f'shared:{share}'} | "
               + " | ".join(f"{100 * totals[share, f][1] / totals[share, f][0]:.1f} %" for f in TOKEN_FACTORS)
               + " |" for share in SHARING]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        "# Cycles on real layers against the ideal (`make bench-cycles`)", "",
        f"Command: `make bench-cycles` (= `.venv/bin/python bench/bench_cycles.py`), {stamp}. All "
        f"{len(layers)} linear layers of all-MiniLM-L6-v2 quantized with MicroScopiQ at b = 4 (G = 128, "
        f"U = 8; `microscopiq quantize`, {source.folder}), {base.weight_bus}-bit weight bus, cycles "
        "from `predict_cycles` (equal to the RTL's "
        "counts in every top-level and cocotb test), 8×8 array, ideal = `ceil(K/R)·ceil(N/C)·M`; "
        "the percentage is ideal / cycles (100 % = no cycle lost).", "",
        f"## Whole model ({len(layers)} layers summed)", "",
        "| ReCoN | " + " | ".join(f"M = {f}R" for f in TOKEN_FACTORS) + " |",
        "| --- | " + " | ".join("---:" for _ in TOKEN_FACTORS) + " |",
        *summary, "",
        "## Where shared ReCoN's cycles go (whole model, M = 4R)", "",
        "`now`: each tile's rows balanced by the host (`host/row_order.py`: its `n` outlier rows "
        "dealt over the `R/S` groups, each group's first; period `max(1, ceil(n·S/R))`, gap one "
        "less), the activations in the same order. The same model with the tiles' periods or gaps "
        "replaced: what each lever can buy at most, or what a design without it took. "
        "`gap 0`: no cycle between tiles (the periods `T` alone); `T = 1`: one token per cycle "
        "(the gaps alone); `rows in k order`: the stream before the balancing (period: the most "
        "outlier rows of a group, gap: the largest offset of one in its group); `before issue #14`: "
        "rows in `k` order and the gap every tile paid then (`max(S − 1, L + H)`, L = 3, H = 1); "
        "from the rows in `k` order, the levers weighed instead of the balancing: `groups "
        "interleaved`: a network serving the rows `r ≡ g (mod R/S)` instead of `S` neighbours "
        "(not built); `k reordered per layer`: the layer's `k` permuted once inside each K-group "
        "(sorted by how many N-tiles hold an outlier there, dealt back and forth over the groups), "
        "weights and activations alike, outside the accelerator (not built).", "",
        "| ReCoN | " + " | ".join(bound_names) + " |",
        "| --- | " + " | ".join("---:" for _ in bound_names) + " |",
        *[f"| shared:{share} | " + " | ".join(f"{bounds[share, name]:.1f} %" for name in bound_names) + " |"
          for share in SHARING[1:]], "",
        "## Per layer shape (the layer of that shape with the most outliers), M = 4R", "",
        "| layer | N×K | outliers | ReCoN | M | cycles | ideal | of ideal |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
        *rows, "",
        "Per-row ReCoN issues one token per cycle whatever the outliers; shared ReCoN issues one every "
        "`T` cycles, `T` = the most rows holding an outlier among a tile's ReCoN groups, plus the "
        "tile's gap, the largest offset of an outlier row in its group (docs/hardware.md, cycle "
        "model); with the rows balanced, `T = max(1, ceil(n·S/R))` and the gap `T − 1` for a tile "
        "of `n` outlier rows.", ""])
    with atomic_file(args.out, "w") as handle:
        handle.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
