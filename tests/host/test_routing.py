"""Routing compiler and bit-exact network model (host/routing.py) against the golden model.

The U = 8 test is the exhaustive proof of SPEC §5: every placement of 0..U/2 disjoint ordered
(outlier, partner) pairs in a micro-block, crossed with sign / e / X / fraction extremes and random
middle values, for random activations, compiled, packed to the config integer, unpacked and run
through the model of the network, compared with ``x · v[n,k]`` of ``golden.slot_values``.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest

from microscopiq.config import FormatConfig
from microscopiq.host.routing import (
    ColumnOp, ReconGeometry, RoutingError, benes_apply, benes_route, compile_fields, compile_row,
    config_bits, pack_config, placements, simulate_fields, simulate_row, unpack_config,
)
from microscopiq.quant import golden
from microscopiq.quant.layer import MsqLayer, Role

SEED = 20261123


def placement_count(u: int) -> int:
    """Sets of k disjoint ordered pairs: C(u, 2k) · (2k)! / k!, summed over k = 0..u/2."""
    return sum(math.comb(u, 2 * k) * math.factorial(2 * k) // math.factorial(k) for k in range(u // 2 + 1))


def build_rows(fmt: FormatConfig, pairs_per_row, rng, *, signs, exps, fracs, xs):
    """Slot metadata for rows of one micro-block each.

    ``signs``/``exps``/``fracs`` are (rows, U/2) per-pair values, ``xs`` (rows,) the shared X.
    Inlier codes are random over the whole b-bit range (including both extremes).
    """
    u, b = fmt.ublock, fmt.wbits
    rows = len(pairs_per_row)
    codes = rng.integers(0, 1 << b, size=(rows, u))
    roles = np.full((rows, u), Role.INLIER, dtype=np.int64)
    mate = np.full((rows, u), -1, dtype=np.int64)
    for r, pairs in enumerate(pairs_per_row):
        for j, (o, p) in enumerate(pairs):
            roles[r, o], roles[r, p] = Role.OUT_HI, Role.OUT_LO
            mate[r, o], mate[r, p] = p, o
            codes[r, o] = (signs[r, j] << (b - 1)) | exps[r, j]
            codes[r, p] = fracs[r, j]
    return codes, roles, mate, np.asarray(xs)[:, None]


def expected_contributions(fmt, codes, roles, mate, xexp_blocks, x):
    """``x · v[n,k]`` from golden.slot_values: each row of the batch is one column k of a layer."""
    rows, width = codes.shape
    layer = MsqLayer(fmt=fmt, n=width, k=rows, codes=codes.T.astype(np.uint8),
                     roles=roles.T.astype(np.uint8), mate=mate.T.astype(np.int8),
                     exps=np.zeros((width, 1), dtype=np.int16), xexp=xexp_blocks.T.astype(np.uint8))
    return x[:, None] * golden.slot_values(layer).T


def check_rows(fmt, width, codes, roles, mate, xexp_blocks, x, *, label):
    geom = ReconGeometry(fmt, width)
    fields = compile_fields(fmt, width, codes, roles, mate, xexp_blocks)
    configs = pack_config(geom, fields)
    products = golden.pe_product(x[:, None], codes, roles, fmt.wbits)
    got = simulate_fields(geom, unpack_config(geom, configs), products)
    want = expected_contributions(fmt, codes, roles, mate, xexp_blocks, x)
    # The outlier column equals recon_merge of its two PE products, the partner column 0.
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f"{label}: first mismatch at row {bad[0][0]} column {bad[0][1]}: expected "
                           f"{want[tuple(bad[0])]}, got {got[tuple(bad[0])]}")
    return configs, products, got


@pytest.mark.parametrize("wbits", [2, 3, 4])
def test_exhaustive_u8(wbits):
    """SPEC §5 proof for U = 8: every placement × sign/e/X/f extremes and random middles."""
    fmt = FormatConfig(wbits=wbits, ublock=8)
    u, b = fmt.ublock, wbits
    start = time.perf_counter()
    rng = np.random.default_rng(SEED + wbits)
    print(f"seed {SEED + wbits}")
    every = placements(u)
    assert len(every) == placement_count(u) == 5937
    assert len(set(frozenset(p) for p in every)) == len(every)
    for pairs in every:  # disjoint, inside the micro-block, at most U/2
        slots = [s for pair in pairs for s in pair]
        assert len(set(slots)) == len(slots) and all(0 <= s < u for s in slots) and len(pairs) <= u // 2
    emax, fmax, xmax = (1 << (b - 1)) - 1, (1 << b) - 1, (1 << fmt.xbits) - 1
    half = u // 2
    # Extremes: all 2^4 combinations of (sign, e, f, X) at min/max, the same for every pair.
    variants = [(s, e, f, xv) for s in (0, 1) for e in (0, emax) for f in (0, fmax) for xv in (0, xmax)]
    n_random = 4
    pairs_per_row = [p for p in every for _ in range(len(variants) + n_random)]
    rows = len(pairs_per_row)
    signs = np.empty((rows, half), dtype=np.int64)
    exps, fracs, xs = np.empty_like(signs), np.empty_like(signs), np.empty(rows, dtype=np.int64)
    per = len(variants) + n_random
    for v, (s, e, f, xv) in enumerate(variants):
        signs[v::per], exps[v::per], fracs[v::per], xs[v::per] = s, e, f, xv
    for v in range(len(variants), per):
        count = len(every)
        signs[v::per] = rng.integers(0, 2, size=(count, half))
        exps[v::per] = rng.integers(0, emax + 1, size=(count, half))
        fracs[v::per] = rng.integers(0, fmax + 1, size=(count, half))
        xs[v::per] = rng.integers(0, xmax + 1, size=count)
    codes, roles, mate, xexp = build_rows(fmt, pairs_per_row, rng, signs=signs, exps=exps, fracs=fracs, xs=xs)
    amax = fmt.act_bound
    for x in (np.full(rows, -amax), np.full(rows, amax - 1), rng.integers(-amax, amax, size=rows)):
        check_rows(fmt, u, codes, roles, mate, xexp, x, label=f"U=8 b={b}")
    elapsed = time.perf_counter() - start
    print(f"U=8 b={b}: {rows} rows x 3 activations checked in {elapsed:.1f} s")


def test_benes_every_permutation_u8():
    geom = ReconGeometry(FormatConfig(ublock=8), 8)
    perms = np.array(list(itertools.permutations(range(8))))
    assert len(perms) == 40320
    swaps = np.array([benes_route(p) for p in perms], dtype=np.uint8)
    assert swaps.shape == (40320, 5, 4)
    for stage, index in geom.fixed_switches:  # Waksman: these never swap
        assert not swaps[:, stage, index].any(), f"switch {index} of stage {stage} swapped"
    out = benes_apply(geom, swaps, np.broadcast_to(np.arange(8), perms.shape))
    want = np.empty_like(perms)
    np.put_along_axis(want, perms, np.broadcast_to(np.arange(8), perms.shape), axis=1)
    bad = np.argwhere(out != want)
    assert bad.size == 0, f"permutation {perms[bad[0][0]].tolist()} misrouted at line {bad[0][1]}"


@pytest.mark.parametrize("u", [2, 4, 16, 32])
def test_benes_random_permutations(u):
    rng = np.random.default_rng(SEED + u)
    print(f"seed {SEED + u}")
    geom = ReconGeometry(FormatConfig(ublock=u), u)
    perms = np.array([rng.permutation(u) for _ in range(2000)])
    swaps = np.array([benes_route(p) for p in perms], dtype=np.uint8)
    assert swaps.shape[1:] == (2 * (u.bit_length() - 1) - 1, u // 2)
    assert all(not swaps[:, stage, index].any() for stage, index in geom.fixed_switches)
    out = benes_apply(geom, swaps, np.broadcast_to(np.arange(u), perms.shape))
    want = np.empty_like(perms)
    np.put_along_axis(want, perms, np.broadcast_to(np.arange(u), perms.shape), axis=1)
    assert (out == want).all()


def random_placements(u: int, rows: int, rng) -> list:
    found = []
    for _ in range(rows):
        order = rng.permutation(u)
        k = int(rng.integers(0, u // 2 + 1))
        found.append(tuple((int(order[2 * j]), int(order[2 * j + 1])) for j in range(k)))
    return found


@pytest.mark.parametrize("u,blocks,wbits,xbits", [(4, 1, 4, 4), (4, 3, 2, 3), (16, 1, 4, 4),
                                                  (16, 2, 3, 2), (8, 2, 4, 4), (8, 4, 2, 4), (2, 4, 4, 4)])
def test_random_rows(u, blocks, wbits, xbits):
    """Random placements (U/2 pairs with probability ~1/(U/2+1)) over several micro-blocks per row."""
    fmt = FormatConfig(wbits=wbits, ublock=u, xbits=xbits)
    seed = SEED + 100 * u + blocks
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    rows, width, half, b = 3000, u * blocks, u // 2, wbits
    parts = []
    for _ in range(blocks):
        pairs = random_placements(u, rows, rng)
        signs = rng.integers(0, 2, size=(rows, half))
        exps = rng.integers(0, 1 << (b - 1), size=(rows, half))
        fracs = rng.integers(0, 1 << b, size=(rows, half))
        xs = rng.integers(0, 1 << xbits, size=rows)
        parts.append(build_rows(fmt, pairs, rng, signs=signs, exps=exps, fracs=fracs, xs=xs))
    codes, roles, mate, xexp = (np.concatenate([p[i] for p in parts], axis=1) for i in range(4))
    x = rng.integers(-fmt.act_bound, fmt.act_bound, size=rows)
    check_rows(fmt, width, codes, roles, mate, xexp, x, label=f"U={u} blocks={blocks}")


def test_compile_row_matches_batch_and_per_column_x():
    fmt = FormatConfig()
    rng = np.random.default_rng(SEED)
    pairs = random_placements(8, 2, rng)
    codes, roles, mate, xexp = build_rows(fmt, pairs, rng, signs=np.ones((2, 4), int),
                                          exps=np.full((2, 4), 7), fracs=np.full((2, 4), 15), xs=[15, 3])
    codes, roles, mate = (a.reshape(16) for a in (codes, roles, mate))
    geom = ReconGeometry(fmt, 16)
    config = compile_row(fmt, 16, codes, roles, mate, xexp.reshape(2))
    assert config == compile_row(fmt, 16, codes, roles, mate, np.repeat(xexp.reshape(2), 8))
    assert config == pack_config(geom, compile_fields(fmt, 16, codes[None], roles[None], mate[None],
                                                      xexp.reshape(1, 2)))[0]
    assert 0 <= config < 1 << config_bits(fmt, 16)
    products = golden.pe_product(-128, codes, roles, 4)
    want = expected_contributions(fmt, codes[None], roles[None], mate[None], xexp.reshape(1, 2),
                                  np.array([-128]))[0]
    assert simulate_row(fmt, 16, config, products) == [int(v) for v in want]


def test_uniform_mode():
    fmt = FormatConfig(wbits=2)
    rng = np.random.default_rng(SEED)
    codes = rng.integers(0, 4, size=16)
    roles = np.zeros(16, dtype=int)
    config = compile_row(fmt, 16, codes, roles, np.full(16, -1), np.zeros(2, dtype=int), uniform=True)
    for x in (-128, 127, 5):
        q = golden.to_signed(codes, 2)
        assert simulate_row(fmt, 16, config, x * q) == [int(v) for v in x * q]
    fields = unpack_config(ReconGeometry(fmt, 16), [config])
    assert (fields.op == ColumnOp.KEEP).all() and (fields.shift == 0).all()


def test_config_layout_sizes():
    # Waksman: U·log2(U) - U + 1 configurable switches (Beneš: (2·log2(U) - 1)·U/2).
    assert config_bits(FormatConfig(), 8) == 17 + 8 * (2 + 5) == 73
    assert config_bits(FormatConfig(), 16) == 146
    assert config_bits(FormatConfig(wbits=2, xbits=4), 8) == 17 + 8 * (2 + 5)
    assert config_bits(FormatConfig(ublock=4), 4) == 5 + 4 * 7
    assert config_bits(FormatConfig(ublock=2), 2) == 1 + 2 * 7
    geom = ReconGeometry(FormatConfig(ublock=16), 16)
    assert (geom.stages, geom.switches, geom.benes_bits) == (7, 8, 16 * 4 - 16 + 1)
    assert ReconGeometry(FormatConfig(), 8).fixed_switches == {(4, 0), (3, 0), (3, 2)}


@pytest.mark.parametrize("wbits,abits,xbits", list(itertools.product((2, 3, 4), (4, 8), (1, 4, 6))))
def test_merge_width_is_exact(wbits, abits, xbits):
    """merge_bits holds every merge of two PE products (the extremes reach it) and, shifted by the
    largest e + X, fills product_bits exactly."""
    fmt = FormatConfig(wbits=wbits, abits=abits, xbits=xbits)
    geom = ReconGeometry(fmt, fmt.ublock)
    b, x = wbits, np.arange(-fmt.act_bound, fmt.act_bound)
    hi = np.concatenate([x, -x])                       # OUT_HI products (-1)^s · x
    lo = np.concatenate([x, x]) * ((1 << b) - 1)       # OUT_LO products x · f at f = 2^b - 1
    sign = np.repeat([0, 1], len(x))
    merged = golden.recon_merge(hi, lo, sign, 0, b)
    inlier = np.outer(x, golden.to_signed(np.arange(1 << b), b)).ravel()
    half = 1 << (geom.merge_bits - 1)
    assert max(np.abs(merged).max(), np.abs(inlier).max()) <= half - 1
    assert np.abs(merged).max() > half // 2 - 1    # one bit fewer would not do
    assert geom.merge_bits + fmt.max_outlier_shift == fmt.product_bits


def _base_row():
    """One micro-block (U=8): outlier 0 with partner 5, outlier 6 with partner 2."""
    roles = np.array([1, 0, 2, 0, 0, 2, 1, 0])
    mate = np.array([5, -1, 6, -1, -1, 0, 2, -1])
    return np.zeros(8, dtype=int), roles, mate, np.zeros(1, dtype=int)


@pytest.mark.parametrize("change,message", [
    (lambda c, r, m, x: c.__setitem__(3, 16), r"^slot 3: code does not fit in wbits=4$"),
    (lambda c, r, m, x: r.__setitem__(4, 3), r"^slot 4: role is not INLIER"),
    (lambda c, r, m, x: x.__setitem__(0, 16), r"^slot 0: shared exponent X does not fit in xbits=4$"),
    (lambda c, r, m, x: m.__setitem__(1, 3), r"^slot 1: an inlier has mate -1"),
    (lambda c, r, m, x: m.__setitem__(0, -1), r"^slot 0: an inlier has mate -1"),
    (lambda c, r, m, x: m.__setitem__(0, 8), r"^slot 0: mate offset outside the micro-block \(U=8\)$"),
    (lambda c, r, m, x: m.__setitem__(0, 0), r"^slot 0: an outlier half cannot be its own mate$"),
    (lambda c, r, m, x: m.__setitem__(0, 2), r"^slot 0: its mate does not point back"),
    (lambda c, r, m, x: r.__setitem__(5, 1), r"^slot 0: its mate does not point back"),
    (lambda c, r, m, x: m.__setitem__(1, -2), r"^slot 1: mate must be -1"),
])
def test_refuses_inconsistent_metadata(change, message):
    codes, roles, mate, xexp = _base_row()
    change(codes, roles, mate, xexp)
    with pytest.raises(RoutingError, match=message):
        compile_row(FormatConfig(), 8, codes, roles, mate, xexp)


def test_refuses_bad_arguments():
    codes, roles, mate, xexp = _base_row()
    with pytest.raises(RoutingError, match=r"^slot 0: uniform mode has only INLIER slots$"):
        compile_row(FormatConfig(), 8, codes, roles, mate, xexp, uniform=True)
    with pytest.raises(RoutingError, match=r"^slot 1: shared exponent X differs"):
        compile_row(FormatConfig(), 8, codes, roles, mate, np.array([0, 1, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(RoutingError, match=r"^roles must be an integer array of length 8"):
        compile_row(FormatConfig(), 8, codes, roles[:7], mate, xexp)
    with pytest.raises(ValueError, match=r"^width must be a positive multiple of ublock \(8\), not 12$"):
        compile_row(FormatConfig(), 12, codes, roles, mate, xexp)
    with pytest.raises(ValueError, match=r"^ReCoN needs a wbits with an outlier format"):
        config_bits(FormatConfig(wbits=8), 8)
    with pytest.raises(RoutingError, match=r"^config 0 = 0x20{18} does not fit in 73 bits$"):
        simulate_row(FormatConfig(), 8, 1 << 73, [0] * 8)
    with pytest.raises(RoutingError, match=r"^slot 3: product outside the signed 12-bit range$"):
        simulate_row(FormatConfig(), 8, 0, [0, 0, 0, 2048, 0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"^dst must be a permutation"):
        benes_route([0, 0, 1, 2])


def test_wide_format_python_ints():
    """xbits = 6: e + X reaches 70 and product_bits is 83, beyond int64; the model uses Python ints."""
    fmt = FormatConfig(wbits=4, xbits=6)
    assert fmt.product_bits == 83
    rng = np.random.default_rng(SEED + 6)
    print(f"seed {SEED + 6}")
    rows = 500
    pairs = random_placements(8, rows, rng)
    codes, roles, mate, xexp = build_rows(
        fmt, pairs, rng, signs=rng.integers(0, 2, size=(rows, 4)), exps=np.full((rows, 4), 7),
        fracs=rng.integers(0, 16, size=(rows, 4)), xs=np.full(rows, 63))
    geom = ReconGeometry(fmt, 8)
    x = rng.integers(-128, 128, size=rows)
    products = golden.pe_product(x[:, None], codes, roles, 4)
    got = simulate_fields(geom, unpack_config(geom, pack_config(geom, compile_fields(
        fmt, 8, codes, roles, mate, xexp))), products)
    for r in range(rows):
        for o, p in pairs[r]:
            sign = int(codes[r, o]) >> 3
            # golden.recon_merge unshifted (int64-safe), then the shift of 7 + 63 in Python ints.
            want = int(golden.recon_merge(products[r, o], products[r, p], sign, 0, 4)) << 70
            assert got[r, o] == want and got[r, p] == 0, f"row {r} outlier {o}: expected {want}, got {got[r, o]}"
