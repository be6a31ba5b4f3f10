"""PE testbench: vectors, the bank/swap model, the cocotb tests and their launcher.

One module serves both test tiers:

* host side (plain Python): :func:`pe_vectors` builds the stimulus, :func:`expected_products` says
  what the PE must output cycle by cycle (the arithmetic is :func:`golden.pe_product`; only the
  bank/swap/enable bookkeeping of :class:`~microscopiq.hdl.pe.PE` is modelled here),
  :func:`first_mismatch` reports; the Amaranth tests (``tests/hdl/test_pe.py``) use these too;
* cocotb side: the tests below run in the simulator against the generated Verilog and read their
  parameters with :func:`~microscopiq.tb.runner.cocotb_params`;
* launcher: :func:`run_pe` generates the PE, runs the cocotb tests and returns the totals;
  ``python -m microscopiq.tb.test_pe --help`` does the same from the command line (``make demo``).

Cycle convention of a stimulus: the inputs of cycle ``c`` are sampled at rising edge ``c``;
``expected[c]`` is ``product`` just after that edge.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from ..config import FormatConfig
from ..flow.generate import generate_pe, read_manifest
from ..quant.golden import pe_product
from ..quant.layer import Role
from .runner import cocotb_params, run_cocotb

__all__ = [
    "PeStimulus", "pe_vectors", "sweep_stream", "stress_stream", "expected_products",
    "first_mismatch", "extreme_acts", "run_pe", "main", "TEST_MODULE",
]

#: This module's import name (also when run as ``python -m``), for cocotb.
TEST_MODULE = "microscopiq.tb.test_pe"
#: The unused fourth role encoding: the PE outputs 0 for it.
UNUSED_ROLE = 3
_FIELDS = ("act", "en", "load", "code", "role", "swap")
#: PE port driven by each stimulus field.
_PORTS = {"act": "act", "en": "en", "load": "load", "code": "load_code", "role": "load_role",
          "swap": "swap"}
#: Largest (activation, code, role) space swept exhaustively by :func:`pe_vectors`.
EXHAUSTIVE_LIMIT = 1 << 14
#: Random cycles :func:`pe_vectors` always appends (and the block size it appends more in).
MIN_STRESS_CYCLES = 1000


@dataclass(frozen=True)
class PeStimulus:
    """Per-cycle PE inputs, int64 arrays of one length: ``act``, ``en``, ``load``, ``code``
    (``load_code``), ``role`` (``load_role``, 0..3) and ``swap``."""

    act: np.ndarray
    en: np.ndarray
    load: np.ndarray
    code: np.ndarray
    role: np.ndarray
    swap: np.ndarray

    def __len__(self) -> int:
        return len(self.act)

    @classmethod
    def concat(cls, parts: list["PeStimulus"]) -> "PeStimulus":
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    def cycles(self):
        """The stimulus as Python tuples ``(act, en, load, code, role, swap)``, one per cycle."""
        return zip(*(getattr(self, f).tolist() for f in _FIELDS))


def extreme_acts(fmt: FormatConfig) -> np.ndarray:
    """``-2^(a-1)``, ``-(2^(a-1)-1)``, -1, 0, 1, ``2^(a-1)-1`` (e.g. -128, -127, -1, 0, 1, 127)."""
    return np.array([-fmt.act_bound, -fmt.amax, -1, 0, 1, fmt.amax], dtype=np.int64)


def sweep_stream(fmt: FormatConfig, acts, roles) -> PeStimulus:
    """Every ``(act, code, role)`` of the given acts and roles and all ``2^b`` codes, one product per
    cycle with a new slot every cycle: slot ``i`` is loaded into the shadow bank at cycle ``i`` and
    a ``swap`` every cycle from cycle 1 makes it active at cycle ``i + 2`` — full-rate ping-pong."""
    acts = np.asarray(acts, dtype=np.int64)
    role_grid, code_grid, act_grid = np.meshgrid(np.asarray(roles, dtype=np.int64),
                                                 np.arange(1 << fmt.wbits, dtype=np.int64), acts,
                                                 indexing="ij")
    count = act_grid.size
    pad = np.zeros(2, dtype=np.int64)
    return PeStimulus(
        act=np.concatenate([pad, act_grid.ravel()]),
        en=np.ones(count + 2, dtype=np.int64),
        load=np.concatenate([np.ones(count, dtype=np.int64), pad]),
        code=np.concatenate([code_grid.ravel(), pad]),
        role=np.concatenate([role_grid.ravel(), pad]),
        swap=np.concatenate([[0], np.ones(count + 1, dtype=np.int64)]),
    )


def stress_stream(fmt: FormatConfig, cycles: int, rng: np.random.Generator) -> PeStimulus:
    """Random control: ``en`` 75 % (stalls), ``load`` 50 %, ``swap`` 30 %; codes uniform, roles
    uniform over all four encodings (3 included); activations extreme one time in three."""
    uniform = rng.integers(-fmt.act_bound, fmt.act_bound, cycles)
    extreme = rng.choice(extreme_acts(fmt), cycles)
    return PeStimulus(
        act=np.where(rng.random(cycles) < 1 / 3, extreme, uniform).astype(np.int64),
        en=(rng.random(cycles) < 0.75).astype(np.int64),
        load=(rng.random(cycles) < 0.5).astype(np.int64),
        code=rng.integers(0, 1 << fmt.wbits, cycles),
        role=rng.integers(0, 4, cycles),
        swap=(rng.random(cycles) < 0.3).astype(np.int64),
    )


def pe_vectors(fmt: FormatConfig, seed: int, vectors: int) -> PeStimulus:
    """The PE regression, at least ``vectors`` enabled cycles: a full-rate ping-pong sweep
    (exhaustive over activation × code × role when that space has at most
    :data:`EXHAUSTIVE_LIMIT` points, else every code and role with the extreme activations and 10
    random ones), every code with role 3, then random cycles with stalls, loads and swaps
    (:func:`stress_stream`, at least :data:`MIN_STRESS_CYCLES`, more until ``vectors`` is reached)."""
    rng = np.random.default_rng(seed)
    roles = [Role.INLIER, Role.OUT_HI, Role.OUT_LO]
    every_act = np.arange(-fmt.act_bound, fmt.act_bound, dtype=np.int64)
    if len(every_act) * (1 << fmt.wbits) * len(roles) <= EXHAUSTIVE_LIMIT:
        acts = every_act
    else:
        acts = np.concatenate([extreme_acts(fmt), rng.choice(every_act, 10, replace=False)])
    parts = [sweep_stream(fmt, acts, roles), sweep_stream(fmt, extreme_acts(fmt), [UNUSED_ROLE]),
             stress_stream(fmt, MIN_STRESS_CYCLES, rng)]
    while sum(int(part.en.sum()) for part in parts) < vectors:
        parts.append(stress_stream(fmt, MIN_STRESS_CYCLES, rng))
    return PeStimulus.concat(parts)


def expected_products(stim: PeStimulus, wbits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(product, active_code, active_role)`` per cycle for a PE starting from reset.

    ``product[c]`` is the PE output just after rising edge ``c``; ``active_*[c]`` the slot the
    multiplier saw in cycle ``c``. Bank semantics are those documented in
    :class:`~microscopiq.hdl.pe.PE`; the products come from :func:`golden.pe_product` (0 for the
    unused role 3).
    """
    banks = [(0, int(Role.INLIER)), (0, int(Role.INLIER))]
    sel = 0
    active = np.empty((len(stim), 2), dtype=np.int64)
    for c, (_, _, load, code, role, swap) in enumerate(stim.cycles()):
        active[c] = banks[sel]
        sel ^= swap
        if load:
            banks[sel ^ 1] = (code, role)
    code, role = active[:, 0], active[:, 1]
    values = np.where(role == UNUSED_ROLE, 0, pe_product(stim.act, code, role, wbits))
    last_enabled = np.maximum.accumulate(np.where(stim.en == 1, np.arange(len(stim)), -1))
    product = np.where(last_enabled >= 0, values[np.maximum(last_enabled, 0)], 0)
    return product.astype(np.int64), code, role


