"""MetaDecoder in amaranth.sim against the Python routing compiler (host/routing.compile_row).

Every legal placement of a U = 8 micro-block (``routing.placements``, 5937) goes through the decoder
as the record the packed stream carries (pairs in any order, unused pair fields random) and must come
out with exactly ``compile_row``'s configuration integer and the placement's roles; plus random rows
for other U, widths, b and xb, raw (uniform) rows, malformed records (error flag), rows of a layer
through ``packed_stream.row_records`` against ``stream_format.encode_layer``'s row beats, the
latency with an always-ready output and random back-pressure.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
from amaranth import Module, Signal, unsigned
from amaranth.back import verilog
from amaranth.sim import Simulator

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.flow.lint import lint
from microscopiq.hdl.layouts import StreamLayouts
from microscopiq.hdl.meta_decoder import MetaDecoder, RecordGeometry
from microscopiq.host import stream_format
from microscopiq.host.packed_stream import row_records
from microscopiq.host.routing import compile_row, placements
from microscopiq.quant import golden
from microscopiq.quant.layer import Role
from microscopiq.tb import stimulus
from microscopiq.tb.sim_streams import stream_through

SEED = 1212

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def beat_fields(beat) -> tuple[int, int, int, int]:
    """A sampled output payload as integers (``error`` is a plain int already)."""
    return tuple(int(getattr(beat, name).as_value().value) if name != "error" else int(beat.error)
                 for name in ("codes", "roles", "config", "error"))


def run(fmt, width, payloads, rng, *, pause=0.25, narrow=False):
    """Stream ``payloads`` through the decoder with idle input and output cycles (probability
    ``pause`` each); return the output beats as ``(codes, roles, config, error)`` integers."""
    return stream_through(MetaDecoder(fmt, width, narrow), payloads, len(payloads), rng, pause=pause,
                          sample=beat_fields)


def block_payload(geom: RecordGeometry, pairs, xexp: int, rng) -> dict:
    """One micro-block's record: the pairs in the given order, unused pair fields random."""
    u = geom.fmt.ublock
    fields = [{"outlier": int(o), "partner": int(p)} for o, p in pairs]
    fields += [{"outlier": int(rng.integers(0, u)), "partner": int(rng.integers(0, u))}
               for _ in range(geom.max_pairs - len(pairs))]
    block = {"present": int(bool(pairs)), "xexp": int(xexp), "pairs": fields}
    if geom.count_bits:
        block["count"] = max(len(pairs) - 1, 0)
    return block


