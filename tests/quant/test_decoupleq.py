"""decoupleQ: closed-form floats, non-increasing objective, integer box, and beating GPTQ at b = 2."""

import numpy as np
import pytest
import torch

from microscopiq.config import FormatConfig
from microscopiq.quant.decoupleq import layer_objective, run_decoupleq
from microscopiq.quant.gptq import QuantInputError, quantize_gptq

SEED = 404


@pytest.fixture(autouse=True)
def one_thread():
    """These problems are small: one torch thread (thread hand-offs dominate on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def problem(seed, n=40, k=192, tokens=384):
    rng = np.random.default_rng(seed)
    x = rng.standard_t(4, (tokens, k)) @ (np.eye(k) + 0.2 * rng.standard_normal((k, k)))
    w = rng.standard_t(4, (n, k)) * 0.05
    return w, 2 * x.T @ x


def objective_of(layer, w, h):
    k = layer.k
    return layer_objective(w, h, layer.q[:layer.n, :k], layer.scale[:layer.n], layer.zero[:layer.n],
                           layer.fmt.group)


#: The PG setting (projected-gradient chain from the min-max grid; not the official code's algorithm)
#: and ours (the defaults).
PG = {"outer_iters": 4, "pg_steps": 200, "start": "minmax", "extrapolation": 0.0}
SETTINGS = {"pg": PG, "pg-4-steps": dict(PG, pg_steps=4), "fast": {}}


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("wbits, group", [(2, 64), (2, 256), (3, 64), (4, 128)])
def test_objective_non_increasing_and_reported_exactly(wbits, group, setting):
    print(f"seed={SEED}")
    w, h = problem(SEED)
    fmt = FormatConfig(wbits=wbits, group=group)
    kwargs = SETTINGS[setting]
    result = run_decoupleq(w, h, fmt, **kwargs)
    hist = result.objective
    print(f"b={wbits} G={group} {setting}: gptq {result.gptq_objective:.6g} objective {hist} relaxed {result.relaxed}")
    relaxed_chain = kwargs.get("pg_steps", 0) > 0
    assert len(hist) == 5 and len(result.relaxed) == (4 if relaxed_chain else 0)
    assert len(result.candidates) == (8 if relaxed_chain else 4)
    for i in range(1, len(hist)):
        assert hist[i] <= hist[i - 1], f"objective rose at outer iteration {i}: {hist[i - 1]} -> {hist[i]}"
    assert hist[0] <= result.gptq_objective
    assert min(result.candidates + [hist[0]]) == pytest.approx(hist[-1], rel=1e-12)
    # The reported objective is the true one of the returned (float32-stored) layer.
    actual = objective_of(result.layer, w, h)
    assert actual == pytest.approx(result.final_objective, rel=1e-5)
    assert actual == pytest.approx(hist[-1], rel=1e-4)
    q = result.layer.q
    assert q.dtype == np.int8 and q.min() >= fmt.qmin and q.max() <= fmt.qmax


@pytest.mark.parametrize("wbits, group", [(2, 64), (2, 256), (3, 64)])
def test_fast_defaults_reach_the_pg_setting_objective(wbits, group):
    """The defaults (clipped start, extrapolated grid, no relaxed chain) end at or below the PG
    setting (min-max start, 200 projected-gradient steps per outer iteration)."""
    print(f"seed={SEED}")
    w, h = problem(SEED)
    fmt = FormatConfig(wbits=wbits, group=group)
    pg = run_decoupleq(w, h, fmt, **PG)
    fast = run_decoupleq(w, h, fmt)
    print(f"b={wbits} G={group}: PG setting {pg.objective} fast {fast.objective}")
    assert fast.final_objective <= pg.final_objective


def test_start_grid_is_gptq_on_that_grid():
    """``gptq_objective`` is act-order GPTQ onto the start grid: with ``start="minmax"`` exactly
    :func:`quantize_gptq`'s act-order layer."""
    print(f"seed={SEED}")
    w, h = problem(SEED)
    fmt = FormatConfig(wbits=2, group=64)
    result = run_decoupleq(w, h, fmt, outer_iters=0, start="minmax")
    assert objective_of(quantize_gptq(w, h, fmt, act_order=True), w, h) == pytest.approx(result.gptq_objective,
                                                                                        rel=1e-5)
    clipped = run_decoupleq(w, h, fmt, outer_iters=0)
    print(f"GPTQ objective: min-max grid {result.gptq_objective:.6g}, clipped grid {clipped.gptq_objective:.6g}")
    assert clipped.gptq_objective < result.gptq_objective


def test_floats_are_the_least_squares_solution():
    """Given q, (s, z) of each row minimise the H-weighted error: compare with a dense solve."""
    print(f"seed={SEED}")
    w, h = problem(SEED, n=6, k=96)
    fmt = FormatConfig(wbits=2, group=32)
    layer = run_decoupleq(w, h, fmt, outer_iters=1, pg_steps=2).layer
    for row in range(layer.n):
        q = layer.q[row, :96].astype(np.float64)
        a = np.zeros((96, 6))
        for g in range(3):
            a[g * 32:(g + 1) * 32, g] = q[g * 32:(g + 1) * 32]
            a[g * 32:(g + 1) * 32, 3 + g] = 1.0
        theta = np.linalg.solve(a.T @ h @ a, a.T @ h @ w[row])
        np.testing.assert_allclose(layer.scale[row], theta[:3], rtol=2e-4, err_msg=f"row {row} scale")
        np.testing.assert_allclose(layer.zero[row], theta[3:], rtol=2e-4, atol=1e-6, err_msg=f"row {row} zero")


@pytest.mark.parametrize("group", [64, 256])
def test_beats_gptq_at_two_bits(group):
    print(f"seed={SEED + 1}")
    w, h = problem(SEED + 1)
    fmt = FormatConfig(wbits=2, group=group)
    gptq = objective_of(quantize_gptq(w, h, fmt), w, h)
    dq = objective_of(run_decoupleq(w, h, fmt).layer, w, h)
    print(f"G={group}: GPTQ {gptq:.6g}  decoupleQ {dq:.6g}  ratio {dq / gptq:.3f}")
    assert dq < 0.8 * gptq


@pytest.mark.parametrize("kwargs, message", [
    ({"outer_iters": -1}, r"^outer_iters must be an integer >= 0, not -1$"),
    ({"pg_steps": 1.5}, r"^pg_steps must be an integer >= 0, not 1\.5$"),
    ({"start": "rtn"}, r"^start must be one of clip, minmax, not 'rtn'$"),
    ({"extrapolation": -0.5}, r"^extrapolation must be a finite number >= 0, not -0\.5$"),
    ({"extrapolation": float("nan")}, r"^extrapolation must be a finite number >= 0, not nan$"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(QuantInputError, match=message):
        run_decoupleq(np.ones((2, 4)), np.eye(4), FormatConfig(wbits=2), **kwargs)
