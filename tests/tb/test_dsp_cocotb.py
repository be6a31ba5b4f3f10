"""The DSP build (``AccelConfig.dsp == "ecp5"``: one MULT18X18D per PE) in cocotb on both simulators.

The generated Verilog instantiates the primitive; :mod:`microscopiq.tb.runner` adds the project's
model of it (hdl/models/MULT18X18D.v) to the sources. Every result integer is checked against the
golden model and, with free-running streams, the cycles against ``stream_format.predict_cycles``
(tb/test_accel.py), so the DSP build's latencies are those the host's cycle model assumes.
"""

import pytest

from microscopiq.config import PRESETS
from microscopiq.tb.accel_tb import assert_every_integer_checked
from microscopiq.tb.runner import selected_simulators
from microscopiq.tb.sim_cli import run_accel
from microscopiq.tb.test_accel import cross

SEED = 1
CFG = PRESETS["4x8-b2"].replace(dsp="ecp5")
#: A random MicroScopiQ layer under every (idle, back-pressure) pair, a uniform layer and the
#: outlier-heavy and extreme corners under random pauses.
CASES = cross(["random"], ["random_uniform", "full_outlier", "extreme"])
SHAPE = {"n": 16, "k": 128, "m": 5}


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", [
    pytest.param(sim, marks=[pytest.mark.xdist_group(f"accel-dsp-{sim}"),
                             *([pytest.mark.slow] if sim == "verilator" else [])])  # minutes to build
    for sim in selected_simulators()])
def test_dsp_build_regression(sim):
    records = run_accel(CFG, sim, {"cases": CASES, "seed": SEED, "shape": SHAPE, "extras": False},
                        seed=SEED)
    assert [r["kind"] for r in records] == [case[0] for case in CASES]
    assert_every_integer_checked(records)
    free = [r for r, case in zip(records, CASES) if case[1:] == ["none", "none"]]
    assert len(free) == 1 and free[0]["cycles"] == free[0]["predicted"], (
        f"free-running layer: {free[0]['cycles']} cycles, predicted {free[0]['predicted']}")
