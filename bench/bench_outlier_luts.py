"""Where the outlier-support LUTs go: the parts of one ReCoN network synthesised alone (``make bench-outlier-luts``).

Each part is a variant of :class:`~microscopiq.hdl.recon_network.ReconNetwork` (``C = 8``, one
micro-block) or a bare shifter block, through the QoR sweep's flow (Yosys, ECP5, ABC LUT mapping,
no DSPs, no place and route), and printed as a Markdown table for docs/performance.md:

* ``network``: the network as built;
* ``Beneš only``: the routing switches with a register on each output line;
* ``permutation + merge``: the network with every column's shift tied to 0 (Yosys removes the
  shifters): the floor of the brief's "one U-input permutation per micro-block and the merge adders";
* ``8 shifters``: eight ``merge_bits → product_bits`` shifters by ``0 … max_shift``, registered;
* ``4 lane shifters + returns``: the U/2-lane alternative, four such shifters and per column a
  registered 3:1 multiplexer from three of the lanes (the cheapest return that lets every set of up
  to U/2 outlier columns find distinct lanes, docs/recon.md).

Then the outlier support beside the networks (``--tables beside``), for each array of ``--arrays``:
the weight front end (``WeightDecoder``) of the per-row configuration against that of ``none``
(which has no metadata or exponent decoder), and the ``PPU`` with its ``shift_load`` port against
the same PPU with it tied to 0 (Yosys removes the shifters, as in a ``none`` build).

    python bench/bench_outlier_luts.py [--wbits 4,2] [--arrays 8x8,16x16] [--tables networks,beside]
                                       [--out build/outlier_luts]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from amaranth import Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.flow import synth
from microscopiq.hdl.recon_geometry import ReconGeometry
from microscopiq.hdl.ppu import PPU
from microscopiq.hdl.recon_network import ReconNetwork
from microscopiq.hdl.weight_decoder import WeightDecoder


class NetworkPart(ReconNetwork):
    """A ReconNetwork with only some of its parts: ``"benes"`` or ``"no-shift"`` (see the module)."""

    def __init__(self, fmt: FormatConfig, width: int, part: str):
        super().__init__(fmt, width)
        self.part = part

    def elaborate(self, platform):
        m = Module()
        u = self.geometry.ublock
        for blk in range(self.geometry.blocks):
            cfg = self.config[blk]
            own = [self.products[blk * u + c] for c in range(u)]
            routed = self._benes(m, blk, own, cfg.benes)
            for c in range(u):
                if self.part == "benes":
                    with m.If(self.en):
                        m.d.sync += self.contributions[blk * u + c].eq(routed[c])
                else:
                    unshifted = _Field(cfg.columns[c].op, 0)
                    self._column(m, blk * u + c, own[c], routed[c], unshifted)
        return m


class _Field:
    """A column field with a constant shift."""

    def __init__(self, op, shift):
        self.op, self.shift = op, shift


class Shifters(wiring.Component):
    """Eight columns of ``merge_bits → product_bits`` shifted values, registered: from eight
    shifters (``lanes = False``) or from four lane shifters through 3:1 multiplexers."""

    def __init__(self, fmt: FormatConfig, lanes: bool):
        geom = ReconGeometry(fmt, fmt.ublock)
        self.fmt, self.lanes, self.geom = fmt, lanes, geom
        self.sources = fmt.ublock // 2 if lanes else fmt.ublock
        super().__init__({
            "values": In(unsigned(geom.merge_bits * self.sources)),
            "shifts": In(unsigned(geom.shift_bits * self.sources)),
            "select": In(unsigned(2 * fmt.ublock)),
            "out": Out(unsigned(fmt.product_bits * fmt.ublock)),
        })

    def elaborate(self, platform):
        m = Module()
        mb, sb, pb, u = self.geom.merge_bits, self.geom.shift_bits, self.fmt.product_bits, self.fmt.ublock
        shifted = []
        for i in range(self.sources):
            value = Signal(signed(pb), name=f"shifted_{i}")
            m.d.comb += value.eq(self.values[mb * i:mb * (i + 1)].as_signed() << self.shifts[sb * i:sb * (i + 1)])
            shifted.append(value)
        for c in range(u):
            if self.lanes:
                sel = self.select[2 * c:2 * c + 2]
                first, second, third = (shifted[(c // 2 + k) % self.sources] for k in range(3))
                value = Mux(sel[1], third, Mux(sel[0], second, first))
            else:
                value = shifted[c]
            reg = Signal(pb, name=f"out_{c}")
            m.d.sync += reg.eq(value)
            m.d.comb += self.out[pb * c:pb * (c + 1)].eq(reg)
        return m


def port_signals(component, leave_out=()) -> list:
    """``component``'s ports but those named in ``leave_out``, without constants (an always-ready
    stream's ``ready``, which Amaranth refuses as a port)."""
    values = [Value.cast(v) for path, _, v in component.signature.flatten(component) if path[0] not in leave_out]
    return [v for v in values if not isinstance(v, Const)]


