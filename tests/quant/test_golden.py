"""quant/golden: the integer golden model checked against float64 (SPEC §3's self-check).

``Y = s_x · 2^(E_min - b) · Y_int`` must equal ``diag(s_x) · x · W_deqᵀ`` exactly in float64 wherever
the accumulator does not saturate, with ``W_deq`` decoded from the packed file. The sizes are chosen
so float64 is exact: every test asserts its own precondition (all partial sums below 2^53 units of
``2^(E_min - b)``), so a larger case cannot pass by luck.
"""

import numpy as np
import pytest

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.quant.baselines import quantize_rtn
from microscopiq.quant.dequant import dequantize
from microscopiq.quant.golden import (group_partial_sums, msq_matmul, pe_product,
                                      quantize_activations, recon_merge, slot_values, split_hi,
                                      uniform_raw)
from microscopiq.quant.layer import Role
from microscopiq.quant.msq import quantize_msq
from microscopiq.quant.pack import pack_layer, unpack_layer
from microscopiq.tb.stimulus import random_case


def planted_layer(fmt, n, k, seed):
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((n, k)) * rng.uniform(0.01, 1, size=(n, 1))
    weight[rng.random((n, k)) < 0.02] *= 20
    return unpack_layer(pack_layer(quantize_msq(weight, fmt=fmt)))


def float_exact_bound(x, layer):
    """Σ_k |x|·|v|·2^(E - E_min) per output: the largest partial sum in units of 2^(E_min - b)."""
    v = np.abs(slot_values(layer)).astype(object)
    shifts = layer.exps.astype(np.int64) - layer.exps.min(axis=1, keepdims=True)
    scale = np.repeat(np.vectorize(lambda s: 1 << int(s), otypes=[object])(shifts), layer.fmt.group, axis=1)
    xa = np.abs(np.pad(x, ((0, 0), (0, layer.kp - x.shape[1])))).astype(object)
    return (xa @ (v * scale).T).max()


def check_against_float(layer, values, acc_bits):
    x, s_x = quantize_activations(values, layer.fmt)
    result = msq_matmul(x, layer, acc_bits)
    e_min = result.e_min[:layer.n]
    y = s_x[:, None] * np.ldexp(result.y_int[:, :layer.n].astype(np.float64), (e_min - layer.fmt.wbits)[None, :])
    reference = s_x[:, None] * (x.astype(np.float64) @ dequantize(layer).T)
    ok = ~result.overflow[:, :layer.n]
    mismatch = np.argwhere(ok & (y != reference))
    assert mismatch.size == 0, (f"first mismatch at {tuple(mismatch[0])}: golden {y[tuple(mismatch[0])]!r}, "
                                f"float64 {reference[tuple(mismatch[0])]!r}")
    return x, result


@pytest.mark.parametrize("wbits, xbits, seed", [(2, 4, 1), (3, 3, 2), (4, 4, 3), (4, 2, 4)])
def test_quantized_layer_matches_float64_exactly(wbits, xbits, seed):
    fmt = FormatConfig(wbits=wbits, ublock=8, group=32, xbits=xbits)
    layer = planted_layer(fmt, 21, 77, seed)
    values = np.random.default_rng(seed).standard_normal((9, 77))
    values[0] = 0                                          # zero token: s_x = 1
    x, result = check_against_float(layer, values, acc_bits=64)
    assert float_exact_bound(x, layer) < 2 ** 53, "sizes too large for an exact float64 check"
    assert not result.overflow.any()
    assert (layer.roles == Role.OUT_HI).any(), f"seed {seed}: no outlier exercised"


@pytest.mark.parametrize("seed", [5, 6])
def test_random_structure_matches_float64_exactly(seed):
    fmt = FormatConfig(wbits=4, ublock=8, group=16, xbits=3)
    layer = random_case(AccelConfig(fmt=fmt, rows=2, cols=8), 19, 40, 1, seed, outlier_rate=0.5).layer
    values = np.random.default_rng(seed).uniform(-3, 3, size=(6, 40))
    x, result = check_against_float(layer, values, acc_bits=64)
    assert float_exact_bound(x, layer) < 2 ** 53
    assert not result.overflow.any()


