"""The decode table (issue #12 item 6): cycles of a layer at M = 1, 4 and 16 tokens on this
accelerator at b = 4 and b = 2 against the INT8 array from the same generator, weight bus 32 and
64 bits (``make bench-cycles``).

Designs (:data:`DESIGNS`), all 8×8 arrays from this generator:

``msq-b4``
    MicroScopiQ b = 4, ReCoN per row, on the MiniLM layers quantized at b = 4.
``msq-b2``
    MicroScopiQ b = 2, ReCoN per row, on the MiniLM layers quantized at b = 2.
``msq-b2-mp``
    The b = 4 ``--multi-precision`` build running the same MicroScopiQ b = 2 layers as pair passes,
    two K rows per PE row (docs/hardware.md, "MicroScopiQ pair passes").
``dq-w2``
    The b = 2 build running decoupleQ W2 layers in uniform (raw) mode.
``dq-w2-mp``
    The b = 4 ``--multi-precision`` build running the same W2 layers two slots per PE (docs/hardware.md,
    "Run-time precision").
``int8``
    The INT8 array (``wbits=8``, no ReCoN) running RTN INT8 layers (uniform mode).

Layers: all-MiniLM-L6-v2 layer 0's attention query (N×K = 384×384), FFN up (1536×384) and FFN down
(384×1536), as ``microscopiq quantize`` wrote them into the design's folder under build/ (a
missing folder is quantized first, :func:`quantize_missing`), and a 4096×4096 layer built by
:func:`tiled` from the design's 384×384 layer (no real weights of that shape offline). Every cycle
count of the table is :func:`~microscopiq.host.stream_format.predict_cycles` (the model);
``--rtl`` runs the MiniLM layers on the 32-bit bus through the native Verilator harness
(:func:`~microscopiq.tb.native.check_case`, every result integer scored) and prints its cycle
count beside the model's. The speedup is INT8 cycles / design cycles. The section "Decode table" of
docs/performance.md is rewritten between its markers.

    python bench/bench_decode.py [--rtl] [--designs NAME ...] [--doc docs/performance.md]

``--designs`` computes only the named designs (with ``int8``, the baseline) and prints their table
without rewriting the page.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from microscopiq.config import PRESETS, AccelConfig
from microscopiq.host.packed_stream import stream_bits
from microscopiq.host.stream_format import predict_cycles
from microscopiq.quant.pack import load_layer

ROOT = Path(__file__).resolve().parents[1]
TOKENS = (1, 4, 16)
BUSES = (32, 64)
#: Issue #12's targets: fewer cycles than INT8 at M = 1 on a 32-bit bus, by design.
TARGETS = {"msq-b4": 1.8, "msq-b2": 3.0, "msq-b2-mp": 3.0, "dq-w2": 3.0, "dq-w2-mp": 3.0}
TARGET_BUS, TARGET_TOKENS = 32, 1
#: The MiniLM layers of the table (layer 0's), by the shape they stand for.
LAYERS = {"attn 384×384": "encoder.layer.0.attention.self.query",
          "FFN up 1536×384": "encoder.layer.0.intermediate.dense",
          "FFN down 384×1536": "encoder.layer.0.output.dense"}
BIG = "4096×4096 (tiled)"
BIG_SHAPE = (4096, 4096)
#: The layer the 4096×4096 one is tiled from.
BIG_FROM = "attn 384×384"

_B4 = PRESETS["8x8-b4"]
_B2 = _B4.replace(wbits=2)
#: The INT8 array: no outlier format at b = 8, so no ReCoN; ``acc_bits`` 48 holds an all-INT8 output
#: of ``max_k`` = 4096 inputs (:attr:`AccelConfig.min_acc_bits`).
_INT8 = _B4.replace(wbits=8, recon_share=0, acc_bits=48)


@dataclass(frozen=True)
class Design:
    """One column of the table: a generated configuration (32-bit weight bus) and the folder of
    quantized MiniLM layers it runs (``quantize`` arguments to make it)."""

    name: str
    label: str
    cfg: AccelConfig
    folder: str
    quantize: tuple


DESIGNS = (
    Design("msq-b4", "MicroScopiQ b=4", _B4, "build/stream-bits/minilm-b4", ("--method", "microscopiq", "--wbits", "4")),
    Design("msq-b2", "MicroScopiQ b=2", _B2, "build/stream-bits/minilm-b2", ("--method", "microscopiq", "--wbits", "2")),
    Design("msq-b2-mp", "MicroScopiQ b=2 on the b=4 --multi-precision build (pair passes)",
           _B4.replace(multi_precision=True), "build/stream-bits/minilm-b2", ("--method", "microscopiq", "--wbits", "2")),
    Design("dq-w2", "decoupleQ W2 (uniform, b=2 build)", _B2, "build/decode/minilm-decoupleq-w2",
           ("--method", "decoupleq", "--wbits", "2")),
    Design("dq-w2-mp", "decoupleQ W2 on the b=4 --multi-precision build", _B4.replace(multi_precision=True),
           "build/decode/minilm-decoupleq-w2", ("--method", "decoupleq", "--wbits", "2")),
    Design("int8", "INT8 array (RTN INT8)", _INT8, "build/decode/minilm-rtn-w8", ("--method", "rtn", "--wbits", "8")),
)
BASELINE = "int8"


class BenchError(ValueError):
    """Bad input to the bench (named in the message)."""


def tiled(layer, n: int, k: int):
    """``layer`` repeated over an ``n × k`` layer: every array tiled in whole micro-blocks (rows)
    and K-groups (columns), so each outlier pair stays inside its micro-block and the result
    validates. The source must be unpadded (``n``, ``k`` multiples of U and G) and so must the
    target."""
    fmt = layer.fmt
    for name, value, unit in (("source n", layer.n, fmt.ublock), ("source k", layer.k, fmt.group),
                              ("n", n, fmt.ublock), ("k", k, fmt.group)):
        if value % unit:
            raise BenchError(f"{name} ({value}) must be a multiple of {unit} to tile whole micro-blocks "
                             f"and K-groups")
    arrays = {}
    for f in fields(layer):
        value = getattr(layer, f.name)
        if not isinstance(value, np.ndarray):
            continue
        rows, cols = value.shape[0] * n // layer.n, value.shape[1] * k // layer.k
        reps = (-(-rows // value.shape[0]), -(-cols // value.shape[1]))
        arrays[f.name] = np.ascontiguousarray(np.tile(value, reps)[:rows, :cols])
    return type(layer)(**{**{f.name: getattr(layer, f.name) for f in fields(layer)}, **arrays,
                          "n": n, "k": k}).validate()


def quantize_missing(design: Design, root: Path = ROOT) -> None:
    """Quantize MiniLM into the design's folder with ``microscopiq quantize`` unless it is there
    (minutes per method, once; the folders are the cache)."""
    folder = root / design.folder
    if (folder / "summary.json").is_file():
        return
    print(f"bench_decode: quantizing MiniLM into {design.folder} (minutes, once)", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "microscopiq.cli", "quantize", "--model", "minilm", *design.quantize,
                    "--out", str(folder)], check=True)


def load_layers(design: Design, root: Path = ROOT) -> dict:
    """The design's MiniLM layers by table label, and the 4096×4096 layer tiled from one."""
    folder = root / design.folder
    layers = {}
    for label, name in LAYERS.items():
        path = folder / f"{name}.msq"
        if not path.is_file():
            raise BenchError(f"{path} is missing: run `microscopiq quantize --model minilm "
                             f"{' '.join(design.quantize)} --out {design.folder}`")
        layers[label] = load_layer(path)
    layers[BIG] = tiled(layers[BIG_FROM], *BIG_SHAPE)
    return layers


