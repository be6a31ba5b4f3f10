"""microscopiq sim: refusals (no simulation needed) and the --config forms."""

import json
import re

import numpy as np
import pytest

from microscopiq.cli import main
from microscopiq.config import PRESETS, ConfigError
from microscopiq.quant.pack import save_layer
from microscopiq.config import resolve_config
from microscopiq.tb.sim_cli import config_name
from microscopiq.tb.stimulus import half_uniform_case, random_case
from microscopiq.validate import check_sim_layer


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
    assert main(["sim", "--layer", str(b2_layer), "--harness", "cocotb", "--sim", "icarus", *argv]) == 2
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


@pytest.mark.parametrize("make, message", [
    (lambda path: np.save(path, np.zeros((3, 39))),
     r"^microscopiq: error: --activations must hold a numeric \(M, k=40\) array, not float64 \(3, 39\)$"),
    (lambda path: np.save(path, np.full((2, 40), np.nan)),
     r"^microscopiq: error: --activations '.*x\.npy': activations contain NaN or Inf at "),
    (lambda path: path.write_text("not an array"),
     r"^microscopiq: error: --activations '.*x\.npy' is not a readable \.npy array"),
])
def test_sim_activation_refusals(b2_layer, tmp_path, capsys, make, message):
    make(tmp_path / "x.npy")
    argv = ["sim", "--layer", str(b2_layer), "--config", "4x8-b2", "--activations", str(tmp_path / "x.npy")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert re.match(message, err), err


def test_real_activations_are_quantized_per_token(b2_layer):
    """--activations: SPEC §1 per-token quantization of the file's rows (the first --tokens)."""
    from microscopiq.quant.golden import quantize_activations
    from microscopiq.quant.pack import load_layer
    from microscopiq.tb.sim_cli import layer_activations
    cfg = PRESETS["4x8-b2"]
    layer = load_layer(b2_layer)
    values = np.random.default_rng(2).normal(size=(5, 40)) * np.arange(1, 6)[:, None]
    path = b2_layer.with_name("x.npy")
    np.save(path, values)
    x, source = layer_activations(layer, cfg, 3, 1, path)
    assert np.array_equal(x, quantize_activations(values[:3], cfg.fmt)[0])
    assert np.abs(x).max(axis=1).tolist() == [cfg.fmt.amax] * 3
    assert source == "m=3 from x.npy"


@pytest.mark.xdist_group("accel-8x8-b4-native")
def test_sim_native_runs_a_layer_with_real_activations(tmp_path, capsys):
    save_layer(tmp_path / "b4.msq", random_case(PRESETS["8x8-b4"], 8, 40, 2, seed=1).layer)
    np.save(tmp_path / "x.npy", np.random.default_rng(4).normal(size=(6, 40)))
    assert main(["sim", "--layer", str(tmp_path / "b4.msq"), "--activations", str(tmp_path / "x.npy")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\(native Verilator harness\)\ncycles: (\d+) \(predicted \1\)", out), out
    assert "results checked: 96, mismatches: 0" in out   # y and overflow of 6 tokens x 8 outputs


@pytest.mark.xdist_group("accel-4x8-b2-native-icarus")
def test_sim_native_on_icarus(b2_layer, capsys):
    """``--sim icarus`` runs the native harness on Icarus (tb/native/harness.v)."""
    assert main(["sim", "--layer", str(b2_layer), "--config", "4x8-b2", "--sim", "icarus", "--tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\(native Icarus harness\)\ncycles: (\d+) \(predicted \1\)", out), out
    assert re.search(r"results checked: \d+, mismatches: 0", out), out


def test_sim_layer_formats_of_a_multi_precision_config(b2_layer, tmp_path):
    """A --multi-precision b = 4 accelerator takes a uniform layer and a MicroScopiQ layer at b = 2;
    without ReCoN the MicroScopiQ one is refused, naming the formats."""
    cfg = PRESETS["8x8-b4"].replace(multi_precision=True)
    uniform = tmp_path / "w2.msq"
    save_layer(uniform, half_uniform_case(cfg, 8, 40, 1, seed=2).layer)
    assert check_sim_layer(uniform, cfg, 4, 1).fmt.wbits == 2
    assert check_sim_layer(b2_layer, cfg, 4, 1).fmt.wbits == 2
    with pytest.raises(ConfigError, match=r"^--layer '.*b2\.msq' has format FormatConfig\(wbits=2.*, the accelerator "
                                          r"FormatConfig\(wbits=4.*choose a --config with the same format$"):
        check_sim_layer(b2_layer, cfg.replace(recon_share=0), 4, 1)
