"""MiniLM offline loading, the docstring text split, Hessian capture and one-layer quantization."""

import os

import numpy as np
import pytest
import torch

from microscopiq.config import FormatConfig
from microscopiq.quant import models
from microscopiq.quant.dequant import dequantize
from microscopiq.quant.refine import RefineError

SEED = 7



def assert_only_target_quantized(model, target, layer, before):
    """The model's ``target`` linear holds ``layer``'s dequantized weight; every other is unchanged."""
    layers = dict(models.linear_layers(model))
    np.testing.assert_array_equal(layers[target].weight.detach().numpy(),
                                  dequantize(layer).astype(np.float32))
    for name, weight in before.items():
        if name != target:
            assert torch.equal(layers[name].weight, weight), f"{name} changed"


def restore_weights(model, before):
    """Put the FP32 weights back (the session-scoped model is shared by the tests)."""
    with torch.no_grad():
        for name, module in models.linear_layers(model):
            module.weight.copy_(before[name])

def test_text_split_is_disjoint_and_deterministic():
    cal, ev = models.split_texts()
    cal2, ev2 = models.split_texts()
    assert (cal, ev) == (cal2, ev2)
    assert len(cal) > 300 and len(ev) > 150, (len(cal), len(ev))
    assert not set(cal) & set(ev), f"shared texts: {sorted(set(cal) & set(ev))[:2]}"
    assert all(len(t.split()) <= models.CHUNK_WORDS for t in cal + ev)
    eval_modules = [m for m in models.STDLIB_MODULES if models._is_evaluation(m)]
    assert 0 < len(eval_modules) < len(models.STDLIB_MODULES)
    assert models.calibration_texts(16) == models.calibration_texts(16)
    assert len(set(models.evaluation_texts(40))) == 40


def test_relative_output_error_matches_activations():
    print(f"seed={SEED}")
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((50, 12))
    w = rng.standard_normal((5, 12))
    wq = w + 0.1 * rng.standard_normal((5, 12))
    expected = np.linalg.norm(x @ (w - wq).T) / np.linalg.norm(x @ w.T)
    assert models.relative_output_error(w, wq, 2 * x.T @ x) == pytest.approx(expected, rel=1e-6)


def test_relative_output_error_equals_the_chain_product():
    """The Gram-matrix form (float32 ``EᵀE``) against the straightforward float64 ``E·H·Eᵀ`` on a
    correlated Hessian with a hot channel, to float32 precision."""
    print(f"seed={SEED}")
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((64, 40)) @ rng.standard_normal((40, 40))
    x[:, 3] *= 30.0
    h = 2 * x.T @ x
    w = rng.standard_normal((24, 40)).astype(np.float32).astype(np.float64)
    wq = (w + 0.05 * rng.standard_normal(w.shape)).astype(np.float32)
    e = w - wq
    expected = np.sqrt(np.einsum("nk,kj,nj->", e, h, e) / np.einsum("nk,kj,nj->", w, h, w))
    assert models.relative_output_error(w, wq, h) == pytest.approx(expected, rel=1e-6)
    assert models.relative_output_error(w, w, h) == 0.0
    assert models.relative_output_error(np.zeros_like(w), wq, h) == 0.0


@pytest.fixture(scope="module")
def minilm():
    return models.load_minilm()


def test_model_loads_offline(minilm):
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    layers = models.linear_layers(minilm)
    assert len(layers) == 37
    shapes = {tuple(m.weight.shape) for _, m in layers}
    assert shapes == {(384, 384), (1536, 384), (384, 1536)}
    assert layers[0][0].endswith("encoder.layer.0.attention.self.query")
    assert models.embed(minilm, ["hello world"]).shape == (1, 384)


