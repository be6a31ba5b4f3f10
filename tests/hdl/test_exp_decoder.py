"""ExpDecoder in amaranth.sim: the exponents of a packed stream in, the PPU shifts the host encoder
computes today (``stream_format``'s tile headers) out; errors, latency and back-pressure."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.flow.lint import lint
from microscopiq.hdl.exp_decoder import ExpDecoder
from microscopiq.host import stream_format
from microscopiq.host.packed_stream import decode_pass, encode_pass, ppu_shifts
from microscopiq.tb import stimulus
from microscopiq.tb.sim_streams import stream_through

SEED = 1213

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def beat(minimum: bool, exps) -> dict:
    return {"minimum": int(minimum), "exps": [int(e) for e in exps]}


def run(width, beats, rng, *, pause=0.25):
    """Stream ``beats`` with random idle cycles on both sides; return ``(shifts, error)`` per output."""
    wanted = sum(not b["minimum"] for b in beats)
    return stream_through(ExpDecoder(width), beats, wanted, rng, pause=pause,
                          sample=lambda out: (int(out.shifts.as_value().value), int(out.error)))


def packed(values) -> int:
    return sum((int(v) & 0xFF) << (8 * i) for i, v in enumerate(values))


@pytest.mark.parametrize("kind", ["random", "extreme"])
def test_layer_shifts_match_stream_format(kind):
    """The exponents as a packed pass carries them (encode_pass, read back by decode_pass), through
    the decoder, equal the shifts the host computes (``stream_format.decoded_tiles``) at every
    K-group's last K-tile."""
    cfg = AccelConfig(fmt=FormatConfig(group=16), rows=4, cols=16)
    case = stimulus.build_case(kind, cfg, 40, 64, 1, SEED)
    contents = decode_pass(cfg, encode_pass(cfg, case.layer))
    cols, per_group = cfg.cols, cfg.fmt.group // cfg.rows
    n_tiles, groups = contents.exps.shape[0] // cols, contents.exps.shape[1]
    beats = []
    for j in range(n_tiles):
        rows = slice(j * cols, (j + 1) * cols)
        beats.append(beat(True, contents.emin[rows]))
        beats += [beat(False, contents.exps[rows, g]) for g in range(groups)]
    tiles = stream_format.decoded_tiles(cfg, case.layer)
    k_tiles = groups * per_group
    want = [packed(tiles[j * k_tiles + (g + 1) * per_group - 1][0]) for j in range(n_tiles) for g in range(groups)]
    outputs = run(cols, beats, np.random.default_rng(SEED))
    for index, ((shifts, error), expected) in enumerate(zip(outputs, want)):
        assert (shifts, error) == (expected, 0), f"beat {index}: expected {expected:#x}, actual {shifts:#x} (error {error})"
    assert len(outputs) == len(want)
    # The host model of the decoder agrees too.
    model = ppu_shifts(np.repeat(contents.emin[:, None], groups, axis=1), contents.exps)
    assert [packed(model[j * cols:(j + 1) * cols, g]) for j in range(n_tiles) for g in range(groups)] == want


def test_extremes_and_errors():
    """d = 255 (E = 127 over E_min = -128), d = 0, and E below E_min (error, shift 0) per column."""
    rng = np.random.default_rng(SEED)
    beats = [beat(True, [-128, 5, 127]), beat(False, [127, 5, 127]), beat(False, [-128, 4, 126]),
             beat(True, [0, 0, 0]), beat(False, [3, 0, 1])]
    assert run(3, beats, rng) == [(packed([255, 0, 0]), 0), (packed([0, 0, 0]), 1), (packed([3, 0, 1]), 0)]
    with pytest.raises(ValueError, match=r"^exponent at \[1\] lies below its row minimum$"):
        ppu_shifts([5, 5], [5, 4])


def test_latency_and_backpressure():
    """Output always ready: each group beat comes out ``latency`` cycles after it went in; random
    back-pressure keeps every beat, in order."""
    rng = np.random.default_rng(SEED)
    mins = rng.integers(-128, 0, size=8)
    groups = [rng.integers(0, 128, size=8) for _ in range(40)]
    beats = [beat(True, mins)] + [beat(False, g) for g in groups]
    want = [(packed(g - mins), 0) for g in groups]
    assert run(8, beats, rng, pause=0.5) == want
    dut = ExpDecoder(8)
    seen = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle in range(len(beats) + 3):
            ctx.set(dut.i.valid, cycle < len(beats))
            if cycle < len(beats):
                ctx.set(dut.i.payload, beats[cycle])
            *_, ready, valid = await ctx.tick().sample(dut.i.ready, dut.o.valid)
            assert ready
            if valid:
                seen.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [g + dut.latency for g in range(1, len(beats))], f"outputs at {seen}"


def test_refuses_bad_width():
    with pytest.raises(TypeError, match=r"^width must be an integer, not 2\.0$"):
        ExpDecoder(2.0)
    with pytest.raises(ValueError, match=r"^width must be >= 1, not 0$"):
        ExpDecoder(0)
    gc.collect()


def test_verilog_lint(tmp_path):
    """``verilator --lint-only -Wall`` with the project's named waivers (flow/lint.py) is clean."""
    path = tmp_path / "exp_decoder.v"
    path.write_text(verilog.convert(ExpDecoder(8), name="exp_decoder"))
    lint(path, top="exp_decoder")
