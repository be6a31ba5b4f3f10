"""FPGA quality of results of the accelerator (``make bench-qor``).

The sweeps themselves are ``microscopiq explore`` (flow/explore.py, docs/explore.md), which
``make bench-qor`` runs first with the sweeps of docs/performance.md: Yosys counts of arrays 4×8,
8×8, 16×16, b ∈ {4, 2}, ReCoN per row, shared by 2 and by 4 rows, none (``build/qor``), and the
8×8 points placed and routed (``build/qor-placed``), and the 8×8 b = 4 per-row build fixed and
``--multi-precision``, placed (``build/qor-mp``), and the same two on the 85k (``build/qor-mp-85k``:
the multi-precision netlist does not place on the 45k); ``QOR_ARGS`` adds or overrides options of
all four. This script only turns the sweeps' results into the page: the table with the outlier-support
share of each point against the ``none`` point of the same array and b, the sweep's plot, and the
placed points' Fmax against ``none`` with their critical paths, and the multi-precision build's
LUT4s and Fmax against the fixed build's on each device (issue #13).

The page ``docs/performance.md`` and its PNG (``docs/img/``) are rewritten between the markers.

    python bench/bench_qor.py [--explore build/qor] [--placed build/qor-placed] [--multi-precision build/qor-mp]
                              [--multi-precision-85k build/qor-mp-85k] [--command TEXT]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import sys
from pathlib import Path

from microscopiq.flow.explore import source_digest
from microscopiq.outputs import atomic_file

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "qor"
PLACED = ROOT / "build" / "qor-placed"
MULTI_PRECISION = ROOT / "build" / "qor-mp"
#: The same two builds placed on the 85k: the multi-precision netlist does not place on the 45k.
MULTI_PRECISION_85K = ROOT / "build" / "qor-mp-85k"
DOC = ROOT / "docs" / "performance.md"
IMG = ROOT / "docs" / "img"


# -- the page ------------------------------------------------------------------------------------

def _share(luts: int, baseline_luts: int) -> float:
    """Percentage of ``luts`` that the same array without outlier support does not have."""
    return 100 * (luts - baseline_luts) / luts


def _fmt(value, spec="") -> str:
    return "–" if value is None else format(value, spec)


def _same(row) -> tuple:
    """The array and format a point shares with its ``none`` baseline."""
    return row["rows"], row["cols"], row["wbits"], row["xbits"], row["multi_precision"]


def _order(row) -> tuple:
    return row["rows"] * row["cols"], -row["wbits"], row["recon"] == "none", row["recon"]


def _where(sweep: Path) -> str:
    return str(sweep.relative_to(ROOT) if sweep.is_relative_to(ROOT) else sweep)


def _version(text: str) -> str:
    """A tool's version in short: nextpnr's ``(Version …)``, else the text before any ``" ("``."""
    if "(Version " in text:
        return text.split("(Version ", 1)[1].rstrip(")")
    return text.split(" (")[0]


def _tools(document: dict) -> str:
    return ", ".join(f"{name} {_version(version)}" for name, version in sorted(document["tools"].items()))


def qor_section(sweep: Path, command: str) -> str:
    """The QoR section from ``microscopiq explore``'s results in ``sweep`` (pareto.json)."""
    document = json.loads((sweep / "pareto.json").read_text())
    rows = document["points"]
    baseline = {_same(row): row for row in rows if row["recon"] == "none"}
    placed = any(row["fmax"] for row in rows)
    lines = [f"Written {datetime.date.today().isoformat()} on {platform.machine()} by `{command}` "
             f"from `{_where(sweep)}/pareto.json`; tools: {_tools(document)}. "
             f"LUT4s … LUT RAMs: Yosys (ECP5, ABC LUT mapping, multipliers in LUTs as `make synth`); "
             f"cycles: one MiniLM inference, its {document['tokens']}-token pass through the 37 linear "
             f"layers, from the cycle model (shared ReCoN on the layers quantized at that b); "
             f"inferences/s at {'Fmax' if placed else 'the 100 MHz target (not placed)'}.", "",
             "| array | b | ReCoN | LUT4s | FFs | DSPs | LUT RAMs | outlier support, % of LUTs | Fmax MHz "
             "| cycles / inference | inferences/s | per kLUT | Pareto |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in sorted(rows, key=_order):
        base = baseline.get(_same(row))
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


def placed_results(sweep: Path, labels: list[str]) -> list[dict]:
    """The per-point results (``points/<key>.json``) in ``sweep`` of the points ``labels`` (its
    ``pareto.json``'s) measured on the hardware sources of this checkout; a point without one is
    an error."""
    digest = source_digest()
    current = {}
    for path in (sweep / "points").glob("*.json"):
        result = json.loads(path.read_text())
        if result["hardware_digest"] == digest and result["label"] in labels:
            current[result["label"]] = result
    missing = [label for label in labels if label not in current]
    if missing:
        raise SystemExit(f"{_where(sweep)}: no result on this checkout's hardware sources for "
                         f"{', '.join(missing)}: run its explore sweep first")
    return [current[label] for label in labels]


def placed_section(sweep: Path, command: str) -> str:
    """The placed points of ``sweep``: Fmax against the ``none`` point of the same array and b, how
    full the device is, and the critical path nextpnr reports."""
    document = json.loads((sweep / "pareto.json").read_text())
    rows = {row["label"]: row for row in document["points"]}
    results = placed_results(sweep, list(rows))
    missing = [f"* {entry}" for entry in document["missing"]]
    if not results:
        return "\n".join([f"No placed point on this checkout's hardware sources in `{_where(sweep)}` "
                          f"(`{command}`); not measured yet:", "", *missing])
    baseline = {_same(rows[r["label"]]): rows[r["label"]] for r in results if r["config"]["recon"] == "none"}
    flow = results[0]["flow"]
    lines = [f"Written {datetime.date.today().isoformat()} on {platform.machine()} by `{command}` from "
             f"`{_where(sweep)}/points/`; tools: {_tools(document)}. Yosys (ABC, LUT multipliers), then "
             f"nextpnr on the {flow['device']} out of context at {flow['freq_mhz']} MHz, seed "
             f"{flow['seed']}; inferences/s at the Fmax.", "",
             "| array | b | ReCoN | LUT4s | FFs | LUTs placed | Fmax MHz | vs none | critical path (nextpnr) "
             "| cycles / inference | inferences/s |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for result in sorted(results, key=lambda r: _order(rows[r["label"]])):
        row, synth = rows[result["label"]], result["synth"]
        base = baseline.get(_same(row))
        if not row["fits"]:
            lines.append(f"| {row['rows']}x{row['cols']} | {row['wbits']} | {row['recon']} | {row['luts']} "
                         f"| {row['ffs']} | – | does not fit | – | {result['error']} | {row['cycles']:,} | – |")
            continue
        versus = (f"{100 * (row['fmax'] / base['fmax'] - 1):+.1f} %"
                  if base and base["fits"] and row["recon"] != "none" else "–")
        placed_share, path = _placement(synth)
        lines.append(f"| {row['rows']}x{row['cols']} | {row['wbits']} | {row['recon']} | {row['luts']} "
                     f"| {row['ffs']} | {placed_share} | {row['fmax']:.1f} | {versus} "
                     f"| {path} | {row['cycles']:,} | {row['inferences_per_s']:.2f} |")
    if missing:
        lines += ["", "Not measured yet:", "", *missing]
    return "\n".join(lines)


def _placement(synth: dict) -> tuple[str, str]:
    """How full a placed point's device is, and its critical path, as table cells."""
    used, available = (synth["utilisation"]["TRELLIS_COMB"][k] for k in ("used", "available"))
    path = synth["critical_path"]
    return (f"{100 * used / available:.0f} %",
            f"{path['delay_ns']} ns, {path['logic_levels']} levels: `{path['start']}` → `{path['end']}`")


#: Issue #13's bound on the multi-precision build's LUT4s over the fixed build.
MP_LUT_GROWTH = 0.15


def multi_precision_section(sweep: Path, command: str) -> str:
    """The placed multi-precision points of ``sweep`` against the fixed point of the same array,
    format and ReCoN (issue #13: LUT4s and Fmax)."""
    document = json.loads((sweep / "pareto.json").read_text())
    rows = {row["label"]: row for row in document["points"]}
    results = {result["label"]: result for result in placed_results(sweep, list(rows))}

    def twin(row) -> tuple:
        return row["rows"], row["cols"], row["wbits"], row["xbits"], row["recon"]
    fixed = {twin(row): row for row in rows.values() if not row["multi_precision"]}
    flow = next(iter(results.values()))["flow"] if results else {"device": "–", "freq_mhz": "–", "seed": "–"}
    lines = [f"Written {datetime.date.today().isoformat()} on {platform.machine()} by `{command}` from "
             f"`{_where(sweep)}/points/`; tools: {_tools(document)}. Yosys (ABC, LUT multipliers), then "
             f"nextpnr on the {flow['device']} out of context at {flow['freq_mhz']} MHz, seed {flow['seed']}.",
             "", "| array | b | ReCoN | PEs | LUT4s | vs fixed | FFs | LUTs placed | Fmax MHz | vs fixed "
             "| critical path (nextpnr) |", "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    verdicts = []
    for label in sorted(rows, key=lambda label: (_order(rows[label]), rows[label]["multi_precision"])):
        row, base = rows[label], fixed.get(twin(rows[label]))
        placed_share, path = _placement(results[label]["synth"]) if row["fits"] else ("–", results[label]["error"])
        fmax = _fmt(row["fmax"], ".1f") if row["fits"] else "does not fit"
        growth, speed = "–", "–"
        if row["multi_precision"] and base:
            more = row["luts"] / base["luts"] - 1
            growth = f"{100 * more:+.1f} %"
            speed = f"{100 * (row['fmax'] / base['fmax'] - 1):+.1f} %" if row["fits"] and base["fits"] else "–"
            verdicts.append(f"* {row['rows']}x{row['cols']}, b = {row['wbits']}, {row['recon']}: LUT4s "
                            f"≤ +{MP_LUT_GROWTH:.0%} over the fixed build: "
                            f"{'met' if more <= MP_LUT_GROWTH else '**NOT met**'} ({100 * more:+.1f} %); "
                            f"Fmax {fmax} MHz against {_fmt(base['fmax'], '.1f')}")
        lines.append(f"| {row['rows']}x{row['cols']} | {row['wbits']} | {row['recon']} | "
                     f"{'multi-precision' if row['multi_precision'] else 'fixed'} | {row['luts']} | {growth} "
                     f"| {row['ffs']} | {placed_share} | {fmax} | {speed} | {path} |")
    notes = ["", *verdicts] if verdicts else []
    for title, entries in (("Failed", document["failed"]), ("Not measured yet", document["missing"])):
        if entries:
            notes += ["", f"{title}:", "", *(f"* {entry}" for entry in entries)]
    return "\n".join([*lines, *notes])


#: The page's QoR sections: name (``--only``), marker, the function that writes it from a sweep
#: folder, and the option that names that folder.
SECTIONS = (("qor", "QOR", qor_section, "explore"), ("placed", "QOR PLACED", placed_section, "placed"),
            ("multi-precision", "QOR MULTI_PRECISION", multi_precision_section, "multi_precision"),
            ("multi-precision-85k", "QOR MULTI_PRECISION 85K", multi_precision_section, "multi_precision_85k"))


def write_section(doc: Path, marker: str, body: str, source: str) -> None:
    """Replace the text between ``doc``'s ``BEGIN marker (source)`` and ``END marker`` comments
    with ``body`` (appended with its markers when absent)."""
    text = doc.read_text() if doc.exists() else ""
    with atomic_file(doc, "w") as handle:
        handle.write(_replace(text, marker, body, source))


def _replace(text: str, marker: str, body: str, source: str) -> str:
    begin, end = f"<!-- BEGIN {marker} ({source}) -->", f"<!-- END {marker} -->"
    if begin not in text:
        return text + f"\n{begin}\n{body}\n{end}\n"
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--explore", type=Path, default=CACHE,
                        help="the --out folder of the 'microscopiq explore' sweep (default build/qor)")
    parser.add_argument("--placed", type=Path, default=PLACED,
                        help="the --out folder of the placed sweep (default build/qor-placed)")
    parser.add_argument("--multi-precision", type=Path, default=MULTI_PRECISION,
                        help="the --out folder of the placed multi-precision sweep (default build/qor-mp)")
    parser.add_argument("--multi-precision-85k", type=Path, default=MULTI_PRECISION_85K,
                        help="the same sweep placed on the 85k (default build/qor-mp-85k)")
    parser.add_argument("--command", default="make bench-qor",
                        help="the command named on the page as the one that made the sweep")
    parser.add_argument("--only", action="append", choices=[name for name, *_ in SECTIONS],
                        help="write only this section (repeatable; default: all)")
    args = parser.parse_args(argv)
    chosen = [(marker, write, getattr(args, option)) for name, marker, write, option in SECTIONS
              if not args.only or name in args.only]
    # Every section is made before the page is touched: a missing sweep leaves the page as it was.
    texts = [(marker, write(folder.resolve(), args.command)) for marker, write, folder in chosen]
    print(*(text for _, text in texts), sep="\n\n")
    for marker, text in texts:
        write_section(DOC, marker, text, "bench/bench_qor.py")
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
