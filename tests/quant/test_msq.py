"""quant/msq: the MicroScopiQ quantizer (SPEC §4)."""

import numpy as np
import pytest
import torch

from microscopiq.config import FormatConfig
from microscopiq.quant.baselines import quantize_mxint, quantize_rtn
from microscopiq.quant.dequant import dequantize
from microscopiq.quant.hessian import HessianError
from microscopiq.quant.layer import Role
from microscopiq.quant.msq import DEFAULT_KNOBS, MsqKnobs, QuantizeError, _floor_log2, _MsqColumns, quantize_msq
from microscopiq.tb.stimulus import empty_msq_layer


def planted(seed, n=64, k=256, m=512, rate=0.005):
    """Gaussian weights with a few planted 12× outliers and correlated calibration activations."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((n, k)) * 0.02
    weight[rng.random((n, k)) < rate] *= 12
    mix = np.eye(k) + 0.3 * rng.standard_normal((k, k)) / np.sqrt(k)
    x = rng.standard_normal((m, k)) @ mix
    return weight, x, 2 * x.T @ x


def output_error(x, weight, layer):
    return float(np.linalg.norm(x @ (weight - dequantize(layer)).T))


@pytest.mark.parametrize("wbits", [2, 3, 4])
def test_beats_rtn_and_mxint_on_planted_outliers(wbits):
    seed = 20 + wbits
    weight, x, hessian = planted(seed)
    fmt = FormatConfig(wbits=wbits, group=64)
    errors = {
        "rtn": output_error(x, weight, quantize_rtn(weight, fmt)),
        "mxint+gptq": output_error(x, weight, quantize_mxint(weight, hessian, fmt)),
        "msq": output_error(x, weight, quantize_msq(weight, None, fmt)),
        "msq+gptq": output_error(x, weight, quantize_msq(weight, hessian, fmt)),
    }
    print(f"seed {seed} b={wbits}:", {name: round(e, 4) for name, e in errors.items()})
    assert errors["msq"] < errors["rtn"]
    assert errors["msq+gptq"] < errors["rtn"]
    assert errors["msq+gptq"] < errors["msq"]
    assert errors["msq+gptq"] < errors["mxint+gptq"]


def test_structure_padding_and_pruning():
    seed = 31
    weight, _, hessian = planted(seed, n=45, k=200)      # pads to 48 × 256
    fmt = FormatConfig(wbits=2, ublock=8, group=128)
    layer = quantize_msq(weight, hessian, fmt)
    print("seed", seed)
    assert (layer.n, layer.k, layer.codes.shape) == (45, 200, (48, 256))
    hi, lo = layer.roles == Role.OUT_HI, layer.roles == Role.OUT_LO
    assert hi.any()
    per_block = hi.reshape(-1, 8, 256).sum(axis=1)
    assert per_block.max() <= fmt.max_outliers
    assert (lo.reshape(-1, 8, 256).sum(axis=1) == per_block).all()
    assert not (layer.roles[45:].any() or layer.roles[:, 200:].any()), "padding holds an outlier half"
    assert not (layer.codes[45:].any() or layer.codes[:, 200:].any()), "padding code not zero"
    assert not layer.xexp[~hi.reshape(-1, 8, 256).any(axis=1)].any()
    w = dequantize(layer)
    assert (w[lo[:45, :200]] == 0).all(), "a pruned partner is not zero"


def representable(fmt, n, k, seed):
    """Weights that are exactly an MSQ layer: inliers over the whole code range (each row group
    reaches qmax), and in one column in eight up to U/2 outliers per micro-block on zero partners,
    each at least 2^(b+1)·2^E (4× beyond the inlier range, so the 3σ rule separates them)."""
    rng = np.random.default_rng(seed)
    b, u = fmt.wbits, fmt.ublock
    layer = empty_msq_layer(fmt, n, k)
    codes = rng.integers(fmt.qmin, fmt.qmax + 1, size=(n, k))
    codes[:, ::fmt.group] = fmt.qmax
    layer.codes[:n, :k] = codes & ((1 << b) - 1)
    layer.exps[:n] = rng.integers(-6, 7, size=(n, layer.exps.shape[1]))
    emax = (1 << (b - 1)) - 1
    for block in range(n // u):
        for col in rng.choice(k, size=k // 8, replace=False):
            pairs = int(rng.integers(1, u // 2 + 1))
            rows = block * u + rng.permutation(u)[:2 * pairs]
            shared = int(rng.integers(max(0, b + 1 - emax), max(0, b + 1 - emax) + 4))
            for hi, lo in zip(rows[:pairs], rows[pairs:]):
                t = int(rng.integers(max(shared, b + 1), shared + emax + 1))
                layer.roles[hi, col], layer.roles[lo, col] = Role.OUT_HI, Role.OUT_LO
                layer.mate[hi, col], layer.mate[lo, col] = lo % u, hi % u
                layer.codes[hi, col] = (int(rng.integers(0, 2)) << (b - 1)) | (t - shared)
                layer.codes[lo, col] = rng.integers(0, 1 << b)
            layer.xexp[block, col] = shared
    return dequantize(layer.validate())


@pytest.mark.parametrize("wbits, with_hessian", [(2, False), (3, True), (4, False), (4, True)])
def test_representable_weights_come_back_exactly(wbits, with_hessian):
    seed = 40 + wbits
    fmt = FormatConfig(wbits=wbits, ublock=8, group=32, xbits=3)
    weight = representable(fmt, 32, 64, seed)
    hessian = None
    if with_hessian:
        x = np.random.default_rng(seed).standard_normal((256, 64))
        hessian = 2 * x.T @ x
    out = dequantize(quantize_msq(weight, hessian, fmt))
    mismatch = np.argwhere(out != weight)
    assert mismatch.size == 0, (f"seed {seed}: first mismatch at {tuple(mismatch[0])}: "
                                f"expected {weight[tuple(mismatch[0])]}, got {out[tuple(mismatch[0])]}")


def test_outlier_rate_trades_bits_for_error():
    """outlier_bits = 0 takes every outlier that lowers the error; the default charges each one its
    metadata, so fewer are taken at a slightly higher error."""
    weight, x, _ = planted(53, n=64, k=128, rate=0.02)
    fmt = FormatConfig(wbits=2, group=64)
    free, charged = quantize_msq(weight, fmt=fmt, outlier_bits=0.0), quantize_msq(weight, fmt=fmt)
    count = {name: int((layer.roles == Role.OUT_HI).sum()) for name, layer in
             (("free", free), ("charged", charged))}
    print("seed 53", count)
    assert count["charged"] < count["free"]
    assert output_error(x, weight, free) < output_error(x, weight, charged)


def test_identity_hessian_is_plain_rounding():
    weight, _, _ = planted(50, n=32, k=128)
    fmt = FormatConfig(wbits=3, group=64)
    plain = quantize_msq(weight, None, fmt)
    swept = quantize_msq(torch.as_tensor(weight), torch.eye(128), fmt)
    for name in ("codes", "roles", "mate", "exps", "xexp"):
        assert (getattr(plain, name) == getattr(swept, name)).all(), name


def test_deterministic():
    weight, _, hessian = planted(51, n=32, k=128)
    a, b = quantize_msq(weight, hessian), quantize_msq(weight, hessian)
    assert all((getattr(a, f) == getattr(b, f)).all() for f in ("codes", "roles", "mate", "exps", "xexp"))


def test_dead_inputs_and_zero_rows():
    weight, x, _ = planted(52, n=16, k=64)
    x[:, 5] = 0                                          # input 5 never active
    weight[3] = 0
    layer = quantize_msq(weight, 2 * x.T @ x, FormatConfig(group=32))
    w = dequantize(layer)
    assert (w[:, 5] == 0).all() and (w[3] == 0).all()
    assert (layer.exps[3] == 0).all()


def nearest_outlier(mag, shared, wbits):
    """Brute force: the E(b-1)M(b) value ``(2^b + f) · 2^(e + X - b)`` nearest to ``mag`` (ties to
    even ``f``) as ``(e, f, value)``."""
    values = [((1 << wbits) + f) * 2.0 ** (e + shared - wbits) for e in range(1 << (wbits - 1))
              for f in range(1 << wbits)]
    best = min(range(len(values)), key=lambda i: (abs(values[i] - mag), i % 2))
    return best >> wbits, best % (1 << wbits), values[best]


@pytest.mark.parametrize("wbits", [2, 3, 4])
def test_outlier_encoding_is_nearest_with_flush_carry_and_saturation(wbits):
    """Every quarter step of the mantissa grid from below ``2^X`` (flushes up) through every binade
    (ties, carries into the next binade) to beyond the top one (saturates)."""
    columns = _MsqColumns(FormatConfig(wbits=wbits), 8, 8, 128, outliers=True,
                          knobs=MsqKnobs(outlier_sigma=3.0, outlier_bits=12.0, exponent_span=2), device="cpu")
    for shared in range(3):
        top = shared + (1 << (wbits - 1)) - 1
        mag = np.arange(1, 4 * (1 << wbits) * 2 ** (top + 2 - shared) + 3, dtype=np.float32)
        mag *= np.float32(2.0 ** (shared - wbits - 2))
        t, mant, err2 = columns._encode(mag[None], _floor_log2(mag)[None], np.full((1, 1, 1), shared, np.int32))
        carry = mant[0, 0] == (2 << wbits)
        for i, m in enumerate(mag):
            e, f, value = nearest_outlier(float(m), shared, wbits)
            got = (int(t[0, 0, i] + carry[i]) - shared, 0 if carry[i] else int(mant[0, 0, i]) - (1 << wbits))
            assert got == (e, f), f"b={wbits} X={shared} |w|/2^E={m}: expected (e, f) {(e, f)}, got {got}"
            assert err2[0, 0, i] == np.float32((float(m) - value) ** 2), f"b={wbits} X={shared} |w|/2^E={m}"


@pytest.mark.parametrize("kwargs, error, message", [
    ({"fmt": FormatConfig(wbits=8)}, QuantizeError, r"^wbits=8 has no MicroScopiQ format \(allowed: 2, 3, 4\)$"),
    ({"weight": np.zeros(4)}, ValueError, r"^weight must be a non-empty 2-D \(N, K\) matrix, got shape \(4,\)$"),
    ({"weight": np.full((2, 2), np.nan)}, ValueError, r"^weight holds NaN or Inf at \(0, 0\)$"),
    ({"weight": np.array([[1.0, 2, 3, 4], [5, 6, -np.inf, 8]])}, ValueError, r"^weight holds NaN or Inf at \(1, 2\)$"),
    ({"hessian": np.diag([1.0, 2, np.inf, 4])}, HessianError, r"^hessian holds NaN or Inf$"),
    ({"hessian": np.diag([1.0, np.nan, 3, 4])}, HessianError, r"^hessian holds NaN or Inf$"),
    ({"hessian": np.eye(3)}, HessianError, r"^hessian must be \(4, 4\) for a weight with K=4, got \(3, 3\)$"),
    ({"hessian": -np.eye(4), "damp": 0.0}, HessianError, r"^hessian is not positive definite"),
    ({"damp": -1}, HessianError, r"^damp must be a number >= 0, not -1$"),
    ({"outlier_sigma": 0}, QuantizeError, r"^outlier_sigma must be a number > 0, not 0$"),
    ({"outlier_bits": -1.0}, QuantizeError, r"^outlier_bits must be a number >= 0, not -1.0$"),
    ({"block_size": 0}, ValueError, r"^block_size must be a positive integer, not 0$"),
    ({"exponent_span": 0}, QuantizeError, r"^exponent_span must be an integer from 1 to 8, not 0$"),
    ({"exponent_span": 2.0}, QuantizeError, r"^exponent_span must be an integer from 1 to 8, not 2.0$"),
    ({"exponent_span": True}, QuantizeError, r"^exponent_span must be an integer from 1 to 8, not True$"),
])
def test_refusals(kwargs, error, message):
    args = {"weight": np.ones((2, 4)), "hessian": np.eye(4)} | kwargs
    with pytest.raises(error, match=message):
        quantize_msq(args.pop("weight"), args.pop("hessian"), **args)


def test_default_knobs_per_bit_width():
    """b = 2 tries three exponents (docs/quantization.md, the W2 search); b = 3 and 4 keep two; every
    b charges an outlier 12 bits and flags weights beyond 3 sigma. Omitted knobs are these."""
    assert DEFAULT_KNOBS == {2: MsqKnobs(outlier_sigma=3.0, outlier_bits=12.0, exponent_span=3),
                             3: MsqKnobs(outlier_sigma=3.0, outlier_bits=12.0, exponent_span=2),
                             4: MsqKnobs(outlier_sigma=3.0, outlier_bits=12.0, exponent_span=2)}
    seed = 31
    print(f"seed={seed}")
    weight, _, hessian = planted(seed, n=16, k=64)
    for wbits, knobs in DEFAULT_KNOBS.items():
        fmt = FormatConfig(wbits=wbits, group=32)
        implicit, explicit = quantize_msq(weight, hessian, fmt), quantize_msq(weight, hessian, fmt, **vars(knobs))
        for field in ("codes", "roles", "mate", "exps", "xexp"):
            got, want = getattr(implicit, field), getattr(explicit, field)
            bad = np.argwhere(got != want)
            assert not bad.size, f"b={wbits} {field}: first mismatch at {tuple(bad[0])}: {want[tuple(bad[0])]} vs {got[tuple(bad[0])]}"


@pytest.mark.parametrize("span, exponent, values", [
    # E = 0 (step 1, covers the 1.0): every 0.25 rounds to 0, error 15 · 0.0625 = 0.9375.
    (2, 0, [1.0] + [0.0] * 15),
    # E = -2 (step 1/4, the b = 2 default's third candidate): the 0.25s are exact, the 1.0 clips to
    # code 1 = 0.25 (error 0.5625; no partner row, so no outlier): the smallest error.
    (3, -2, [0.25] + [0.25, -0.25] * 7 + [0.25]),
])
def test_exponent_span_picks_the_least_error_exponent(span, exponent, values):
    """One row of 16 weights, a 1.0 and fifteen ±0.25 (b = 2, G = 16, no calibration, outliers off by
    a huge sigma): E = -1 loses to both (error 1.1875: the 0.25s round half to even, to 0)."""
    weight = np.array([[1.0] + [0.25, -0.25] * 7 + [0.25]])
    layer = quantize_msq(weight, None, FormatConfig(wbits=2, group=16), outlier_sigma=1e6, exponent_span=span)
    assert layer.exps[0, 0] == exponent, f"span {span}: expected E {exponent}, got {layer.exps[0, 0]}"
    if span == DEFAULT_KNOBS[2].exponent_span:
        default = quantize_msq(weight, None, FormatConfig(wbits=2, group=16), outlier_sigma=1e6)
        assert default.exps[0, 0] == exponent, f"b = 2 default: expected E {exponent}, got {default.exps[0, 0]}"
    got = dequantize(layer)[0]
    bad = np.flatnonzero(got != np.array(values))
    assert not bad.size, f"span {span}: first mismatch at k={bad[0]}: expected {values[bad[0]]}, got {got[bad[0]]}"
