"""microscopiq.tb.native: the native harnesses on every preset, every integer against the golden
model, cycles against the cycle model, the cocotb suite's pause patterns, and the cycle bound.

Each preset's Verilator harness is built once into ``build/cocotb/accel/<preset>/native/`` (minutes
the first time, then cached) under the build lock; the tests of one preset share a pytest-xdist
group, and the tests that need a build run only on 8x8-b4 (plus the other presets when not
``make test-quick``). The Icarus harness (``native-icarus/``, seconds to build, a few hundred
simulated cycles per second) runs the same checks on the 4x8-b2 preset, and one stalled layer on
8x8-b4 beside Verilator's: the two simulators agree cycle for cycle and beat for beat.
"""

import re
import subprocess

import numpy as np
import pytest

from microscopiq.config import PRESETS
from microscopiq.hdl.layouts import StreamLayouts
from microscopiq.host.stream_format import StreamError, encode_layer, layer_pairs, predict_cycles, result_beat_count
from microscopiq.tb import native
from microscopiq.tb.accel_tb import PAUSE_PATTERNS, pause_generator
from microscopiq.tb.stimulus import half_msq_case, half_uniform_case, random_case, random_uniform_case

SEED = 1
#: Small layers: two N-tiles of each preset, one K-group and a ragged K, a few tokens.
SHAPES = {
    "4x8-b2": (16, 100, 5),
    "8x8-b4": (16, 130, 6),
    "16x16-b4-shared": (20, 128, 6),
}
#: (idle, back-pressure) pairs run on every preset.
STALLS = [("none", "none"), ("random", "random"), ("cycle", "heavy")]


#: The preset ``make test-quick`` builds (the others are slow, as in the cocotb suite).
QUICK = "8x8-b4"
#: The preset the Icarus harness runs on (the smallest, quick to compile and to simulate).
ICARUS = "4x8-b2"


def _group(preset, sim):
    return pytest.mark.xdist_group(f"accel-{preset}-native" + ("" if sim == "verilator" else f"-{sim}"))


def _preset(preset, sim="verilator"):
    slow = [] if preset == QUICK or sim == "icarus" else [pytest.mark.slow]
    return pytest.param(preset, sim, marks=[_group(preset, sim), *slow], id=f"{preset}-{sim}")


#: Every (preset, simulator) the harness tests run on.
BUILDS = [*(_preset(p) for p in SHAPES), _preset(ICARUS, "icarus")]
#: The quick build of each simulator.
QUICK_BUILDS = [_preset(QUICK), _preset(ICARUS, "icarus")]


@pytest.fixture(scope="module")
def executables():
    return {}


def _executable(executables, preset, sim="verilator"):
    if (preset, sim) not in executables:
        executables[preset, sim] = native.build_harness(PRESETS[preset], sim=sim)
    return executables[preset, sim]


@pytest.mark.parametrize("preset, sim", BUILDS)
def test_layers_exact_with_and_without_stalls(preset, sim, executables):
    cfg = PRESETS[preset]
    exe = _executable(executables, preset, sim)
    n, k, m = SHAPES[preset]
    for maker in (random_case, random_uniform_case):
        case = maker(cfg, n, k, m, seed=SEED)
        for idle, backpressure in STALLS:
            check = native.check_case(cfg, case, executable=exe, idle=idle, backpressure=backpressure,
                                      seed=SEED, sim=sim)
            where = f"{case.name} on {sim} idle={idle} backpressure={backpressure}"
            assert not check.mismatches, f"{where}: {len(check.mismatches)} wrong, first {check.mismatches[0]}"
            assert check.checked == case.result_integers, where
            if idle == backpressure == "none":
                assert check.run.cycles == check.predicted, where
            else:
                assert check.run.cycles > check.predicted, where


