"""microscopiq.hdl.pe in amaranth.sim: exhaustive products, ping-pong banks, stalls, refusals.

Every product is compared as an exact integer with ``golden.pe_product`` (through
``microscopiq.tb.test_pe.expected_products``, which adds only the bank/swap/enable bookkeeping).
"""

import numpy as np
import pytest
from amaranth import Shape, unsigned
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from microscopiq.config import AccelConfig, ConfigError, FormatConfig
from microscopiq.hdl.pe import PE
from microscopiq.host.stream_format import narrow_codes
from microscopiq.quant.golden import pe_product
from microscopiq.quant.layer import Role
from microscopiq.tb.test_pe import (
    PeStimulus, UNUSED_ROLE, expected_products, extreme_acts, first_mismatch, stress_stream,
    sweep_stream,
)

SEED = 20261123


def simulate(fmt: FormatConfig, stim: PeStimulus, pairs: bool = False, dsp: str = "none") -> list[int]:
    """Drive one stimulus cycle per clock from reset; return ``product`` after each edge. With
    ``pairs``, the pair-capable PE in its normal mode (``pairs`` 0), ``act_hi`` random (ignored).
    With a ``dsp``, its behavioural model, ``act_en`` 1 and each activation presented one cycle
    early (the DSP's A register is one more stage): the products are those of the fabric PE."""
    dut = PE(fmt, pairs=pairs, dsp=dsp, dsp_model=True)
    noise = np.random.default_rng(SEED).integers(-fmt.act_bound, fmt.act_bound, len(stim))
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    actual = []
    role = dut.load_role  # raw 2 bits, so the unused encoding 3 can be driven
    cycles = list(stim.cycles())
    early = [int(c[0]) for c in cycles[1:]] + [0]

    async def bench(ctx):
        if dsp != "none":
            ctx.set(dut.act_en, 1)
            ctx.set(dut.act, int(cycles[0][0]))
            await ctx.tick()  # en 0: only the A register moves
        for index, (act, en, load, code, role_code, swap) in enumerate(cycles):
            ctx.set(dut.act, early[index] if dsp != "none" else act)
            ctx.set(dut.en, en)
            ctx.set(dut.load, load)
            ctx.set(dut.load_code, code)
            ctx.set(role, role_code)
            ctx.set(dut.swap, swap)
            if pairs:
                ctx.set(dut.act_hi, int(noise[len(actual)]))
            await ctx.tick()
            actual.append(ctx.get(dut.product))

    sim.add_testbench(bench)
    sim.run()
    return actual


def assert_matches(fmt: FormatConfig, stim: PeStimulus, pairs: bool = False, dsp: str = "none") -> None:
    count, message = first_mismatch(stim, fmt.wbits, simulate(fmt, stim, pairs, dsp))
    assert count == 0, message


@pytest.mark.parametrize("wbits", [2, 4])
def test_exhaustive_full_rate_pingpong(wbits):
    """Every (activation, code, role) for a=8 (b=4: 256·16·3 = 12288 products), a new slot
    swapped in every cycle while the next one loads into the shadow bank."""
    fmt = FormatConfig(abits=8, wbits=wbits)
    stim = sweep_stream(fmt, np.arange(-128, 128), list(Role))
    assert len(stim) == 256 * (1 << wbits) * 3 + 2
    assert_matches(fmt, stim)


@pytest.mark.parametrize("wbits", [4, 8])
def test_pair_capable_pe_in_normal_mode(wbits):
    """The pair-capable PE of a multi-precision instance, ``pairs`` 0: every (activation, code,
    role) for b = 4 (every code with the extreme activations for b = 8) is ``golden.pe_product``."""
    fmt = FormatConfig(abits=8, wbits=wbits)
    acts = np.arange(-128, 128) if wbits == 4 else extreme_acts(fmt)
    assert_matches(fmt, sweep_stream(fmt, acts, list(Role)), pairs=True)


