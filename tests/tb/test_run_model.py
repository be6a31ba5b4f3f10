"""microscopiq run: the accelerator's linear arithmetic (scale-back) and the command's refusals.

The whole-model run takes minutes (docs/verification.md has its measured time); here an
``nn.Linear`` replaced by the golden model's integers, scaled back, must equal the float linear
layer of the dequantized weights on the quantized activations.
"""

import re

import numpy as np
import pytest
import torch

from microscopiq.cli import main
from microscopiq.config import PRESETS
from microscopiq.quant.dequant import dequantize
from microscopiq.quant.golden import quantize_activations
from microscopiq.quant.models import quantize_matrix
from microscopiq.tb.run_model import _AcceleratedLinears, _GoldenBackend

CFG = PRESETS["8x8-b4"]


@pytest.mark.parametrize("method", ["microscopiq", "rtn"])
def test_linear_scaled_back_equals_float_on_dequantized_weights(method):
    rng = np.random.default_rng(3)
    model = torch.nn.Sequential(torch.nn.Linear(200, 24))
    weight = model[0].weight.detach().double().numpy()
    layer = quantize_matrix(method, weight, None, CFG.fmt)
    inputs = torch.as_tensor(rng.normal(size=(2, 5, 200)), dtype=torch.float32)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    backend = _GoldenBackend(CFG)
    linears = _AcceleratedLinears(model, {"0": layer}, CFG, backend)
    linears.mask = mask
    with torch.no_grad():
        out = model(inputs).double().numpy()
    linears.close()
    real = mask.reshape(-1).bool().numpy()
    x, s_x = quantize_activations(inputs.reshape(-1, 200).double().numpy()[real], CFG.fmt)
    expected = (s_x[:, None] * x) @ dequantize(layer).T + model[0].bias.detach().double().numpy()
    got = out.reshape(-1, 24)
    assert backend.tokens == {"0": 7}
    np.testing.assert_allclose(got[real], expected, rtol=1e-5, atol=1e-5)
    assert not got[~real].any()      # padding tokens: zeros, never looked at
    assert model[0].forward.__self__ is model[0]   # close() put the original forward back


@pytest.mark.parametrize("argv, message", [
    (["--texts", "0"], r"^microscopiq: error: --texts must be >= 1, not 0$"),
    (["--max-seq-length", "1"], r"^microscopiq: error: --max-seq-length must be >= 2, not 1$"),
    (["--config", "nope"], r"^microscopiq: error: --config must be a preset .* or a JSON file, not 'nope'$"),
])
def test_run_refusals(tmp_path, capsys, argv, message):
    assert main(["run", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert re.match(message, err), err
    assert not (tmp_path / "out").exists()
