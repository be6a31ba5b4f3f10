"""LUT levels of a synthesised ECP5 netlist: how deep its register-to-register paths are, before
place and route (``make bench-levels``).

On the default build nextpnr's critical path changes from seed to seed and with every netlist change
(docs/performance.md, "Fmax and the critical path"), but every one it reported in sessions 13 and
14 with ABC's LUT4 mapping ran between groups this count puts at 7 or 8 levels, except the result
FIFO's write enable (5 levels into 176 LUT-RAM cells); and counting takes seconds after Yosys. So
a timing lever can first be judged on this table, then placed.

A level is a LUT4 (or an asynchronous LUT-RAM read, a LUT of the address); a carry chain adds one
level where a path enters it and none along it; the PFU multiplexers of wider LUTs add none. Paths
start at flip-flops, the outputs of other cells not in :data:`COMBINATIONAL` (DSP and block-RAM
sites) and input ports, and end at every other cell input (flip-flops' data, clock-enable and
reset, LUT-RAM write ports) and at output ports. The deepest endpoints are grouped by the register (or port) a
deepest path to them starts from and the register they belong to, with Yosys's cell-name suffixes
and bit indices taken off.

    python bench/bench_levels.py NETLIST [--min-levels 7] [--groups 25] [--paths 0]

``--paths N`` prints, for each of the first ``N`` groups, the deepest path of its deepest endpoint:
every net on it with its level, the kind of cell driving it and its name in the netlist (Yosys
names a LUT's output after a load it drives, so the names say where a path runs).

``NETLIST``: the ``netlist.json`` of ``microscopiq synth ... --mapper abc --no-place`` (ECP5).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

#: Cells whose outputs follow their inputs in the same cycle: input port -> levels it adds (every
#: other input of every cell is an endpoint).
COMBINATIONAL = {
    "LUT4": dict.fromkeys("ABCD", 1),
    "CCU2C": {**dict.fromkeys([f"{pin}{half}" for pin in "ABCD" for half in "01"], 1), "CIN": 0},
    "PFUMX": {"ALUT": 0, "BLUT": 0, "C0": 0},
    "L6MUX21": {"D0": 0, "D1": 0, "SD": 0},
    "TRELLIS_DPR16X4": {"RAD": 1},
}
#: Clock inputs: neither endpoints nor path inputs.
CLOCKS = frozenset({"CLK", "WCK", "CLKA", "CLKB", "CLK0", "CLK1", "CLK2", "CLK3"})

_SUFFIX = re.compile(r"(_TRELLIS_FF_Q|_LUT4_|_CCU2C|\$|\[).*$")


class NetlistError(ValueError):
    """The netlist is not one this count understands (no top module, a combinational loop)."""


@dataclass(frozen=True)
class Levels:
    """The count of one netlist: endpoints per depth, the deepest endpoints' groups
    (``(levels, source, endpoint, endpoints)``, deepest first) and per group (``(source,
    endpoint)``) the deepest path of its deepest endpoint, as ``(level, driving cell type, net)``
    from the source on."""

    histogram: dict[int, int]
    groups: list[tuple[int, str, str, int]]
    paths: dict[tuple[str, str], list[tuple[int, str, str]]]

    @property
    def deepest(self) -> int:
        return max(self.histogram, default=0)

    def at_least(self, levels: int) -> int:
        """Endpoints whose deepest path has ``levels`` levels or more."""
        return sum(count for depth, count in self.histogram.items() if depth >= levels)


def register_name(cell: str) -> str:
    """A cell's name without Yosys's mapping suffixes and bit index (``core.ppu.s3_TRELLIS_FF_Q_12``
    -> ``core.ppu.s3``; ``core.ppu.$42_TRELLIS_FF_Q`` -> ``core.ppu.(unnamed)``)."""
    name = re.sub(r"_\d+$", "", _SUFFIX.sub("", cell.lstrip("\\")))
    return f"{name}(unnamed)" if name.endswith(".") else name


def _top_module(netlist: dict) -> dict:
    tops = [module for module in netlist.get("modules", {}).values()
            if int(module.get("attributes", {}).get("top", "0"), 2)]
    if len(tops) != 1:
        raise NetlistError(f"expected one top module in the netlist, found {len(tops)}")
    return tops[0]


def _net_names(module: dict) -> dict:
    """Each bit's shortest visible net name (``name[i]`` in a wider net)."""
    names = {}
    for name, net in module.get("netnames", {}).items():
        if net.get("hide_name"):
            continue
        bits = net["bits"]
        for index, bit in enumerate(bits):
            label = name if len(bits) == 1 else f"{name}[{index}]"
            if isinstance(bit, int) and (bit not in names or len(label) < len(names[bit])):
                names[bit] = label
    return names


