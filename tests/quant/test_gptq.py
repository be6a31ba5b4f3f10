"""GPTQ (uniform, asymmetric per row and K-group): grid, integer range, and error against RTN."""

import numpy as np
import pytest
import torch

from microscopiq.config import FormatConfig
from microscopiq.quant.gptq import (CLIP_RATIOS, QuantInputError, clipped_grid_groups, minmax_grid_groups,
                                   quantize_gptq)
from microscopiq.quant.layer import padded

SEED = 20240419


def planted_problem(seed, n=48, k=200, tokens=400):
    """Heavy-tailed weights with 1 % planted outliers and correlated calibration inputs."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((tokens, k)) @ (np.eye(k) + 0.3 * rng.standard_normal((k, k)))
    w = rng.standard_t(5, (n, k))
    w[rng.random((n, k)) < 0.01] *= 10
    return w, 2 * x.T @ x


def dequant(layer):
    g = layer.fmt.group
    full = np.repeat(layer.scale, g, axis=1) * layer.q + np.repeat(layer.zero, g, axis=1)
    return full[:layer.n, :layer.k]


def output_error(w, h, wq):
    e = w - wq
    return float(np.sum((e @ h) * e))


def rtn(w, fmt):
    """Round to nearest on GPTQ's min-max grid (no error feedback)."""
    s, z = (t.double().numpy() for t in minmax_grid_groups(torch.as_tensor(w, dtype=torch.float32), fmt))
    s, z = (np.repeat(t, fmt.group, axis=1)[:, :w.shape[1]] for t in (s, z))
    return s * np.clip(np.round((w - z) / s), fmt.qmin, fmt.qmax) + z


@pytest.mark.parametrize("wbits", [2, 3, 4, 8])
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_rtn_with_exact_ranges(wbits, act_order):
    print(f"seed={SEED}")
    w, h = planted_problem(SEED)
    fmt = FormatConfig(wbits=wbits, group=64)
    layer = quantize_gptq(w, h, fmt, act_order=act_order)
    n, k = w.shape
    assert layer.q.dtype == np.int8
    assert layer.q.shape == (padded(n, fmt.ublock), padded(k, fmt.group)) == (48, 256)
    assert layer.scale.shape == layer.zero.shape == (48, 4)
    assert layer.q.min() == fmt.qmin and layer.q.max() == fmt.qmax, (layer.q.min(), layer.q.max())
    assert not layer.q[:, k:].any(), "padding columns must hold q = 0"
    gptq_err = output_error(w, h, dequant(layer))
    rtn_err = output_error(w, h, rtn(w, fmt))
    print(f"b={wbits} act_order={act_order}: GPTQ {gptq_err:.6g} < RTN {rtn_err:.6g}")
    assert gptq_err < 0.9 * rtn_err


def test_diagonal_hessian_gives_rtn_exactly():
    """With a diagonal H no error is propagated, so GPTQ rounds exactly like RTN (same grid)."""
    print(f"seed={SEED}")
    rng = np.random.default_rng(SEED)
    w = rng.standard_normal((16, 128))
    fmt = FormatConfig(wbits=3, group=32)
    layer = quantize_gptq(w, np.diag(rng.uniform(1, 2, 128)), fmt)
    expected = rtn(w, fmt)
    got = dequant(layer)
    bad = np.argwhere(np.abs(got - expected) > 1e-5)
    assert bad.size == 0, f"first mismatch at {tuple(bad[0])}: expected {expected[tuple(bad[0])]}, got {got[tuple(bad[0])]}"