def simulate_pairs(fmt: FormatConfig, codes, acts, acts_hi, roles=None, apart: bool = False):
    """Pair mode (a PE built ``apart`` or not): each code (with its role, INLIER by default) loaded
    and swapped in, then every ``(acts[i], acts_hi[i])``; returns the products and the ``inlier``
    outputs (plus ``inlier_carry``), each (codes, len(acts))."""
    dut = PE(fmt, pairs=True, apart=apart)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    out = np.zeros((len(codes), len(acts)), np.int64)
    inlier = np.zeros_like(out)
    roles = [Role.INLIER] * len(codes) if roles is None else roles

    async def bench(ctx):
        ctx.set(dut.pairs, 1)
        for index, (code, role) in enumerate(zip(codes, roles)):
            ctx.set(dut.en, 0)
            ctx.set(dut.load, 1)
            ctx.set(dut.load_code, int(code))
            ctx.set(dut.load_role, Role(int(role)))
            await ctx.tick()
            ctx.set(dut.load, 0)
            ctx.set(dut.swap, 1)
            await ctx.tick()
            ctx.set(dut.swap, 0)
            ctx.set(dut.en, 1)
            for i, (x, x_hi) in enumerate(zip(acts, acts_hi)):
                ctx.set(dut.act, int(x))
                ctx.set(dut.act_hi, int(x_hi))
                await ctx.tick()
                out[index, i] = ctx.get(dut.product)
                inlier[index, i] = ctx.get(dut.inlier) + ctx.get(dut.inlier_carry)

    sim.add_testbench(bench)
    sim.run()
    return out, inlier


def _pair_acts(seed):
    """Extreme activation pairs (every combination of six edge values) and 24 random ones."""
    rng = np.random.default_rng(seed)
    edge = np.array([-128, -127, -1, 0, 1, 127])
    return (np.concatenate([np.repeat(edge, len(edge)), rng.integers(-128, 128, 24)]),
            np.concatenate([np.tile(edge, len(edge)), rng.integers(-128, 128, 24)]))


def _assert_equal(got, want, what, codes, roles, acts, acts_hi):
    bad = np.argwhere(got != want)
    assert not len(bad), (f"{what}: first mismatch: code={codes[bad[0][0]]}, role={roles[bad[0][0]]}, "
                          f"act={acts[bad[0][1]]}, act_hi={acts_hi[bad[0][1]]}: expected {want[tuple(bad[0])]}, "
                          f"got {got[tuple(bad[0])]}")


@pytest.mark.parametrize("wbits", [4, 8])
@pytest.mark.parametrize("apart", [False, True])
def test_pair_mode_exhaustive_codes(wbits, apart):
    """Pair mode: a ``b``-bit code holds two signed ``b/2``-bit codes (low half: K row ``r``, high
    half: ``R + r``); the product is ``golden.pe_product`` of each half with its own activation,
    summed (not ``apart``), or the low half's on ``product`` and the high half's on ``inlier``
    (``apart``). Every code (b = 4: all 16; b = 8: all 256) against extreme and random activation
    pairs."""
    fmt = FormatConfig(abits=8, wbits=wbits)
    half = wbits // 2
    acts, acts_hi = _pair_acts(SEED + wbits)
    codes = np.arange(1 << wbits)
    got, inlier = simulate_pairs(fmt, codes, acts, acts_hi, apart=apart)
    lo, hi = codes & ((1 << half) - 1), codes >> half
    low = pe_product(acts[None, :], lo[:, None], Role.INLIER, half)
    high = pe_product(acts_hi[None, :], hi[:, None], Role.INLIER, half)
    inliers = [Role.INLIER] * len(codes)
    _assert_equal(got, low if apart else low + high, "product", codes, inliers, acts, acts_hi)
    _assert_equal(inlier, high, "inlier", codes, inliers, acts, acts_hi)