def row_case(fmt, width, block_pairs, rng, *, codes=None, raw=False):
    """``(payload, expected)`` for one row: ``block_pairs`` lists each micro-block's pairs."""
    geom, u, b = RecordGeometry(fmt), fmt.ublock, fmt.wbits
    codes = rng.integers(0, 1 << b, size=width) if codes is None else np.asarray(codes)
    xexp = rng.integers(0, 1 << fmt.xbits, size=width // u)
    roles = np.zeros(width, np.int64)
    mate = np.full(width, -1, np.int64)
    if not raw:
        for blk, pairs in enumerate(block_pairs):
            for o, p in pairs:
                roles[blk * u + o], roles[blk * u + p] = Role.OUT_HI, Role.OUT_LO
                mate[blk * u + o], mate[blk * u + p] = p, o
    payload = {"codes": [int(c) for c in codes], "raw": int(raw),
               "blocks": [block_payload(geom, pairs, x, rng) for pairs, x in zip(block_pairs, xexp)]}
    config = compile_row(fmt, width, codes, roles, mate, xexp, uniform=raw)
    packed_codes = sum(int(c) << (b * i) for i, c in enumerate(codes))
    packed_roles = sum(int(r) << (2 * i) for i, r in enumerate(roles))
    return payload, (packed_codes, packed_roles, config, 0)


def check(outputs, expected, label):
    assert len(outputs) == len(expected), f"{label}: {len(outputs)} outputs for {len(expected)} rows"
    for index, (got, want) in enumerate(zip(outputs, expected)):
        if got != want:
            names = ("codes", "roles", "config", "error")
            diff = ", ".join(f"{n} {hex(w)} != {hex(g)}" for n, g, w in zip(names, got, want) if g != w)
            pytest.fail(f"{label}: row {index}: expected != actual: {diff}")


def random_pairs(u, rng):
    order = rng.permutation(u)
    count = int(rng.integers(0, u // 2 + 1))
    return [(int(order[2 * i]), int(order[2 * i + 1])) for i in range(count)]


@pytest.mark.slow
def test_every_placement_u8():
    """Every legal placement of a U = 8 micro-block (5937) at the default b = 4, codes extreme on
    alternate placements (all minimum / all maximum) and random otherwise, pairs in the
    enumeration's (unsorted) order. (The routing bits do not depend on b; b = 2, 3 are covered by
    the random rows.)"""
    wbits = 4
    fmt = FormatConfig(wbits=wbits)
    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED)
    every = placements(8)
    assert len(every) == 5937
    top = (1 << wbits) - 1
    cases = [row_case(fmt, 8, [list(pairs)], rng,
                      codes=[0] * 8 if index % 3 == 0 else [top] * 8 if index % 3 == 1 else None)
             for index, pairs in enumerate(every)]
    outputs = run(fmt, 8, [p for p, _ in cases], rng, pause=0.1)
    check(outputs, [e for _, e in cases], f"b={wbits}")


@pytest.mark.parametrize("ublock, width, wbits, xbits", [
    (8, 8, 4, 4), (8, 16, 3, 4), (4, 8, 2, 4), (16, 16, 4, 4), (2, 4, 4, 4), (8, 8, 4, 6), (4, 12, 3, 1),
])
def test_random_rows(ublock, width, wbits, xbits):
    fmt = FormatConfig(wbits=wbits, ublock=ublock, xbits=xbits)
    rng = np.random.default_rng(SEED + ublock + width + wbits + xbits)
    rows = 60 if ublock == 16 else 150
    full = [(2 * i, 2 * i + 1) for i in range(ublock // 2)]
    cases = [row_case(fmt, width, [full[::-1]] * (width // ublock), rng)]
    cases += [row_case(fmt, width, [random_pairs(ublock, rng) for _ in range(width // ublock)], rng)
              for _ in range(rows)]
    outputs = run(fmt, width, [p for p, _ in cases], rng)
    check(outputs, [e for _, e in cases], f"U={ublock} C={width} b={wbits} xb={xbits}")


def test_raw_rows_ignore_metadata():
    """Raw (uniform-layer) rows: every slot INLIER with shift 0 and identity routing, whatever the
    record fields hold."""
    fmt = FormatConfig()
    rng = np.random.default_rng(SEED)
    cases = [row_case(fmt, 16, [random_pairs(8, rng) or [(0, 1)] for _ in range(2)], rng, raw=True)
             for _ in range(20)]
    outputs = run(fmt, 16, [p for p, _ in cases], rng)
    check(outputs, [e for _, e in cases], "raw")


@pytest.mark.parametrize("pairs", [
    [(3, 3)], [(1, 2), (2, 5)], [(1, 2), (5, 1)], [(0, 1), (2, 3), (4, 5), (6, 0)], [(4, 7), (4, 6)],
])
def test_malformed_record_sets_error(pairs):
    """A slot named by two pairs, or an outlier that is its own partner: ``error`` = 1; the legal
    rows around it decode normally."""
    fmt = FormatConfig()
    rng = np.random.default_rng(SEED)
    good = [row_case(fmt, 8, [random_pairs(8, rng)], rng) for _ in range(2)]
    bad = {"codes": [0] * 8, "raw": 0, "blocks": [block_payload(RecordGeometry(fmt), pairs, 3, rng)]}
    outputs = run(fmt, 8, [good[0][0], bad, good[1][0]], rng)
    assert outputs[1][3] == 1, f"error flag not set for pairs {pairs}"
    check([outputs[0], outputs[2]], [good[0][1], good[1][1]], "rows around a malformed one")


def test_latency_full_rate():
    """Output always ready: one row per cycle, each out exactly ``latency`` cycles after it went in."""
    fmt = FormatConfig()
    rng = np.random.default_rng(SEED)
    cases = [row_case(fmt, 8, [random_pairs(8, rng)], rng) for _ in range(30)]
    dut = MetaDecoder(fmt, 8)
    taken, given, outputs = [], [], []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(outputs) < len(cases):
            ctx.set(dut.i.valid, len(taken) < len(cases))
            if len(taken) < len(cases):
                ctx.set(dut.i.payload, cases[len(taken)][0])
            *_, valid, ready, out_valid, out = await ctx.tick().sample(dut.i.valid, dut.i.ready, dut.o.valid,
                                                                       dut.o.payload)
            if valid and ready:
                taken.append(cycle)
            if out_valid:
                given.append(cycle)
                outputs.append(beat_fields(out))
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert dut.latency == 10
    assert taken == list(range(30)), f"input handshakes at {taken}"
    assert given == [t + dut.latency for t in taken], f"in {taken}, out {given}"
    check(outputs, [e for _, e in cases], "full rate")


@pytest.mark.parametrize("kind, wbits", [("random", 4), ("full_outlier", 2), ("pair_positions", 3)])
def test_layer_rows_match_stream_format(kind, wbits):
    """A layer's rows as the packed stream carries them (``row_records``), decoded, equal the rows
    the host's routing compiler makes (codes, roles, ReCoN config: ``stream_format.decoded_tiles``)."""
    cfg = AccelConfig(fmt=FormatConfig(wbits=wbits, group=16), rows=4, cols=16)
    check_layer_rows(cfg, stimulus.build_case(kind, cfg, 40, 64, 1, SEED).layer)


@pytest.mark.parametrize("rate", [0.1, 0.7])
def test_half_width_rows_match_stream_format(rate):
    """A b = 2 MicroScopiQ layer on a b = 4 multi-precision instance: a pair pass (``pairs``: the
    network slot's code in each field's low half decides the op and shift, the codes pass
    unchanged) or, with a K-group of more than G/2 outlier rows, a narrow pass (``narrow``: each
    code widened by its role); the rows equal ``stream_format.decoded_tiles``."""
    cfg = AccelConfig(fmt=FormatConfig(wbits=4, group=16), rows=4, cols=16, multi_precision=True)
    layer = stimulus.half_msq_case(cfg, 40, 64, 1, SEED, outlier_rate=rate).layer
    assert stream_format.layer_pairs(cfg, layer) == (rate < 0.5)
    check_layer_rows(cfg, layer, {"narrow": 1, "pairs": int(rate < 0.5)})


def check_layer_rows(cfg, layer, flags=None):
    """The decoder's rows of ``layer``'s pass (row fields ``flags`` besides the records) against
    ``stream_format.decoded_tiles``."""
    records = row_records(cfg, layer)
    geom = RecordGeometry(cfg.fmt)
    row = StreamLayouts(cfg).row
    beats = [word for _, rows in stream_format.decoded_tiles(cfg, layer) for word in rows]
    assert len(beats) == len(records)
    rng = np.random.default_rng(SEED)
    payloads = [dict(records.payload(i, geom), **(flags or {})) for i in range(len(records))]
    outputs = run(cfg.fmt, cfg.cols, payloads, rng, narrow=flags is not None)
    got = [codes | (roles << row["roles"].offset) | (config << row["config"].offset) for codes, roles, config, _ in outputs]
    for index, (g, want) in enumerate(zip(got, beats)):
        assert g == want, f"row {index}: expected {want:#x}, actual {g:#x}"
    assert not any(error for *_, error in outputs)


def test_refuses_bad_parameters():
    with pytest.raises(ValueError, match=r"^ReCoN needs a wbits with an outlier format"):
        MetaDecoder(FormatConfig(wbits=8), 8)
    with pytest.raises(ValueError, match=r"^width must be a positive multiple of ublock \(8\), not 12$"):
        MetaDecoder(FormatConfig(), 12)
    with pytest.raises(TypeError, match=r"^width must be an integer, not '8'$"):
        MetaDecoder(FormatConfig(), "8")
    gc.collect()  # the half-built components warn "never used" now, under this module's filter


def test_verilog_lint(tmp_path):
    """``verilator --lint-only -Wall`` with the project's named waivers (flow/lint.py) is clean."""
    path = tmp_path / "meta_decoder.v"
    path.write_text(verilog.convert(MetaDecoder(FormatConfig(), 8), name="meta_decoder"))
    lint(path, top="meta_decoder")


def test_narrow_code_every_code_and_role():
    """``MetaDecoder.narrow_code`` (hardware, amaranth.sim) equals ``stream_format.narrow_codes`` (host)
    for every 4-bit lane value and role, and what the b = 4 datapath makes of the widened code is
    exactly 2^2 times the golden contribution at b = 2 (``golden.pe_product``, the inlier shift
    ``b``, ``golden.recon_merge`` with the shift ``e + X``), for every activation, code and X."""
    b, h = 4, 2
    code, role, out = Signal(unsigned(b)), Signal(2), Signal(unsigned(b))
    m = Module()
    m.d.comb += out.eq(MetaDecoder.narrow_code(code, role, b))
    sim = Simulator(m)
    got = {}

    async def bench(ctx):
        for c in range(1 << b):
            for r in range(4):
                ctx.set(code, c)
                ctx.set(role, r)
                got[c, r] = ctx.get(out)

    sim.add_testbench(bench)
    sim.run()
    cs, rs = np.meshgrid(np.arange(1 << b), np.arange(4), indexing="ij")
    want = stream_format.narrow_codes(cs, rs, b)
    for (c, r), value in got.items():
        assert value == want[c, r], f"code {c} role {r}: expected {want[c, r]}, actual {value}"

    x = np.arange(-128, 128)[:, None]
    q = np.arange(1 << h)[None, :]
    wide = stream_format.narrow_codes(q, np.full_like(q, Role.INLIER), b)
    inlier_b = golden.pe_product(x, wide, Role.INLIER, b) << b
    assert (inlier_b == (golden.pe_product(x, q, Role.INLIER, h) << h) << h).all()
    for hi in range(1 << h):
        for lo in range(1 << h):
            for xexp in range(16):
                hi_w = stream_format.narrow_codes(hi, Role.OUT_HI, b)
                lo_w = stream_format.narrow_codes(lo, Role.OUT_LO, b)
                sign, e = golden.split_hi(hi, h)
                sign_w, e_w = golden.split_hi(hi_w, b)
                assert (sign_w, e_w) == (sign, e), f"OUT_HI code {hi}"
                at_b = golden.recon_merge(golden.pe_product(x, hi_w, Role.OUT_HI, b),
                                          golden.pe_product(x, lo_w, Role.OUT_LO, b), sign_w, int(e_w) + xexp, b)
                at_h = golden.recon_merge(golden.pe_product(x, hi, Role.OUT_HI, h),
                                          golden.pe_product(x, lo, Role.OUT_LO, h), sign, int(e) + xexp, h)
                bad = np.argwhere(at_b != at_h << h)
                assert not len(bad), f"hi {hi} lo {lo} X {xexp} x {int(x[bad[0][0], 0])}: " \
                                     f"expected {int(at_h[tuple(bad[0])]) << h}, actual {int(at_b[tuple(bad[0])])}"