def test_saturation_is_sticky_and_elsewhere_exact():
    seed = 7
    fmt = FormatConfig(wbits=4, ublock=8, group=16, xbits=2)
    layer = random_case(AccelConfig(fmt=fmt, rows=2, cols=8), 16, 64, 1, seed, outlier_rate=0.3).layer
    values = np.random.default_rng(seed).uniform(-1, 1, size=(8, 64))
    acc_bits = 24
    x, result = check_against_float(layer, values, acc_bits)
    assert result.overflow.any() and not result.overflow.all(), f"seed {seed}: choose another acc_bits"
    # Scalar reference of SPEC §3 in Python ints: clamp after every group, flag sticks.
    partial = group_partial_sums(np.pad(x, ((0, 0), (0, layer.kp - 64))), slot_values(layer), fmt.group)
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    for m in range(x.shape[0]):
        for n in range(layer.np_):
            e = [int(v) for v in layer.exps[n]]
            acc, flag = 0, False
            for g, p in enumerate(partial[m, n]):
                step = acc + int(p) * (1 << (e[g] - min(e)))
                acc = min(max(step, lo), hi)
                flag |= acc != step
            assert (int(result.y_int[m, n]), bool(result.overflow[m, n])) == (acc, flag), (m, n)


def test_pe_products_and_recon_merge_make_the_slot_values():
    seed = 8
    fmt = FormatConfig(wbits=3, ublock=4, group=8, xbits=3)
    layer = random_case(AccelConfig(fmt=fmt, rows=2, cols=4), 8, 16, 1, seed, outlier_rate=0.7).layer
    x = np.random.default_rng(seed).integers(-128, 128, size=16)
    b, u = fmt.wbits, fmt.ublock
    products = pe_product(x[None, :], layer.codes, layer.roles, b)
    expected = x[None, :] * slot_values(layer)
    for n, k in np.argwhere(layer.roles == Role.OUT_HI):
        mate = n - n % u + layer.mate[n, k]
        sign, e = split_hi(layer.codes[n, k], b)
        merged = recon_merge(products[n, k], products[mate, k], sign, int(e) + int(layer.xexp[n // u, k]), b)
        assert merged == expected[n, k], (n, k)
    inlier = layer.roles == Role.INLIER
    assert ((products << b)[inlier] == expected[inlier]).all()
    assert (expected[layer.roles == Role.OUT_LO] == 0).all()


def test_uniform_mode_matches_float_reference():
    seed = 9
    rng = np.random.default_rng(seed)
    fmt = FormatConfig(wbits=3, ublock=4, group=16)
    layer = unpack_layer(pack_layer(quantize_rtn(rng.standard_normal((10, 40)), fmt)))
    x, s_x = quantize_activations(rng.standard_normal((5, 40)), fmt)
    partial, sums = uniform_raw(x, layer)
    y = s_x[:, None] * (np.einsum("mng,ng->mn", partial, layer.scale.astype(np.float64))
                        + sums @ layer.zero.astype(np.float64).T)
    reference = s_x[:, None] * (x.astype(np.float64) @ dequantize(layer).T)
    assert np.allclose(y[:, :10], reference, rtol=1e-12, atol=1e-12), f"seed {seed}"


def test_quantize_activations_rule():
    fmt = FormatConfig(abits=4)
    x, s = quantize_activations(np.array([[0.0, 0.0], [7.0, -3.5], [1.0, 0.5]]), fmt)
    assert s.tolist() == [1.0, 1.0, 1 / 7]
    assert x.tolist() == [[0, 0], [7, -4], [7, 4]]         # -3.5 → -4, 3.5 → 4 (half to even)