@dataclass(frozen=True)
class Row:
    """One table row: a design on one layer, bus and token count."""

    design: str
    layer: str
    bus: int
    tokens: int
    cycles: int
    bits_per_weight: float
    rtl_cycles: int | None = None


def model_rows(design: Design, layers: dict, buses=BUSES, tokens=TOKENS) -> list[Row]:
    """:func:`predict_cycles` of every (layer, bus, M) of one design."""
    rows = []
    for label, layer in layers.items():
        for bus in buses:
            cfg = design.cfg.replace(weight_bus=bus)
            bpw = stream_bits(cfg, layer).bus_bits_per_weight(bus)
            rows += [Row(design.name, label, bus, m, predict_cycles(cfg, layer, m), bpw) for m in tokens]
    return rows


def harness(design: Design) -> Path:
    """The design's native harness (:func:`~microscopiq.tb.native.build_harness`, cached)."""
    from microscopiq.tb import native
    return native.build_harness(design.cfg, quiet=False)


def rtl_cycles(design: Design, layer, tokens: int, seed: int = 1) -> int:
    """The native Verilator harness's cycles for ``layer`` with ``tokens`` random activations; every
    result integer is checked against the golden model and a mismatch raises."""
    from microscopiq.tb.native import check_case
    from microscopiq.tb.stimulus import Case, random_activations
    cfg = design.cfg
    x = random_activations(cfg.fmt, tokens, layer.k, np.random.default_rng(seed))
    check = check_case(cfg, Case(f"{design.name} n={layer.n} k={layer.k} m={tokens}", layer, x, seed),
                       executable=harness(design))
    if check.mismatches:
        raise BenchError(f"{design.name}: the RTL's results differ from the golden model: {check.mismatches[0]}")
    return check.run.cycles