def count_levels(netlist: dict, *, min_levels: int = 7) -> Levels:
    """Count ``netlist`` (Yosys JSON); group the endpoints of ``min_levels`` levels or more."""
    module = _top_module(netlist)
    cells = module["cells"]
    drivers, endpoints = {}, []
    for name, cell in cells.items():
        through = COMBINATIONAL.get(cell["type"], {})
        for port, bits in cell["connections"].items():
            output = cell["port_directions"][port] == "output"
            for bit in bits:
                if not isinstance(bit, int):
                    continue
                if output:
                    drivers[bit] = name
                elif port not in through and port not in CLOCKS:
                    endpoints.append((bit, register_name(name)))
    inputs = {}
    for name, port in module["ports"].items():
        bits = [bit for bit in port["bits"] if isinstance(bit, int)]
        if port["direction"] == "output":
            endpoints += [(bit, name) for bit in bits]
        else:
            inputs.update(dict.fromkeys(bits, name))

    depth, origin, on_path = {}, {}, set()
    feeder = {}       # bit -> the input bit its deepest path comes through (None at a start)

    def level(bit):
        """Levels to ``bit`` from the nearest flip-flop or port; ``origin`` its deepest path's start."""
        if bit in depth:
            return depth[bit]
        name = drivers.get(bit)
        cell = cells.get(name)
        through = COMBINATIONAL.get(cell["type"]) if cell else None
        if not through:
            depth[bit], origin[bit], feeder[bit] = 0, register_name(name) if name else inputs.get(bit, "constant"), None
            return 0
        if bit in on_path:
            raise NetlistError(f"combinational loop through {name}")
        on_path.add(bit)
        best, start, via = -1, None, None
        for port, added in through.items():
            for source in cell["connections"].get(port, []):
                if isinstance(source, int) and level(source) + added > best:
                    best, start, via = depth[source] + added, origin[source], source
        on_path.discard(bit)
        depth[bit], origin[bit], feeder[bit] = max(best, 0), start if start is not None else register_name(name), via
        return depth[bit]

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20 * len(cells) + 1000))
    histogram = collections.Counter()
    grouped = collections.Counter()
    deepest, deepest_bit = {}, {}
    for bit, register in endpoints:
        levels = level(bit)
        histogram[levels] += 1
        if levels >= min_levels:
            key = (origin[bit], register)
            grouped[key] += 1
            if levels > deepest.get(key, -1):
                deepest[key], deepest_bit[key] = levels, bit
    groups = sorted(((deepest[key], *key, count) for key, count in grouped.items()),
                    key=lambda group: (-group[0], -group[3], group[1], group[2]))
    names = _net_names(module)

    def path(bit):
        chain = [bit]
        while feeder[chain[-1]] is not None:
            chain.append(feeder[chain[-1]])
        return [(depth[step], cells[drivers[step]]["type"] if step in drivers else "port",
                 names.get(step, "(unnamed)")) for step in reversed(chain)]
    return Levels(dict(sorted(histogram.items())), groups, {key: path(bit) for key, bit in deepest_bit.items()})


def markdown(levels: Levels, *, min_levels: int, groups: int, paths: int = 0) -> str:
    """The histogram and the deepest groups as Markdown; the deepest path of the first ``paths``
    groups after them."""
    lines = ["| LUT levels | " + " | ".join(str(depth) for depth in levels.histogram) + " |",
             "| --- |" + " ---: |" * len(levels.histogram),
             "| endpoints | " + " | ".join(f"{count:,}" for count in levels.histogram.values()) + " |", "",
             f"Endpoints at {min_levels} levels or more: {levels.at_least(min_levels):,}, in "
             f"{len(levels.groups)} groups (from -> to); the first {min(groups, len(levels.groups))}:", "",
             "| levels | from | to | endpoints |", "| ---: | --- | --- | ---: |"]
    lines += [f"| {depth} | `{source}` | `{register}` | {count} |"
              for depth, source, register, count in levels.groups[:groups]]
    for depth, source, register, _ in levels.groups[:paths]:
        lines += ["", f"Deepest path from `{source}` to `{register}`, {depth} levels (level, cell, net):", "",
                  "```text"]
        lines += [f"{step:3} {kind:<16} {net}" for step, kind, net in levels.paths[(source, register)]]
        lines.append("```")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("netlist", type=Path, help="netlist.json of microscopiq synth --no-place (ECP5)")
    parser.add_argument("--min-levels", type=int, default=7, help="group endpoints this deep or deeper")
    parser.add_argument("--groups", type=int, default=25, help="groups to print")
    parser.add_argument("--paths", type=int, default=0, help="print the deepest path of the first PATHS groups")
    args = parser.parse_args(argv)
    if args.paths < 0:
        parser.error(f"--paths must be 0 or more, not {args.paths}")
    try:
        netlist = json.loads(args.netlist.read_text())
        levels = count_levels(netlist, min_levels=args.min_levels)
    except (OSError, ValueError) as error:
        print(f"bench_levels: error: {args.netlist}: {error}", file=sys.stderr)
        return 1
    print(f"Command: `python bench/bench_levels.py {args.netlist} --min-levels {args.min_levels} "
          f"--groups {args.groups} --paths {args.paths}` (deepest: {levels.deepest} levels)\n")
    print(markdown(levels, min_levels=args.min_levels, groups=args.groups, paths=args.paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