def first_mismatch(stim: PeStimulus, wbits: int, actual) -> tuple[int, str | None]:
    """``(number of mismatching cycles, description of the first)``; the description names the
    cycle, its inputs, the active slot, the expected and the actual integer."""
    expected, code, role = expected_products(stim, wbits)
    actual = np.asarray(actual, dtype=np.int64)
    bad = np.flatnonzero(expected != actual)
    if not len(bad):
        return 0, None
    i = int(bad[0])
    role_name = Role(role[i]).name if role[i] in tuple(Role) else f"unused({role[i]})"
    return len(bad), (f"{len(bad)} of {len(stim)} cycles differ; first at cycle {i}: act={stim.act[i]}, "
                      f"en={stim.en[i]}, active slot code={code[i]} role={role_name}, "
                      f"load={stim.load[i]}, swap={stim.swap[i]}: expected product {expected[i]}, "
                      f"got {actual[i]}")


# -- cocotb side ----------------------------------------------------------------------------------
async def _start(dut) -> None:
    """Start a 10 ns clock, hold reset for two cycles, leave all inputs at 0 (on a falling edge)."""
    Clock(dut.clk, 10, unit="ns").start()
    for port in _PORTS.values():
        getattr(dut, port).value = 0
    await _reset(dut, cycles=2)


