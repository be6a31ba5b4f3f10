"""The host side of the accelerator streams: field layouts, encoder, decoder, refusals and the
cycle model's shape (the exact cycle counts are checked against the RTL in test_top.py)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import Shape

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.hdl.layouts import Fault, Mode, StreamLayouts
from microscopiq.host.packed_stream import HEADER_FIELDS, encode_pass
from microscopiq.host.stream_format import (MODE_RAW, Beat, StreamError, act_columns,
                                           decode_results, decoded_tiles, pack_beat,
                                           encode_layer, expected_results, predict_cycles,
                                           result_beat_count, tile_gaps, tile_periods)
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
    assert sf.weights_width == cfg.weight_bus
    body = max(cfg.cols * (cfg.acc_bits + 1), cfg.cols * sf.partial_bits + sf.sum_bits)
    assert sf.result_width == body + 3
    # Fields of the header do not overlap.
    spans = sorted(_spans(sf.header).values())
    assert all(a + w <= b for (a, w), (b, _) in zip(spans, spans[1:]))


@pytest.mark.parametrize("bus", [8, 32, 64, 136])
def test_encode_weights_are_the_packed_passes(bus):
    """Per pass of at most max_tokens tokens, the packed pass's bytes on ``bus``-bit beats, ``tlast``
    on each pass's last beat, the header's ``tokens`` that pass's count."""
    cfg = _cfg(weight_bus=bus)
    case = random_case(cfg, n=11, k=13, m=9, seed=7)
    weights, acts = encode_layer(cfg, case.layer, case.x)
    passes, bytes_per_beat = [], bus // 8
    for beat in weights:
        if not passes or passes[-1][-1].last:
            passes.append([])
        passes[-1].append(beat)
    assert [len(p) for p in passes] == [len(passes[0])] * 3 and all(p[-1].last for p in passes)
    for count, beats in zip((4, 4, 1), passes):
        data = b"".join(beat.data.to_bytes(bytes_per_beat, "little") for beat in beats)
        want = encode_pass(cfg, case.layer, count)
        assert data == want + bytes(-len(want) % bytes_per_beat)
    assert len(acts) == 9 * 2 * (16 // 4) and [b.last for b in acts].count(True) == 3


def test_decoded_tiles_are_the_routing_compilers():
    """Tile (j=1, t=2): the PPU shifts of K-group 1, then the rows' codes and roles."""
    cfg = _cfg()
    sf = StreamLayouts(cfg)
    layer = random_case(cfg, n=11, k=13, m=9, seed=7).layer
    tiles = decoded_tiles(cfg, layer)
    k_tiles = 16 // 4
    assert len(tiles) == 2 * k_tiles
    shifts, rows = tiles[1 * k_tiles + 2]
    d = layer.exps - layer.exps.min(axis=1, keepdims=True)
    assert shifts == [int(d[8 + c, 1]) if 8 + c < layer.np_ else 0 for c in range(cfg.cols)]
    for r, word in enumerate(rows):
        for c in range(cfg.cols):
            n, k = 8 + c, 2 * 4 + r
            code = int(layer.codes[n, k]) if n < layer.np_ else 0
            role = int(layer.roles[n, k]) if n < layer.np_ else Role.INLIER
            assert _field(word, sf.row["codes"].offset + 4 * c, 4) == code, (n, k)
            assert _field(word, sf.row["roles"].offset + 2 * c, 2) == role, (n, k)


@pytest.mark.parametrize("share", [1, 2])
def test_rows_and_activations_travel_in_one_order(share):
    """Shared ReCoN: tile ``(j, t)``'s decoded row ``r`` holds K row ``act_columns[tile, r]`` and its
    activation vectors carry that column in lane ``r``, so every product and sum is unchanged; the
    rows are the balanced order (period ``max(1, ceil(n·S/R))`` for ``n`` outlier rows). Per-row
    ReCoN: ``k`` order."""
    seed = 15
    cfg = _cfg(share=share)
    sf = StreamLayouts(cfg)
    case = random_case(cfg, n=16, k=24, m=3, seed=seed, outlier_rate=0.4)
    layer, x = case.layer, case.x
    print(f"seed={seed}")
    columns = act_columns(cfg, layer)
    k_tiles = 24 // cfg.rows
    natural = (np.arange(len(columns)) % k_tiles)[:, None] * cfg.rows + np.arange(cfg.rows)
    assert (columns == natural).all() == (share == 1)
    _, acts = encode_layer(cfg, layer, x)
    for i, (_, rows) in enumerate(decoded_tiles(cfg, layer)):
        j = i // k_tiles
        for r, word in enumerate(rows):
            k = int(columns[i, r])
            codes = [int(layer.codes[j * 8 + c, k]) for c in range(cfg.cols)]
            roles = [int(layer.roles[j * 8 + c, k]) for c in range(cfg.cols)]
            assert [_field(word, sf.row["codes"].offset + 4 * c, 4) for c in range(cfg.cols)] == codes, (i, r)
            assert [_field(word, sf.row["roles"].offset + 2 * c, 2) for c in range(cfg.cols)] == roles, (i, r)
        for m in range(3):
            lanes = [_field(acts[i * 3 + m].data, 8 * r, 8) for r in range(cfg.rows)]
            want = [int(x[m, k]) & 0xFF for k in columns[i]]
            assert lanes == want, f"tile {i} token {m}: lanes {lanes}, expected {want}"
    outlier_rows = (layer.roles != Role.INLIER).reshape(2, 8, k_tiles, cfg.rows).any(axis=1).sum(axis=2).ravel()
    balanced = [max(1, -(-int(n) * share // cfg.rows)) for n in outlier_rows]
    assert tile_periods(cfg, layer) == (balanced if share > 1 else [1] * len(balanced))
    assert share == 1 or max(balanced) > 1


def test_encode_uniform_header_is_raw_mode():
    cfg = _cfg(share=0, ).replace(wbits=3, recon_share=0)
    case = random_uniform_case(cfg, n=8, k=8, m=2, seed=13)
    weights, acts = encode_layer(cfg, case.layer, case.x)
    sf = StreamLayouts(cfg)
    assert _field(weights[0].data, *HEADER_FIELDS["mode"]) == MODE_RAW
    assert sf.recon_config.size == 0
    # INLIER roles, codes = q as b-bit two's complement.
    row = decoded_tiles(cfg, case.layer)[0][1][0]
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


def test_decode_refuses_a_marked_pass():
    """A beat carrying a fault (a malformed weight stream) is refused, naming the fault."""
    cfg = _cfg()
    case = random_case(cfg, n=8, k=8, m=2, seed=9)
    beats = _fake_results(cfg, case.layer, case.x)
    offset = StreamLayouts(cfg).result["fault"].offset
    beats[-1] = Beat(beats[-1].data | Fault.PAIRS.value << offset, True)
    with pytest.raises(StreamError, match=r"^result beat 1: the accelerator refused the weight stream "
                                          r"\(fault PAIRS\)$"):
        decode_results(cfg, case.layer, 2, beats)


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
        # One token per tile and cycle once M hides every later tile's load: the cycles beyond
        # tiles·M are then the same for every M; below that, more.
        overhead = {m: predict_cycles(c2, uniform.layer, m) - tiles * m for m in (1, 32, 48, 64)}
        assert overhead[32] == overhead[48] == overhead[64] < overhead[1], overhead
    assert predict_cycles(cfg, case.layer, 4) > predict_cycles(_cfg(share=1), case.layer, 4)


def test_tile_gaps_and_cycle_overrides():
    """Shared ReCoN's gap per tile is the largest group offset of an outlier row (both rows of a
    group hold outliers here: 1), 0 without outliers or sharing; ``predict_cycles`` takes other
    periods and gaps (the bounds of ``make bench-cycles``) and refuses lists of other lengths."""
    cfg = _cfg(share=2)
    case = full_outlier_case(cfg, n=16, k=16, m=4, seed=12)
    gaps = tile_gaps(cfg, case.layer)
    assert gaps == [1] * 8
    assert tile_gaps(cfg, random_uniform_case(cfg, n=16, k=16, m=4, seed=12).layer) == [0] * 8
    assert tile_gaps(_cfg(share=1), case.layer) == [0] * 8
    periods = tile_periods(cfg, case.layer)
    long = cfg.replace(max_tokens=64)
    now = predict_cycles(long, case.layer, 32)
    assert predict_cycles(long, case.layer, 32, periods=periods, gaps=gaps) == now
    # M = 32 tokens T = 2 apart and the gap decide when the next tile starts (the weights load
    # meanwhile): one cycle less at each of the 7 tile boundaries with every gap 0, 64 more a tile
    # at T = 4.
    assert now - predict_cycles(long, case.layer, 32, gaps=[0] * 8) == 7
    assert predict_cycles(long, case.layer, 32, periods=[4] * 8) - now == 8 * 64
    with pytest.raises(ValueError, match="one entry per tile, not 8 and 3"):
        predict_cycles(cfg, case.layer, 4, gaps=[0] * 3)


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
