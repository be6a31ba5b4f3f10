"""microscopiq.config: defaults, derived widths and the refusal messages."""

import pytest

from microscopiq.config import AccelConfig, ConfigError, FormatConfig, ReconSharing


def test_default_widths():
    fmt = FormatConfig()
    # b=4, xb=4: e+X <= 7+15 = 22; |v| <= 31·2^22; |x| <= 128.
    assert fmt.max_outlier_shift == 22
    assert fmt.max_slot_magnitude == 31 << 22
    assert fmt.product_bits == (128 * (31 << 22)).bit_length() + 1 == 35
    assert fmt.group_sum_bits() == 42
    assert fmt.pe_product_bits == 12
    assert AccelConfig().min_acc_bits == 28


@pytest.mark.parametrize("kwargs, message", [
    ({"wbits": 5}, r"^wbits must be one of 2, 3, 4, 8, not 5$"),
    ({"abits": 0}, r"^abits must be one of 4, 8, not 0$"),
    ({"ublock": 6}, r"^ublock must be a power of two >= 2, not 6$"),
    ({"group": 100}, r"^group must be a power of two >= 2, not 100$"),
    ({"xbits": 7}, r"^xbits must be between 1 and 6, not 7$"),
    ({"ublock": 256}, r"^ublock must be at most 128, not 256$"),
    ({"group": 1 << 17}, r"^group must be at most 65536, not 131072$"),
])
def test_format_refusals(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        FormatConfig(**kwargs)


def test_format_type_error():
    with pytest.raises(TypeError, match=r"^wbits must be an integer, not '4'$"):
        FormatConfig(wbits="4")


@pytest.mark.parametrize("kwargs, message", [
    ({"cols": 12}, r"^cols must be a positive multiple of ublock \(8\), not 12$"),
    ({"rows": 3}, r"^group \(128\) must be a multiple of rows"),
    ({"acc_bits": 20}, r"^acc_bits=20 is too small for max_k=4096: an all-inlier output"),
    ({"recon_share": 3}, r"^recon_share must be 0 \(none\), 1 \(per-row\) or a divisor of rows \(8\), not 3$"),
    ({"wbits": 8}, r"^wbits=8 has no outlier format: use recon 'none'"),
    ({"rows": 128}, r"^rows must be at most 64, not 128$"),
    ({"cols": 128}, r"^cols must be at most 64, not 128$"),
    ({"max_tokens": 4097}, r"^max_tokens must be at most 4096, not 4097$"),
    ({"max_n": 1 << 32}, r"^max_n must be at most 4294967295, not 4294967296$"),
    ({"multi_precision": True, "wbits": 3},
     r"^multi_precision needs wbits 4 or 8 \(two wbits/2-bit slots per PE\), not 3$"),
    ({"multi_precision": True, "group": 8},
     r"^multi_precision needs group \(8\) a multiple of 2·rows \(16\): a b/2 pass's K-tile is 2R deep$"),
    ({"dsp": "xilinx"}, r"^dsp must be one of none, ecp5, not 'xilinx'$"),
    ({"dsp": "ecp5", "multi_precision": True},
     r"^dsp 'ecp5' maps one a x \(b\+1\) multiplier per PE to a DSP; multi_precision's PEs have two "
     r"partial multipliers: use dsp 'none'$"),
])
def test_accel_refusals(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AccelConfig().replace(**kwargs)


def test_largest_accepted_values():
    fmt = FormatConfig(ublock=128, group=1 << 16)
    assert (fmt.ublock, fmt.group) == (128, 65536)
    cfg = AccelConfig(rows=64, cols=64, max_tokens=4096, max_k=(1 << 32) - 1, max_n=(1 << 32) - 1,
                      acc_bits=64)
    assert (cfg.rows, cfg.max_k) == (64, 4294967295)


def test_recon_sharing_parse():
    assert ReconSharing.parse("per-row") == 1
    assert ReconSharing.parse("shared:4") == 4
    assert ReconSharing.parse("none") == 0
    with pytest.raises(ConfigError, match=r"^recon must be 'per-row', 'shared:S'"):
        ReconSharing.parse("shared:0")


def test_json_round_trip():
    cfg = AccelConfig().replace(rows=4, wbits=2, recon_share=2)
    assert AccelConfig.from_json(cfg.to_json()) == cfg
    dsp = cfg.replace(dsp="ecp5")
    assert AccelConfig.from_json(dsp.to_json()) == dsp
    with pytest.raises(TypeError, match=r"^multi_precision must be a bool, not 1$"):
        AccelConfig(multi_precision=1)


def test_multi_precision_formats():
    """A multi-precision instance runs its own format and the one at b/2: uniform layers in pairs,
    MicroScopiQ layers (with ReCoN) narrow, one slot per PE."""
    cfg = AccelConfig(multi_precision=True)
    half = FormatConfig(wbits=2)
    assert (cfg.pass_pairs(cfg.fmt, False), cfg.pass_pairs(half, True), cfg.pass_pairs(half, False)) == (False, True, False)
    assert (cfg.pass_narrow(cfg.fmt, False), cfg.pass_narrow(half, True), cfg.pass_narrow(half, False)) == (False, False, True)
    assert (cfg.act_lanes, cfg.act_bits, cfg.tile_depth(True)) == (16, 128, 16)
    with pytest.raises(ConfigError, match=r"^layer format .*wbits=2.* differs from the accelerator's "):
        cfg.replace(recon_share=0).pass_pairs(half, False)
    with pytest.raises(ConfigError, match=r"^layer format .*xbits=3.* differs from the accelerator's "):
        cfg.pass_narrow(FormatConfig(wbits=2, xbits=3), False)
    with pytest.raises(ConfigError, match=r"^layer format .*wbits=2.* differs from the accelerator's "):
        AccelConfig().pass_pairs(half, True)
    assert AccelConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(TypeError, match=r"^multi_precision must be a bool, not 1$"):
        AccelConfig(multi_precision=1)
