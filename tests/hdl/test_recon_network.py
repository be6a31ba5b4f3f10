"""ReconNetwork in amaranth.sim against the golden model, through the routing compiler.

A random sample of placements with random products, plus directed corners (no outliers, U/2
outliers, every (outlier, partner) position pair, extremes, uniform mode), streamed one row per
cycle with random ``en`` stalls; every output is compared after exactly ``latency`` enabled edges.
"""

from __future__ import annotations

import gc
import itertools

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from microscopiq.config import FormatConfig
from microscopiq.hdl.recon_network import ReconNetwork, config_bit_positions
from microscopiq.host.routing import (
    ReconGeometry, compile_fields, config_bits, pack_config, placements, simulate_row,
)
from microscopiq.quant import golden
from microscopiq.quant.layer import Role
from microscopiq.flow.lint import lint

SEED = 4242

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def _rows_for(fmt, width, pairs_per_block, rng, *, extreme=None):
    """Metadata of one row: ``pairs_per_block`` lists (outlier, partner) pairs per micro-block."""
    u, b = fmt.ublock, fmt.wbits
    codes = rng.integers(0, 1 << b, size=width)
    roles = np.zeros(width, dtype=np.int64)
    mate = np.full(width, -1, dtype=np.int64)
    xexp = rng.integers(0, 1 << fmt.xbits, size=width // u)
    if extreme is not None:
        xexp[:] = extreme * ((1 << fmt.xbits) - 1)
    for blk, pairs in enumerate(pairs_per_block):
        for o, p in pairs:
            o, p = blk * u + o, blk * u + p
            roles[o], roles[p], mate[o], mate[p] = Role.OUT_HI, Role.OUT_LO, p % u, o % u
            if extreme is not None:
                codes[o] = (extreme << (b - 1)) | (extreme * ((1 << (b - 1)) - 1))
                codes[p] = extreme * ((1 << b) - 1)
    return codes, roles, mate, xexp


def _random_pairs(u, rng):
    order = rng.permutation(u)
    k = int(rng.integers(0, u // 2 + 1))
    return [(int(order[2 * j]), int(order[2 * j + 1])) for j in range(k)]


def _cases(fmt, width, rng, count):
    """(codes, roles, mate, xexp, x, uniform) rows: directed corners first, then random ones."""
    u, blocks = fmt.ublock, width // fmt.ublock
    amax = fmt.act_bound
    cases = []
    for x in (-amax, amax - 1, 0):
        cases.append((*_rows_for(fmt, width, [[]] * blocks, rng), x, False))
        full = [[(2 * j, 2 * j + 1) for j in range(u // 2)]] * blocks
        for extreme in (0, 1):
            cases.append((*_rows_for(fmt, width, full, rng, extreme=extreme), x, False))
            rev = [[(2 * j + 1, 2 * j) for j in range(u // 2)]] * blocks
            cases.append((*_rows_for(fmt, width, rev, rng, extreme=extreme), x, False))
        codes, roles, mate, xexp = _rows_for(fmt, width, [[]] * blocks, rng)
        cases.append((codes, roles, mate, xexp, x, True))
    for o, p in itertools.permutations(range(u), 2):
        x = int(rng.integers(-amax, amax))
        cases.append((*_rows_for(fmt, width, [[(o, p)]] * blocks, rng, extreme=int(rng.integers(0, 2))),
                      x, False))
    while len(cases) < count:
        pairs = [_random_pairs(u, rng) for _ in range(blocks)]
        cases.append((*_rows_for(fmt, width, pairs, rng), int(rng.integers(-amax, amax)), False))
    return cases


def _expected(fmt, codes, roles, mate, xexp, x, uniform):
    products = golden.pe_product(x, codes, roles, fmt.wbits)
    if uniform:
        return products, products
    u, b = fmt.ublock, fmt.wbits
    sign, e = golden.split_hi(codes, b)
    base = np.arange(len(codes)) - np.arange(len(codes)) % u
    lo = products[base + np.maximum(mate, 0)]
    # recon_merge unshifted, then the shift in Python ints: e + X reaches 70 at xbits = 6.
    merged = golden.recon_merge(products, lo, sign, 0, b).astype(object) << (e + np.repeat(xexp, u)).astype(object)
    want = np.select([roles == Role.INLIER, roles == Role.OUT_HI], [products.astype(object) << b, merged], 0)
    return products, want


def run_network(fmt, width, cases, rng):
    """Stream ``cases`` through the network with random stalls; return how many were checked."""
    geom = ReconGeometry(fmt, width)
    configs, products, wants = [], [], []
    for codes, roles, mate, xexp, x, uniform in cases:
        fields = compile_fields(fmt, width, codes, roles, mate, xexp, uniform=uniform)
        configs.append(pack_config(geom, fields)[0])
        prod, want = _expected(fmt, codes, roles, mate, xexp, x, uniform)
        products.append([int(v) for v in prod])
        wants.append([int(v) for v in want])
    return stream(fmt, width, configs, products, wants, rng)


def stream(fmt, width, configs, products, wants, rng):
    """Stream rows (config, products) through the network, one per enabled cycle with random
    stalls, and compare each output row with ``wants``; return how many were checked."""
    dut = ReconNetwork(fmt, width)
    rows = len(configs)
    stalls = rng.random(4 * rows) < 0.25
    garbage = rng.integers(-(1 << (fmt.pe_product_bits - 1)), 1 << (fmt.pe_product_bits - 1),
                           size=(len(stalls), width))
    seen = []

    async def bench(ctx):
        issued, pipe, last = 0, [], [0] * width
        for cycle in itertools.count():
            if len(seen) == rows:
                return
            en = not stalls[cycle % len(stalls)]
            ctx.set(dut.en, en)
            if en and issued < rows:
                ctx.set(dut.products, products[issued])
                ctx.set(dut.config.as_value(), configs[issued])
            else:  # ignored: a stall, or the drain after the last case
                ctx.set(dut.products, [int(v) for v in garbage[cycle % len(stalls)]])
            await ctx.tick()
            got = [int(v) for v in ctx.get(dut.contributions)]
            if not en:
                assert got == last, f"cycle {cycle}: a stall changed the outputs"
                continue
            pipe.append(issued if issued < rows else None)
            issued += 1
            last = got
            index = pipe[-dut.latency] if len(pipe) >= dut.latency else None
            if index is None:
                continue
            seen.append(index)
            if got != wants[index]:
                col = next(c for c in range(width) if got[c] != wants[index][c])
                raise AssertionError(f"case {index} column {col}: expected {wants[index][col]}, "
                                     f"got {got[col]}")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == list(range(rows))
    return rows


@pytest.mark.parametrize("wbits,ublock,xbits,width,count", [
    (4, 8, 4, 8, 2000), (2, 8, 4, 16, 300), (3, 4, 4, 8, 200), (4, 16, 4, 16, 300), (4, 8, 6, 8, 200)])
def test_network_random_and_corners(wbits, ublock, xbits, width, count):
    fmt = FormatConfig(wbits=wbits, ublock=ublock, xbits=xbits)
    seed = SEED + wbits * 100 + width + xbits
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    assert run_network(fmt, width, _cases(fmt, width, rng, count), rng) >= count


@pytest.mark.parametrize("wbits,ublock,xbits,width", [(4, 8, 4, 8), (2, 4, 3, 8), (3, 16, 4, 16)])
def test_network_matches_model_on_any_input(wbits, ublock, xbits, width):
    """Any config integer (shifts beyond e + X, swaps that do not route inliers to themselves,
    every op) and any products of the signed a+b-bit range, including the extremes whose merges
    wrap around: the RTL is routing.simulate_row bit for bit."""
    fmt = FormatConfig(wbits=wbits, ublock=ublock, xbits=xbits)
    seed = SEED + 7 * wbits + ublock + xbits
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    bits, half = config_bits(fmt, width), 1 << (fmt.pe_product_bits - 1)
    configs = [int.from_bytes(rng.bytes((bits + 7) // 8), "little") % (1 << bits) for _ in range(400)]
    configs += [(1 << bits) - 1, 0]
    # Odd rows: only the extremes -2^(a+b-1), 2^(a+b-1) - 1 and one random value; even rows: random.
    products = [rng.choice([-half, half - 1, int(rng.integers(-half, half))], size=width) if r % 2
                else rng.integers(-half, half, size=width) for r in range(len(configs))]
    products = [[int(v) for v in row] for row in products]
    wants = [simulate_row(fmt, width, c, p) for c, p in zip(configs, products)]
    assert stream(fmt, width, configs, products, wants, rng) == len(configs)


@pytest.mark.slow
def test_network_every_placement_u8():
    """The RTL itself on every U = 8 placement (5937), extremes on alternate placements."""
    fmt = FormatConfig()
    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED)
    amax = fmt.act_bound
    cases = [(*_rows_for(fmt, 8, [list(pairs)], rng, extreme=index % 3 if index % 3 < 2 else None),
              int(rng.integers(-amax, amax)), False)
             for index, pairs in enumerate(placements(8))]
    assert run_network(fmt, 8, cases, rng) == 5937


def test_config_layout_is_the_documented_one():
    """The config port's layout, which the host packs with, is the bit layout host/routing.py
    documents: micro-block μ at μ·B, its swap bits first, then column c's op and shift at
    W + c·(2 + sb)."""
    for fmt, width in ((FormatConfig(), 8), (FormatConfig(wbits=2, ublock=4, xbits=6), 12),
                       (FormatConfig(ublock=16), 32)):
        assert ReconNetwork.config_layout(fmt, width).size == config_bits(fmt, width)
        geom = ReconGeometry(fmt, width)
        benes_pos, op_pos, shift_pos = config_bit_positions(fmt, width)
        for blk in range(geom.blocks):
            base = blk * geom.block_bits
            assert list(benes_pos[blk * geom.benes_bits:(blk + 1) * geom.benes_bits]) == \
                list(range(base, base + geom.benes_bits))
            for c in range(geom.ublock):
                col = base + geom.benes_bits + c * geom.column_bits
                assert list(op_pos[blk * geom.ublock + c]) == [col, col + 1]
                assert list(shift_pos[blk * geom.ublock + c]) == list(range(col + 2, col + 2 + geom.shift_bits))


def test_refuses_bad_width():
    with pytest.raises(ValueError, match=r"^width must be a positive multiple of ublock \(8\), not 12$"):
        ReconNetwork(FormatConfig(), 12)
    with pytest.raises(ValueError, match=r"^ReCoN needs a wbits with an outlier format"):
        ReconNetwork(FormatConfig(wbits=8), 8)
    with pytest.raises(TypeError, match=r"^width must be an integer, not 8.0$") as info:
        ReconNetwork(FormatConfig(), 8.0)
    del info
    gc.collect()  # the half-built components warn "never used" now, under this module's filter


def test_verilog_converts():
    text = verilog.convert(ReconNetwork(FormatConfig(), 8), name="recon")
    assert "module recon(" in text


def test_verilog_lint(tmp_path):
    """``verilator --lint-only -Wall`` with the project's named waivers (flow/lint.py) is clean."""
    path = tmp_path / "recon.v"
    path.write_text(verilog.convert(ReconNetwork(FormatConfig(), 8), name="recon"))
    lint(path, top="recon")
