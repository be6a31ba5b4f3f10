"""Numbers the documentation quotes about the generated RTL equal the generator's manifest: the
width and latency table of docs/hardware.md (every preset, every column) and the port widths in
docs/performance.md; the cycle table of docs/hardware.md ("Cycle model") equals the cycle model's
rows (bench/bench_cycle_cases.py). A change of the hardware that moves a number fails here, naming the page, the
row, the column, the documented and the generated value."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from microscopiq.config import PRESETS
from microscopiq.flow.accel import accel_manifest

DOCS = Path(__file__).resolve().parent.parent / "docs"
CYCLE_CASES = DOCS.parent / "bench" / "bench_cycle_cases.py"
#: Columns of the docs/hardware.md width table after the preset, and how the manifest gives each.
COLUMNS = {
    "WW": lambda m: m["streams"]["s_axis_weights"]["width"],
    "R·a": lambda m: m["streams"]["s_axis_act"]["width"],
    "RW": lambda m: m["streams"]["m_axis_result"]["width"],
    "pass registers": lambda m: max(f["offset"] + f["width"]
                                    for f in m["streams"]["s_axis_weights"]["decoded"]["header"].values()),
    "ReCoN config / row": lambda m: m["streams"]["s_axis_weights"]["decoded"]["row"]["config"]["width"],
    "P": lambda m: m["streams"]["m_axis_result"]["raw"]["p"]["width"],
    "S": lambda m: m["streams"]["m_axis_result"]["raw"]["s"]["width"],
    "latency act→result": lambda m: m["latency_cycles"]["act_to_result"],
}


def _width_table() -> list[tuple[list[str], list[str]]]:
    """(preset names, cells) of each row of the table headed ``| preset | `WW` | ...``."""
    lines = (DOCS / "hardware.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| preset | `WW` |"))
    header = [cell.strip().strip("`") for cell in lines[start].strip("|").split("|")]
    assert header[1:] == list(COLUMNS), header
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((re.findall(r"`([^`]+)`", cells[0]), cells[1:]))
    return rows


def test_every_preset_is_in_the_table():
    assert sorted(name for names, _ in _width_table() for name in names) == sorted(PRESETS)


@pytest.mark.parametrize("names, cells", _width_table(), ids=lambda value: str(value))
def test_hardware_width_table_matches_the_manifest(names, cells):
    for name in names:
        manifest = accel_manifest(PRESETS[name])
        for (column, generated), cell in zip(COLUMNS.items(), cells):
            documented = int(re.match(r"\d+", cell).group())  # "30 + (T−1)": the fixed part
            assert documented == generated(manifest), (
                f"docs/hardware.md, preset {name}, column {column}: documented {documented}, "
                f"the manifest says {generated(manifest)}")


def test_performance_port_widths_match_the_manifest():
    text = (DOCS / "performance.md").read_text()
    found = re.search(r"8×8, b=4: (\d+) \+ (\d+) \+ (\d+) data bits", text)
    assert found, "docs/performance.md no longer quotes the 8×8 b=4 port widths"
    streams = accel_manifest(PRESETS["8x8-b4"])["streams"]
    generated = [streams[name]["width"] for name in ("s_axis_weights", "s_axis_act", "m_axis_result")]
    assert [int(value) for value in found.groups()] == generated, (
        f"docs/performance.md: documented {found.group(0)!r}, the manifest says {generated}")


def _documented_rows(page: str, header: str) -> list[str]:
    """The rows of the Markdown table of ``page`` whose header line starts with ``header``."""
    lines = (DOCS / page).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line.strip())
    return rows


def test_hardware_cycle_table_matches_the_cycle_model():
    spec = importlib.util.spec_from_file_location("bench_cycle_cases", CYCLE_CASES)
    cases = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, cases)    # (its dataclass looks its module up there)
    spec.loader.exec_module(cases)
    documented = _documented_rows("hardware.md", "| config | layer K×N, M |")
    generated = cases.rows()
    assert len(documented) == len(generated), (
        f"docs/hardware.md's cycle table has {len(documented)} rows, bench/bench_cycle_cases.py {len(generated)}")
    for index, (doc_row, model_row) in enumerate(zip(documented, generated)):
        assert doc_row == model_row, (
            f"docs/hardware.md cycle table row {index}: documented {doc_row!r}, "
            f"the cycle model gives {model_row!r} (python bench/bench_cycle_cases.py)")
