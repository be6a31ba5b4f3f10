"""quant/dequant: decoded weights against hand-computed values."""

import numpy as np
import pytest

from microscopiq.config import FormatConfig
from microscopiq.quant.dequant import dequantize
from microscopiq.quant.layer import Role, UniformLayer
from microscopiq.tb.stimulus import empty_msq_layer


def test_msq_inliers_outlier_and_partner():
    fmt = FormatConfig(wbits=4, ublock=4, group=4, xbits=3)
    layer = empty_msq_layer(fmt, 3, 6)                    # padded to 4 × 8
    layer.exps[:, 0], layer.exps[:, 1] = [-2, 0, 5, 0], [1, -7, 0, 0]
    layer.codes[0, :6] = [0b0111, 0b1000, 0b1111, 0, 1, 0b1001]  # 7, -8, -1, 0, 1, -7
    # column 2: outlier at row 1 (s=1, e=3), partner row 2 (f=0b0101), X=2
    layer.roles[1, 2], layer.roles[2, 2] = Role.OUT_HI, Role.OUT_LO
    layer.mate[1, 2], layer.mate[2, 2] = 2, 1
    layer.codes[1, 2], layer.codes[2, 2] = 0b1011, 0b0101
    layer.xexp[0, 2] = 2
    layer.codes[2, 0] = 0b0011                            # 3 · 2^5
    w = dequantize(layer.validate())
    assert w.shape == (3, 6) and w.dtype == np.float64
    expected = np.zeros((3, 6))
    expected[0] = [7 / 4, -8 / 4, -1 / 4, 0, 1 * 2, -7 * 2]
    expected[1, 2] = -(16 + 5) * 2.0 ** (3 + 2) * 2.0 ** (0 - 4)  # -(2^b+f)·2^(e+X)·2^(E-b)
    expected[2, 0] = 3 * 32
    mismatch = np.argwhere(w != expected)
    assert mismatch.size == 0, f"first mismatch at {tuple(mismatch[0])}: {w[tuple(mismatch[0])]} vs {expected[tuple(mismatch[0])]}"


@pytest.mark.parametrize("wbits", [2, 3])
def test_msq_extreme_codes_are_exact(wbits):
    fmt = FormatConfig(wbits=wbits, ublock=2, group=2, xbits=6)
    layer = empty_msq_layer(fmt, 2, 2)
    layer.exps[:] = [[-128], [127]]
    layer.roles[0, 0], layer.roles[1, 0] = Role.OUT_HI, Role.OUT_LO
    layer.mate[0, 0], layer.mate[1, 0] = 1, 0
    top = (1 << wbits) - 1
    layer.codes[0, 0], layer.codes[1, 0] = top, top     # s=1, e=max, f=max
    layer.xexp[0, 0] = 63
    layer.codes[1, 1] = 1 << (wbits - 1)                  # most negative inlier
    w = dequantize(layer.validate())
    e_max = (1 << (wbits - 1)) - 1
    assert w[0, 0] == -float(((1 << wbits) + top) * 2 ** (e_max + 63)) * 2.0 ** (-128 - wbits)
    assert w[1, 0] == 0.0
    assert w[1, 1] == -(1 << (wbits - 1)) * 2.0 ** 127


def test_uniform_scale_and_zero():
    fmt = FormatConfig(wbits=2, ublock=2, group=2)
    q = np.array([[-2, 1, 0, -1], [1, 1, -2, 0]], dtype=np.int8)
    scale = np.array([[0.5, 3.0], [0.25, -1.0]], dtype=np.float32)
    zero = np.array([[0.1, -2.0], [0.0, 7.5]], dtype=np.float32)
    layer = UniformLayer(fmt, 2, 3, q, scale, zero).validate()
    w = dequantize(layer)
    s, z = scale.astype(np.float64), zero.astype(np.float64)
    expected = np.array([[s[0, 0] * -2 + z[0, 0], s[0, 0] * 1 + z[0, 0], z[0, 1]],
                         [s[1, 0] + z[1, 0], s[1, 0] + z[1, 0], s[1, 1] * -2 + z[1, 1]]])
    assert w.shape == (2, 3)
    assert (w == expected).all(), f"{w} vs {expected}"


def test_refuses_other_objects():
    with pytest.raises(TypeError, match=r"^layer must be an MsqLayer or a UniformLayer, not ndarray$"):
        dequantize(np.zeros((2, 2)))


@pytest.mark.parametrize("wbits, xbits, seed", [(2, 3, 11), (3, 4, 12), (4, 4, 13), (4, 1, 14)])
def test_msq_agrees_with_golden_slot_values(wbits, xbits, seed):
    """For formats whose slot values fit int64, dequantize = golden.slot_values · 2^(E - b)."""
    from microscopiq.config import AccelConfig
    from microscopiq.quant.golden import slot_values
    from microscopiq.tb.stimulus import random_case
    fmt = FormatConfig(wbits=wbits, ublock=8, group=16, xbits=xbits)
    layer = random_case(AccelConfig(fmt=fmt, rows=2, cols=8), 21, 40, 1, seed, outlier_rate=0.5).layer
    v = slot_values(layer).astype(np.float64)
    e = np.repeat(layer.exps.astype(np.int64), fmt.group, axis=1) - wbits
    expected = np.ldexp(v, e)[:21, :40]
    w = dequantize(layer)
    mismatch = np.argwhere(w != expected)
    assert mismatch.size == 0, f"seed {seed}: first mismatch at {tuple(mismatch[0])}"
