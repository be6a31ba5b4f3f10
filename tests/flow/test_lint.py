"""Verilator lint (-Wall) of the generated PE passes with only the named waivers, and a real
warning is reported."""

import pytest

from microscopiq.config import FormatConfig
from microscopiq.flow.generate import generate_pe, read_manifest
from microscopiq.flow.lint import (
    VERILATOR_MESSAGE_WAIVERS, VERILATOR_WAIVERS, LintError, lint, verilator_warning_args,
)


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
    assert all(len(reason) > 40 for _, _, reason in VERILATOR_MESSAGE_WAIVERS)
    control = args[-1]
    assert control.endswith(".vlt")
    with open(control) as handle:
        assert handle.read().count("lint_off -rule") == len(VERILATOR_MESSAGE_WAIVERS)


def test_message_waivers_are_narrow(tmp_path):
    """`!vector` and `[-1:0]` (Amaranth idioms) pass; a real truncation still fails."""
    source = tmp_path / "idioms.v"
    source.write_text("module idioms(input wire [3:0] a, output wire z);\n"
                      "  wire [-1:0] empty;\n  assign z = !a;\nendmodule\n")
    lint(source)
    source.write_text("module idioms(input wire [3:0] a, output wire [1:0] y);\n"
                      "  assign y = a;\nendmodule\n")
    with pytest.raises(LintError, match=r"(?s)^verilator lint of '.*idioms\.v' failed:\n.*"
                                        r"%Warning-WIDTHTRUNC: .*Operator ASSIGNW expects 2 bits"):
        lint(source)
