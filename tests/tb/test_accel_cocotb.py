"""End-to-end cocotb regression of the generated accelerator (microscopiq.tb.test_accel).

Each (configuration, simulator) pair has its own build folder
``build/cocotb/accel/<config>/<sim>/`` (cached: rebuilt only when the Verilog changes) and its own
pytest-xdist group, so no folder is ever built twice at once. ``make test-quick`` runs the 8x8 b=4 configuration on Icarus; the other
pairs and the quantizer-backed layers (MicroScopiQ with a calibration Hessian, decoupleQ, a real
all-MiniLM-L6-v2 sub-block) are marked slow. ``SIM=icarus|verilator`` restricts the simulators,
``TESTCASE=name`` the cocotb tests, ``WAVES=1`` writes waveforms into the build folder.
"""

import pytest

from microscopiq.config import PRESETS, AccelConfig, FormatConfig
from microscopiq.tb.accel_tb import assert_every_integer_checked
from microscopiq.tb.runner import selected_simulators
from microscopiq.tb.sim_cli import run_accel
from microscopiq.host.stream_format import layer_pairs
from microscopiq.tb.stimulus import CORNERS, build_case
from microscopiq.tb.test_accel import cross

SEED = 1
QUICK = ("8x8-b4", "icarus")
#: Structural stimulus: random layers (every idle x back-pressure pair), uniform mode and every
#: SPEC §6 corner (under random idle cycles and back-pressure together).
CASES = cross(["random"], ["random_uniform", *CORNERS])
#: On the smallest preset (both simulators; about 20 s of Icarus each): the other two pause patterns,
#: ``heavy`` (half the cycles paused) on a random layer and ``cycle`` (3 in 4) on uniform mode, and the
#: resets at a layer header and at a pass boundary (tb/test_accel.py ``reset_at_boundary``).
STRESS_PRESET = "4x8-b2"
STRESS_CASES = [["random", "heavy", "heavy"], ["random_uniform", "cycle", "cycle"]]
#: Quantizer-backed stimulus (PyTorch, seconds per layer): one configuration and one simulator
#: only, Verilator unless ``SIM`` selects Icarus alone.
HEAVY = ("8x8-b4", selected_simulators()[-1])
HEAVY_KINDS = ["quantized", "decoupleq", "minilm"]
#: Two K-groups of real inputs (MiniLM's FFN down-projection has K = 1536).
HEAVY_SHAPE = {"n": 16, "k": 256, "m": 8}
#: Layer shapes per configuration: one K-group, a few tokens; about a CPU minute per pair.
SHAPES = {
    "4x8-b2": {"n": 16, "k": 128, "m": 5},
    "8x8-b4": {"n": 16, "k": 128, "m": 6},
    "16x16-b4-shared": {"n": 16, "k": 128, "m": 6},  # one N-tile (ragged and back-to-back: two)
}


def _pairs():
    params = []
    for preset in SHAPES:
        for sim in selected_simulators():
            marks = [pytest.mark.xdist_group(f"accel-{preset}-{sim}")]
            if (preset, sim) != QUICK:
                marks.append(pytest.mark.slow)
            params.append(pytest.param(preset, sim, marks=marks, id=f"{preset}-{sim}-seed{SEED}"))
    return params


@pytest.mark.cocotb
@pytest.mark.parametrize("preset, sim", _pairs())
def test_accel_regression(preset, sim):
    stress = preset == STRESS_PRESET
    cases = CASES + (STRESS_CASES if stress else [])
    records = run_accel(PRESETS[preset], sim, {"cases": cases, "seed": SEED, "shape": SHAPES[preset],
                                               "boundary_resets": stress}, seed=SEED)
    # One record per case, the reset reruns (mid-layer; header and pass boundary), four back-to-back
    # layers, the five good layers after malformed weight streams.
    assert len(records) == len(cases) + 1 + (2 if stress else 0) + 4 + 5
    assert [r["kind"] for r in records if r["kind"].startswith("after-")] == [
        "after-version", "after-truncated", "after-overrun", "after-pairs", "after-exponent"]
    assert_every_integer_checked(records)
    # Saturation really happens, and is counted (what microscopiq sim reports).
    assert all(record["overflowed"] > 0 for record in records if record["kind"] == "saturation")
    assert all(record["overflowed"] == 0 for record in records if record["kind"] == "all_inlier")


@pytest.mark.cocotb
@pytest.mark.slow
@pytest.mark.parametrize("preset, sim", [
    pytest.param(*HEAVY, marks=pytest.mark.xdist_group(f"accel-{HEAVY[0]}-{HEAVY[1]}"),
                 id=f"{HEAVY[0]}-{HEAVY[1]}-seed{SEED}")])
def test_accel_quantized_layers(preset, sim):
    records = run_accel(PRESETS[preset], sim, {"cases": cross([], HEAVY_KINDS), "seed": SEED,
                                               "extras": False, "shape": HEAVY_SHAPE}, seed=SEED)
    assert [record["kind"] for record in records] == HEAVY_KINDS
    assert_every_integer_checked(records)


#: One multi-precision instance (b = 4; uniform layers also at b = 2, two slots per PE; MicroScopiQ
#: layers also at b = 2, two K rows per PE row or, with a K-group of more than G/2 outlier rows, one
#: slot per PE) on both simulators: the b = 2 uniform layer and the MicroScopiQ b = 2 pair pass under
#: every pause pair, a b = 4 uniform, a MicroScopiQ b = 4 and a MicroScopiQ b = 2 narrow layer, the
#: cycle model exact on the free-running runs.
MULTI_PRECISION = AccelConfig(fmt=FormatConfig(wbits=4, group=16), rows=4, cols=8, max_k=256,
                              multi_precision=True)
MULTI_PRECISION_CASES = cross(["half_uniform", "half_msq_sparse"], ["random_uniform", "random", "half_msq_dense"])
MULTI_PRECISION_SHAPE = {"n": 16, "k": 48, "m": 5}


@pytest.mark.parametrize("seed", range(20))
def test_multi_precision_cases_cover_both_msq_b2_passes(seed):
    """At the run's shape the ``half_msq_sparse`` layer is a MicroScopiQ pair pass and the
    ``half_msq_dense`` one a narrow pass (one slot per PE), whatever the case's seed."""
    passes = [layer_pairs(MULTI_PRECISION, build_case(kind, MULTI_PRECISION, **MULTI_PRECISION_SHAPE, seed=seed).layer)
              for kind in ("half_msq_sparse", "half_msq_dense")]
    assert passes == [True, False]


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", [pytest.param(sim, marks=pytest.mark.xdist_group(f"accel-multi-precision-{sim}"),
                                              id=f"{sim}-seed{SEED}") for sim in selected_simulators()])
def test_accel_multi_precision(sim):
    records = run_accel(MULTI_PRECISION, sim, {"cases": MULTI_PRECISION_CASES, "seed": SEED, "extras": False,
                                               "shape": MULTI_PRECISION_SHAPE}, seed=SEED)
    assert [r["kind"] for r in records] == [kind for kind, _, _ in MULTI_PRECISION_CASES]
    assert_every_integer_checked(records)
