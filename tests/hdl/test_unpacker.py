"""Unpacker in amaranth.sim: packed passes (host/packed_stream.encode_pass) on W-bit beats in, the
headers, exponents and PE rows the host's reader finds (decode_pass, row_records) out, with random
idle cycles on every port; malformed passes raise their fault and the next pass is read intact."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from microscopiq.config import AccelConfig, ConfigError, FormatConfig
from microscopiq.hdl.exp_decoder import ExpDecoder
from microscopiq.hdl.layouts import PACKED_HEADER, Fault, StreamLayouts
from microscopiq.hdl.meta_decoder import RecordGeometry
from microscopiq.hdl.unpacker import Unpacker, UnpackerSizes, _popcount
from microscopiq.host.packed_stream import decode_pass, encode_pass, row_records, to_beats
from microscopiq.tb import stimulus
from microscopiq.tb.sim_streams import stream_run

SEED = 4242

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

B4 = AccelConfig(fmt=FormatConfig(group=16), rows=8, cols=8)
WIDE = AccelConfig(fmt=FormatConfig(group=16, xbits=3), rows=4, cols=16)
B2 = AccelConfig(fmt=FormatConfig(wbits=2, group=16), rows=8, cols=8)
INT8 = AccelConfig(fmt=FormatConfig(wbits=8, group=16), rows=8, cols=8, recon_share=0, acc_bits=48)
# R < 4: tile maps travel two (R = 2) and four (R = 1) tiles ahead (MapPlacement).
TWO = AccelConfig(fmt=FormatConfig(group=4), rows=2, cols=8)
ONE = AccelConfig(fmt=FormatConfig(group=2, xbits=3), rows=1, cols=16)
U2 = AccelConfig(fmt=FormatConfig(group=16, ublock=2), rows=4, cols=4)      # one pair a block: no counts


def expected(cfg: AccelConfig, layer, data: bytes) -> dict:
    """What the unpacker must emit for one pass: its header, exponent and row beats as integers."""
    contents = decode_pass(cfg, data)
    header = {name: contents.header[name] for name in StreamLayouts(cfg).header.members}
    exps = []
    if contents.header["mode"] == 0:
        cols, per_group = cfg.cols, cfg.fmt.group // cfg.tile_depth(contents.header.get("pairs", 0))
        n_tiles, groups = contents.exps.shape[0] // cols, contents.exps.shape[1]
        for j in range(n_tiles):
            rows = slice(j * cols, (j + 1) * cols)
            exps.append({"minimum": 1, "exps": contents.emin[rows].tolist()})
            exps += [{"minimum": 0, "exps": contents.exps[rows, g].tolist()} for g in range(groups)]
        assert contents.exps.shape[1] * per_group == contents.header["k_tiles"] + 1
    records = row_records(cfg, layer)
    raw = contents.header["mode"] == 1
    geom = RecordGeometry(cfg.fmt) if cfg.has_recon else None
    rows = [records.payload(i, geom, raw) if geom else {"codes": records.codes[i].tolist()}
            for i in range(len(records))]
    if geom and cfg.multi_precision:          # a narrow row's b/2-bit codes leave zero-extended
        read = contents.header
        rows = [dict(row, narrow=read["narrow"], pairs=read["narrow"] & read["pairs"]) for row in rows]
    as_int = lambda layout, values: [layout.const(v).as_value().value for v in values]
    return {"header": as_int(Unpacker.header_layout(cfg), [{"fields": header, "fault": 0}]),
            "exps": as_int(ExpDecoder.in_layout(cfg.cols), exps),
            "rows": as_int(Unpacker.row_layout(cfg), rows)}


def simulate(cfg, bus, passes, rng):
    """Offer every pass's beats ``(data, last)`` and keep taking outputs; return what came out and
    the faults raised, in order."""
    dut = Unpacker(cfg.replace(weight_bus=bus))
    beats = [{"data": data, "last": last} for one in passes for data, last in one]
    got = stream_run(dut, dut.i, beats, {name: getattr(dut, name) for name in ("header", "exps", "rows")},
                     rng, watch=dut.fault)
    got["faults"] = [Fault(value) for value in got.pop("watch")]
    gc.collect()
    return got


def framed(data: bytes, bus: int) -> list[tuple[int, int]]:
    words = to_beats(data, bus)
    return [(word, int(i == len(words) - 1)) for i, word in enumerate(words)]


def check(got: dict, want: dict, what: str) -> None:
    for name in ("header", "exps", "rows"):
        for index, (mine, theirs) in enumerate(zip(got[name], want[name])):
            assert mine == theirs, f"{what}: {name} beat {index}: expected {theirs:#x}, got {mine:#x}"
        assert len(got[name]) == len(want[name]), \
            f"{what}: {len(got[name])} {name} beats, expected {len(want[name])}"


def merged(*wants: dict) -> dict:
    return {name: [v for want in wants for v in want[name]] for name in ("header", "exps", "rows")}


@pytest.mark.parametrize("cfg, bus, kind, n, k", [
    (B4, 32, "random", 16, 48),
    (B4, 64, "pair_positions", 8, 64),
    (B4, 8, "full_outlier", 8, 16),
    (B4, 128, "extreme", 16, 32),
    (WIDE, 32, "random", 32, 16),
    (WIDE, 24, "full_outlier", 16, 16),
    (B2, 32, "random", 16, 32),
    (B4, 32, "random_uniform", 16, 32),
    (TWO, 32, "random", 16, 12),
    (ONE, 64, "full_outlier", 32, 6),
    (ONE, 8, "random", 16, 2),
    (U2, 16, "full_outlier", 8, 32),
    (INT8, 32, "random_uniform", 16, 32),
], ids=lambda v: getattr(v, "__name__", None) if callable(v) else None)
def test_passes_read_as_the_host_reads_them(cfg, bus, kind, n, k):
    """Two passes back to back (different token counts), every output beat equal to decode_pass /
    row_records of the same bytes, no fault."""
    rng = np.random.default_rng(SEED)
    case = stimulus.build_case(kind, cfg, n, k, 1, SEED)
    print(f"seed {SEED}: {kind} {n}x{k} on {cfg.rows}x{cfg.cols} b={cfg.fmt.wbits}, {bus}-bit bus")
    passes = [encode_pass(cfg, case.layer, tokens) for tokens in (1, cfg.max_tokens)]
    got = simulate(cfg, bus, [framed(p, bus) for p in passes], rng)
    assert got["faults"] == []
    check(got, merged(*(expected(cfg, case.layer, p) for p in passes)), f"{kind} on {bus} bits")


HEADER = {name: field.offset for name, field in PACKED_HEADER}


@pytest.mark.parametrize("fault, spoil", [
    (Fault.HEADER, lambda d, bus: framed(stimulus.with_bits(d, HEADER["version"], 4, 1), bus)),
    (Fault.HEADER, lambda d, bus: framed(stimulus.with_bits(d, HEADER["reserved"], 7, 1), bus)),
    (Fault.HEADER, lambda d, bus: framed(stimulus.with_bits(d, HEADER["wbits"], 3, 1), bus)),
    (Fault.HEADER, lambda d, bus: framed(stimulus.with_bits(d, HEADER["tokens"], 16, 64), bus)),
    (Fault.HEADER, lambda d, bus: framed(stimulus.with_bits(d, HEADER["k_tiles"], 16, 2), bus)),
    (Fault.HEADER, lambda d, bus: framed(stimulus.with_bits(d, HEADER["n_tiles"], 16, 5000), bus)),
    (Fault.TRUNCATED, lambda d, bus: framed(d[:4], bus)),
    (Fault.TRUNCATED, lambda d, bus: framed(d[:len(d) - 8], bus)),
    (Fault.TRUNCATED, lambda d, bus: framed(d[:12], bus)),
    (Fault.TRUNCATED, lambda d, bus: framed(d[:8], bus)),
    (Fault.TRUNCATED, lambda d, bus: framed(d[:19], bus)),
    (Fault.OVERRUN, lambda d, bus: framed(d, bus)[:-1] + [(framed(d, bus)[-1][0], 0), (0, 1)]),
    (Fault.OVERRUN, lambda d, bus: framed(d, bus)[:-1] + [(framed(d, bus)[-1][0] | 1 << (bus - 1), 1)]),
], ids=["version", "reserved", "wbits", "tokens", "k_tiles", "n_tiles", "truncated_header", "truncated",
        "truncated_minima", "truncated_prologue", "truncated_tile_1_presence", "late_tlast", "padding"])
def test_malformed_pass_faults_and_the_next_pass_is_intact(fault, spoil):
    """A malformed pass reports its fault once — in its header beat when the header itself is bad,
    else by a ``fault`` pulse after a prefix of its items — and the good pass that follows is read
    exactly."""
    cfg, bus = B4, 32
    rng = np.random.default_rng(SEED)
    case = stimulus.build_case("random", cfg, 8, 16, 1, SEED)
    good = encode_pass(cfg, case.layer, 3)
    # A pass whose stream ends a few bits into its last beat, so spoiled padding is visible.
    assert len(good) % (bus // 8) and len(good) * 8 % bus <= bus - 8
    got = simulate(cfg, bus, [spoil(good, bus), framed(good, bus)], rng)
    want = expected(cfg, case.layer, good)
    refused = Fault(Unpacker.header_layout(cfg).from_bits(got["header"][0]).fault)
    if len(got["header"]) == 2 and refused != Fault.NONE:       # the header itself was refused
        assert (refused, got["faults"]) == (fault, [])
        got["header"] = got["header"][1:]
        check(got, want, "after the bad header")
        return
    assert got["faults"] == [fault]
    # The spoiled pass emitted a prefix of the good one before its fault, but for a truncated
    # pass its last row, which read the zero bytes that fill the shortened pass's last beat.
    for name in ("header", "exps", "rows"):
        spoiled = len(got[name]) - len(want[name])
        assert 0 <= spoiled and got[name][spoiled:] == want[name], f"{name} after the fault"
        same = spoiled - (name == "rows" and fault == Fault.TRUNCATED and spoiled > 0)
        assert got[name][:same] == want[name][:same], f"{name} before the fault"
MP = AccelConfig(fmt=FormatConfig(group=16), rows=4, cols=8, multi_precision=True)


def test_multi_precision_passes_back_to_back():
    """One multi-precision instance: a b = 2 uniform pass (``pairs`` 1, two K rows per PE row), a
    b = 4 uniform pass, a b = 4 MicroScopiQ pass, a b = 2 MicroScopiQ pass (``narrow`` 1, rows of
    C·2-bit codes, each code zero-extended on the output) and a b = 2 MicroScopiQ pair pass
    (``pairs`` and ``narrow`` 1, rows of C·4-bit codes, E after every second tile), read as the
    host reads them."""
    rng = np.random.default_rng(SEED)
    layers = [stimulus.half_uniform_case(MP, 16, 40, 1, SEED).layer,
              stimulus.build_case("random_uniform", MP, 16, 40, 1, SEED).layer,
              stimulus.build_case("random", MP, 16, 32, 1, SEED).layer,
              stimulus.half_msq_case(MP, 16, 32, 1, SEED, outlier_rate=0.6).layer,
              stimulus.half_msq_case(MP, 16, 48, 1, SEED, outlier_rate=0.2).layer]
    passes = [encode_pass(MP, layer, 2) for layer in layers]
    got = simulate(MP, 32, [framed(p, 32) for p in passes], rng)
    assert got["faults"] == []
    wants = [expected(MP, layer, p) for layer, p in zip(layers, passes)]
    fields = [Unpacker.header_layout(MP).from_bits(w["header"][0]).fields for w in wants]
    assert [(f.pairs, f.narrow) for f in fields] == [(1, 0), (0, 0), (0, 0), (0, 1), (1, 1)]
    check(got, merged(*wants), "b = 2, 4, 4, 2, 2 in pairs")


@pytest.mark.parametrize("field, value, share", [("mode", 0, 0), ("k_tiles", 2, 1), ("wbits", 0, 1),
                                                 ("msq_pairs", 1, 1), ("msq_pairs", 1, 2)],
                         ids=["msq_at_half_b_without_recon", "k_tiles_not_whole_groups", "b_1",
                              "msq_pairs_in_raw_mode", "msq_pairs_with_shared_recon"])
def test_multi_precision_header_refusals(field, value, share):
    """A b/2 pass must have whole K-groups (``G/2R`` tiles in pair mode); a MicroScopiQ one needs
    ReCoN; other widths are refused; ``msq_pairs`` only in a MicroScopiQ pass at b/2 with per-row
    ReCoN (here a uniform pass's header with it set, and a MicroScopiQ pair pass's header on a
    shared-ReCoN instance)."""
    cfg = MP.replace(recon_share=share)
    layer = stimulus.half_uniform_case(cfg, 8, 32, 1, SEED).layer
    if share == 2:
        layer = stimulus.half_msq_case(MP, 8, 32, 1, SEED, outlier_rate=0.2).layer
        good = encode_pass(MP, layer, 1)
        spoiled, good = good, encode_pass(cfg, layer, 1)
    else:
        good = encode_pass(cfg, layer, 1)
        spoiled = stimulus.with_bits(good, HEADER[field], {"mode": 1, "k_tiles": 16, "wbits": 3, "msq_pairs": 1}[field], value)
    got = simulate(cfg, 32, [framed(spoiled, 32), framed(good, 32)], np.random.default_rng(SEED))
    header = Unpacker.header_layout(cfg)
    assert [Fault(header.from_bits(beat).fault) for beat in got["header"]] == [Fault.HEADER, Fault.NONE]


def test_bus_width_is_the_configurations():
    """``W`` is ``AccelConfig.weight_bus``: the configuration refuses a width that is not whole bytes."""
    assert Unpacker(B4.replace(weight_bus=24)).i.payload.data.shape().width == 24
    gc.collect()
    with pytest.raises(ConfigError, match="^weight_bus must be a multiple of 8 bits"):
        B4.replace(weight_bus=12)


@pytest.mark.parametrize("count", range(10))
def test_popcount_counts_every_pattern(count):
    """The map queue's popcount (full adders as logic) counts every pattern of up to 9 bits."""
    bits = Signal(max(count, 1))
    total = Signal(4)
    m = Module()
    m.d.comb += total.eq(_popcount(m, [bits[i] for i in range(count)]))
    sim = Simulator(m)

    async def check(ctx):
        for pattern in range(1 << count):
            ctx.set(bits, pattern)
            assert ctx.get(total) == bin(pattern).count("1"), f"pattern {pattern:#b}: got {ctx.get(total)}"
    sim.add_testbench(check)
    sim.run()


@pytest.mark.parametrize("cfg, granule", [
    (AccelConfig(), 2),                                                     # every field even
    (AccelConfig(fmt=FormatConfig(xbits=1)), 1),                            # X = 1: a record may be odd
    (AccelConfig(fmt=FormatConfig(ublock=4)), 1),                           # 1-bit count fields
    (AccelConfig(recon_share=0), 32),                                       # header, exponents, codes
    (AccelConfig(recon_share=0, weight_bus=8), 8),
], ids=["default", "xbits1", "u4", "uniform", "uniform-bus8"])
def test_granule_divides_every_length(cfg, granule):
    assert UnpackerSizes(cfg, cfg.weight_bus).granule == granule
