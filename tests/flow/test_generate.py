"""``microscopiq generate pe``: the files, the manifest, and bad input refused with exit 2 and
nothing written."""

import json
import re
import subprocess
import sys

from pathlib import Path

import pytest
from amaranth.hdl import Fragment

from microscopiq.cli import main
from microscopiq.flow.generate import pe_top_name, read_manifest, signature_ports
from microscopiq.config import FormatConfig
from microscopiq.hdl.pe import PE


def test_generate_pe_writes_verilog_manifest_and_filelist(tmp_path, capsys):
    out = tmp_path / "pe"
    assert main(["generate", "pe", "--abits", "8", "--wbits", "4", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["files.f", "manifest.json", "pe.v"]
    manifest, files = read_manifest(out)
    assert manifest["top"] == "msq_pe_a8_w4" == pe_top_name(FormatConfig(abits=8, wbits=4))
    assert files == [out.resolve() / "pe.v"]
    assert (out / "files.f").read_text() == "pe.v\n"
    assert "module msq_pe_a8_w4(" in (out / "pe.v").read_text()
    assert manifest["block"] == "pe"
    assert manifest["parameters"] == {"abits": 8, "wbits": 4}
    assert (manifest["latency_cycles"], manifest["throughput_per_cycle"]) == (1, 1)
    assert manifest["generator"]["name"] == "microscopiq" and manifest["generator"]["version"]
    assert manifest["clock"] == {"name": "clk", "edge": "rising"}
    assert manifest["reset"] == {"name": "rst", "active": "high", "kind": "synchronous"}
    ports = {p["name"]: (p["direction"], p["width"], p["signed"]) for p in manifest["ports"]}
    assert ports == {
        "clk": ("in", 1, False), "rst": ("in", 1, False), "act": ("in", 8, True),
        "en": ("in", 1, False), "load": ("in", 1, False), "load_code": ("in", 4, False),
        "load_role": ("in", 2, False), "swap": ("in", 1, False), "product": ("out", 12, True),
    }
    role_port = next(p for p in manifest["ports"] if p["name"] == "load_role")
    assert role_port["enum"] == {"INLIER": 0, "OUT_HI": 1, "OUT_LO": 2}
    assert capsys.readouterr().out.startswith(f"wrote {out / 'pe.v'} (module msq_pe_a8_w4, ")


def test_signature_ports_follow_parameters():
    pe = PE(FormatConfig(abits=4, wbits=3))
    ports = {p["name"]: p["width"] for p in signature_ports(pe)}
    Fragment.get(pe, None)  # elaborated: no "unused" warning
    assert ports == {"act": 4, "en": 1, "load": 1, "load_code": 3, "load_role": 2, "swap": 1,
                     "product": 7}


def test_regenerate_replaces_files(tmp_path):
    out = tmp_path / "pe"
    assert main(["generate", "pe", "--wbits", "2", "--out", str(out)]) == 0
    assert main(["generate", "pe", "--wbits", "3", "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["parameters"] == {"abits": 8, "wbits": 3}


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "plain-file"
    path.write_text("not a folder\n")
    return path


BAD = [
    (["--wbits", "1"], "OUT", r"^microscopiq: error: wbits must be one of 2, 3, 4, 8, not 1$"),
    (["--abits", "0"], "OUT", r"^microscopiq: error: abits must be one of 4, 8, not 0$"),
    (["--wbits", "5", "--abits", "8"], "OUT",
     r"^microscopiq: error: wbits must be one of 2, 3, 4, 8, not 5$"),
    ([], "/proc/microscopiq-x",
     r"^microscopiq: error: --out must be a folder that can be created and written, not "
     r"'/proc/microscopiq-x' \(.+\)$"),
    ([], "FILE/sub",
     r"^microscopiq: error: --out must be a folder that can be created and written, not "
     r"'.*/plain-file/sub' \(cannot write to '.*/plain-file/sub': '.*/plain-file' is not a "
     r"writable folder\)$"),
]


@pytest.mark.parametrize("args, out, message", BAD, ids=["wbits1", "abits0", "wbits5", "proc", "under-file"])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, a_file, capsys, args, out, message):
    out = {"OUT": str(tmp_path / "pe"), "FILE/sub": str(a_file / "sub")}.get(out, out)
    assert main(["generate", "pe", *args, "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.match(message, err.rstrip("\n")), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain-file"]  # nothing, not even temp dirs
    assert not Path(out).exists()


def test_non_integer_is_an_argparse_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "pe", "--abits", "eight", "--out", str(tmp_path / "pe")])
    assert exit_info.value.code == 2
    assert "argument --abits: invalid int value: 'eight'" in capsys.readouterr().err
    assert not (tmp_path / "pe").exists()


def test_subprocess_exit_code(tmp_path):
    out = tmp_path / "pe"
    cmd = [sys.executable, "-m", "microscopiq.cli", "generate", "pe", "--wbits", "1", "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr == "microscopiq: error: wbits must be one of 2, 3, 4, 8, not 1\n"
    assert not out.exists()


@pytest.mark.parametrize("argv, wanted", [
    ([], ["generate"]),
    (["generate"], ["pe", "BLOCK --help"]),
    (["generate", "pe"], ["--abits", "--wbits", "--out", "latency 1", "OUT_HI", "example:"]),
])
def test_help(capsys, argv, wanted):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in wanted:
        assert word in text
