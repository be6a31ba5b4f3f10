"""The console command without the heavy extras: ``--help``, ``--version``, ``generate`` and
``synth`` run with cocotb and torch unimportable (as after ``pip install microscopiq`` without the
``[sim]`` and ``[models]`` extras), and ``python -m microscopiq`` is the same command."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: A sitecustomize that makes the heavy packages unimportable, as if they were not installed.
BLOCKER = '''
import sys
BLOCKED = {"cocotb", "cocotb_tools", "cocotbext", "torch", "transformers"}
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, Blocker())
'''


@pytest.fixture
def without_extras(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)

    def run(*argv, code=None):
        command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "microscopiq", *argv]
        # The interpreter's folder first on PATH (YoWASP's commands), the user's Yosys cache kept.
        env = {"PYTHONPATH": str(site), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
               **{name: os.environ[name] for name in ("HOME", "YOWASP_CACHE_DIR") if name in os.environ}}
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    return run


def test_blocker_blocks(without_extras):
    result = without_extras(code="import torch")
    assert result.returncode == 1 and "blocked by the test" in result.stderr


def test_help_and_version_need_no_extras(without_extras):
    from microscopiq import __version__
    result = without_extras("--help")
    assert result.returncode == 0, result.stderr
    for command in ("generate", "sim", "synth", "quantize", "eval"):
        assert f"    {command} " in result.stdout
    result = without_extras("--version")
    assert (result.returncode, result.stdout) == (0, f"microscopiq {__version__}\n"), result.stderr
    for command in ("generate", "synth"):
        result = without_extras(command, "--help")
        assert result.returncode == 0 and result.stdout.startswith(f"usage: microscopiq {command} "), \
            result.stderr


def test_generate_and_synth_need_no_extras(without_extras, tmp_path):
    result = without_extras("generate", "pe", "--abits", "8", "--wbits", "4", "--out", "pe")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pe" / "pe.v").read_text().count("module msq_pe_a8_w4(") == 1
    result = without_extras("generate", "accel", "--rows", "2", "--cols", "8", "--wbits", "2",
                            "--max-k", "256", "--max-n", "64", "--max-tokens", "8", "--out", "accel")
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in (tmp_path / "accel").iterdir()) == [
        "accel.core", "accel.v", "files.f", "manifest.json", "smoke_tb.v", "waivers.vlt"]
    # Yosys runs (the PE does not fit the smallest iCE40: exit 1 with the reason, as without the block).
    result = without_extras("synth", "--design", "pe", "--wbits", "2", "--family", "ice40",
                            "--device", "lp384", "--out", "fit")
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1].startswith("microscopiq: error: design does not fit ice40 lp384: it needs ")


def test_a_command_needing_an_extra_names_the_extra(without_extras):
    result = without_extras("sim", "--help")
    assert (result.returncode, result.stderr) == (
        2, "microscopiq: error: 'sim' needs the [sim] extra (pip install 'microscopiq[sim]'): "
           "No module named 'cocotb' (blocked by the test)\n")
