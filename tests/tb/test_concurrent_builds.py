"""Two processes building and running the same configuration into the same Verilator folder at once
(two `microscopiq sim`, or a sim beside `make test`) both succeed: the build lock
(microscopiq.buildlock, held by microscopiq.tb.runner.run_cocotb) makes the second wait instead of
reading the first one's half-written precompiled header."""

import json
import subprocess
import sys

import pytest

from microscopiq.config import FormatConfig
from microscopiq.flow.generate import generate_pe, read_manifest

FMT = FormatConfig(abits=4, wbits=2)
#: One process: build (cached) and run the PE regression in the folder argv[2] from argv[1]'s RTL.
RUN = """
import json, sys
from microscopiq.flow.generate import read_manifest
from microscopiq.tb.runner import run_cocotb
manifest, sources = read_manifest(sys.argv[1])
result = run_cocotb(sim="verilator", sources=sources, toplevel=manifest["top"],
                    test_module="microscopiq.tb.test_pe", build_dir=sys.argv[2],
                    params={"fmt": {"abits": 4, "wbits": 2}, "seed": 1, "vectors": 200})
print(json.dumps({"passed": list(result.passed), "rebuilt": result.rebuilt}))
"""


@pytest.mark.cocotb
def test_two_builds_of_one_configuration_at_once(tmp_path):
    rtl = tmp_path / "rtl"
    generate_pe(FMT, rtl)
    build = tmp_path / "verilator"
    runs = [subprocess.Popen([sys.executable, "-c", RUN, str(rtl), str(build)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [run.communicate(timeout=900) for run in runs]
    for run, (out, err) in zip(runs, outcomes):
        assert run.returncode == 0, err[-3000:]
    reports = sorted((json.loads(out.splitlines()[-1]) for out, _ in outcomes),
                     key=lambda report: report["rebuilt"])
    # One built the model while the other waited, then found it built (the cache key matched).
    assert [report["rebuilt"] for report in reports] == [False, True]
    assert reports[0]["passed"] == reports[1]["passed"] and reports[0]["passed"]
    assert read_manifest(rtl)[0]["top"] == "msq_pe_a4_w2"
