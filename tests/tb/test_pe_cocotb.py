"""cocotb on the generated PE Verilog: the same test body (microscopiq.tb.test_pe) on Icarus and
Verilator, >= 10,000 vectors per configuration, every product an exact integer from
golden.pe_product; and the runner's contract (failures surface, TESTCASE, cache, WAVES).

Build folders: build/cocotb/pe/a<A>_w<B>/{rtl,icarus,verilator}. Tests that share a folder are in
one xdist group so they never build into it concurrently. ``SIM=icarus|verilator`` restricts the
simulators. The Verilator build (~15 s CPU per configuration) is the cost, so one configuration
runs on Verilator by default and the other three are marked slow; Icarus runs all four.
"""

from pathlib import Path

import pytest
from amaranth import Signal, signed

from microscopiq.config import FormatConfig
from microscopiq.flow.generate import generate_pe, read_manifest, write_generated
from microscopiq.hdl.pe import PE
from microscopiq.tb.runner import CocotbFailure, run_cocotb, selected_simulators
from microscopiq.tb.test_pe import TEST_MODULE, run_pe

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "cocotb" / "pe"
SEED = 1
VECTORS = 10_000
CONFIGS = [(8, 4), (4, 2), (8, 3), (8, 8)]
VERILATOR_DEFAULT = {(8, 4)}


def _cases():
    for sim in selected_simulators():
        for abits, wbits in CONFIGS:
            marks = [pytest.mark.cocotb, pytest.mark.xdist_group(f"pe-a{abits}w{wbits}")]
            if sim == "verilator" and (abits, wbits) not in VERILATOR_DEFAULT:
                marks.append(pytest.mark.slow)
            yield pytest.param(sim, FormatConfig(abits=abits, wbits=wbits), marks=marks,
                               id=f"{sim}-a{abits}w{wbits}-seed{SEED}")


@pytest.mark.parametrize("sim, fmt", _cases())
def test_pe_regression(sim, fmt, monkeypatch):
    monkeypatch.delenv("TESTCASE", raising=False)
    print(f"seed {SEED}")
    out = run_pe(sim, fmt, BUILD / f"a{fmt.abits}_w{fmt.wbits}", seed=SEED, vectors=VECTORS)
    print(out)
    assert (out["mismatches"], out["tests"]) == (0, 2)
    assert out["vectors"] >= VECTORS


class NegatedPE(PE):
    """A deliberately wrong PE (every operand negated): the testbench must catch it."""

    def _decode(self, m):
        negated = Signal(signed(self.fmt.wbits + 1))
        m.d.comb += negated.eq(-super()._decode(m))
        return negated


# The runner's contract, on Icarus (a build costs well under a second).
RUNNER_DIR = BUILD / "runner"
FMT = FormatConfig(abits=4, wbits=2)


def _params(summary=None, vectors=500):
    return {"fmt": {"abits": FMT.abits, "wbits": FMT.wbits}, "seed": SEED, "vectors": vectors,
            **({"summary": str(summary)} if summary else {})}


@pytest.mark.cocotb
@pytest.mark.xdist_group("pe-runner")
def test_failure_names_first_mismatch(monkeypatch):
    monkeypatch.delenv("TESTCASE", raising=False)
    rtl = RUNNER_DIR / "negated-rtl"
    manifest = write_generated(rtl, NegatedPE(FMT), "negated_pe", {"parameters": {}}, basename="pe")
    sources = read_manifest(rtl)[1]
    with pytest.raises(CocotbFailure, match=r"(?s)pe_regression: pe_regression \(seed 1\): \d+ of "
                       r"\d+ cycles differ; first at cycle \d+: act=-?\d+, .*expected product -?\d+, "
                       r"got -?\d+"):
        run_cocotb(sim="icarus", sources=sources, toplevel=manifest["top"],
                   test_module=TEST_MODULE, build_dir=RUNNER_DIR / "negated", params=_params())


@pytest.mark.cocotb
@pytest.mark.xdist_group("pe-runner")
def test_testcase_cache_and_waves(monkeypatch):
    rtl = RUNNER_DIR / "rtl"
    manifest = generate_pe(FMT, rtl)
    sources = read_manifest(rtl)[1]
    build = RUNNER_DIR / "icarus"
    summary = build / "summary.json"
    run = dict(sim="icarus", sources=sources, toplevel=manifest["top"], test_module=TEST_MODULE,
               build_dir=build, params=_params(summary))

    monkeypatch.setenv("TESTCASE", "pe_reset_clears")
    monkeypatch.delenv("WAVES", raising=False)
    first = run_cocotb(**run)
    assert first.passed == ("pe_reset_clears",)
    generate_pe(FMT, rtl)  # same Verilog rewritten: no rebuild
    assert run_cocotb(**run).rebuilt is False

    monkeypatch.setenv("TESTCASE", "no_such_test")
    with pytest.raises(CocotbFailure, match=r"no cocotb test ran \(TESTCASE='no_such_test'\)"):
        run_cocotb(**run)

    monkeypatch.delenv("TESTCASE")
    monkeypatch.setenv("WAVES", "1")
    waved = run_cocotb(**run)
    assert waved.rebuilt and waved.waves.stat().st_size > 0
