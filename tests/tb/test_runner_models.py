"""microscopiq.tb.runner.with_primitive_models: the MULT18X18D model joins the sources of a design
that instantiates the primitive, and only of such a design."""

from microscopiq.hdl.dsp_mult import VERILOG_MODEL
from microscopiq.tb.runner import with_primitive_models


def test_model_added_only_where_instantiated(tmp_path):
    user = tmp_path / "user.v"
    user.write_text('module top;\n  MULT18X18D #(\n    .GSR("DISABLED")\n  ) dsp (\n  );\nendmodule\n')
    plain = tmp_path / "plain.v"
    plain.write_text("module plain;\n  // MULT18X18D in a comment is no instance\n  wire MULT18X18D_x;\nendmodule\n")
    bare = tmp_path / "bare.v"
    bare.write_text("module bare;\n  MULT18X18D dsp (.CLK0(1'b0));\nendmodule\n")
    assert with_primitive_models([user]) == [user, VERILOG_MODEL]
    assert with_primitive_models([bare, plain]) == [bare, plain, VERILOG_MODEL]
    assert with_primitive_models([plain]) == [plain]
    assert with_primitive_models([user, VERILOG_MODEL]) == [user, VERILOG_MODEL]  # defined: not twice
    assert VERILOG_MODEL.is_file()


def test_generated_dsp_build_sources_carry_the_model(tmp_path):
    """tb/sim_cli.generate_rtl (cocotb and the native harness): a DSP build's sources end with the
    model, a fabric build's have none."""
    from microscopiq.config import PRESETS
    from microscopiq.tb.sim_cli import generate_rtl
    cfg = PRESETS["4x8-b2"].replace(dsp="ecp5")
    manifest, sources = generate_rtl(cfg, tmp_path / "rtl")
    assert [path.name for path in sources] == ["accel.v", VERILOG_MODEL.name]
    assert sources[-1] == VERILOG_MODEL
