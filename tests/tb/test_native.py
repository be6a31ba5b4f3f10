"""microscopiq.tb.native: the native Verilator harness on every preset, every integer against the
golden model, cycles against the cycle model, the cocotb suite's pause patterns, and the cycle bound.

Each preset's harness is built once into ``build/cocotb/accel/<preset>/native/`` (minutes the first
time, then cached) under the build lock; the tests of one preset share a pytest-xdist group, and the
tests that need a build run only on 8x8-b4 (plus the other presets when not ``make test-quick``).
"""

import re
import subprocess

import numpy as np
import pytest

from microscopiq.config import PRESETS
from microscopiq.hdl.layouts import StreamLayouts
from microscopiq.host.stream_format import StreamError, encode_layer
from microscopiq.tb import native
from microscopiq.tb.accel_tb import PAUSE_PATTERNS, pause_generator
from microscopiq.tb.stimulus import half_uniform_case, random_case, random_uniform_case

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


def _preset(preset):
    marks = [pytest.mark.xdist_group(f"accel-{preset}-native")] + ([] if preset == QUICK else [pytest.mark.slow])
    return pytest.param(preset, marks=marks, id=preset)


@pytest.fixture(scope="module")
def executables():
    return {}


def _executable(executables, preset):
    if preset not in executables:
        executables[preset] = native.build_harness(PRESETS[preset])
    return executables[preset]


@pytest.mark.parametrize("preset", [_preset(p) for p in SHAPES])
def test_layers_exact_with_and_without_stalls(preset, executables):
    cfg = PRESETS[preset]
    exe = _executable(executables, preset)
    n, k, m = SHAPES[preset]
    for maker in (random_case, random_uniform_case):
        case = maker(cfg, n, k, m, seed=SEED)
        for idle, backpressure in STALLS:
            check = native.check_case(cfg, case, executable=exe, idle=idle, backpressure=backpressure,
                                      seed=SEED)
            where = f"{case.name} idle={idle} backpressure={backpressure}"
            assert not check.mismatches, f"{where}: {len(check.mismatches)} wrong, first {check.mismatches[0]}"
            assert check.checked == case.result_integers, where
            if idle == backpressure == "none":
                assert check.run.cycles == check.predicted, where
            else:
                assert check.run.cycles > check.predicted, where


@pytest.mark.xdist_group(f"accel-{QUICK}-native")
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


@pytest.mark.xdist_group(f"accel-{QUICK}-native")
@pytest.mark.parametrize("name", [p for p in PAUSE_PATTERNS if p != "none"])
def test_pauses_are_the_cocotb_suites(name, executables):
    """The harness draws the very pause bits of tb/accel_tb.py's generators (Python's MT19937)."""
    exe = _executable(executables, "8x8-b4")
    for seed in (0, 7, 2**40 + 3):
        out = subprocess.run([str(exe), "--pauses", native.pause_spec(name, seed), "2000"],
                             capture_output=True, text=True, check=True).stdout.strip()
        generator = pause_generator(name, seed)
        expected = "".join(str(int(next(generator))) for _ in range(2000))
        first = next((i for i, (a, b) in enumerate(zip(out, expected)) if a != b), None)
        assert out == expected, f"{name} seed {seed}: first difference at draw {first}"


@pytest.mark.xdist_group(f"accel-{QUICK}-native")
def test_a_stuck_or_malformed_run_times_out(executables):
    cfg = PRESETS["8x8-b4"]
    exe = _executable(executables, "8x8-b4")
    case = random_case(cfg, 16, 128, 4, seed=SEED)
    with pytest.raises(native.NativeTimeout, match=r"^native harness, layer n=16 k=128 M=4: timeout: 150 "
                                                    r"cycles simulated, 0 of 8 result beats"):
        native.run_layer(cfg, case.layer, case.x, executable=exe, max_cycles=150)
    weights = native.encode_weights(cfg, case.layer, case.tokens)
    record = 4 * (-(-StreamLayouts(cfg).weights_width // 32) + 1)
    # The last tile's rows never come: the accelerator waits for them until the cycle bound.
    with pytest.raises(native.NativeTimeout, match=r"timeout: \d+ cycles simulated, [0-7] of 8 result beats"):
        native.run_layer(cfg, case.layer, case.x, executable=exe, weights=weights[:-3 * record])


MULTI_PRECISION = PRESETS["8x8-b4"].replace(multi_precision=True, max_tokens=8)


@pytest.mark.parametrize("preset", [*SHAPES, "multi-precision"])
def test_activation_records_match_encode_layer(preset):
    cfg = MULTI_PRECISION if preset == "multi-precision" else PRESETS[preset]
    sf = StreamLayouts(cfg)
    pairs = [half_uniform_case(cfg, 9, 300, cfg.max_tokens + 2, seed=SEED)] if cfg.multi_precision else []
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
