"""The cycle model on small random layers: the table of docs/hardware.md ("Cycle model").

Each row is one configuration and one layer of ``tb/stimulus.random_case`` (seed 0; a uniform layer
of ``random_uniform_case`` for the ``none`` build), with the cycles of
:func:`~microscopiq.host.stream_format.predict_cycles` (which the top-level amaranth.sim tests and
the cocotb regressions hold equal to the RTL), the mean tile period ``T`` and the ideal
``ceil(K/R)·ceil(N/C)·M``. tests/test_docs_numbers.py checks the documented table against
:func:`rows`, so the page cannot drift from the model.

    python bench/bench_cycle_cases.py          # prints the table's Markdown rows
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from microscopiq.config import PRESETS, AccelConfig, FormatConfig
from microscopiq.host.stream_format import predict_cycles, tile_periods
from microscopiq.tb.stimulus import random_case, random_uniform_case

SEED = 0
#: 4 rows with a K-group of 16 and 16 tokens per pass (M = 40 runs as three passes).
SMALL = AccelConfig(fmt=FormatConfig(wbits=4, group=16), rows=4, cols=8, max_tokens=16)
SHARED = PRESETS["16x16-b4-shared"]


@dataclass(frozen=True)
class CycleCase:
    """One row: ``label`` names the configuration; ``outlier_rate`` None for a uniform layer."""
    label: str
    cfg: AccelConfig
    k: int
    n: int
    tokens: int
    outlier_rate: float | None


CASES = (
    CycleCase("8×8 b=4 per-row (`8x8-b4`)", PRESETS["8x8-b4"], 128, 32, 32, 0.05),
    CycleCase("16×16 b=4 shared:4 (`16x16-b4-shared`)", SHARED, 128, 32, 64, 0.05),
    CycleCase("16×16 b=4 shared:4", SHARED, 128, 32, 64, 0.30),
    CycleCase("16×16 b=4 per-row", replace(SHARED, recon_share=1), 128, 32, 64, 0.30),
    CycleCase("4×8 b=4 per-row", SMALL, 16, 16, 16, 0.30),
    CycleCase("4×8 b=4 per-row", SMALL, 16, 16, 40, 0.30),
    CycleCase("4×8 b=4 shared:2", replace(SMALL, recon_share=2), 16, 16, 16, 0.30),
    CycleCase("4×8 b=4 none (uniform layer)", replace(SMALL, recon_share=0), 16, 16, 16, None),
)


def measure(case: CycleCase) -> dict:
    """The row's numbers: ``mean_period`` (2 decimals), ``cycles``, ``ideal``, ``ratio`` (2 decimals)."""
    cfg = case.cfg
    if case.outlier_rate is None:
        layer = random_uniform_case(cfg, case.n, case.k, case.tokens, SEED).layer
    else:
        layer = random_case(cfg, case.n, case.k, case.tokens, SEED, case.outlier_rate).layer
    periods = tile_periods(cfg, layer)
    cycles = predict_cycles(cfg, layer, case.tokens)
    ideal = math.ceil(case.k / cfg.rows) * math.ceil(case.n / cfg.cols) * case.tokens
    return {"mean_period": round(sum(periods) / len(periods), 2), "cycles": cycles, "ideal": ideal,
            "ratio": round(cycles / ideal, 2)}


def rows() -> list[str]:
    """The table's Markdown rows, in :data:`CASES` order."""
    lines = []
    for case in CASES:
        got = measure(case)
        rate = "—" if case.outlier_rate is None else f"{round(case.outlier_rate * 100)}%"
        lines.append(f"| {case.label} | {case.k}×{case.n}, M={case.tokens} | {rate} | "
                     f"{got['mean_period']:.2f} | {got['cycles']} | {got['ideal']} | {got['ratio']:.2f} |")
    return lines


if __name__ == "__main__":
    print("\n".join(rows()))