def test_dead_inputs_and_constant_groups():
    """An input that never fires (H[k,k] = 0) becomes 0; a constant group is represented exactly."""
    w = np.zeros((8, 48))
    w[:, :16] = 0.75
    w[:, 16:32] = -0.5
    w[:, 32:] = np.linspace(-1, 1, 16)
    h = np.eye(48)
    h[3, 3] = 0
    layer = quantize_gptq(w, h, FormatConfig(wbits=2, group=16))
    got = dequant(layer)
    expected = w[:, :32].copy()
    expected[:, 3] = 0  # dead input: zeroed, and 0 is on its group's grid {0, 0.25, 0.5, 0.75}
    np.testing.assert_allclose(got[:, :32], expected, rtol=0, atol=1e-7)
    assert (layer.q[:, 16:32] == 0).all() and np.allclose(layer.zero[:, 1], -0.5)


@pytest.mark.parametrize("weight, hessian, message", [
    (np.ones(4), np.eye(4), r"^weight must be a 2-D matrix \(out_features × in_features\), got shape \(4,\)$"),
    (np.ones((0, 4)), np.eye(4), r"^weight is empty \(shape \(0, 4\)\)$"),
    (np.array([[1.0, np.nan]]), np.eye(2), r"^weight has a NaN or Inf at \(0, 1\): nan$"),
    (np.ones((2, 3)), np.eye(4), r"^hessian must be K×K = \(3, 3\) for a weight with K = 3 columns, got shape \(4, 4\)$"),
    (np.ones((2, 2)), np.array([[1.0, 0], [0, np.inf]]), r"^hessian has a NaN or Inf at \(1, 1\)$"),
])
def test_bad_inputs(weight, hessian, message):
    with pytest.raises(QuantInputError, match=message):
        quantize_gptq(weight, hessian, FormatConfig(wbits=4))


def weighted_rtn_error(w, d, s, z, fmt):
    """Per (row, group) ``Σ d_k (w - RTN(w))²`` on the grid ``s, z`` (N, groups)."""
    g = fmt.group
    se, ze = (np.repeat(t, g, axis=1)[:, :w.shape[1]] for t in (s, z))
    e = (se * np.clip(np.round((w - ze) / se), fmt.qmin, fmt.qmax) + ze - w) ** 2 * d
    kp = padded(w.shape[1], g)
    return np.pad(e, ((0, 0), (0, kp - w.shape[1]))).reshape(w.shape[0], kp // g, g).sum(axis=2)


@pytest.mark.parametrize("wbits, group", [(2, 64), (2, 256), (4, 128)])
def test_clipped_grid_is_the_best_shrink_of_the_minmax_range(wbits, group):
    """Every (row, group) gets the shrink factor with the least diag-weighted rounding error: checked
    against each factor's grid computed here; factor 1 is the min-max grid exactly."""
    print(f"seed={SEED}")
    w, h = planted_problem(SEED)
    fmt = FormatConfig(wbits=wbits, group=group)
    wt = torch.as_tensor(w, dtype=torch.float32)
    d = np.diag(h).copy()
    s, z = (t.double().numpy() for t in clipped_grid_groups(wt, torch.as_tensor(d), fmt))
    s1, z1 = (t.double().numpy() for t in clipped_grid_groups(wt, torch.as_tensor(d), fmt, ratios=(1.0,)))
    smm, zmm = (t.double().numpy() for t in minmax_grid_groups(wt, fmt))
    np.testing.assert_array_equal(s1, smm)
    np.testing.assert_array_equal(z1, zmm)
    wf = wt.double().numpy()
    chosen = weighted_rtn_error(wf, d, s, z, fmt)
    for ratio in CLIP_RATIOS:
        sr, zr = (t.double().numpy() for t in clipped_grid_groups(wt, torch.as_tensor(d), fmt, ratios=(ratio,)))
        other = weighted_rtn_error(wf, d, sr, zr, fmt)
        worse = np.argwhere(chosen > other * (1 + 1e-5) + 1e-9)
        assert worse.size == 0, (f"ratio {ratio}: (row, group) {tuple(worse[0])} has error "
                                 f"{other[tuple(worse[0])]:.6g} < chosen {chosen[tuple(worse[0])]:.6g}")
    assert (s < smm).mean() > 0.2, "heavy-tailed rows should mostly clip"