@_group(QUICK, "verilator")
def test_the_simulators_agree_cycle_for_cycle(executables):
    """One stalled layer on both harnesses of one build: the same pause bits, so the same cycles and
    the same results, every simulated cycle alike."""
    cfg = PRESETS[QUICK]
    case = random_case(cfg, 16, 64, 3, seed=SEED)
    runs = {sim: native.run_layer(cfg, case.layer, case.x, executable=_executable(executables, QUICK, sim),
                                  idle="random", backpressure="heavy", seed=SEED, sim=sim)
            for sim in native.SIMULATORS}
    verilator, icarus = runs["verilator"], runs["icarus"]
    assert (icarus.cycles, icarus.simulated_cycles, icarus.beats) == \
        (verilator.cycles, verilator.simulated_cycles, verilator.beats)
    assert icarus.cycles > predict_cycles(cfg, case.layer, case.tokens)
    for name, expected in verilator.results.items():
        got = icarus.results[name]
        first = next(zip(*np.nonzero(got != expected)), None)
        assert first is None, f"{name}{first}: Verilator {expected[first]}, Icarus {got[first]}"


@_group(QUICK, "verilator")
def test_a_wrong_weight_is_caught(executables):
    """The check can fail: the weights of a layer with one code changed, scored against the
    original layer, give mismatches in exactly that weight's output row."""
    cfg = PRESETS["8x8-b4"]
    case = random_case(cfg, 16, 128, 4, seed=SEED, outlier_rate=0.0)
    codes = case.layer.codes.copy()
    row, col = 5, 17
    codes[row, col] = (int(codes[row, col]) + 1) % (1 << cfg.fmt.wbits)
    from dataclasses import replace
    wrong = native.encode_weights(cfg, replace(case.layer, codes=codes), case.tokens)
    check = native.check_case(cfg, case, executable=_executable(executables, "8x8-b4"), weights=wrong)
    assert {(m.what, m.index) for m in check.mismatches} == {
        ("y", (t, row)) for t in range(case.tokens) if case.x[t, col] != 0}


def _pauses(sim, exe, spec, count):
    """The harness's ``count`` draws of the pause pattern ``spec``, as 0/1 characters."""
    cmd = ([str(exe), "--pauses", spec, str(count)] if sim == "verilator"
           else ["vvp", "-n", str(exe), f"+pauses={spec}", f"+count={count}"])
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("preset, sim", QUICK_BUILDS)
@pytest.mark.parametrize("name", [p for p in PAUSE_PATTERNS if p != "none"])
def test_pauses_are_the_cocotb_suites(name, preset, sim, executables):
    """The harness draws the very pause bits of tb/accel_tb.py's generators (Python's MT19937)."""
    exe = _executable(executables, preset, sim)
    for seed in (0, 7, 2**40 + 3):
        out = _pauses(sim, exe, native.pause_spec(name, seed), 2000)
        generator = pause_generator(name, seed)
        expected = "".join(str(int(next(generator))) for _ in range(2000))
        first = next((i for i, (a, b) in enumerate(zip(out, expected)) if a != b), None)
        assert out == expected, f"{name} seed {seed} on {sim}: first difference at draw {first}"