async def _reset(dut, cycles: int) -> None:
    dut.rst.value = 1
    for _ in range(cycles):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


async def _drive(dut, stim: PeStimulus) -> list[int]:
    """Apply one cycle of ``stim`` per clock (inputs change on the falling edge) and return
    ``product`` after each rising edge."""
    actual = []
    for act, en, load, code, role, swap in stim.cycles():
        dut.act.value = act
        dut.en.value = en
        dut.load.value = load
        dut.load_code.value = code
        dut.load_role.value = role
        dut.swap.value = swap
        await FallingEdge(dut.clk)
        actual.append(dut.product.value.to_signed())
    return actual


def _record(params: dict, name: str, vectors: int, mismatches: int) -> None:
    """Add this test's counts to the summary file named in the parameters (if any)."""
    path = params.get("summary")
    if not path:
        return
    path = Path(path)
    summary = json.loads(path.read_text()) if path.is_file() else {}
    summary[name] = {"vectors": vectors, "mismatches": mismatches}
    path.write_text(json.dumps(summary, indent=2) + "\n")


async def _check(dut, name: str, stim: PeStimulus) -> None:
    """Drive ``stim`` (the PE fresh from reset) and compare every cycle with the model."""
    params = cocotb_params()
    fmt = FormatConfig(**params["fmt"])
    dut._log.info("%s: %d cycles, a=%d b=%d, seed %d", name, len(stim), fmt.abits, fmt.wbits,
                  params["seed"])
    actual = await _drive(dut, stim)
    count, message = first_mismatch(stim, fmt.wbits, actual)
    _record(params, name, int(stim.en.sum()), count)
    assert count == 0, f"{name} (seed {params['seed']}): {message}"


@cocotb.test()
async def pe_regression(dut):
    """Ping-pong sweep (exhaustive where small enough), role 3, random stalls/loads/swaps."""
    params = cocotb_params()
    fmt = FormatConfig(**params["fmt"])
    await _start(dut)
    await _check(dut, "pe_regression", pe_vectors(fmt, params["seed"], params["vectors"]))


@cocotb.test()
async def pe_reset_clears(dut):
    """Reset in the middle of a stream clears both banks (active and shadow operands) and the product."""
    fmt = FormatConfig(**cocotb_params()["fmt"])
    await _start(dut)
    # Fill both banks with non-zero slots (last loads: OUT_HI, operand -1) and compute.
    await _drive(dut, sweep_stream(fmt, [fmt.amax], [Role.INLIER, Role.OUT_HI]))
    assert dut.product.value.to_signed() != 0
    await _reset(dut, cycles=1)
    assert dut.product.value.to_signed() == 0, f"product {dut.product.value.to_signed()} after reset"
    # Swaps without loads now expose only the cleared banks: every product must be 0.
    swaps = PeStimulus(act=np.array([fmt.amax, -fmt.act_bound, 1]), en=np.ones(3, np.int64),
                       load=np.zeros(3, np.int64), code=np.zeros(3, np.int64),
                       role=np.zeros(3, np.int64), swap=np.array([1, 1, 0]))
    await _check(dut, "pe_reset_clears", swaps)


