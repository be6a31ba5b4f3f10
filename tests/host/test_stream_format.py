"""The host side of the accelerator streams: field layouts, encoder, decoder, refusals and the
cycle model's shape (the exact cycle counts are checked against the RTL in test_top.py)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import Shape

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.hdl.layouts import Mode, StreamLayouts
from microscopiq.hdl.core import LOAD_STAGE
from microscopiq.host.stream_format import (MODE_MSQ, MODE_RAW, Beat, CycleModel, StreamError,
                                           decode_results, pack_beat,
                                           encode_layer, expected_results, predict_cycles,
                                           result_beat_count, tile_periods)
from microscopiq.quant.layer import Role
from microscopiq.tb.stimulus import full_outlier_case, random_case, random_uniform_case


def _cfg(share=1, **kw):
    return AccelConfig(fmt=FormatConfig(group=8), rows=4, cols=8, recon_share=share, max_tokens=4,
                       max_k=64, **kw)


def _spans(layout) -> dict[str, tuple[int, int]]:
    """``name: (offset, width)`` of a struct layout's fields."""
    return {name: (field.offset, Shape.cast(field.shape).width) for name, field in layout}


def _field(word, offset, width):
    return (word >> offset) & ((1 << width) - 1)


def test_widths_cover_every_layout():
    cfg = _cfg()
    sf = StreamLayouts(cfg)
    assert sf.act_width == 4 * 8
    assert sf.weights_width >= sf.row.size
    assert sf.weights_width >= cfg.cols * 8 and sf.weights_width >= sf.header.size
    assert sf.result_width == max(cfg.cols * (cfg.acc_bits + 1), cfg.cols * sf.partial_bits + sf.sum_bits)
    # Fields of the header do not overlap.
    spans = sorted(_spans(sf.header).values())
    assert all(a + w <= b for (a, w), (b, _) in zip(spans, spans[1:]))


def test_encode_msq_layout():
    seed = 7
    cfg = _cfg()
    case = random_case(cfg, n=11, k=13, m=9, seed=seed)
    sf = StreamLayouts(cfg)
    weights, acts = encode_layer(cfg, case.layer, case.x)
    k_tiles, n_tiles = 16 // 4, 2
    per_pass = 1 + n_tiles * k_tiles * (1 + cfg.rows)
    passes = 3                                           # 9 tokens, max_tokens 4
    assert len(weights) == passes * per_pass
    assert [b.last for b in weights].count(True) == passes and weights[per_pass - 1].last
    header = weights[0].data
    fields = {name: _field(header, o, w) for name, (o, w) in _spans(sf.header).items()}
    assert fields == {"mode": MODE_MSQ, "tokens": 3, "k_tiles": k_tiles - 1, "n_tiles": n_tiles - 1}
    assert _field(weights[2 * per_pass].data, *_spans(sf.header)["tokens"]) == 0     # last pass: 1 token
    layer = case.layer
    # Tile (j=1, t=2): header with the shifts of group 1, then the rows.
    index = 1 + (1 * k_tiles + 2) * (1 + cfg.rows)
    shifts = layer.exps - layer.exps.min(axis=1, keepdims=True)
    for c in range(cfg.cols):
        n = 8 + c
        want = int(shifts[n, 1]) if n < layer.np_ else 0
        assert _field(weights[index].data, 8 * c, 8) == want, (n, want)
    for r in range(cfg.rows):
        word = weights[index + 1 + r].data
        for c in range(cfg.cols):
            n, k = 8 + c, 2 * 4 + r
            code = int(layer.codes[n, k]) if n < layer.np_ else 0
            role = int(layer.roles[n, k]) if n < layer.np_ else Role.INLIER
            assert _field(word, sf.row["codes"].offset + 4 * c, 4) == code, (n, k)
            assert _field(word, sf.row["roles"].offset + 2 * c, 2) == role, (n, k)
    # Activations: per pass, tile (j, t) outer, token inner; x[m, tR + r] at bit r*a.
    assert len(acts) == 9 * n_tiles * k_tiles
    first = acts[0:4 * n_tiles * k_tiles]
    vector = first[1 * 4 + 2]          # j=0, t=1, m=2
    got = [_field(vector.data, 8 * r, 8) for r in range(4)]
    want = [int(case.x[2, 4 + r]) & 0xFF if 4 + r < 13 else 0 for r in range(4)]
    assert got == want


