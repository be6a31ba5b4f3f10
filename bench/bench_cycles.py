"""Accelerator cycles on real quantized layers against the ideal ``ceil(K/R)·ceil(N/C)·M``
(``make bench-cycles``).

Reads every linear layer of all-MiniLM-L6-v2 quantized with MicroScopiQ at b = 4 by ``microscopiq
quantize`` (the folder ``make bench-stream`` and the decode table share, quantized first when
missing), then counts cycles with :func:`~microscopiq.host.stream_format.predict_cycles` — the cycle
model that the top-level and cocotb tests prove equal to the RTL's cycle counts — for an 8×8 array
with ReCoN per row and shared by 2, 4 and 8 rows, at M = 4R, 8R and 16R tokens. Shared ReCoN's cost
depends on where the outliers sit (rows with an outlier per group and tile); per-row does not.
Writes ``docs/bench_cycles.md``.

    python bench/bench_cycles.py [--out docs/bench_cycles.md]
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
from pathlib import Path

from bench_decode import DESIGNS, ROOT, quantize_missing   # bench/ is the script's folder, on sys.path
from microscopiq.config import PRESETS
from microscopiq.host.stream_format import predict_cycles
from microscopiq.outputs import atomic_file
from microscopiq.quant.pack import load_layer

SHARING = (1, 2, 4, 8)
TOKEN_FACTORS = (4, 8, 16)


def ideal_cycles(cfg, layer, tokens: int) -> int:
    return math.ceil(layer.k / cfg.rows) * math.ceil(layer.n / cfg.cols) * tokens


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
        "## Per layer shape (the layer of that shape with the most outliers), M = 4R", "",
        "| layer | N×K | outliers | ReCoN | M | cycles | ideal | of ideal |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
        *rows, "",
        "Per-row ReCoN issues one token per cycle whatever the outliers; shared ReCoN issues one every "
        "`T` cycles, `T` = the most rows holding an outlier among a tile's ReCoN groups, plus a gap "
        "per tile (docs/hardware.md, cycle model).", ""])
    with atomic_file(args.out, "w") as handle:
        handle.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
