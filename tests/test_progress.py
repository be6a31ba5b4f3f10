"""microscopiq.progress: stage lines with the elapsed time, and the stages ``microscopiq sim`` passes
through (generate, build or reuse the model, run) as :func:`~microscopiq.tb.runner.run_cocotb`
reports them."""

import io
import re

import pytest

from microscopiq.config import FormatConfig
from microscopiq.flow.generate import generate_pe, read_manifest
from microscopiq.progress import Stages
from microscopiq.tb.runner import run_cocotb


def test_stage_line_format():
    out = io.StringIO()
    stages = Stages("microscopiq sim", out)
    stages("building")
    assert re.fullmatch(r"microscopiq sim: \[ {0,5}\d+\.\d s\] building\n", out.getvalue()), out.getvalue()


@pytest.mark.cocotb
def test_run_cocotb_reports_its_stages(tmp_path):
    rtl = tmp_path / "rtl"
    manifest = generate_pe(FormatConfig(abits=4, wbits=2), rtl)
    lines = []
    run = dict(sim="icarus", sources=read_manifest(rtl)[1], toplevel=manifest["top"],
               test_module="microscopiq.tb.test_pe", build_dir=tmp_path / "icarus",
               params={"fmt": {"abits": 4, "wbits": 2}, "seed": 1, "vectors": 50}, progress=lines.append)
    run_cocotb(**run)
    run_cocotb(**run)
    build = tmp_path / "icarus"
    started = f"building the icarus model ({build}; reused if the Verilog is unchanged)"
    assert lines == [started, "built the icarus model; running microscopiq.tb.test_pe",
                     started, "reused the icarus model; running microscopiq.tb.test_pe"]
