"""``microscopiq quantize --weights``: files and summary written; bad input exits 2, nothing written."""

import json
import re

import numpy as np
import pytest
import torch

from microscopiq.cli import main
from microscopiq.quant.dequant import dequantize
from microscopiq.quant.pack import load_layer

SEED = 11


@pytest.fixture
def weights_npz(tmp_path):
    print(f"seed={SEED}")
    rng = np.random.default_rng(SEED)
    path = tmp_path / "layer.npz"
    np.savez(path, weight=rng.standard_normal((24, 96)), activations=rng.standard_normal((200, 96)))
    return path


@pytest.mark.parametrize("method, wbits", [("gptq", 4), ("decoupleq", 2), ("rtn", 8), ("microscopiq", 3),
                                           ("mxint", 2)])
def test_weights_file_writes_layer_and_summary(tmp_path, weights_npz, method, wbits, capsys):
    out = tmp_path / "out"
    assert main(["quantize", "--weights", str(weights_npz), "--method", method, "--wbits", str(wbits),
                 "--group", "32", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "weight.msq"]
    summary = json.loads((out / "summary.json").read_text())
    layer = load_layer(out / "weight.msq")
    assert (layer.n, layer.k, layer.fmt.wbits, layer.fmt.group) == (24, 96, wbits, 32)
    entry = summary["layers"][0]
    assert entry["shape"] == [24, 96] and entry["tokens"] == 200 and entry["file"] == "weight.msq"
    assert summary["method"] == method and summary["totals"]["layers"] == 1
    assert summary["totals"]["weights"] == 24 * 96
    x = np.load(weights_npz)["activations"]
    w = np.load(weights_npz)["weight"]
    expected = np.linalg.norm(x @ (w - dequantize(layer)).T) / np.linalg.norm(x @ w.T)
    assert entry["rel_error"] == pytest.approx(expected, rel=1e-6)   # float32 Gram matrices
    assert 0 < entry["rel_error"] < 0.7
    assert f"{method} b={wbits}: 1 layer(s)" in capsys.readouterr().out


def test_pt_tensor_without_activations(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(torch.linspace(-1, 1, 64).reshape(4, 16), path)
    out = tmp_path / "out"
    assert main(["quantize", "--weights", str(path), "--method", "gptq", "--wbits", "8", "--group", "16",
                 "--out", str(out)]) == 0
    layer = load_layer(out / "weight.msq")
    np.testing.assert_allclose(dequantize(layer), np.linspace(-1, 1, 64).reshape(4, 16), atol=1e-2)


def _bad_files(tmp_path):
    rng = np.random.default_rng(SEED)
    files = {}
    files["nan"] = tmp_path / "nan.npz"
    w = rng.standard_normal((4, 8))
    w[2, 5] = np.inf
    np.savez(files["nan"], weight=w)
    files["empty"] = tmp_path / "empty.npz"
    np.savez(files["empty"], weight=np.zeros((0, 8)))
    files["shape"] = tmp_path / "shape.npz"
    np.savez(files["shape"], weight=np.ones((4, 8)), activations=np.ones((10, 7)))
    files["nokey"] = tmp_path / "nokey.npz"
    np.savez(files["nokey"], w=np.ones((4, 8)))
    files["ext"] = tmp_path / "w.txt"
    files["ext"].write_text("1 2 3")
    files["good"] = tmp_path / "good.npz"
    np.savez(files["good"], weight=np.ones((4, 8)))
    return files


@pytest.mark.parametrize("case, extra, message", [
    ("nan", [], r"weights file '.*nan\.npz': weight has a NaN or Inf at \(2, 5\): inf"),
    ("empty", [], r"weights file '.*empty\.npz': weight is empty \(shape \(0, 8\)\)"),
    ("shape", [], r"weights file '.*shape\.npz': 'activations' must be M×K with M >= 1 and K = 8 \(the weight's in_features\), got shape \(10, 7\)"),
    ("nokey", [], r"weights file '.*nokey\.npz' has no 'weight' entry \(found: w\)"),
    ("ext", [], r"weights file '.*w\.txt' must end in \.npz or \.pt"),
    ("missing", [], r"weights file '.*missing\.npz' does not exist"),
    ("good", ["--wbits", "5"], r"wbits must be one of 2, 3, 4, 8, not 5"),
    ("good", ["--group", "96"], r"group must be a power of two >= 2, not 96"),
    ("good", ["--ublock", "6"], r"ublock must be a power of two >= 2, not 6"),
    ("good", ["--xbits", "9"], r"xbits must be between 1 and 6, not 9"),
    ("good", ["--wbits", "8", "--method", "mxint"], r"method mxint needs wbits 2, 3 or 4 \(the MSQ format\), not 8"),
    ("good", ["--refine-steps", "-1"], r"--refine-steps must be an integer >= 0, not -1"),
    ("good", ["--refine-steps", "5", "--refine-lr", "0"], r"--refine-lr must be a finite number > 0, not 0\.0"),
    ("good", ["--refine-steps", "5"], r"--refine-steps needs --method decoupleq, not gptq"),
    ("good", ["--refine-steps", "5", "--method", "decoupleq"],
     r"--refine-steps needs --model \(it refines transformer blocks\), not --weights"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, case, extra, message):
    files = _bad_files(tmp_path)
    path = files.get(case, tmp_path / "missing.npz")
    out = tmp_path / "out"
    args = {"--wbits": "4", "--method": "gptq"}
    for flag, value in zip(extra[::2], extra[1::2]):
        args[flag] = value
    argv = ["quantize", "--weights", str(path), "--out", str(out)] + [x for kv in args.items() for x in kv]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.fullmatch(r"microscopiq: error: " + message + r"\n", err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "something was written"


def test_model_refine_summary(tmp_path, monkeypatch, capsys):
    """``--model minilm --refine-steps``, cut down to one layer of block 1 (the layer filter is patched
    in): the refined layer is the packed file and ``summary.json`` lists the block's errors."""
    from microscopiq.quant import cli as quant_cli

    target = "0.model.encoder.layer.1.attention.output.dense"
    real = quant_cli.quantize_model

    def one_layer(*args, **kwargs):
        return real(*args, layer_filter=lambda name: name == target, progress=False, **kwargs)

    monkeypatch.setattr(quant_cli, "quantize_model", one_layer)
    out = tmp_path / "out"
    assert main(["quantize", "--model", "minilm", "--method", "decoupleq", "--wbits", "2", "--calib-texts", "4",
                 "--refine-steps", "3", "--refine-lr", "0.02", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["encoder.layer.1.attention.output.dense.msq", "summary.json"]
    refine = json.loads((out / "summary.json").read_text())["refine"]
    assert (refine["steps"], refine["lr"], len(refine["blocks"])) == (3, 0.02, 1)
    block = refine["blocks"][0]
    assert block["block"] == "encoder.layer.1" and block["steps"] == 3 and 0 <= block["best_step"] <= 3
    assert 0 < block["rel_error_after"] <= block["rel_error_before"] < 1
    assert refine["seconds"] == block["seconds"] > 0
    layer = load_layer(out / "encoder.layer.1.attention.output.dense.msq")
    assert (layer.n, layer.k, layer.fmt.wbits) == (384, 384, 2)


def _file_bits(out, files) -> int:
    return sum(8 * (out / f).stat().st_size for f in files)


@pytest.mark.parametrize("budget, b", [(3.0, 2), (5.0, 4)])
def test_mixed_weights_file(tmp_path, weights_npz, capsys, budget, b):
    """``--wbits 2,4 --budget``: the one layer gets the widest b whose real EBW fits; the plan's bits are
    the packed file's."""
    out = tmp_path / "out"
    assert main(["quantize", "--weights", str(weights_npz), "--method", "microscopiq", "--wbits", "2,4",
                 "--budget", str(budget), "--group", "32", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["plan.json", "plan.md", "summary.json", "weight.msq"]
    plan = json.loads((out / "plan.json").read_text())
    entry = plan["layers"][0]
    assert (entry["layer"], entry["b"], entry["weights"], entry["file"]) == ("weight", b, 24 * 96, "weight.msq")
    assert load_layer(out / "weight.msq").fmt.wbits == b
    assert entry["bits"] == plan["totals"]["bits"] == _file_bits(out, ["weight.msq"])
    assert plan["totals"]["bits"] <= plan["totals"]["budget_bits"] == int(budget * 24 * 96)
    assert [o["b"] for o in entry["options"]] == [2, 4]
    assert entry["options"][0]["error"] > entry["options"][1]["error"]
    assert [o["loss"] for o in entry["options"]] == [o["error"] ** 2 for o in entry["options"]]
    assert plan["objective"] == "sum over layers of the squared relative output error"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["format"]["wbits"] == [2, 4] and summary["layers"][0]["rel_error"] == entry["error"]
    assert f"microscopiq b=2,4 budget {budget:g}: 1 layer(s)" in capsys.readouterr().out


def test_mixed_budget_below_the_measured_ebw(tmp_path, weights_npz, capsys):
    """A budget above b = 2 but below the b = 2 file's real EBW (2.72 with its metadata and scales) is
    refused once measured: one line, exit 2, nothing written."""
    out = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["quantize", "--weights", str(weights_npz), "--method", "microscopiq", "--wbits", "2,4",
                 "--budget", "2.5", "--group", "32", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"microscopiq: error: --budget 2.5 is below 2\.7188 bits per weight, the mean EBW with "
                        r"every layer at its narrowest b \(2\): no plan fits\n", err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "something was written"


def test_mixed_model_plan(tmp_path, monkeypatch, capsys):
    """``--model minilm --wbits 2,4 --budget 3.5``, cut down to two 384×384 layers (the layer filter is
    patched in): each layer is measured at both b and exactly one fits at b = 4 (one layer at about 2.4
    bits per weight and one at 4.2 average 3.3; both at 4.2 exceed 3.5); the files hold the planned b and
    their real bits are the plan's, within floor(3.5 · weights)."""
    from microscopiq.quant import cli as quant_cli
    from microscopiq.quant.mixed import LayerOptions, Option, allocate

    targets = {"0.model.encoder.layer.0.attention.output.dense", "0.model.encoder.layer.1.attention.output.dense"}
    real = quant_cli.quantize_model

    def two_layers(*args, **kwargs):
        return real(*args, layer_filter=lambda name: name in targets, progress=False, **kwargs)

    monkeypatch.setattr(quant_cli, "quantize_model", two_layers)
    out = tmp_path / "out"
    assert main(["quantize", "--model", "minilm", "--method", "microscopiq", "--wbits", "2,4", "--budget", "3.5",
                 "--calib-texts", "4", "--out", str(out)]) == 0
    files = [f"encoder.layer.{i}.attention.output.dense.msq" for i in (0, 1)]
    assert sorted(p.name for p in out.iterdir()) == sorted(files + ["plan.json", "plan.md", "summary.json"])
    plan = json.loads((out / "plan.json").read_text())
    assert [e["layer"] for e in plan["layers"]] == sorted(targets)
    assert sorted(e["b"] for e in plan["layers"]) == [2, 4]
    for entry in plan["layers"]:
        assert load_layer(out / entry["file"]).fmt.wbits == entry["b"]
        assert entry["bits"] == _file_bits(out, [entry["file"]])
    assert plan["totals"]["bits"] == _file_bits(out, files) <= plan["totals"]["budget_bits"] == int(3.5 * 2 * 384 * 384)
    options = [LayerOptions(e["layer"], e["weights"], tuple(Option(o["b"], o["bits"], o["error"], o["loss"])
                                                   for o in e["options"]))
               for e in plan["layers"]]
    assert [e["b"] for e in plan["layers"]] == list(allocate(options, 3.5).widths)
    table = (out / "plan.md").read_text().splitlines()
    assert len(table) == 8 and table[6].startswith("| encoder.layer.0.attention.output.dense | 147456 | ")
    assert "(1 at b=2, 1 at b=4)" in capsys.readouterr().out
