"""microscopiq.hdl.dsp_mult: the behavioural path in amaranth.sim, the MULT18X18D instance against
the project's Verilog model of the primitive in Icarus, and the refusals of both."""

import re
import subprocess

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from microscopiq.hdl.dsp_mult import DSP_PORT_BITS, VERILOG_MODEL, DspMult

SEED = 20261205
CYCLES = 400


def stimulus(a_width, b_width, cycles=CYCLES, seed=SEED):
    """Random operands (the extremes included) and random enables, one row per cycle."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-(1 << a_width - 1), 1 << a_width - 1, cycles)
    b = rng.integers(-(1 << b_width - 1), 1 << b_width - 1, cycles)
    a[:4] = [-(1 << a_width - 1), (1 << a_width - 1) - 1, -1, 0]
    b[:4] = [-(1 << b_width - 1), -(1 << b_width - 1), (1 << b_width - 1) - 1, -1]
    enables = rng.integers(0, 2, (cycles, 3))
    enables[:8] = 1
    return a, b, enables


def expected(a, b, enables):
    """``p`` after each edge: A/B/P registers with their enables, all 0 after reset."""
    reg_a = reg_b = p = 0
    out = []
    for x, w, (a_en, b_en, p_en) in zip(a.tolist(), b.tolist(), enables.tolist()):
        p = reg_a * reg_b if p_en else p
        reg_a = x if a_en else reg_a
        reg_b = w if b_en else reg_b
        out.append(p)
    return out


def first_mismatch(want, got):
    bad = [i for i, (w, g) in enumerate(zip(want, got)) if w != g]
    return "" if not bad else f"cycle {bad[0]}: expected {want[bad[0]]}, got {got[bad[0]]}"


@pytest.mark.parametrize("a_width, b_width", [(8, 5), (4, 3), (8, 9), (18, 18)])
def test_model_registers_and_latency(a_width, b_width):
    dut = DspMult(a_width, b_width, model=True)
    a, b, enables = stimulus(a_width, b_width)
    got = []

    async def bench(ctx):
        for x, w, (a_en, b_en, p_en) in zip(a.tolist(), b.tolist(), enables.tolist()):
            ctx.set(dut.a, x)
            ctx.set(dut.b, w)
            ctx.set(dut.a_en, a_en)
            ctx.set(dut.b_en, b_en)
            ctx.set(dut.p_en, p_en)
            await ctx.tick()
            got.append(ctx.get(dut.p))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    want = expected(a, b, enables)
    assert got == want, first_mismatch(want, got)
    assert (DspMult.LATENCY, DspMult.INPUT_STAGES) == (2, 1)


def _bench_verilog(a_width, b_width, a, b, enables) -> str:
    """A self-checking testbench: the instance drives ``p``, compared every cycle with ``want``."""
    want = expected(a, b, enables)
    lines = ["`timescale 1ns/1ps", "module bench;",
             "reg clk = 0, rst = 1, a_en = 0, b_en = 0, p_en = 0;",
             f"reg signed [{a_width - 1}:0] a = 0; reg signed [{b_width - 1}:0] b = 0;",
             f"wire signed [{a_width + b_width - 1}:0] p;",
             "top dut(.clk(clk), .rst(rst), .a(a), .b(b), .a_en(a_en), .b_en(b_en), .p_en(p_en), .p(p));",
             "integer errors = 0;",
             "initial begin", "#1 clk = 1; #1 clk = 0; rst = 0;"]
    for i, (x, w, (a_en, b_en, p_en)) in enumerate(zip(a.tolist(), b.tolist(), enables.tolist())):
        lines.append(f"a = {x}; b = {w}; a_en = {a_en}; b_en = {b_en}; p_en = {p_en}; #1 clk = 1; #1 clk = 0; "
                     f"if (p !== {want[i]}) begin if (errors == 0) $display(\"MISMATCH cycle {i}: "
                     f"expected {want[i]}, got %0d\", p); errors = errors + 1; end")
    lines += ['$display("ERRORS %0d", errors);', "$finish;", "end", "endmodule"]
    return "\n".join(lines)


def _instance_verilog(a_width, b_width) -> str:
    dut = DspMult(a_width, b_width)
    return verilog.convert(dut, name="top", ports=[dut.a, dut.b, dut.a_en, dut.b_en, dut.p_en, dut.p])


def _icarus(tmp_path, *texts) -> str:
    files = []
    for index, text in enumerate(texts):
        files.append(tmp_path / f"part{index}.v")
        files[-1].write_text(text)
    run = subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "sim.vvp"), *map(str, files),
                          str(VERILOG_MODEL)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return subprocess.run(["vvp", "-n", str(tmp_path / "sim.vvp")], capture_output=True, text=True,
                          timeout=120).stdout


@pytest.mark.parametrize("a_width, b_width", [(8, 5), (4, 3), (18, 18)])
def test_instance_with_the_verilog_model(a_width, b_width, tmp_path):
    """The generated ``MULT18X18D`` instance and hdl/models/MULT18X18D.v behave as the model path."""
    text = _instance_verilog(a_width, b_width)
    assert text.count("MULT18X18D #(") == 1
    for name, value in (("REG_INPUTA_CLK", "CLK0"), ("REG_INPUTB_CLK", "CLK0"), ("REG_OUTPUT_CLK", "CLK0"),
                        ("REG_PIPELINE_CLK", "NONE"), ("REG_INPUTA_CE", "CE0"), ("REG_INPUTB_CE", "CE1"),
                        ("REG_OUTPUT_CE", "CE2"), ("RESETMODE", "SYNC"), ("GSR", "DISABLED")):
        assert f'.{name}("{value}")' in text, name
    a, b, enables = stimulus(a_width, b_width, seed=SEED + a_width)
    out = _icarus(tmp_path, text, _bench_verilog(a_width, b_width, a, b, enables))
    assert "ERRORS 0" in out, out


def test_verilog_model_refuses_the_pipeline_register(tmp_path):
    wrapper = """module top; wire [35:0] p;
    MULT18X18D #(.REG_PIPELINE_CLK("CLK0")) dsp (.CLK0(1'b0), .P0(p[0]));
    endmodule"""
    out = _icarus(tmp_path, wrapper)
    assert re.search(r"MULT18X18D model: the pipeline register is not modelled \(REG_PIPELINE_CLK CLK0\)", out), out


@pytest.mark.parametrize("args, error, message", [
    ((19, 5), ValueError, rf"^a_width must be between 1 and {DSP_PORT_BITS} \(a MULT18X18D input\), not 19$"),
    ((8, 0), ValueError, rf"^b_width must be between 1 and {DSP_PORT_BITS} \(a MULT18X18D input\), not 0$"),
    ((8.0, 5), TypeError, r"^a_width must be an integer, not 8\.0$"),
    ((8, True), TypeError, r"^b_width must be an integer, not True$"),
])
def test_refusals(args, error, message):
    with pytest.raises(error, match=message):
        DspMult(*args)