# -- launcher -------------------------------------------------------------------------------------
def run_pe(sim: str, fmt: FormatConfig, build_dir, *, seed: int = 1, vectors: int = 10_000,
           rtl_dir=None) -> dict:
    """Generate the PE for ``fmt`` (into ``build_dir/rtl`` unless ``rtl_dir`` holds a generated PE)
    and run this module's cocotb tests on ``sim`` in ``build_dir/<sim>``, the regression with at
    least ``vectors`` enabled cycles (:func:`pe_vectors`).

    Returns ``{"sim", "top", "seed", "vectors", "mismatches", "tests", "rebuilt", "seconds"}``
    (vectors: enabled cycles checked). Raises :class:`~microscopiq.tb.runner.CocotbFailure` on any
    failure, with the first mismatch.
    """
    start = time.monotonic()
    build_dir = Path(build_dir)
    if rtl_dir is None:
        rtl_dir = build_dir / "rtl"
        generate_pe(fmt, rtl_dir)
    manifest, sources = read_manifest(rtl_dir)
    generated = manifest["parameters"]
    if (generated["abits"], generated["wbits"]) != (fmt.abits, fmt.wbits):
        raise ValueError(f"{rtl_dir} holds a PE for abits={generated['abits']}, "
                         f"wbits={generated['wbits']}, not abits={fmt.abits}, wbits={fmt.wbits}")
    sim_dir = build_dir / sim
    summary_path = sim_dir / "pe_summary.json"
    summary_path.unlink(missing_ok=True)
    params = {"fmt": {"abits": fmt.abits, "wbits": fmt.wbits}, "seed": seed,
              "vectors": vectors, "summary": str(summary_path.resolve())}
    result = run_cocotb(sim=sim, sources=sources, toplevel=manifest["top"],
                        test_module=TEST_MODULE,
                        build_dir=sim_dir, params=params, seed=seed)
    counts = json.loads(summary_path.read_text()).values()
    return {"sim": sim, "top": manifest["top"], "seed": seed,
            "vectors": sum(c["vectors"] for c in counts),
            "mismatches": sum(c["mismatches"] for c in counts),
            "tests": len(result.passed), "rebuilt": result.rebuilt,
            "seconds": round(time.monotonic() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    """``python -m microscopiq.tb.test_pe``: run the PE cocotb regression and print one line."""
    parser = argparse.ArgumentParser(
        prog="python -m microscopiq.tb.test_pe",
        description="Run the PE's cocotb regression on a generated PE and print a summary line.")
    parser.add_argument("--rtl", required=True, metavar="DIR",
                        help="folder written by 'microscopiq generate pe'")
    parser.add_argument("--build", required=True, metavar="DIR", help="simulation build folder")
    parser.add_argument("--sim", choices=("icarus", "verilator"), default="verilator")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--vectors", type=int, default=10_000, metavar="N",
                        help="least number of enabled cycles in the regression (default 10000)")
    args = parser.parse_args(argv)
    manifest, _ = read_manifest(args.rtl)
    fmt = FormatConfig(**manifest["parameters"])
    out = run_pe(args.sim, fmt, args.build, seed=args.seed, vectors=args.vectors,
                 rtl_dir=args.rtl)
    print(f"PE {out['top']} on {out['sim']}: {out['vectors']} vectors checked, "
          f"{out['mismatches']} mismatches ({out['tests']} cocotb tests, seed {out['seed']}, "
          f"{out['seconds']} s{', built' if out['rebuilt'] else ', cached build'})")
    return 0 if out["mismatches"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
