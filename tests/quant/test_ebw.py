"""quant/ebw: the effective bit width counts every bit of the packed file."""

import numpy as np
import pytest

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.quant.baselines import quantize_rtn
from microscopiq.quant.ebw import effective_bits
from microscopiq.quant.layer import Role
from microscopiq.quant.msq import quantize_msq
from microscopiq.quant.pack import pack_layer
from microscopiq.tb.stimulus import empty_msq_layer, random_case


def test_hand_count_one_pair():
    """8×16 layer, b=4, U=8, G=16, xb=4, one pair at column 3 (micro-block 3, gap 3, Rice r=1)."""
    fmt = FormatConfig(wbits=4, ublock=8, group=16, xbits=4)
    layer = empty_msq_layer(fmt, 8, 16)
    layer.roles[5, 3], layer.roles[2, 3] = Role.OUT_HI, Role.OUT_LO
    layer.mate[5, 3], layer.mate[2, 3] = 2, 5
    layer.xexp[0, 3] = 9
    report = effective_bits(layer.validate())
    header = 52 * 8
    codes = 8 * 16 * 4                       # 512
    scales = 8 * 1 * 8                       # one int8 E per row
    # preamble 40 + unary(q=1) 2 + remainder 1 + count 2 + X 4 + pair 6 = 55 → 15 payload bits → 2 bytes
    metadata = 40 + 16
    assert (report.header_bits, report.code_bits, report.scale_bits, report.metadata_bits) == \
        (header, codes, scales, metadata)
    assert report.total_bits == 1048 == 8 * len(pack_layer(layer))
    assert report.bits_per_weight == 1048 / 128


def test_hand_count_padded_uniform():
    """5×10 uniform layer, b=3, U=4, G=8: padded 8×16, 2 groups, float32 scale and zero."""
    fmt = FormatConfig(wbits=3, ublock=4, group=8)
    layer = quantize_rtn(np.arange(50.0).reshape(5, 10), fmt)
    report = effective_bits(layer)
    assert report.code_bits == 8 * 16 * 3                # 384 bits = 48 bytes, no padding
    assert report.scale_bits == 8 * 2 * 64
    assert report.metadata_bits == 0
    assert report.total_bits == 8 * len(pack_layer(layer)) == 416 + 384 + 1024
    assert report.bits_per_weight == 1824 / 50


@pytest.mark.parametrize("seed", range(6))
def test_total_equals_file_size(seed):
    rng = np.random.default_rng(seed)
    wbits, ublock = int(rng.choice([2, 3, 4])), int(rng.choice([2, 4, 8, 16]))
    fmt = FormatConfig(wbits=wbits, ublock=ublock, group=int(rng.choice([8, 32])), xbits=int(rng.integers(1, 7)))
    n, k = int(rng.integers(1, 50)), int(rng.integers(1, 90))
    layer = random_case(AccelConfig(fmt=fmt, rows=2, cols=ublock), n, k, 1, seed,
                        outlier_rate=float(rng.choice([0.0, 0.02, 0.3, 1.0]))).layer
    report = effective_bits(layer)
    assert report.total_bits == 8 * len(pack_layer(layer)), f"seed {seed}"
    assert report.weights == n * k


@pytest.mark.parametrize("wbits, bound", [(2, 2.9), (4, 4.5)])
def test_heavy_tailed_layer_report(wbits, bound):
    """EBW of a 512×512 Student-t (3 dof) layer at U=8, G=128: printed for the record. The b = 2
    default (``exponent_span=3``) turns the clipped tails into outliers: 2.82 bits per weight at half
    the weight error of ``exponent_span=2`` (2.28 bits)."""
    seed = 7
    weight = np.random.default_rng(seed).standard_t(3, size=(512, 512))
    layer = quantize_msq(weight, fmt=FormatConfig(wbits=wbits))
    report = effective_bits(layer)
    print(f"seed {seed} b={wbits}: {report.summary()}; outliers "
          f"{(layer.roles == Role.OUT_HI).mean():.4f} of weights")
    assert report.code_bits == 512 * 512 * wbits
    assert wbits < report.bits_per_weight < bound
