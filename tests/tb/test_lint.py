"""Verilator lint (-Wall) of the generated PE passes with only the named waivers, and a real
warning is reported."""

import pytest

from microscopiq.config import FormatConfig
from microscopiq.hdl.generate import generate_pe, read_manifest
from microscopiq.tb.lint import VERILATOR_WAIVERS, LintError, lint, verilator_warning_args


@pytest.mark.parametrize("abits, wbits", [(8, 4), (4, 2), (8, 8)])
def test_generated_pe_is_lint_clean(tmp_path, abits, wbits):
    manifest = generate_pe(FormatConfig(abits=abits, wbits=wbits), tmp_path)
    lint(read_manifest(tmp_path)[1][0], top=manifest["top"])


def test_waivers_are_named_and_explained():
    args = verilator_warning_args()
    assert args[0] == "-Wall"
    assert "-Wno-fatal" not in args and "-Wno-lint" not in args
    assert [a for a in args if a.startswith("-Wno-")] == [f"-Wno-{n}" for n in VERILATOR_WAIVERS]
    assert all(len(reason) > 40 for reason in VERILATOR_WAIVERS.values())


def test_warning_fails_with_text(tmp_path):
    source = tmp_path / "bad.v"
    # A named signal that is never read: UNUSEDSIGNAL must still fire despite the waivers.
    source.write_text("module bad(input wire [3:0] a, output wire y);\n"
                      "  wire [3:0] spare = a;\n  assign y = a[0];\nendmodule\n")
    with pytest.raises(LintError, match=r"(?s)^verilator lint of '.*bad\.v' failed:\n.*"
                                        r"%Warning-UNUSEDSIGNAL"):
        lint(source)