@pytest.mark.parametrize("preset, sim", QUICK_BUILDS)
def test_a_stuck_or_malformed_run_times_out(preset, sim, executables):
    cfg = PRESETS[preset]
    exe = _executable(executables, preset, sim)
    case = random_case(cfg, 16, 128, 4, seed=SEED)
    due = result_beat_count(cfg, case.layer, case.tokens)
    with pytest.raises(native.NativeTimeout, match=rf"^native harness, layer n=16 k=128 M=4: timeout: 150 "
                                                    rf"cycles simulated, 0 of {due} result beats"):
        native.run_layer(cfg, case.layer, case.x, executable=exe, max_cycles=150, sim=sim)
    weights = native.encode_weights(cfg, case.layer, case.tokens)
    record = 4 * (-(-StreamLayouts(cfg).weights_width // 32) + 1)
    # The last tile's rows never come: the accelerator waits for them until the cycle bound (three
    # times the layer's cycles here, for Icarus's sake; timeout_cycles's in use).
    limit = 3 * predict_cycles(cfg, case.layer, case.tokens)
    with pytest.raises(native.NativeTimeout, match=rf"timeout: {limit} cycles simulated, [0-{due - 1}] of {due} "
                                                   "result beats"):
        native.run_layer(cfg, case.layer, case.x, executable=exe, weights=weights[:-3 * record],
                         max_cycles=limit, sim=sim)


@pytest.mark.parametrize("extra", (1, 4), ids=("one-byte-too-many", "one-word-too-many"))
@pytest.mark.parametrize("preset, sim", QUICK_BUILDS)
def test_a_harness_error_is_reported(preset, sim, extra, executables):
    """A failure other than the cycle bound is a plain NativeError with the harness's message."""
    cfg = PRESETS[preset]
    case = random_case(cfg, 8, 32, 1, seed=SEED)
    record = 4 * (-(-StreamLayouts(cfg).weights_width // 32) + 1)
    ragged = native.encode_weights(cfg, case.layer, case.tokens) + bytes(extra)
    with pytest.raises(native.NativeError, match=rf"^native harness, layer n=8 k=32 M=1: \S+/weights.bin is not "
                                                 rf"a whole number of {record}-byte beat records$") as error:
        native.run_layer(cfg, case.layer, case.x, executable=_executable(executables, preset, sim),
                         weights=ragged, sim=sim)
    assert not isinstance(error.value, native.NativeTimeout)


def test_simulator_choice():
    with pytest.raises(ValueError, match=r"^the native harness runs on icarus or verilator, not 'xsim'$"):
        native.build_harness(PRESETS[ICARUS], sim="xsim")
    files = ["w", "a", "r"]
    options = {"results": 4, "max-cycles": 9, "idle-act": "cycle:10"}
    assert native.harness_command("verilator", "exe", files, options) == [
        "exe", "w", "a", "r", "--results", "4", "--max-cycles", "9", "--idle-act", "cycle:10"]
    assert native.harness_command("icarus", "h.vvp", files, options) == [
        "vvp", "-n", "h.vvp", "+weights_file=w", "+act_file=a", "+results_file=r", "+results=4",
        "+max_cycles=9", "+idle_act=cycle:10"]
    assert native.build_dir_of(PRESETS[ICARUS], "icarus").parent == native.build_dir_of(PRESETS[ICARUS]).parent
    assert native.build_dir_of(PRESETS[ICARUS], "icarus").name == "native-icarus"


MULTI_PRECISION = PRESETS["8x8-b4"].replace(multi_precision=True, max_tokens=8)


@pytest.mark.parametrize("preset", [*SHAPES, "multi-precision"])
def test_activation_records_match_encode_layer(preset):
    cfg = MULTI_PRECISION if preset == "multi-precision" else PRESETS[preset]
    sf = StreamLayouts(cfg)
    pairs = ([half_uniform_case(cfg, 9, 300, cfg.max_tokens + 2, seed=SEED),
              half_msq_case(cfg, 16, 300, 3, seed=SEED, outlier_rate=0.2)] if cfg.multi_precision else [])
    assert all(layer_pairs(cfg, case.layer) for case in pairs)        # a uniform and a MicroScopiQ pair pass
    for case in (random_case(cfg, 24, 260, cfg.max_tokens + 3, seed=SEED),     # two passes
                 random_uniform_case(cfg, 5, 40, 2, seed=SEED), *pairs):
        weights, acts = encode_layer(cfg, case.layer, case.x)
        assert native.encode_activations(cfg, case.layer, case.x) == native.encode_beats(acts, sf.act_width)
        assert native.encode_weights(cfg, case.layer, case.tokens) == native.encode_beats(weights, sf.weights_width)
        records = native.encode_beats(weights, sf.weights_width)
        assert native.decode_beats(records, sf.weights_width) == weights


def test_activation_refusals():
    cfg = PRESETS["8x8-b4"]
    case = random_case(cfg, 8, 16, 2, seed=SEED)
    with pytest.raises(StreamError, match=r"^activation at \(1, 3\) = 128 does not fit in abits=8$"):
        x = case.x.copy()
        x[1, 3] = 128
        native.encode_activations(cfg, case.layer, x)
    with pytest.raises(StreamError, match=re.escape("activations must be (M >= 1, k=16), got shape (2, 15)")):
        native.encode_activations(cfg, case.layer, case.x[:, :15])
    with pytest.raises(ValueError, match=r"^pause must be one of none, cycle, random, heavy, not 'x'$"):
        native.pause_spec("x", 1)
    assert native.pause_spec("random", 5) == "random:0.3:5"
    assert native.pause_spec("cycle", 5) == "cycle:1110"
    assert np.array_equal(native.decode_beats(b"", 64), [])
