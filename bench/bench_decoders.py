"""Yosys resources (and with ``--place`` nextpnr Fmax) of the weight front end's blocks alone (ECP5).

Each block is elaborated to Verilog on its own (``MetaDecoder(fmt, C)``, ``ExpDecoder(C)``,
``Unpacker(cfg)`` and the whole ``WeightDecoder(cfg)``) and synthesised with the chosen mapper
(abc9 by default, falling back to abc; ``make bench-qor`` uses abc); LUT4 = logic LUTs + 2 per carry
cell, as everywhere in the docs. ``--place``: out of context on an ECP5 (``--device``, default 25k) at
100 MHz, at each nextpnr seed of ``--seeds`` (default 1) on one netlist: one block's Fmax moves by
±5 MHz between seeds, so a change is judged on several (their mean is printed too).

    python bench/bench_decoders.py                 # default 8x8, b = 4, 32-bit weight bus
    python bench/bench_decoders.py --wbits 2 --cols 16 --bus 64
    python bench/bench_decoders.py --place --device 45k --seeds 1,2,3 --blocks weight_decoder
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from amaranth.back import verilog

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.flow.synth import MAPPERS, FlowParameterError, run_yosys, summarize_cells, synthesize
from microscopiq.flow.synth_cli import parse_seeds
from microscopiq.hdl.exp_decoder import ExpDecoder
from microscopiq.hdl.meta_decoder import MetaDecoder
from microscopiq.hdl.unpacker import Unpacker
from microscopiq.hdl.weight_decoder import WeightDecoder


def synth(name: str, component, workdir: Path, mapper: str, place: bool, device: str = "25k",
          seeds: tuple[int, ...] = (1,)) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / f"{name}.v"
    source.write_text(verilog.convert(component, name=name))
    fmax = []
    if place:   # out of context at 100 MHz (inputs straight from the ports); Yosys runs once, the
        # later seeds place its netlist again (synthesize reuses it, as `microscopiq synth --seed 1,2,3`)
        reports = [synthesize(source, name, "ecp5", device=device, io="ooc", workdir=workdir, mapper=mapper,
                              seed=seed) for seed in seeds]
        res, mapper = reports[0].resources, reports[0].lut_mapper
        fmax = [min(report.fmax_mhz.values()) for report in reports]
    else:
        cells, _, mapper = run_yosys([source], name, "ecp5", workdir, use_dsp=True, timeout_s=1800, mapper=mapper)
        res = summarize_cells(cells, "ecp5")
    shown = " / ".join(f"{value:.1f}" for value in fmax) + (f" (mean {sum(fmax) / len(fmax):.1f})" if len(fmax) > 1 else "")
    return {"block": name, "luts": res.luts, "logic": res.logic_luts, "carries": res.carries, "ffs": res.ffs,
            "mapper": mapper, "fmax": shown or "–"}


#: The blocks, in table order.
BLOCKS = ("meta_decoder", "exp_decoder", "unpacker", "weight_decoder")


def add_block_arguments(parser: argparse.ArgumentParser, device: str) -> None:
    """The options of a bench that places blocks of the front end alone (this one and
    bench_item_loop.py): the array, ``b``, the weight bus, and where and how often to place."""
    parser.add_argument("--wbits", type=int, default=4)
    parser.add_argument("--cols", type=int, default=8)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--bus", type=int, default=32, help="weight bus bits (the unpacker's W)")
    parser.add_argument("--place", action="store_true", help="also place and route (nextpnr, Fmax)")
    parser.add_argument("--device", default=device, help="ECP5 device of --place (25k, 45k, 85k)")
    parser.add_argument("--seeds", default="1", help="nextpnr seeds of --place, e.g. 1,2,3 (one netlist)")


def seeds_of(parser: argparse.ArgumentParser, args) -> tuple[int, ...]:
    """``--seeds`` as integers, or the parser's error naming the problem."""
    try:
        return tuple(parse_seeds(args.seeds))
    except FlowParameterError as error:
        parser.error(f"--seeds: {error}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_block_arguments(parser, device="25k")
    parser.add_argument("--ublock", type=int, default=8)
    parser.add_argument("--mapper", choices=MAPPERS, default=MAPPERS[0], help="Yosys LUT mapper")
    parser.add_argument("--blocks", default=",".join(BLOCKS), help=f"some of {','.join(BLOCKS)}")
    parser.add_argument("--out", type=Path, default=Path("build/bench-decoders"))
    args = parser.parse_args(argv)
    seeds = seeds_of(parser, args)
    blocks = args.blocks.split(",")
    unknown = sorted(set(blocks) - set(BLOCKS))
    if unknown:
        parser.error(f"--blocks: no block {', '.join(unknown)} (the blocks: {', '.join(BLOCKS)})")
    fmt = FormatConfig(wbits=args.wbits, ublock=args.ublock)
    start = time.perf_counter()
    cfg = AccelConfig(fmt=fmt, rows=args.rows, cols=args.cols, weight_bus=args.bus)
    work = (args.out / f"r{args.rows}-c{args.cols}-b{args.wbits}-u{args.ublock}-w{args.bus}-{args.mapper}"
            f"{'' if args.device == '25k' else '-' + args.device}")
    # name -> (folder, the block, its latency); a block is built only where asked for
    made = {"meta_decoder": ("meta", lambda: MetaDecoder(fmt, args.cols), lambda meta: meta.latency),
            "exp_decoder": ("exp", lambda: ExpDecoder(args.cols), lambda _: ExpDecoder.latency),
            "unpacker": ("unpacker", lambda: Unpacker(cfg), lambda _: 2),
            "weight_decoder": ("front", lambda: WeightDecoder(cfg), lambda _: WeightDecoder.latency_of(cfg))}
    rows = []
    for name in (block for block in BLOCKS if block in blocks):
        folder, make, latency = made[name]
        component = make()
        rows.append(dict(synth(name, component, work / folder, args.mapper, args.place, args.device, seeds),
                         latency=latency(component)))
    print(f"Command: `python bench/bench_decoders.py {' '.join(argv or sys.argv[1:])}` (R = {args.rows}, "
          f"C = {args.cols}, b = {args.wbits}, U = {args.ublock}, W = {args.bus}; "
          f"{time.perf_counter() - start:.0f} s)\n")
    seeds_shown = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
    print(f"| block | LUT4 (logic + 2·carry) | FF | latency | mapper | Fmax MHz ({args.device}, ooc, {seeds_shown}) |")
    print("| --- | ---: | ---: | ---: | --- | ---: |")
    for r in rows:
        print(f"| {r['block']} | {r['luts']} ({r['logic']} + 2·{r['carries']}) | {r['ffs']} | {r['latency']} "
              f"| {r['mapper']} | {r['fmax']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
