"""Layers and activations for the end-to-end accelerator regression (SPEC §6).

Every generator returns a :class:`Case`: a quantized layer (:class:`~microscopiq.quant.layer.MsqLayer`
or :class:`~microscopiq.quant.layer.UniformLayer`), the integer activations streamed with it and the
seed that made both, so a failing case can be rebuilt from the line that reports it. Layers are
checked with ``validate()`` before they leave this module.

Three families:

* **from the quantizers** — :func:`quantized_case` (random float weights with planted outliers and
  outlier activation channels, through :func:`~microscopiq.quant.msq.quantize_msq`),
  :func:`minilm_case` (a real all-MiniLM-L6-v2 linear layer tiled to a sub-block, with its own
  calibration activations) and :func:`decoupleq_case` (uniform mode through
  :func:`~microscopiq.quant.decoupleq.quantize_decoupleq`);
* **random structure** — :func:`random_case` (every slot, pair and exponent drawn directly, so the
  format's whole range is covered, not only what a quantizer happens to produce) and
  :func:`random_uniform_case`;
* **SPEC §6 corners** — :data:`CORNERS`: all-inlier blocks, ``U/2`` outliers in every micro-block,
  every (outlier, partner) position pair, extreme codes and activations, accumulator saturation
  with the sticky flag, and sizes that are not multiples of the array.

The quantizer-backed families import their quantizer lazily, so the structural generators work
without PyTorch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..config import AccelConfig, FormatConfig
from ..quant.golden import quantize_activations
from ..quant.layer import MsqLayer, Role, UniformLayer, padded

__all__ = [
    "Case", "empty_msq_layer", "random_activations",
    "random_case", "random_uniform_case", "quantized_case", "decoupleq_case", "minilm_case",
    "all_inlier_case", "full_outlier_case", "pair_positions_case", "extreme_case",
    "saturation_case", "ragged_case", "CORNERS", "build_case", "with_bits",
]


@dataclass(frozen=True, eq=False)
class Case:
    """One layer and the activations streamed through it.

    Attributes
    ----------
    name : str
        Generator and shape, e.g. ``"random n=16 k=128 m=5"``; printed on a mismatch.
    layer : MsqLayer or UniformLayer
    x : ndarray of int64, (M, k)
        Signed ``a``-bit activations (unpadded ``k`` columns).
    seed : int
        The seed that rebuilds this case with the same generator.
    """

    name: str
    layer: MsqLayer | UniformLayer
    x: np.ndarray
    seed: int

    @property
    def tokens(self) -> int:
        return self.x.shape[0]

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the unpadded layer, ``M · N · K``."""
        return self.tokens * self.layer.n * self.layer.k

    @property
    def uniform(self) -> bool:
        return isinstance(self.layer, UniformLayer)

    @property
    def result_integers(self) -> int:
        """The integers a run of this case returns, from the shapes alone (the scoreboard counts what
        it compared, so a test can hold it to this): ``y`` and ``overflow`` of every output, or ``P`` of
        every output and K-group and ``S`` of every K-group."""
        m, n = self.tokens, self.layer.n
        if self.uniform:
            groups = -(-self.layer.k // self.layer.fmt.group)
            return m * n * groups + m * groups
        return 2 * m * n


def _case(name: str, layer, x: np.ndarray, seed: int) -> Case:
    layer.validate()
    x = np.asarray(x, dtype=np.int64)
    if x.shape[1] != layer.k:
        raise ValueError(f"activations have {x.shape[1]} columns, layer k={layer.k}")
    kind = "uniform" if isinstance(layer, UniformLayer) else "msq"
    return Case(f"{name} ({kind} n={layer.n} k={layer.k} m={x.shape[0]} seed={seed})", layer, x, seed)


# -- building blocks ------------------------------------------------------------------------------

def empty_msq_layer(fmt: FormatConfig, n: int, k: int) -> MsqLayer:
    """An all-inlier layer of zero codes and zero exponents, padded to ``U`` and ``G``.

    Its arrays are writable, so generators fill them in place before validating.
    """
    np_, kp = padded(n, fmt.ublock), padded(k, fmt.group)
    return MsqLayer(fmt=fmt, n=n, k=k,
                    codes=np.zeros((np_, kp), np.uint8),
                    roles=np.full((np_, kp), Role.INLIER, np.uint8),
                    mate=np.full((np_, kp), -1, np.int8),
                    exps=np.zeros((np_, kp // fmt.group), np.int16),
                    xexp=np.zeros((np_ // fmt.ublock, kp), np.uint8))


def worked_example_layer(fmt: FormatConfig, n: int = 8, k: int = 16) -> MsqLayer:
    """docs/format.md's worked example: ``n × k`` (8×16 there), the only pair outlier row 5 /
    partner row 2 at column 3 (``fmt`` with ``wbits`` 4 and ``ublock`` 8)."""
    layer = empty_msq_layer(fmt, n, k)
    layer.codes[:n, :k] = np.arange(n * k).reshape(n, k) % 7
    layer.roles[5, 3], layer.roles[2, 3] = Role.OUT_HI, Role.OUT_LO
    layer.mate[5, 3], layer.mate[2, 3] = 2, 5
    layer.codes[5, 3], layer.codes[2, 3] = 0b1011, 0b0110
    layer.xexp[0, 3] = 9
    layer.exps[:] = -3
    return layer.validate()


def _fill_inliers(layer: MsqLayer, rng: np.random.Generator, codes=None) -> None:
    """Random (or given) inlier codes in every unpadded slot."""
    fmt = layer.fmt
    if codes is None:
        codes = rng.integers(0, 1 << fmt.wbits, size=(layer.n, layer.k))
    layer.codes[:layer.n, :layer.k] = codes


def _place_pair(layer: MsqLayer, row_hi: int, row_lo: int, col: int, hi_code: int, lo_code: int) -> None:
    """Make ``(row_hi, col)`` an outlier whose lower half sits in ``(row_lo, col)``."""
    u = layer.fmt.ublock
    layer.roles[row_hi, col], layer.roles[row_lo, col] = Role.OUT_HI, Role.OUT_LO
    layer.mate[row_hi, col], layer.mate[row_lo, col] = row_lo % u, row_hi % u
    layer.codes[row_hi, col], layer.codes[row_lo, col] = hi_code, lo_code


def _block_rows(layer: MsqLayer, block: int) -> np.ndarray:
    """Unpadded rows of micro-block ``block``."""
    u = layer.fmt.ublock
    return np.arange(block * u, min((block + 1) * u, layer.n))


def _plant_outliers(layer: MsqLayer, rng: np.random.Generator, count: Callable[[int], int],
                    columns=None) -> None:
    """In every micro-block and column, pair ``count(rows)`` random outliers with random partners
    and draw the block's shared exponent ``X``; halves get random codes."""
    fmt = layer.fmt
    for block in range(layer.np_ // fmt.ublock):
        rows = _block_rows(layer, block)
        for col in (range(layer.k) if columns is None else columns):
            pairs = min(count(len(rows)), len(rows) // 2)
            if pairs == 0:
                continue
            chosen = rng.permutation(rows)[:2 * pairs]
            for hi, lo in zip(chosen[:pairs], chosen[pairs:]):
                _place_pair(layer, int(hi), int(lo), col,
                            int(rng.integers(0, 1 << fmt.wbits)), int(rng.integers(0, 1 << fmt.wbits)))
            layer.xexp[block, col] = rng.integers(0, 1 << fmt.xbits)


def _random_exps(layer: MsqLayer, rng: np.random.Generator, spread: int = 6) -> None:
    layer.exps[:layer.n] = rng.integers(-spread, spread + 1, size=(layer.n, layer.exps.shape[1]))


def with_bits(data: bytes, offset: int, width: int, value: int) -> bytes:
    """``data`` (a packed pass, bit ``i`` at byte ``i // 8``, LSB first) with ``width`` bits at
    ``offset`` replaced by ``value``: the malformed streams of the front end's tests."""
    word = int.from_bytes(data, "little")
    word = word & ~(((1 << width) - 1) << offset) | (value << offset)
    return word.to_bytes(len(data), "little")


def random_activations(fmt: FormatConfig, m: int, k: int, rng: np.random.Generator,
                       extreme: bool = False) -> np.ndarray:
    """``(m, k)`` signed activations, uniform over ``[-2^(a-1)+1, 2^(a-1)-1]``; with ``extreme``,
    only ``±(2^(a-1)-1)``, ``-2^(a-1)`` (legal at the port, never produced by the quantizer) and 0."""
    if extreme:
        return rng.choice([-fmt.act_bound, -fmt.amax, 0, fmt.amax], size=(m, k)).astype(np.int64)
    return rng.integers(-fmt.amax, fmt.amax + 1, size=(m, k), dtype=np.int64)


# -- random structure -----------------------------------------------------------------------------

def random_case(cfg: AccelConfig, n: int, k: int, m: int, seed: int,
                outlier_rate: float = 0.3, name: str = "random") -> Case:
    """Random inliers; each (micro-block, column) holds outliers with probability ``outlier_rate``
    (1 to ``U/2`` pairs at random positions); random ``X`` and inlier exponents."""
    fmt = cfg.fmt
    rng = np.random.default_rng(seed)
    layer = empty_msq_layer(fmt, n, k)
    _fill_inliers(layer, rng)
    _plant_outliers(layer, rng, lambda rows: int(rng.integers(1, fmt.max_outliers + 1))
                    if rng.random() < outlier_rate else 0)
    _random_exps(layer, rng)
    return _case(name, layer, random_activations(fmt, m, k, rng), seed)


def random_uniform_case(cfg: AccelConfig, n: int, k: int, m: int, seed: int) -> Case:
    """A uniform-mode layer with random ``b``-bit codes over the whole signed range and random
    float scales and zeros (the array sees only ``q``; ``s, z`` are applied on the host)."""
    fmt = cfg.fmt
    rng = np.random.default_rng(seed)
    np_, kp = padded(n, fmt.ublock), padded(k, fmt.group)
    q = np.zeros((np_, kp), np.int8)
    q[:n, :k] = rng.integers(fmt.qmin, fmt.qmax + 1, size=(n, k))
    groups = kp // fmt.group
    layer = UniformLayer(fmt=fmt, n=n, k=k, q=q,
                         scale=rng.uniform(1e-3, 1e-1, size=(np_, groups)).astype(np.float32),
                         zero=rng.normal(0, 1e-2, size=(np_, groups)).astype(np.float32))
    return _case("random-uniform", layer, random_activations(fmt, m, k, rng), seed)


def half_uniform_case(cfg: AccelConfig, n: int, k: int, m: int, seed: int) -> Case:
    """:func:`random_uniform_case` at ``b/2`` for a multi-precision instance (its pair mode: two
    ``b/2``-bit slots per PE, ``AccelConfig.multi_precision``)."""
    if not cfg.multi_precision:
        raise ValueError("a b/2 uniform layer runs only on a multi_precision instance")
    case = random_uniform_case(cfg.replace(wbits=cfg.fmt.wbits // 2, multi_precision=False), n, k, m, seed)
    return replace(case, name=case.name.replace("random-uniform", "half-uniform"))


def half_msq_case(cfg: AccelConfig, n: int, k: int, m: int, seed: int, outlier_rate: float = 0.3) -> Case:
    """:func:`random_case` at ``b/2`` for a multi-precision instance with ReCoN (a MicroScopiQ pass at
    ``b/2``, ``AccelConfig.pass_narrow``: two K rows per PE row where every K-group holds at most
    ``G/2`` outlier rows per N-tile, ``packed_stream.msq_pair_rows``, else one slot per PE)."""
    if not cfg.multi_precision:
        raise ValueError("a b/2 MicroScopiQ layer runs only on a multi_precision instance")
    case = random_case(cfg.replace(wbits=cfg.fmt.wbits // 2, multi_precision=False), n, k, m, seed, outlier_rate)
    return replace(case, name="half-msq")


def half_msq_sparse_case(cfg: AccelConfig, n: int, k: int, m: int, seed: int) -> Case:
    """:func:`half_msq_case` with outliers in 10 % of the micro-blocks: on a ``G = 4R`` instance
    with one micro-block per row a K-group almost never holds more than ``G/2`` outlier rows, so
    the layer runs as a MicroScopiQ pair pass."""
    return replace(half_msq_case(cfg, n, k, m, seed, outlier_rate=0.1), name="half-msq-sparse")


def half_msq_dense_case(cfg: AccelConfig, n: int, k: int, m: int, seed: int) -> Case:
    """:func:`half_msq_case` with outliers in 70 % of the micro-blocks: on a ``G = 4R`` instance
    some K-group almost always holds more than ``G/2`` outlier rows, so the layer runs one slot
    per PE."""
    return replace(half_msq_case(cfg, n, k, m, seed, outlier_rate=0.7), name="half-msq-dense")


# -- SPEC §6 corners ------------------------------------------------------------------------------

def all_inlier_case(cfg: AccelConfig, n: int, k: int, m: int, seed: int) -> Case:
    """No outlier anywhere: ReCoN must pass every inlier through unmerged."""
    rng = np.random.default_rng(seed)
    layer = empty_msq_layer(cfg.fmt, n, k)
    _fill_inliers(layer, rng)
    _random_exps(layer, rng)
    return _case("all-inlier", layer, random_activations(cfg.fmt, m, k, rng), seed)


def full_outlier_case(cfg: AccelConfig, n: int, k: int, m: int, seed: int) -> Case:
    """``U/2`` outliers in every micro-block at every column: every slot is an outlier half."""
    fmt = cfg.fmt
    rng = np.random.default_rng(seed)
    layer = empty_msq_layer(fmt, n, k)
    _plant_outliers(layer, rng, lambda rows: rows // 2)
    _random_exps(layer, rng)
    return _case("full-outlier", layer, random_activations(fmt, m, k, rng), seed)


def pair_positions_case(cfg: AccelConfig, n: int, k: int, m: int, seed: int) -> Case:
    """Every ordered (outlier, partner) row pair of a micro-block, ``U·(U-1)`` of them, one per
    column (cycling when ``k`` is larger), in every micro-block; other slots are random inliers.

    ``k`` must be at least ``U·(U-1)`` so that every pair appears.
    """
    fmt = cfg.fmt
    u = fmt.ublock
    pairs = list(itertools.permutations(range(u), 2))
    if k < len(pairs):
        raise ValueError(f"pair_positions_case needs k >= U*(U-1) = {len(pairs)}, got k={k}")
    rng = np.random.default_rng(seed)
    layer = empty_msq_layer(fmt, n, k)
    _fill_inliers(layer, rng)
    for block in range(layer.np_ // u):
        base = block * u
        for col in range(k):
            hi, lo = pairs[col % len(pairs)]
            if base + max(hi, lo) >= n:
                continue
            _place_pair(layer, base + hi, base + lo, col,
                        int(rng.integers(0, 1 << fmt.wbits)), int(rng.integers(0, 1 << fmt.wbits)))
            layer.xexp[block, col] = rng.integers(0, 1 << fmt.xbits)
    _random_exps(layer, rng)
    return _case("pair-positions", layer, random_activations(fmt, m, k, rng), seed)


def extreme_case(cfg: AccelConfig, n: int, k: int, m: int, seed: int) -> Case:
    """Extreme codes and activations: inliers at ``-2^(b-1)`` and ``2^(b-1)-1``, outlier halves
    all-ones or all-zeros (largest and smallest ``e`` and ``f``, both signs), ``X`` at 0 or its
    maximum, exponents at the ends of the signed 8-bit range within a row, and activations
    ``±(2^(a-1)-1)``, ``-2^(a-1)`` and 0."""
    fmt = cfg.fmt
    rng = np.random.default_rng(seed)
    layer = empty_msq_layer(fmt, n, k)
    top = (1 << fmt.wbits) - 1
    qmin_code, qmax_code = 1 << (fmt.wbits - 1), fmt.qmax
    _fill_inliers(layer, rng, rng.choice([qmin_code, qmax_code], size=(n, k)))
    _plant_outliers(layer, rng, lambda rows: int(rng.integers(0, rows // 2 + 1)))
    ends = np.array([0, top], dtype=np.uint8)
    outlier = layer.roles != Role.INLIER
    layer.codes[outlier] = rng.choice(ends, size=int(outlier.sum()))
    used = layer.xexp != 0
    layer.xexp[used] = rng.choice([1, (1 << fmt.xbits) - 1], size=int(used.sum()))
    # Each row sits at one end of the signed 8-bit exponent range (all its groups alike, so the
    # group shifts stay 0 and the products themselves, not the shifts, are what is extreme).
    layer.exps[:n] = rng.choice([-128, 127], size=(n, 1))
    return _case("extreme", layer, random_activations(fmt, m, k, rng, extreme=True), seed)


def saturation_case(cfg: AccelConfig, n: int, k: int, m: int, seed: int) -> Case:
    """Accumulator saturation and the sticky overflow flag (needs ``k > G``: two K-groups).

    Output rows cycle through three kinds:

    * *sticky*: group 0 is all positive outliers at the largest shift, activations there are all
      ``+(2^(a-1)-1)``, so ``P[g=0]`` exceeds ``acc_bits`` and the accumulator clamps; group 1 is
      negative inliers at the same exponent with positive activations, pulling the sum back inside
      the range — the result is in range but the flag must stay set;
    * *shift*: random inliers whose group-1 exponent is 60 above group 0: ``P << 60`` saturates;
    * *plain*: random inliers at equal exponents: no overflow.
    """
    fmt = cfg.fmt
    g = fmt.group
    if not g < k <= 2 * g:
        raise ValueError(f"saturation_case needs G < k <= 2G (two K-groups), got k={k} with G={g}")
    rng = np.random.default_rng(seed)
    layer = empty_msq_layer(fmt, n, k)
    _fill_inliers(layer, rng)
    x = random_activations(fmt, m, k, rng)
    x[:, :g] = fmt.amax
    x[:, g:] = rng.integers(1, fmt.amax + 1, size=(m, k - g))
    u = fmt.ublock
    top_hi = (1 << (fmt.wbits - 1)) - 1  # sign 0, largest e
    for block in range(layer.np_ // u):
        rows = _block_rows(layer, block)
        sticky = rows[rows % 3 == 0]
        shift = rows[rows % 3 == 1]
        others = np.setdiff1d(rows, sticky)
        # Each sticky row needs a partner outside the sticky rows of its block.
        for hi, lo in zip(sticky, others):
            for col in range(g):
                _place_pair(layer, int(hi), int(lo), col, top_hi, (1 << fmt.wbits) - 1)
            layer.codes[hi, g:k] = 1 << (fmt.wbits - 1)  # qmin: negative
        layer.xexp[block, :g] = np.where((layer.roles[rows, :g] != Role.INLIER).any(axis=0),
                                         (1 << fmt.xbits) - 1, 0)
        layer.exps[shift, 1] = 60
    return _case("saturation", layer, x, seed)


def ragged_case(cfg: AccelConfig, n: int, k: int, m: int, seed: int) -> Case:
    """A random layer whose ``n``, ``k`` and ``m`` are nudged off every multiple the hardware
    works in (``C``, ``U``, ``R``, ``G`` and ``max_tokens``): padding and partial passes."""
    def off(size: int, multiples) -> int:
        while any(size % mult == 0 for mult in multiples if mult > 1):
            size += 1
        return size
    return random_case(cfg, off(n, (cfg.cols, cfg.fmt.ublock)), off(k, (cfg.rows, cfg.fmt.group)),
                       off(m, (cfg.max_tokens,)), seed, name="ragged")


# -- from the quantizers --------------------------------------------------------------------------

def _planted_weights(rng: np.random.Generator, n: int, k: int, rate: float = 0.02):
    """Gaussian weights with a fraction ``rate`` of entries blown up 10–40x (the outliers), and
    calibration inputs with a few hot channels (how LLM activations look)."""
    import torch
    weight = rng.normal(0.0, 0.02, size=(n, k))
    mask = rng.random((n, k)) < rate
    weight[mask] *= rng.uniform(10, 40, size=int(mask.sum())) * rng.choice([-1, 1], size=int(mask.sum()))
    calib = rng.normal(0.0, 1.0, size=(4 * k, k))
    calib[:, rng.choice(k, size=max(1, k // 32), replace=False)] *= 20
    return torch.tensor(weight, dtype=torch.float32), calib


def _hessian(calib: np.ndarray):
    import torch
    xt = torch.tensor(calib, dtype=torch.float64)
    return (2 * xt.T @ xt / xt.shape[0]).to(torch.float32)


def _only_layer(result):
    """Quantizers may return the layer alone or ``(layer, report)``."""
    return result[0] if isinstance(result, tuple) else result


def quantized_case(cfg: AccelConfig, n: int, k: int, m: int, seed: int) -> Case:
    """Random float weights with planted outliers, quantized by MicroScopiQ (with the calibration
    Hessian), and activations quantized per token from hot-channel calibration rows (SPEC §1)."""
    import torch
    from ..quant.msq import quantize_msq
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    weight, calib = _planted_weights(rng, n, k)
    layer = _only_layer(quantize_msq(weight, _hessian(calib), cfg.fmt))
    x, _ = quantize_activations(calib[:m], cfg.fmt)
    return _case("quantized", layer, x, seed)


def decoupleq_case(cfg: AccelConfig, n: int, k: int, m: int, seed: int) -> Case:
    """The same planted weights through decoupleQ: a uniform-mode layer (raw ``P`` and ``S``)."""
    import torch
    from ..quant.decoupleq import quantize_decoupleq
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    weight, calib = _planted_weights(rng, n, k, rate=0.0)
    layer = _only_layer(quantize_decoupleq(weight, _hessian(calib), cfg.fmt))
    x, _ = quantize_activations(calib[:m], cfg.fmt)
    return _case("decoupleq", layer, x, seed)


#: The MiniLM layer :func:`minilm_case` takes by default: an FFN down-projection, whose inputs (after
#: GELU) have the heavy-tailed channels outlier formats are for.
MINILM_LAYER = "0.model.encoder.layer.3.output.dense"


def _minilm_inputs(layer_name: str, texts: int = 8):
    """The weight of MiniLM's ``layer_name`` and the real inputs it receives for ``texts``
    calibration texts (one text per forward pass, so no padding token is among them)."""
    import torch
    from ..quant import models
    model = models.load_minilm()
    layers = dict(models.linear_layers(model))
    if layer_name not in layers:
        raise ValueError(f"MiniLM has no linear layer {layer_name!r}")
    linear, captured = layers[layer_name], []
    handle = linear.register_forward_pre_hook(
        lambda module, args: captured.append(args[0].detach().reshape(-1, args[0].shape[-1])))
    try:
        with torch.no_grad():
            model.encode(models.calibration_texts(texts), batch_size=1)
    finally:
        handle.remove()
    return linear.weight.detach().clone(), torch.cat(captured).double().numpy()


def minilm_case(cfg: AccelConfig, n: int, k: int, m: int, seed: int,
                layer_name: str = MINILM_LAYER) -> Case:
    """A real all-MiniLM-L6-v2 linear layer, tiled to its top-left ``n × k`` sub-block, quantized
    by MicroScopiQ with the Hessian of its own calibration inputs (the same ``k`` input channels);
    the activations are ``m`` of those real input rows, drawn with ``seed``, quantized per token."""
    import torch
    from ..quant.msq import quantize_msq
    weight, calib = _minilm_inputs(layer_name)
    weight = weight[:n, :k].to(torch.float32)
    calib = calib[:, :k]
    layer = _only_layer(quantize_msq(weight, _hessian(calib), cfg.fmt))
    rows = np.random.default_rng(seed).choice(calib.shape[0], size=m, replace=False)
    x, _ = quantize_activations(calib[rows], cfg.fmt)
    return _case(f"minilm {layer_name}", layer, x, seed)


# -- registry -------------------------------------------------------------------------------------

#: The SPEC §6 directed corners by name (all MicroScopiQ mode), as ``fn(cfg, n, k, m, seed)``.
CORNERS: dict[str, Callable[..., Case]] = {
    "all_inlier": all_inlier_case,
    "full_outlier": full_outlier_case,
    "pair_positions": pair_positions_case,
    "extreme": extreme_case,
    "saturation": saturation_case,
    "ragged": ragged_case,
}

#: Every generator by name.
GENERATORS: dict[str, Callable[..., Case]] = {
    "random": random_case,
    "random_uniform": random_uniform_case,
    "half_uniform": half_uniform_case,
    "half_msq": half_msq_case,
    "half_msq_sparse": half_msq_sparse_case,
    "half_msq_dense": half_msq_dense_case,
    "quantized": quantized_case,
    "decoupleq": decoupleq_case,
    "minilm": minilm_case,
    **CORNERS,
}


def build_case(kind: str, cfg: AccelConfig, n: int, k: int, m: int, seed: int) -> Case:
    """The case of generator ``kind`` (a key of :data:`GENERATORS`)."""
    try:
        generator = GENERATORS[kind]
    except KeyError:
        raise ValueError(f"stimulus kind must be one of {', '.join(GENERATORS)}, not {kind!r}") from None
    return generator(cfg, n, k, m, seed)
