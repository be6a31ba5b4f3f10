"""microscopiq.hdl.soc: whole-byte tdata and aclk/aresetn around the accelerator, checked by the
end-to-end cocotb regression (every result integer against the golden model, a reset in the middle
of a layer through aresetn, layers back to back) on the smallest configuration."""

import json

import pytest

from amaranth import unsigned

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.flow.accel import generate_accel
from microscopiq.hdl.soc import SocAccelerator, SocPorts
from microscopiq.hdl.layouts import StreamLayouts
from microscopiq.tb.accel_tb import assert_every_integer_checked
from microscopiq.tb.runner import run_cocotb
from microscopiq.tb.sim_cli import BUILD_ARGS, TEST_MODULE
from microscopiq.tb.test_accel import cross

#: The smallest accelerator the regression's layers fit (one K-group of 128, 16 outputs, 5 tokens).
SMALL = AccelConfig(fmt=FormatConfig(wbits=2), rows=2, cols=8, max_k=256, max_n=64, max_tokens=8)
SOC = SocPorts(tdata_bytes=True, reset_style="aresetn")


def test_ports_are_padded_to_bytes_with_aclk_aresetn():
    top = SocAccelerator(SMALL, SOC)
    top._MustUse__silence = True  # only its signature is looked at
    widths = {name: member.shape for name, member in top.signature.members.items()}
    sf = StreamLayouts(SMALL)
    assert (sf.weights_width, sf.act_width, sf.result_width) == (32, 16, 291)
    assert widths["s_axis_weights_tdata"] == 32 and widths["s_axis_act_tdata"] == 16
    assert widths["m_axis_result_tdata"] == 296 and widths["fault"] == unsigned(3)
    assert widths["aclk"] == widths["aresetn"] == 1 and "clk" not in widths and "rst" not in widths
    assert SocPorts(tdata_bytes=True).tdata_width(121) == 128 and SocPorts().tdata_width(121) == 121


@pytest.mark.parametrize("kwargs, error, message", [
    ({"reset_style": "arst"}, ValueError, "reset_style must be one of rst, aresetn, not 'arst'"),
    ({"tdata_bytes": 1}, TypeError, "tdata_bytes must be a bool, not 1"),
])
def test_soc_ports_refusals(kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        SocPorts(**kwargs)


@pytest.mark.cocotb
@pytest.mark.xdist_group("soc-icarus")
def test_soc_wrapper_regression(tmp_path):
    rtl = tmp_path / "rtl"
    manifest = generate_accel(SMALL, rtl, ports=SOC)
    assert manifest["soc_ports"] == {"tdata_bytes": True, "reset_style": "aresetn"}
    assert manifest["reset"] == {"name": "aresetn", "active": "low", "kind": "synchronous"}
    result = manifest["streams"]["m_axis_result"]
    assert (result["width"], result["tdata_width"], result["used_bits"]) == (291, 296, {"offset": 0, "width": 291})
    stats = tmp_path / "stats.jsonl"
    params = {"config": SMALL.to_json(), "soc_ports": manifest["soc_ports"], "seed": 1, "stats": str(stats),
              "cases": cross([], ["random"]), "shape": {"n": 16, "k": 128, "m": 5}}
    run_cocotb(sim="icarus", sources=[rtl / "accel.v"], toplevel=manifest["top"], test_module=TEST_MODULE,
               build_dir=tmp_path / "icarus", params=params, seed=1, build_args=BUILD_ARGS)
    records = [json.loads(line) for line in stats.read_text().splitlines()]
    # The random layer, the rerun after a reset (aresetn low) in the middle of a layer, four back to
    # back, the five good layers after malformed weight streams.
    assert len(records) == 11
    assert_every_integer_checked(records)
