"""Bits per weight of the packed weight stream against the layer file's EBW, on quantized layers.

For every ``.msq`` file of the given folders (each written by ``microscopiq quantize``), the pass that
``host.packed_stream.encode_pass`` writes for an ``R × C`` instance is built and its bits counted
exactly (header, row minima, exponents, tile maps, codes, records and the final byte's padding),
checked equal to ``host.packed_stream.stream_bits`` and read back with ``decode_pass`` against
``row_records`` of the file's layer; the table compares it with ``quant.ebw.effective_bits`` (the
file) and the target ``EBW + 0.25``.

    python bench/bench_stream_bits.py build/stream-bits/minilm-b4 build/stream-bits/minilm-b2 \\
        --out docs/bench_stream.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from microscopiq.config import AccelConfig
from microscopiq.host.packed_stream import decode_pass, encode_pass, row_records, stream_bits
from microscopiq.quant.ebw import effective_bits
from microscopiq.quant.pack import load_layer

#: Allowed excess of the stream over the file (issue #12: EBW + 0.25 bits per weight).
TARGET_EXCESS = 0.25


def measure(path: Path, rows: int, cols: int, check: bool) -> dict:
    """One layer file: its EBW and the stream's bits by section."""
    layer = load_layer(path)
    cfg = AccelConfig(fmt=layer.fmt, rows=rows, cols=cols, max_k=max(4096, layer.k), max_n=max(16384, layer.n))
    bits = stream_bits(cfg, layer)
    data = encode_pass(cfg, layer)
    if 8 * len(data) != bits.total:
        raise SystemExit(f"{path}: encode_pass wrote {8 * len(data)} bits, stream_bits counts {bits.total}")
    if check and (where := decode_pass(cfg, data).records.equals(row_records(cfg, layer))):
        raise SystemExit(f"{path}: the stream does not read back: {where}")
    ebw = effective_bits(layer).bits_per_weight
    w = bits.weights
    return {"layer": path.stem, "shape": f"{layer.n}x{layer.k}", "b": layer.fmt.wbits, "ebw": ebw,
            "stream": bits.bits_per_weight, "codes": bits.codes / w, "meta": (bits.tile_maps + bits.records) / w,
            "exps": (bits.exps + bits.emin) / w, "frame": (bits.header + bits.padding) / w}


def table(results: list[dict]) -> str:
    lines = ["| b | layer | N×K | file EBW | stream | codes | tile maps + records | E + E_min | header + pad "
             "| stream − EBW | ≤ EBW + 0.25 |",
             "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        excess = r["stream"] - r["ebw"]
        lines.append(f"| {r['b']} | {r['layer']} | {r['shape']} | {r['ebw']:.4f} | {r['stream']:.4f} | "
                     f"{r['codes']:.4f} | {r['meta']:.4f} | {r['exps']:.4f} | {r['frame']:.4f} | "
                     f"{excess:+.4f} | {'met' if excess <= TARGET_EXCESS else '**NOT met**'} |")
    return "\n".join(lines)


def summary(results: list[dict]) -> str:
    lines = ["| b | layers | met | worst stream − EBW (layer) | mean stream − EBW |",
             "| ---: | ---: | ---: | --- | ---: |"]
    for b in sorted({r["b"] for r in results}, reverse=True):
        rs = [r for r in results if r["b"] == b]
        worst = max(rs, key=lambda r: r["stream"] - r["ebw"])
        met = sum(r["stream"] - r["ebw"] <= TARGET_EXCESS for r in rs)
        mean = sum(r["stream"] - r["ebw"] for r in rs) / len(rs)
        lines.append(f"| {b} | {len(rs)} | {met} | {worst['stream'] - worst['ebw']:+.4f} ({worst['layer']}) "
                     f"| {mean:+.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of .msq files (microscopiq quantize --out)")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--cols", type=int, default=8)
    parser.add_argument("--no-check", action="store_true", help="skip reading every stream back")
    parser.add_argument("--out", type=Path, help="write the tables (markdown) here too")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = []
    for folder in args.folders:
        files = sorted(folder.glob("*.msq"))
        if not files:
            print(f"bench_stream_bits: error: no .msq files in {folder}", file=sys.stderr)
            return 2
        results += [measure(path, args.rows, args.cols, not args.no_check) for path in files]
    command = "python bench/bench_stream_bits.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    text = (f"Command: `{command}` ({args.rows}×{args.cols} instance, {time.perf_counter() - start:.0f} s)\n\n"
            f"{summary(results)}\n\n{table(results)}\n")
    print(text)
    if args.out:
        args.out.write_text(f"# Packed weight stream: bits per weight on quantized layers\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
