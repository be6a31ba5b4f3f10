"""FPGA quality of results of the accelerator (``make bench-qor``).

The sweep itself is ``microscopiq explore`` (flow/explore.py, docs/explore.md), which
``make bench-qor`` runs first with the sweep of docs/performance.md (arrays 4×8, 8×8, 16×16, b ∈ {4,
2}, ReCoN per row, shared by 2 and by 4 rows, none; ``QOR_ARGS`` adds or overrides options, e.g.
``--place`` or ``--arrays 4x8``). This script only turns the sweep's ``pareto.json`` into the page:
the table with the outlier-support share of each point against the ``none`` point of the same array
and b, and the sweep's plot.

The page ``docs/performance.md`` and its PNG (``docs/img/``) are rewritten between the markers.

    python bench/bench_qor.py [--explore build/qor] [--command TEXT]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import sys
from pathlib import Path

from microscopiq.outputs import atomic_file

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "qor"
DOC = ROOT / "docs" / "performance.md"
IMG = ROOT / "docs" / "img"


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


def write_page(qor: str) -> None:
    """Rewrite the QoR section of docs/performance.md (between its markers)."""
    write_section(DOC, "QOR", qor, "bench/bench_qor.py")


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
    parser.add_argument("--command", default="make bench-qor",
                        help="the command named on the page as the one that made the sweep")
    args = parser.parse_args(argv)
    qor = qor_section(args.explore.resolve(), args.command)
    print(qor)
    write_page(qor)
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