@pytest.mark.parametrize("wbits", [4, 8])
def test_msq_pair_mode_every_code_and_role(wbits):
    """A MicroScopiQ pair pass (``pairs``, a PE built ``apart``): the low half is the network slot of any
    role, the high half an INLIER slot. ``product`` is the network slot's product at ``b`` of its
    narrowed code (``stream_format.narrow_codes``: ``2^h`` times the ``h``-bit contribution once
    ReCoN has shifted it), ``inlier`` the high slot's ``x_hi · q_hi``; every code and role (b = 4:
    16 × 3; b = 8: 256 × 3) against extreme and random activation pairs."""
    fmt = FormatConfig(abits=8, wbits=wbits)
    half = wbits // 2
    acts, acts_hi = _pair_acts(SEED + 10 * wbits)
    codes = np.tile(np.arange(1 << wbits), 3)
    roles = np.repeat([Role.INLIER, Role.OUT_HI, Role.OUT_LO], 1 << wbits)
    got, inlier = simulate_pairs(fmt, codes, acts, acts_hi, list(roles), apart=True)
    lo, hi = codes & ((1 << half) - 1), codes >> half
    network = narrow_codes(lo, roles, wbits)
    want = pe_product(acts[None, :], network[:, None], roles[:, None], wbits)
    _assert_equal(got, want, "product", codes, roles, acts, acts_hi)
    _assert_equal(inlier, pe_product(acts_hi[None, :], hi[:, None], Role.INLIER, half), "inlier",
                  codes, roles, acts, acts_hi)


def test_pair_mode_refuses_odd_wbits():
    with pytest.raises(ValueError, match=r"^pair mode needs an even wbits, not 3$"):
        PE(FormatConfig(wbits=3), pairs=True)


@pytest.mark.parametrize("abits", [4, 8])
@pytest.mark.parametrize("wbits", [2, 3, 4, 8])
def test_random_stalls_loads_swaps(abits, wbits):
    """Random en/load/swap with all four role encodings (3 must give 0) on every width pair."""
    fmt = FormatConfig(abits=abits, wbits=wbits)
    rng = np.random.default_rng(SEED)
    stim = PeStimulus.concat([sweep_stream(fmt, extreme_acts(fmt), [UNUSED_ROLE]),
                              stress_stream(fmt, 1500, rng)])
    assert_matches(fmt, stim)


@pytest.mark.parametrize("abits, wbits", [(8, 2), (8, 4), (4, 3), (8, 8)])
def test_dsp_pe_random_stalls_loads_swaps(abits, wbits):
    """The DSP PE (its behavioural model): a full sweep and random en/load/swap, every role
    encoding, the fabric PE's products one activation stage later."""
    fmt = FormatConfig(abits=abits, wbits=wbits)
    rng = np.random.default_rng(SEED + 1)
    stim = PeStimulus.concat([sweep_stream(fmt, extreme_acts(fmt), [*Role, UNUSED_ROLE]),
                              stress_stream(fmt, 600, rng)])
    assert_matches(fmt, stim, dsp="ecp5")


def test_dsp_pe_holds_the_activation_while_act_en_is_0():
    """``act_en`` 0 keeps the A register: the product is that of the last activation sampled."""
    fmt = FormatConfig(abits=8, wbits=4)
    dut = PE(fmt, dsp="ecp5", dsp_model=True)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    got = []

    async def bench(ctx):
        ctx.set(dut.load, 1)
        ctx.set(dut.load_code, 3)
        ctx.set(dut.load_role, Role.INLIER)
        await ctx.tick()
        ctx.set(dut.load, 0)
        ctx.set(dut.swap, 1)
        ctx.set(dut.act_en, 1)
        ctx.set(dut.act, -7)
        await ctx.tick()  # A <- -7, B <- 3
        ctx.set(dut.swap, 0)
        ctx.set(dut.act_en, 0)
        ctx.set(dut.act, 100)
        ctx.set(dut.en, 1)
        for _ in range(2):
            await ctx.tick()
            got.append(ctx.get(dut.product))

    sim.add_testbench(bench)
    sim.run()
    assert got == [-21, -21], f"expected [-21, -21], got {got}"


