"""bench/bench_levels.py on a netlist written here: the levels of each kind of cell (LUT4, carry
chain, PFU multiplexer, LUT-RAM read), the endpoint kinds, the grouping by source and register,
and clear errors for a loop or a netlist without a top module."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_levels.py"
_spec = importlib.util.spec_from_file_location("bench_levels", BENCH)
bl = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("bench_levels", bl)
_spec.loader.exec_module(bl)

_DIRECTIONS = {"Q": "output", "Z": "output", "S0": "output", "S1": "output", "COUT": "output", "DO": "output"}


def _cell(kind: str, **connections) -> dict:
    return {"type": kind, "connections": connections,
            "port_directions": {port: _DIRECTIONS.get(port, "input") for port in connections}}


# Net names: a one-bit net, a two-bit net, a hidden name (bit 8 shows as unnamed), and a longer
# second name of bit 2 (the shorter one is shown).
NETNAMES = {"ff_a_q": {"bits": [2]}, "chain": {"bits": [3, 4]}, "$abc$8": {"bits": [8], "hide_name": 1},
            "ff_a_q_long_alias": {"bits": [2]}, "mux_out": {"bits": [10]}}


def _netlist(cells: dict, ports: dict | None = None) -> dict:
    ports = ports or {"din": {"direction": "input", "bits": [100]}, "dout": {"direction": "output", "bits": [101]}}
    return {"modules": {"top": {"attributes": {"top": "00000000000000000000000000000001"}, "ports": ports,
                                "cells": cells, "netnames": NETNAMES}}}


# Bits: 2 = ff_a.Q; LUT chain 2 -> 3 -> 4 -> ff_b.DI (2 levels); carry chain: 2 enters at A0 (one
# level), runs 5 -> COUT 6 -> next CIN -> S0 7 -> ff_c.CE (1 level); a wide LUT: LUT 8 from 4 (3
# levels) and LUT 9 from the port (1) joined by a PFUMX 10 -> ff_b.LSR (3 levels); LUT-RAM: ff_a ->
# RAD -> DO 11 -> LUT 12 -> ff_c.DI (2 levels) and its write port fed from 4 (WRE, 2 levels) and
# the port (DI, 0 levels); the output port from LUT 13 of the port (1 level).
CELLS = {
    "ff_a_TRELLIS_FF_Q_3": _cell("TRELLIS_FF", CLK=[1], DI=[13], Q=[2]),
    "$lut1": _cell("LUT4", A=[2], B=["0"], C=["0"], D=["0"], Z=[3]),
    "$lut2": _cell("LUT4", A=[3], B=[2], C=["0"], D=["0"], Z=[4]),
    "ff_b_TRELLIS_FF_Q": _cell("TRELLIS_FF", CLK=[1], DI=[4], LSR=[10], Q=[20]),
    "$carry0": _cell("CCU2C", A0=[2], B0=["0"], C0=["0"], D0=["0"], A1=["0"], B1=["0"], C1=["0"], D1=["0"],
                     CIN=["0"], S0=[5], S1=[21], COUT=[6]),
    "$carry1": _cell("CCU2C", A0=["0"], B0=["0"], C0=["0"], D0=["0"], A1=["0"], B1=["0"], C1=["0"], D1=["0"],
                     CIN=[6], S0=[7], S1=[22], COUT=[23]),
    "ff_c_TRELLIS_FF_Q_1": _cell("TRELLIS_FF", CLK=[1], DI=[12], CE=[7], Q=[24]),
    "$lut3": _cell("LUT4", A=[4], B=["0"], C=["0"], D=["0"], Z=[8]),
    "$lut4": _cell("LUT4", A=[100], B=["0"], C=["0"], D=["0"], Z=[9]),
    "$mux": _cell("PFUMX", ALUT=[8], BLUT=[9], C0=[2], Z=[10]),
    "ram.slots_DPR": _cell("TRELLIS_DPR16X4", RAD=[2, 2, 2, 2], WAD=["0", "0", "0", "0"], DI=[100, 100, 100, 100],
                           WRE=[4], WCK=[1], DO=[11, 25, 26, 27]),
    "$lut5": _cell("LUT4", A=[11], B=["0"], C=["0"], D=["0"], Z=[12]),
    "$lut6": _cell("LUT4", A=[100], B=["0"], C=["0"], D=["0"], Z=[101]),
    "$lut7": _cell("LUT4", A=[24], B=["0"], C=["0"], D=["0"], Z=[13]),
}


def test_levels_of_each_cell_kind():
    levels = bl.count_levels(_netlist(CELLS), min_levels=2)
    # Endpoints: ff_a.DI 1, ff_b.DI 2, ff_b.LSR 3, ff_c.DI 2, ff_c.CE 1, the RAM's WAD (4 constant
    # bits, skipped), DI 4 x 0 and WRE 2, dout 1.
    assert levels.histogram == {0: 4, 1: 3, 2: 3, 3: 1}
    assert levels.deepest == 3 and levels.at_least(2) == 4
    assert levels.groups == [(3, "ff_a", "ff_b", 2), (2, "ff_a", "ff_c", 1), (2, "ff_a", "ram.slots_DPR", 1)]
    # From one level on: the input port starts the output port's path, ff_c starts ff_a's.
    assert bl.count_levels(_netlist(CELLS), min_levels=1).groups == [
        (3, "ff_a", "ff_b", 2), (2, "ff_a", "ff_c", 2), (2, "ff_a", "ram.slots_DPR", 1), (1, "din", "dout", 1),
        (1, "ff_c", "ff_a", 1)]


def test_deepest_paths():
    levels = bl.count_levels(_netlist(CELLS), min_levels=2)
    # ff_b's deepest endpoint is its LSR: ff_a -> LUT 3 -> LUT 4 -> LUT 8 -> the PFU multiplexer.
    assert levels.paths[("ff_a", "ff_b")] == [(0, "TRELLIS_FF", "ff_a_q"), (1, "LUT4", "chain[0]"),
                                              (2, "LUT4", "chain[1]"), (3, "LUT4", "(unnamed)"),
                                              (3, "PFUMX", "mux_out")]
    # ff_c's deepest endpoint is its DI through the LUT-RAM's read (2 levels), not its CE through
    # the carry chain (1 level).
    assert levels.paths[("ff_a", "ff_c")] == [(0, "TRELLIS_FF", "ff_a_q"), (1, "TRELLIS_DPR16X4", "(unnamed)"),
                                              (2, "LUT4", "(unnamed)")]
    text = bl.markdown(levels, min_levels=2, groups=3, paths=1)
    assert text.splitlines()[-10:] == [
        "", "Deepest path from `ff_a` to `ff_b`, 3 levels (level, cell, net):", "", "```text",
        "  0 TRELLIS_FF       ff_a_q", "  1 LUT4             chain[0]", "  2 LUT4             chain[1]",
        "  3 LUT4             (unnamed)", "  3 PFUMX            mux_out", "```"]
    # No paths unless asked for.
    assert "Deepest path" not in bl.markdown(levels, min_levels=2, groups=3)


def test_negative_paths_is_an_error(tmp_path, capsys):
    path = tmp_path / "netlist.json"
    path.write_text(json.dumps(_netlist(CELLS)))
    with pytest.raises(SystemExit) as exit_info:
        bl.main([str(path), "--paths", "-1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.endswith("error: --paths must be 0 or more, not -1\n")


def test_markdown_table():
    text = bl.markdown(bl.count_levels(_netlist(CELLS), min_levels=3), min_levels=3, groups=5)
    assert text.splitlines()[:3] == ["| LUT levels | 0 | 1 | 2 | 3 |", "| --- | ---: | ---: | ---: | ---: |",
                                     "| endpoints | 4 | 3 | 3 | 1 |"]
    assert text.splitlines()[-1] == "| 3 | `ff_a` | `ff_b` | 1 |"


@pytest.mark.parametrize("cell, name", [("core.ppu.s3_TRELLIS_FF_Q_12", "core.ppu.s3"),
                                        ("core.ppu.$42_TRELLIS_FF_Q", "core.ppu.(unnamed)"),
                                        ("\\core.tile_n_last_TRELLIS_FF_Q", "core.tile_n_last")])
def test_register_names(cell, name):
    assert bl.register_name(cell) == name


def test_loop_and_missing_top_are_errors(tmp_path, capsys):
    loop = {"$a": _cell("LUT4", A=[5], B=["0"], C=["0"], D=["0"], Z=[6]),
            "$b": _cell("LUT4", A=[6], B=["0"], C=["0"], D=["0"], Z=[5]),
            "ff_TRELLIS_FF_Q": _cell("TRELLIS_FF", CLK=[1], DI=[6], Q=[7])}
    with pytest.raises(bl.NetlistError, match=r"^combinational loop through \$"):
        bl.count_levels(_netlist(loop))
    path = tmp_path / "netlist.json"
    path.write_text(json.dumps({"modules": {}}))
    assert bl.main([str(path)]) == 1
    assert capsys.readouterr().err == (f"bench_levels: error: {path}: expected one top module in the "
                                       f"netlist, found 0\n")
