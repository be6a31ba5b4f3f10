"""microscopiq sim: refusals (no simulation needed) and the --config forms."""

import json
import re

import pytest

from microscopiq.cli import main
from microscopiq.config import PRESETS
from microscopiq.quant.pack import save_layer
from microscopiq.config import resolve_config
from microscopiq.tb.sim_cli import config_name
from microscopiq.tb.stimulus import random_case


@pytest.fixture
def b2_layer(tmp_path):
    path = tmp_path / "b2.msq"
    save_layer(path, random_case(PRESETS["4x8-b2"], 8, 40, 2, seed=1).layer)
    return path


@pytest.mark.parametrize("argv, message", [
    (["--config", "8x8-b4"], r"^microscopiq: error: --layer '.*b2\.msq' has format FormatConfig\(wbits=2.*"
                             r"choose a --config with the same format$"),
    (["--config", "nope"], r"^microscopiq: error: --config must be a preset \(default, 4x8-b2, 8x8-b4, "
                           r"16x16-b4-shared\) or a JSON file, not 'nope'$"),
    (["--config", "4x8-b2", "--tokens", "0"], r"^microscopiq: error: --tokens must be >= 1, not 0$"),
])
def test_sim_refusals(b2_layer, capsys, argv, message):
    assert main(["sim", "--layer", str(b2_layer), "--sim", "icarus", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert re.match(message, err), err


def test_config_from_manifest_or_json(tmp_path):
    cfg = PRESETS["16x16-b4-shared"]
    (tmp_path / "manifest.json").write_text(json.dumps({"top": "x", "parameters": cfg.to_json()}))
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_json()))
    assert resolve_config(str(tmp_path / "manifest.json")) == cfg
    assert resolve_config(str(tmp_path / "cfg.json")) == cfg
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match=r"^--config file '.*bad\.json' does not hold an accelerator configuration"):
        resolve_config(str(tmp_path / "bad.json"))


def test_config_names():
    assert config_name(PRESETS["8x8-b4"]) == "8x8-b4"          # not its alias "default"
    assert config_name(PRESETS["4x8-b2"].replace(acc_bits=40)).startswith("cfg-")