def speedups(rows: list[Row], baseline: str = BASELINE) -> dict:
    """``(design, layer, bus, M)`` → baseline cycles / design cycles."""
    base = {(r.layer, r.bus, r.tokens): r.cycles for r in rows if r.design == baseline}
    return {(r.design, r.layer, r.bus, r.tokens): base[r.layer, r.bus, r.tokens] / r.cycles for r in rows}


def table(rows: list[Row], designs=DESIGNS) -> str:
    """The decode table: one line per (layer, bus, M), per design its cycles (RTL's in brackets where
    run) and speedup over the baseline."""
    ratio = speedups(rows)
    by_key = {(r.design, r.layer, r.bus, r.tokens): r for r in rows}
    names = [d.name for d in designs]
    head = ("| layer | bus | M | " + " | ".join(f"{n} cycles (RTL) | {n} ×INT8" for n in names) + " |")
    lines = [head, "| --- | ---: | ---: | " + " | ".join("---: | ---:" for _ in names) + " |"]
    keys = sorted({(r.layer, r.bus, r.tokens) for r in rows},
                  key=lambda key: (list(LAYERS).index(key[0]) if key[0] in LAYERS else len(LAYERS), *key[1:]))
    for layer, bus, m in keys:
        cells = []
        for name in names:
            r = by_key[name, layer, bus, m]
            rtl = "" if r.rtl_cycles is None else f" ({r.rtl_cycles:,}{'' if r.rtl_cycles == r.cycles else ' ≠'})"
            cells.append(f"{r.cycles:,}{rtl} | {ratio[name, layer, bus, m]:.2f}")
        lines.append(f"| {layer} | {bus} | {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bits_table(rows: list[Row], designs=DESIGNS) -> str:
    """Weight-stream bits per weight on the bus (whole beats) by design, layer and bus."""
    names = [d.name for d in designs]
    bpw = {(r.design, r.layer, r.bus): r.bits_per_weight for r in rows}
    pairs = sorted({(r.layer, r.bus) for r in rows},
                   key=lambda key: (list(LAYERS).index(key[0]) if key[0] in LAYERS else len(LAYERS), key[1]))
    lines = ["| layer | bus | " + " | ".join(names) + " |", "| --- | ---: | " + " | ".join("---:" for _ in names) + " |"]
    lines += [f"| {layer} | {bus} | " + " | ".join(f"{bpw[n, layer, bus]:.3f}" for n in names) + " |"
              for layer, bus in pairs]
    return "\n".join(lines)


def per_tile(row: Row, cfg: AccelConfig) -> tuple[float, float]:
    """(cycles, bus beats of weights) per ``R × C`` weight tile of a :data:`BIG` row."""
    tiles = -(-BIG_SHAPE[0] // cfg.cols) * -(-BIG_SHAPE[1] // cfg.rows)
    return row.cycles / tiles, row.bits_per_weight * cfg.rows * cfg.cols / row.bus


def verdicts(rows: list[Row], designs=DESIGNS) -> list[str]:
    """Met / NOT met of every target, on every layer, at M = 1 on a 32-bit bus, with the measured
    reason: cycles per tile against the bus beats of one tile's weights, design and INT8."""
    ratio = speedups(rows)
    cfgs = {d.name: d.cfg for d in designs}
    big = {r.design: r for r in rows if r.layer == BIG and r.bus == TARGET_BUS and r.tokens == TARGET_TOKENS}
    out = []
    for name, target in TARGETS.items():
        values = {layer: ratio[name, layer, TARGET_BUS, TARGET_TOKENS]
                  for (d, layer, bus, m) in ratio if d == name and bus == TARGET_BUS and m == TARGET_TOKENS}
        if not values:
            continue
        met = all(v >= target for v in values.values())
        line = (f"* {name} ≥ {target}× INT8 at M = {TARGET_TOKENS}, {TARGET_BUS}-bit bus: "
                f"{'met' if met else '**NOT met**'} — " + ", ".join(f"{layer} {v:.2f}×" for layer, v in values.items()))
        if name in big and BASELINE in big:
            (cycles, beats), (base_cycles, base_beats) = per_tile(big[name], cfgs[name]), per_tile(big[BASELINE], cfgs[BASELINE])
            line += (f". Per weight tile ({BIG}): {cycles:.2f} cycles for {beats:.2f} bus beats of weights "
                     f"({'the tile period, not the bus, sets the pace' if cycles > beats + 1 else 'bus-bound'}); "
                     f"INT8 {base_cycles:.2f} cycles for {base_beats:.2f} beats")
        out.append(line)
    return out


def tile_periods_m1(rows: list[Row], designs=DESIGNS) -> list[str]:
    """Cycles per weight tile at M = 1 on the 4096×4096 layer against the bus time of one tile's
    weights."""
    cfgs = {d.name: d.cfg for d in designs}
    out = ["| design | bus | cycles per tile (model) | bus beats per tile of weights |", "| --- | ---: | ---: | ---: |"]
    for r in rows:
        if r.tokens == TARGET_TOKENS and r.layer == BIG:
            cycles, beats = per_tile(r, cfgs[r.design])
            out.append(f"| {r.design} | {r.bus} | {cycles:.2f} | {beats:.2f} |")
    return out


def rtl_summary(rows: list[Row]) -> str:
    """How many RTL runs there were and whether each equals the model."""
    runs = [r for r in rows if r.rtl_cycles is not None]
    if not runs:
        return "No RTL run (`--rtl` not given): every number is the model's."
    differ = [r for r in runs if r.rtl_cycles != r.cycles]
    if not differ:
        return f"RTL cycles equal the model's on all {len(runs)} RTL runs."
    return (f"**RTL cycles differ from the model's on {len(differ)} of {len(runs)} RTL runs** (marked ≠), first: "
            f"{differ[0].design} {differ[0].layer} M = {differ[0].tokens}: RTL {differ[0].rtl_cycles}, "
            f"model {differ[0].cycles}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtl", action="store_true",
                        help="also run the MiniLM layers on a 32-bit bus through the native Verilator harness")
    parser.add_argument("--jobs", type=int, default=2, help="designs computed in parallel (default 2)")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "performance.md",
                        help="the page whose DECODE section is rewritten")
    parser.add_argument("--designs", nargs="+", choices=[d.name for d in DESIGNS],
                        help="only these designs and the baseline, printed, the page left as it is")
    args = parser.parse_args(argv)
    designs = [d for d in DESIGNS if not args.designs or d.name in args.designs or d.name == BASELINE]
    for design in designs:
        quantize_missing(design)
    start = time.perf_counter()
    if args.rtl:   # build (or find cached) every harness before the workers share them
        for design in designs:
            harness(design)
    rows = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for design, design_rows in zip(designs, pool.map(design_rows_of, designs, [args.rtl] * len(designs))):
            rows += design_rows
            print(f"bench_decode: {design.name} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python bench/bench_decode.py", *(argv if argv is not None else sys.argv[1:])])
    text = "\n".join([
        f"Written {stamp} on {platform.machine()}, {os.cpu_count()} CPUs ({platform.python_implementation()} "
        f"{platform.python_version()}) by `{command}` (`make bench-cycles`), "
        f"{time.perf_counter() - start:.0f} s. Cycles from `predict_cycles` (the model); in brackets the "
        "native Verilator harness's count for the same layer and random activations (RTL, every result "
        "integer checked against the golden model), run for the MiniLM layers on the 32-bit bus. "
        f"{BIG}: the design's {BIG_FROM} layer tiled in whole micro-blocks and K-groups (no real weights "
        "of that shape offline). ×INT8 = INT8 cycles / design cycles. " + rtl_summary(rows), "",
        "Targets (issue #12):", "", *verdicts(rows, designs), "",
        table(rows, designs), "",
        "Weight-stream bits per weight on the bus (the pass in whole beats, "
        "`stream_bits(cfg, layer).bus_bits_per_weight(bus)`):", "", bits_table(rows, designs), "",
        "Cycles per 8×8 weight tile at M = 1 against the bus beats one tile's weights take:", "",
        *tile_periods_m1(rows, designs)])
    if not args.designs:
        from bench_qor import write_section   # bench/ is the script's folder, on sys.path
        write_section(args.doc, "DECODE", text, "bench/bench_decode.py")
    print(text)
    return 0


def design_rows_of(design: Design, rtl: bool) -> list[Row]:
    """Every row of one design (a worker's job): the model's cycles, with ``rtl`` the RTL's too."""
    layers = load_layers(design)
    rows = model_rows(design, layers)
    return [_with_rtl(design, layers, r) for r in rows] if rtl else rows


def _with_rtl(design: Design, layers: dict, row: Row) -> Row:
    if row.layer == BIG or row.bus != TARGET_BUS:
        return row
    return Row(**{**row.__dict__, "rtl_cycles": rtl_cycles(design, layers[row.layer], row.tokens)})


if __name__ == "__main__":
    sys.exit(main())