def test_encode_uniform_header_is_raw_mode():
    cfg = _cfg(share=0, ).replace(wbits=3, recon_share=0)
    case = random_uniform_case(cfg, n=8, k=8, m=2, seed=13)
    weights, acts = encode_layer(cfg, case.layer, case.x)
    sf = StreamLayouts(cfg)
    assert _field(weights[0].data, *_spans(sf.header)["mode"]) == MODE_RAW
    assert sf.recon_config.size == 0
    # INLIER roles, codes = q as b-bit two's complement.
    row = weights[2].data
    q = case.layer.q[:8, 0]
    assert [_field(row, 3 * c, 3) for c in range(8)] == [int(v) & 7 for v in q]
    assert all(_field(row, sf.row["roles"].offset + 2 * c, 2) == Role.INLIER for c in range(8))


def _fake_results(cfg, layer, x):
    """The result beats a correct device returns (built from the golden model)."""
    layouts = StreamLayouts(cfg)
    first, second = expected_results(cfg, layer, x)
    tokens = x.shape[0]
    cols = cfg.cols
    uniform = first.ndim == 3
    n_tiles = -(-layer.n // cols)
    beats = []
    for start in range(0, tokens, cfg.max_tokens):
        count = min(cfg.max_tokens, tokens - start)
        order = [(j, g, m) for j in range(n_tiles) for g in range(first.shape[2] if uniform else 1)
                 for m in range(count)]
        for pos, (j, g, m) in enumerate(order):
            row = start + m
            cs = [j * cols + c for c in range(cols)]
            if uniform:
                p = [first[row, n, g] if n < layer.n else 0 for n in cs]
                word = layouts.raw_result.const({"p": [int(v) for v in p], "s": int(second[row, g])}).as_bits()
            else:
                y = [first[row, n] if n < layer.n else 0 for n in cs]
                o = [second[row, n] if n < layer.n else 0 for n in cs]
                word = layouts.msq_result.const({"y_int": [int(v) for v in y],
                                                 "overflow": [int(v) for v in o]}).as_bits()
            beats.append(Beat(word, pos == len(order) - 1))
    return beats


@pytest.mark.parametrize("kind", ["msq", "uniform"])
def test_decode_round_trip(kind):
    seed = 8
    cfg = _cfg()
    maker = random_case if kind == "msq" else random_uniform_case
    case = maker(cfg, n=13, k=20, m=6, seed=seed)
    beats = _fake_results(cfg, case.layer, case.x)
    assert len(beats) == result_beat_count(cfg, case.layer, 6)
    for got, want in zip(decode_results(cfg, case.layer, 6, beats), expected_results(cfg, case.layer, case.x)):
        np.testing.assert_array_equal(got, want)


def test_decode_refuses_bad_framing():
    cfg = _cfg()
    case = random_case(cfg, n=8, k=8, m=2, seed=9)
    beats = _fake_results(cfg, case.layer, case.x)
    with pytest.raises(StreamError, match=r"^expected 2 result beats, got 1$"):
        decode_results(cfg, case.layer, 2, beats[:1])
    with pytest.raises(StreamError, match=r"^result beat 0: tlast=1 where 0 was expected$"):
        decode_results(cfg, case.layer, 2, [Beat(beats[0].data, True), beats[1]])


def test_encoder_refusals():
    cfg = _cfg()
    case = random_case(cfg, n=8, k=8, m=2, seed=10)
    plain = _cfg(share=0)
    with pytest.raises(StreamError, match=r"^a MicroScopiQ layer needs ReCoN: this instance has recon 'none'"):
        encode_layer(plain, case.layer, case.x)
    bad = case.x.copy()
    bad[1, 3] = 128
    with pytest.raises(StreamError, match=r"^activation at \(1, 3\) = 128 does not fit in abits=8$"):
        encode_layer(cfg, case.layer, bad)
    with pytest.raises(StreamError, match=r"^activations must be \(M >= 1, k=8\), got shape \(2, 7\)$"):
        encode_layer(cfg, case.layer, case.x[:, :7])
    small = cfg.replace(max_k=4)
    with pytest.raises(StreamError, match=r"^layer k=8 exceeds max_k=4$"):
        encode_layer(small, case.layer, case.x)
    other = random_case(AccelConfig(fmt=FormatConfig(group=8, wbits=3), rows=4, cols=8), n=8, k=8, m=2, seed=10)
    with pytest.raises(StreamError, match=r"^layer format .* differs from the accelerator's"):
        encode_layer(cfg, other.layer, other.x)


def test_periods_and_cycle_model():
    cfg = _cfg(share=2)
    case = full_outlier_case(cfg, n=16, k=16, m=4, seed=12)
    periods = tile_periods(cfg, case.layer)
    assert periods == [2] * len(periods)           # every row holds outliers: both rows of a group
    uniform = random_uniform_case(cfg, n=16, k=16, m=4, seed=12)
    assert tile_periods(cfg, uniform.layer) == [1] * len(periods)
    tiles = len(periods)
    for share in (0, 1):
        c2 = _cfg(share=share).replace(max_tokens=64)
        model = CycleModel.of(c2)
        # After the first load (header, R + 1 beats, the load stage) each tile costs max(M, R + 1)
        # cycles (the next tile loads while one computes; the weight stream has R + 1 beats per
        # tile), the last one M before the pipeline drains (arrive, PPU and result FIFO).
        overhead = 1 + model.load_beats + LOAD_STAGE + model.arrive(1) + model.ppu_latency
        for m in (1, 4, model.load_beats, 16, 64):
            cycles = predict_cycles(c2, uniform.layer, m)
            assert cycles == (tiles - 1) * max(m, model.load_beats) + m + overhead, (share, m, cycles)
    assert predict_cycles(cfg, case.layer, 4) > predict_cycles(_cfg(share=1), case.layer, 4)


@pytest.mark.parametrize("share", [0, 1])
def test_pack_beat_is_the_layout_constant(share):
    """The encoder's fast packer gives exactly ``layout.const(value).as_bits()`` for every beat."""
    seed = 14
    cfg = _cfg(share=share)
    layouts = StreamLayouts(cfg)
    rng = np.random.default_rng(seed)
    print(f"seed={seed}")
    header = {"mode": Mode.RAW, "tokens": 3, "k_tiles": 15, "n_tiles": 2}
    codes, roles = rng.integers(0, 16, cfg.cols), rng.integers(0, 3, cfg.cols)
    config = int(rng.integers(0, 1 << 62)) % (1 << max(layouts.recon_config.size, 1)) if share else 0
    row = {"codes": [int(v) for v in codes], "roles": [int(v) for v in roles]}
    constant = {**row, "config": layouts.recon_config.from_bits(config)} if share else row
    shifts = [int(v) for v in rng.integers(0, 256, cfg.cols)]
    acts = [int(v) for v in rng.integers(-128, 128, cfg.rows)]
    assert pack_beat(layouts.header, header) == layouts.header.const(header).as_bits()
    assert pack_beat(layouts.row, {**row, "config": config}) == layouts.row.const(constant).as_bits()
    assert pack_beat(layouts.tile, {"d": shifts}) == layouts.tile.const({"d": shifts}).as_bits()
    assert pack_beat(layouts.act, acts) == layouts.act.const(acts).as_bits()