def test_hessian_ignores_padding_tokens(minilm):
    """Batching a short text with a long one (padding) must not change H or the token count."""
    texts = ["A short docstring.", "A much longer docstring that forces the short one to be padded in "
             "the same batch, so its padding positions would leak into H if they were counted."]
    name, layer = models.linear_layers(minilm)[0]
    together, tokens_t, _ = models.collect_hessians(minilm, {name: layer}, texts, batch_size=2)
    alone, tokens_a, _ = models.collect_hessians(minilm, {name: layer}, texts, batch_size=1)
    assert tokens_t[name] == tokens_a[name]
    np.testing.assert_allclose(together[name], alone[name], rtol=1e-4, atol=1e-3)


def test_quantize_one_layer_end_to_end(minilm):
    target = "0.model.encoder.layer.0.attention.self.value"
    before = {n: m.weight.detach().clone() for n, m in models.linear_layers(minilm)}
    saved = {}
    reports = models.quantize_model(minilm, "gptq", FormatConfig(wbits=4, group=128),
                                    models.calibration_texts(8), layer_filter=lambda n: n == target,
                                    on_layer=lambda n, layer, r: saved.update({n: layer}), progress=False)
    try:
        assert [r.name for r in reports] == [target] and list(saved) == [target]
        report = reports[0]
        assert report.shape == (384, 384) and report.tokens > 100
        assert 0 < report.rel_error < 0.2, report
        assert 4.0 < report.ebw < 5.0, report
        assert_only_target_quantized(minilm, target, saved[target], before)
    finally:
        restore_weights(minilm, before)


def test_unknown_method(minilm):
    with pytest.raises(models.ModelError, match=r"^method must be one of microscopiq, decoupleq, gptq, "
                                               r"rtn, mxint, not 'awq'$"):
        models.quantize_model(minilm, "awq", FormatConfig(), ["text"])


@pytest.mark.parametrize("name, block", [
    ("0.model.encoder.layer.3.attention.self.query", "0.model.encoder.layer.3"),
    ("encoder.layer.10.output.dense", "encoder.layer.10"),
    ("0.model.pooler.dense", None),
])
def test_block_name(name, block):
    assert models.block_name(name) == block


@pytest.mark.parametrize("method, steps, lr, error, message", [
    ("gptq", 5, 1e-2, models.ModelError,
     r"block-wise refinement \(refine_steps=5\) needs method decoupleq, not 'gptq'"),
    ("decoupleq", -2, 1e-2, RefineError, r"refine_steps must be an integer >= 0, not -2"),
    ("decoupleq", 5, -1.0, RefineError, r"refine_lr must be a finite number > 0, not -1\.0"),
])
def test_refine_bad_knobs(minilm, method, steps, lr, error, message):
    with pytest.raises(error, match="^" + message + "$"):
        models.quantize_model(minilm, method, FormatConfig(), ["text"], refine_steps=steps, refine_lr=lr)


def test_refine_one_block_end_to_end(minilm):
    """decoupleQ + refinement of one layer of block 5: the refined layer is what on_layer gets and
    what the model now holds, its block error did not rise, every other layer is untouched."""
    block = "0.model.encoder.layer.5"
    target = block + ".attention.output.dense"
    before = {n: m.weight.detach().clone() for n, m in models.linear_layers(minilm)}
    saved, blocks = {}, []
    try:
        reports = models.quantize_model(minilm, "decoupleq", FormatConfig(wbits=2, group=128),
                                        models.calibration_texts(8), layer_filter=lambda n: n == target,
                                        on_layer=lambda n, layer, r: saved.update({n: layer}),
                                        on_block=lambda b, result: blocks.append((b, result)),
                                        refine_steps=4, progress=False)
        assert [b for b, _ in blocks] == [block] and list(saved) == [target]
        result = blocks[0][1]
        assert len(result.losses) == 5 and result.final_loss < result.initial_loss, result.losses
        assert saved[target] is result.layers["attention.output.dense"]
        assert [r.name for r in reports] == [target] and 0 < reports[0].rel_error < 0.5
        assert_only_target_quantized(minilm, target, saved[target], before)
    finally:
        restore_weights(minilm, before)
