"""Yosys resources (and with ``--place`` nextpnr Fmax) of the weight front end's blocks alone (ECP5).

Each block is elaborated to Verilog on its own (``MetaDecoder(fmt, C)``, ``ExpDecoder(C)``,
``Unpacker(cfg)`` and the whole ``WeightDecoder(cfg)``) and synthesised with the chosen mapper
(abc9 by default, falling back to abc; ``make bench-qor`` uses abc); LUT4 = logic LUTs + 2 per carry
cell, as everywhere in the docs. ``--place``: out of context on an ECP5-25k at 100 MHz, nextpnr seed 1.

    python bench/bench_decoders.py                 # default 8x8, b = 4, 32-bit weight bus
    python bench/bench_decoders.py --wbits 2 --cols 16 --bus 64
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from amaranth.back import verilog

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.flow.synth import run_yosys, summarize_cells, synthesize
from microscopiq.hdl.exp_decoder import ExpDecoder
from microscopiq.hdl.meta_decoder import MetaDecoder
from microscopiq.hdl.unpacker import Unpacker
from microscopiq.hdl.weight_decoder import WeightDecoder


def synth(name: str, component, workdir: Path, mapper: str, place: bool) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / f"{name}.v"
    source.write_text(verilog.convert(component, name=name))
    fmax = None
    if place:   # out of context on an ECP5-25k at 100 MHz, seed 1 (inputs straight from the ports)
        report = synthesize(source, name, "ecp5", device="25k", io="ooc", workdir=workdir, mapper=mapper)
        res, mapper, fmax = report.resources, report.lut_mapper, min(report.fmax_mhz.values())
    else:
        cells, _, mapper = run_yosys([source], name, "ecp5", workdir, use_dsp=True, timeout_s=1800, mapper=mapper)
        res = summarize_cells(cells, "ecp5")
    return {"block": name, "luts": res.luts, "logic": res.logic_luts, "carries": res.carries, "ffs": res.ffs,
            "mapper": mapper, "fmax": "–" if fmax is None else f"{fmax:.1f}"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wbits", type=int, default=4)
    parser.add_argument("--ublock", type=int, default=8)
    parser.add_argument("--cols", type=int, default=8)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--bus", type=int, default=32, help="weight bus bits (the unpacker's W)")
    parser.add_argument("--mapper", choices=("abc9", "abc"), default="abc9", help="Yosys LUT mapper")
    parser.add_argument("--place", action="store_true", help="also place and route (nextpnr, Fmax)")
    parser.add_argument("--out", type=Path, default=Path("build/bench-decoders"))
    args = parser.parse_args(argv)
    fmt = FormatConfig(wbits=args.wbits, ublock=args.ublock)
    start = time.perf_counter()
    meta = MetaDecoder(fmt, args.cols)
    cfg = AccelConfig(fmt=fmt, rows=args.rows, cols=args.cols, weight_bus=args.bus)
    work = args.out / f"r{args.rows}-c{args.cols}-b{args.wbits}-u{args.ublock}-w{args.bus}-{args.mapper}"
    rows = [dict(synth("meta_decoder", meta, work / "meta", args.mapper, args.place), latency=meta.latency),
            dict(synth("exp_decoder", ExpDecoder(args.cols), work / "exp", args.mapper, args.place),
                 latency=ExpDecoder.latency),
            dict(synth("unpacker", Unpacker(cfg), work / "unpacker", args.mapper, args.place),
                 latency=2),
            dict(synth("weight_decoder", WeightDecoder(cfg), work / "front", args.mapper, args.place),
                 latency=WeightDecoder.latency_of(cfg))]
    print(f"Command: `python bench/bench_decoders.py {' '.join(argv or sys.argv[1:])}` (R = {args.rows}, "
          f"C = {args.cols}, b = {args.wbits}, U = {args.ublock}, W = {args.bus}; "
          f"{time.perf_counter() - start:.0f} s)\n")
    print("| block | LUT4 (logic + 2·carry) | FF | latency | mapper | Fmax MHz (25k, ooc) |")
    print("| --- | ---: | ---: | ---: | --- | ---: |")
    for r in rows:
        print(f"| {r['block']} | {r['luts']} ({r['logic']} + 2·{r['carries']}) | {r['ffs']} | {r['latency']} "
              f"| {r['mapper']} | {r['fmax']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