def test_directed_pingpong_and_stall():
    """Load the shadow while the active bank computes, swap, stall: exact products, a=8, b=4."""
    fmt = FormatConfig(abits=8, wbits=4)
    hi, lo, inl = Role.OUT_HI, Role.OUT_LO, Role.INLIER
    # (act, en, load, code, role, swap, product after the edge); banks 0/1, bank 0 active at reset
    steps = [
        (5, 1, 1, 3, inl, 0, 0),           # 5·0 (reset bank); bank 1 <- q=3
        (5, 1, 1, 0b1001, hi, 1, 0),       # 5·0; swap: bank 1 (q=3) active; load goes to bank 0
        (-7, 1, 0, 0, inl, 0, -21),        # -7·3
        (100, 0, 0, 0, inl, 0, -21),       # stall: holds
        (100, 0, 0, 0, inl, 1, -21),       # stall while swapping: holds; bank 0 (s=1) active
        (-7, 1, 1, 5, lo, 0, 7),           # -(-7); bank 1 <- f=5 while computing
        (11, 1, 0, 0, inl, 1, -11),        # -(11); swap: bank 1 (f=5) active
        (-128, 1, 0, 0, inl, 0, -640),     # -128·5
        (127, 1, 1, 0b1000, inl, 1, 635),  # 127·5; swap: bank 0 (s=1) active; bank 1 <- q=-8
        (127, 1, 0, 0, inl, 1, -127),      # -(127); swap: bank 1 (q=-8) active
        (-128, 1, 0, 0, inl, 0, 1024),     # -128·-8
    ]
    columns = list(zip(*steps))
    stim = PeStimulus(*(np.array(column, dtype=np.int64) for column in columns[:6]))
    want = np.array(columns[6], dtype=np.int64)
    assert np.array_equal(expected_products(stim, fmt.wbits)[0], want)  # the model agrees
    got = np.array(simulate(fmt, stim), dtype=np.int64)
    assert np.array_equal(got, want), f"expected {want.tolist()}, got {got.tolist()}"


def test_role_is_a_two_bit_shape():
    assert Shape.cast(Role) == unsigned(2)


def test_ports_and_widths():
    pe = PE(FormatConfig(abits=4, wbits=3))
    shapes = {name: member.shape for name, member in pe.signature.members.items()}
    assert (shapes["act"].width, shapes["act"].signed) == (4, True)
    assert (shapes["load_code"].width, shapes["load_code"].signed) == (3, False)
    assert shapes["load_role"] is Role
    assert (shapes["product"].width, shapes["product"].signed) == (7, True)
    assert (PE.LATENCY, PE.THROUGHPUT) == (1, 1)
    Fragment.get(pe, None)  # elaborates


@pytest.mark.parametrize("make, error, message", [
    (lambda: PE("a8w4"), TypeError, r"^fmt must be a FormatConfig, not 'a8w4'$"),
    (lambda: PE(AccelConfig()), TypeError, r"^fmt must be a FormatConfig, not AccelConfig\(.*\)$"),
    (lambda: PE(FormatConfig(wbits=1)), ConfigError, r"^wbits must be one of 2, 3, 4, 8, not 1$"),
    (lambda: PE(FormatConfig(abits=16)), ConfigError, r"^abits must be one of 4, 8, not 16$"),
    (lambda: PE(FormatConfig(abits=True)), TypeError, r"^abits must be an integer, not True$"),
    (lambda: PE(FormatConfig(), dsp="xilinx"), ValueError, r"^dsp must be one of none, ecp5, not 'xilinx'$"),
    (lambda: PE(FormatConfig(), pairs=True, dsp="ecp5"), ValueError,
     r"^pair mode has two partial multipliers, not one DSP: dsp must be 'none', not 'ecp5'$"),
    (lambda: PE(FormatConfig(), apart=True), ValueError,
     r"^apart keeps the pair mode's high-slot product apart: it needs pairs=True$"),
])
def test_refusals(make, error, message):
    with pytest.raises(error, match=message):
        make()