def ppu_without_shifts(cfg: AccelConfig):
    """A PPU whose ``shift_load`` is tied to 0 (as in a ``none`` build), and its ports."""
    top = Module()
    top.submodules.ppu = ppu = PPU(cfg)
    top.d.comb += ppu.shift_load.as_value().eq(0)
    return top, port_signals(ppu, leave_out=("shift_load",))


def measure(component, name: str, out: Path, ports=None) -> synth.Resources:
    work = out / name
    work.mkdir(parents=True, exist_ok=True)
    (work / "top.v").write_text(verilog.convert(component, name="top", ports=ports))
    report = synth.synthesize([work / "top.v"], "top", workdir=work / "synth", use_dsp=False,
                              place_route=False, mapper="abc", device="85k")
    return report.resources


def beside_the_networks(bits: list[int], arrays: list[tuple[int, int]], out: Path) -> None:
    """The table of the outlier support outside the networks: front end and PPU shifts."""
    print("| array, b | front end: per row − none | PPU: shifts − no shifts |")
    print("| --- | ---: | ---: |")
    for rows, cols in arrays:
        for b in bits:
            per_row = AccelConfig(fmt=FormatConfig(wbits=b), rows=rows, cols=cols)
            tag = f"r{rows}-c{cols}-b{b}"
            front = [measure(WeightDecoder(cfg), f"{tag}-front-{name}", out).luts
                     for name, cfg in (("per-row", per_row), ("none", per_row.replace(recon_share=0)))]
            whole = PPU(per_row)
            stripped, stripped_ports = ppu_without_shifts(per_row)
            ppu = [measure(whole, f"{tag}-ppu-shifts", out, port_signals(whole)).luts,
                   measure(stripped, f"{tag}-ppu-no-shifts", out, stripped_ports).luts]
            print(f"| {rows}×{cols}, {b} | {front[0]} − {front[1]} = {front[0] - front[1]} "
                  f"| {ppu[0]} − {ppu[1]} = {ppu[0] - ppu[1]} |", flush=True)


def network_parts(bits: list[int], out: Path) -> None:
    """The table of one network's parts."""
    print("| b | part (C = 8) | LUT4s | FFs |")
    print("| ---: | --- | ---: | ---: |")
    for b in bits:
        fmt = FormatConfig(wbits=b)
        parts = [("network", ReconNetwork(fmt, 8)),
                 ("Beneš only", NetworkPart(fmt, 8, "benes")),
                 ("permutation + merge (shift 0)", NetworkPart(fmt, 8, "no-shift")),
                 ("8 shifters", Shifters(fmt, lanes=False)),
                 ("4 lane shifters + returns", Shifters(fmt, lanes=True))]
        for label, component in parts:
            res = measure(component, f"b{b}-{label.split()[0].lower()}-{len(label)}", out)
            print(f"| {b} | {label} | {res.luts} | {res.ffs} |", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wbits", default="4,2", help="comma-separated b (default 4,2)")
    parser.add_argument("--arrays", default="8x8,16x16", help="arrays of --tables beside (default 8x8,16x16)")
    parser.add_argument("--tables", default="networks,beside", help="networks, beside, or both (default)")
    parser.add_argument("--out", type=Path, default=Path("build/outlier_luts"))
    args = parser.parse_args(argv)
    tables = args.tables.split(",")
    if not tables or set(tables) - {"networks", "beside"}:
        parser.error(f"--tables: networks and/or beside, not {args.tables!r}")
    bits = [int(text) for text in args.wbits.split(",")]
    started = time.monotonic()
    if "beside" in tables:
        beside_the_networks(bits, [tuple(int(n) for n in shape.split("x")) for shape in args.arrays.split(",")],
                            args.out)
    if "networks" in tables:
        network_parts(bits, args.out)
    print(f"\n({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
