"""quant/baselines: RTN's documented mapping and MX-INT (all inliers)."""

import numpy as np
import pytest

from microscopiq.config import FormatConfig
from microscopiq.quant.baselines import quantize_mxint, quantize_rtn
from microscopiq.quant.dequant import dequantize
from microscopiq.quant.layer import Role


def test_rtn_mapping_by_hand():
    """One row group [-1, 0.2, 0.5, 2], b=2: scale = 3/3 = 1, zero = -1 - 1·(-2) = 1,
    q = round(w - 1) = [-2, -1 (−0.8), -0 (−0.5 → even: −0), 1]."""
    fmt = FormatConfig(wbits=2, ublock=2, group=4)
    layer = quantize_rtn(np.array([[-1.0, 0.2, 0.5, 2.0]]), fmt)
    assert layer.q.shape == (2, 4) and layer.scale.shape == (2, 1)
    assert layer.q[0].tolist() == [-2, -1, 0, 1]
    assert (layer.scale[0, 0], layer.zero[0, 0]) == (1.0, 1.0)
    assert (layer.q[1] == 0).all() and (layer.scale[1, 0], layer.zero[1, 0]) == (1.0, 0.0)
    assert dequantize(layer).tolist() == [[-1.0, 0.0, 1.0, 2.0]]


@pytest.mark.parametrize("wbits", [2, 3, 4, 8])
def test_rtn_ends_and_error_bound(wbits):
    seed = 60 + wbits
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((13, 70)) * 3
    fmt = FormatConfig(wbits=wbits, ublock=4, group=32)
    layer = quantize_rtn(weight, fmt)
    w = dequantize(layer)
    padded = np.pad(weight, ((0, 3), (0, 26)), constant_values=np.nan).reshape(16, 3, 32)[:13]
    lo, hi = np.nanmin(padded, axis=2), np.nanmax(padded, axis=2)
    scale = layer.scale[:13].astype(np.float64)
    assert np.allclose(scale, (hi - lo) / ((1 << wbits) - 1), rtol=1e-6)
    # every weight within half a step (plus float32 rounding of scale and zero)
    step = np.repeat(scale, 32, axis=1)[:, :70]
    assert (np.abs(w - weight) <= 0.5 * step * (1 + 1e-5) + 1e-6).all(), f"seed {seed}"
    assert (layer.q[:13, :70].min(), layer.q[:13, :70].max()) == (fmt.qmin, fmt.qmax)
    assert not layer.q[:, 70:].any() and not layer.q[13:].any()


def test_rtn_constant_group_is_exact():
    layer = quantize_rtn(np.full((2, 8), 0.37), FormatConfig(wbits=3, ublock=2, group=8))
    assert (dequantize(layer) == np.float32(0.37)).all()


@pytest.mark.parametrize("wbits", [2, 3, 4])
def test_mxint_is_all_inlier_and_exact_on_its_grid(wbits):
    seed = 70 + wbits
    rng = np.random.default_rng(seed)
    fmt = FormatConfig(wbits=wbits, ublock=8, group=16)
    exps = rng.integers(-5, 5, size=(16, 2))
    codes = rng.integers(fmt.qmin, fmt.qmax + 1, size=(16, 32))
    codes[:, ::16] = fmt.qmin                            # each row group reaches the range end
    weight = codes * 2.0 ** np.repeat(exps, 16, axis=1)
    x = rng.standard_normal((64, 32))
    for hessian in (None, 2 * x.T @ x):
        layer = quantize_mxint(weight, hessian, fmt)
        assert (layer.roles == Role.INLIER).all() and not layer.xexp.any()
        out = dequantize(layer)
        mismatch = np.argwhere(out != weight)
        assert mismatch.size == 0, f"seed {seed}: first mismatch at {tuple(mismatch[0])}"


def test_mxint_gptq_lowers_output_error():
    seed = 80
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((32, 128))
    x = rng.standard_normal((512, 128)) @ (np.eye(128) + 0.4 * rng.standard_normal((128, 128)) / 11)
    fmt = FormatConfig(wbits=3, group=64)
    plain = np.linalg.norm(x @ (weight - dequantize(quantize_mxint(weight, None, fmt))).T)
    swept = np.linalg.norm(x @ (weight - dequantize(quantize_mxint(weight, 2 * x.T @ x, fmt))).T)
    print(f"seed {seed}: plain {plain:.3f}, with GPTQ {swept:.3f}")
    assert swept < 0.9 * plain


def test_refusals():
    with pytest.raises(TypeError, match=r"^fmt must be a FormatConfig, not 4$"):
        quantize_rtn(np.ones((2, 2)), 4)
    with pytest.raises(ValueError, match=r"^weight must be a non-empty 2-D \(N, K\) matrix, got shape \(0, 3\)$"):
        quantize_rtn(np.ones((0, 3)), FormatConfig())
