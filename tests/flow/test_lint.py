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


def test_dsp_instance_is_lint_clean_with_its_model(tmp_path):
    """A folder whose manifest says ``dsp`` is linted with hdl/models/MULT18X18D.v (the model
    itself passes -Wall); without the model the instance has no module."""
    import json

    from amaranth.back import verilog

    from microscopiq.flow.lint import lint_generated
    from microscopiq.hdl.dsp_mult import DspMult

    dut = DspMult(8, 5)
    text = verilog.convert(dut, name="top", ports=[dut.a, dut.b, dut.a_en, dut.b_en, dut.p_en, dut.p])
    (tmp_path / "top.v").write_text(text)
    manifest = {"top": "top", "files": ["top.v"], "parameters": {"dsp": "ecp5"}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert lint_generated(tmp_path) == "top"
    with pytest.raises(LintError, match=r"Cannot find .*MULT18X18D"):
        lint(tmp_path / "top.v", top="top")
