"""``make demo``: the main job end to end on a real model layer, then one summary.

1. quantize one real all-MiniLM-L6-v2 layer (the first FFN up-projection, 1536×384) with MicroScopiQ
   at b = 4, calibrated on standard-library docstrings (offline), and pack it;
2. generate the default accelerator (8×8, b = 4, a = 8, per-row ReCoN), build it on the native
   Verilator harness and run the packed layer through it with M = 8R tokens (so the array is busy,
   not waiting for weight loads), every result integer checked against the golden model;
3. synthesise and place the INT PE for an ECP5 with Yosys and nextpnr.

Run as ``python -m microscopiq.demo [--out DIR]``; exit status 1 if any integer mismatches.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import PRESETS

__all__ = ["main"]

LAYER = "0.model.encoder.layer.0.intermediate.dense"
#: M >= 4R tokens keep the array at >= 95 % of the ideal ceil(K/R)·ceil(N/C)·M cycles
#: (docs/hardware.md); 64 = one pass of the default instance's result buffer.
TOKENS = 64
SEED = 1


def quantize_demo_layer(out: Path):
    """Quantize :data:`LAYER` of MiniLM with MicroScopiQ and save it; return (path, report, layer)."""
    from .quant import models
    from .quant.pack import save_layer

    cfg = PRESETS["default"]
    model = models.load_minilm()
    saved = {}

    def keep(name, layer, report):
        saved.update(layer=layer, report=report)

    models.quantize_model(model, "microscopiq", cfg.fmt, models.calibration_texts(32),
                          layer_filter=lambda name: name == LAYER, on_layer=keep, progress=False)
    path = out / "minilm-ffn0-msq4.msq"
    save_layer(path, saved["layer"])
    return path, saved["report"], saved["layer"]


def synth_pe(out: Path):
    """Yosys + nextpnr for the a = 8, b = 4 PE on an ECP5-25k at a 100 MHz target."""
    from .flow.synth_cli import generate_design, run_synth

    manifest, files = generate_design("pe", {"abits": 8, "wbits": 4}, out / "rtl")
    return run_synth(manifest, files, out, family="ecp5", device="25k", freq_mhz=100.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m microscopiq.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/demo", help="output folder (default build/demo)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from .tb.sim_cli import simulate_layer_file

    cfg = PRESETS["default"]
    print(f"[1/3] quantizing MiniLM {LAYER} with MicroScopiQ b={cfg.fmt.wbits} (offline calibration)",
          flush=True)
    path, qreport, layer = quantize_demo_layer(out)
    outliers = int((layer.roles == 1).sum())
    print(f"[2/3] running it through the generated accelerator on the native Verilator harness "
          f"({TOKENS} tokens)", flush=True)
    sim = simulate_layer_file(path, cfg, "verilator", TOKENS, SEED, harness="native")
    print("[3/3] synthesising the PE for ECP5 (Yosys + nextpnr)", flush=True)
    pe = synth_pe(out / "pe-synth")

    res = pe.resources
    print()
    print("microscopiq demo summary")
    print(f"  layer       {LAYER} {qreport.shape[0]}x{qreport.shape[1]}, MicroScopiQ b={cfg.fmt.wbits}: "
          f"{qreport.ebw:.3f} bits/weight, {outliers} outliers, relative output error {qreport.rel_error:.4f}")
    macs_per_cycle = sim.macs / max(sim.cycles, 1)
    print(f"  accelerator {cfg.rows}x{cfg.cols} per-row ReCoN, native Verilator harness: {sim.checked} result "
          f"integers checked, {sim.mismatches} mismatches, {sim.overflowed} of {sim.outputs} outputs saturated")
    print(f"  cycles      {sim.cycles} measured, {sim.predicted} predicted by the cycle model, "
          f"{macs_per_cycle:.1f} MACs/cycle of {cfg.rows * cfg.cols} "
          f"({100 * macs_per_cycle / (cfg.rows * cfg.cols):.1f} %), {TOKENS} tokens")
    print(f"  harness     {sim.cycles_per_second:,.0f} simulated cycles/s "
          f"({sim.cycles_per_cpu_second:,.0f} per CPU second)")
    print(f"  PE on ECP5  {res.luts} LUTs, {res.ffs} FFs, {res.dsps} DSPs, Fmax {pe.fmax:.1f} MHz")
    return 1 if sim.mismatches or sim.error else 0


if __name__ == "__main__":
    sys.exit(main())
