"""decoupleQ side by side with the official implementation (bytedance/decoupleQ), in one run.

The official code is not part of this project: pass a checkout of it (``--official DIR``, the folder
holding its ``decoupleQ/`` package; e.g. ``git clone https://github.com/bytedance/decoupleQ``). It is
imported from there and run on the CPU exactly as its ``llama.py`` drives it: ``Quantizer.configure(2,
perchannel=True, sym=False)`` (the project's uniform format has a zero point, and the official code
requires ``sym=False`` with groups), then ``decoupleQ.startquant(groupsize, symmetric=False,
max_iter_num=4, inner_iters_for_round=5, iters_before_round=200, lr=1e-3, actorder=True,
round_fn="gptq")`` with its default ``perdamp=0.01`` (the knobs of its ``run_llama.sh``). Its
``H`` is set directly to this layer's ``H`` (its own ``add_batch`` averages ``xxᵀ`` over tokens; the
scale does not change the argmin: damping is relative to ``mean(diag H)``).

Both are measured on the same weights and ``H`` in the same process, one after the other, with the
same torch thread count. Objective: ``tr((W − W_q) H (W − W_q)ᵀ)`` with the *undamped* ``H`` (the
official code minimises the damped one; both columns are printed), and ``rel² = objective /
tr(W H Wᵀ)``.

    python bench/bench_decoupleq_official.py --official /tmp/decoupleQ            # 1024x1024, 2048 tokens
    python bench/bench_decoupleq_official.py --official /tmp/decoupleQ --size 256 # quick
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from microscopiq.config import FormatConfig
from microscopiq.quant.decoupleq import run_decoupleq
from microscopiq.quant.dequant import dequantize
from microscopiq.quant.models import output_energy

SEED = 2024
#: Our settings measured against the official run: name -> run_decoupleq knobs.
OURS = {"defaults": {}, "damp=0.03": {"damp": 0.03}, "damp=0.1": {"damp": 0.1}}


def layer(n: int, k: int, tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian weights ``0.02·randn`` with 1 % of them ×20, activations ``randn`` with 1 % of the input
    channels ×20; ``H = 2XᵀX`` (float64)."""
    rng = np.random.default_rng(SEED)
    w = rng.standard_normal((n, k)) * 0.02
    w[rng.random((n, k)) < 0.01] *= 20
    x = rng.standard_normal((tokens, k))
    x[:, rng.choice(k, max(1, k // 100), replace=False)] *= 20
    return w.astype(np.float32), 2.0 * x.T @ x


def damped(h: np.ndarray, damp: float = 0.01) -> np.ndarray:
    out = h.copy()
    out[np.diag_indices_from(out)] += damp * np.mean(np.diag(h))
    return out


def run_official(package, w: np.ndarray, h: np.ndarray, group: int) -> tuple[np.ndarray, float]:
    """The official ``startquant`` on ``w`` (N×K) and ``h``: (dequantized weight, wall seconds)."""
    linear = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(w))
    moq = package.quant.decoupleQ(linear)
    moq.quantizer = package.moq_quant.Quantizer()
    moq.quantizer.configure(2, perchannel=True, sym=False)
    moq.H, moq.nsamples = torch.from_numpy(h), 1
    start = time.perf_counter()
    moq.startquant(groupsize=-1 if group >= w.shape[1] else group, symmetric=False, max_iter_num=4,
                   inner_iters_for_round=5, iters_before_round=200, dev="cpu", lr=1e-3, actorder=True,
                   round_fn="gptq")
    seconds = time.perf_counter() - start
    return linear.weight.detach().double().numpy(), seconds


def load_official(path: Path):
    if not (path / "decoupleQ" / "moq_quant.py").is_file():
        raise SystemExit(f"bench_decoupleq_official: error: {path} holds no decoupleQ/moq_quant.py "
                         "(pass a checkout of github.com/bytedance/decoupleQ)")
    sys.path.insert(0, str(path))
    package = importlib.import_module("decoupleQ")
    for name in ("quant", "moq_quant"):
        setattr(package, name, importlib.import_module(f"decoupleQ.{name}"))
    return package


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of bytedance/decoupleQ")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    package = load_official(args.official)
    torch.set_num_threads(args.threads)
    w, h = layer(args.size, args.size, args.tokens)
    hd = damped(h)
    w64 = w.astype(np.float64)
    total, total_d = output_energy(w64, h), output_energy(w64, hd)
    rows = []
    for group, label in ((args.size, "per-channel"), (128, "G=128")):
        with contextlib.redirect_stdout(io.StringIO()):        # the official code prints every step
            deq, seconds = run_official(package, w, h, group)
        runs = [("official", deq, seconds)]
        for name, knobs in OURS.items():
            result = run_decoupleq(w, h, FormatConfig(wbits=2, group=group), device="cpu", **knobs)
            runs.append((f"ours {name}", dequantize(result.layer), result.seconds))
        for name, deq, seconds in runs:
            obj = output_energy(w64 - deq, h)
            rows.append({"case": label, "run": name, "seconds": seconds, "objective": obj,
                         "rel2": obj / total, "rel2_damped": output_energy(w64 - deq, hd) / total_d})
            print(f"{label:12s} {name:22s} {seconds:8.2f} s  rel² {obj / total:.4f}  "
                  f"(damped H: {rows[-1]['rel2_damped']:.4f})", flush=True)
    print()
    print(f"{args.size}x{args.size}, {args.tokens} tokens, {args.threads} torch threads, one process:")
    print("| case | run | seconds | official ÷ this (time) | rel² (H) | rel² (damped H) | this ÷ official (rel²) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        ref = next(r for r in rows if r["case"] == row["case"] and r["run"] == "official")
        print(f"| {row['case']} | {row['run']} | {row['seconds']:.2f} | {ref['seconds'] / row['seconds']:.1f}× | "
              f"{row['rel2']:.4f} | {row['rel2_damped']:.4f} | {row['rel2'] / ref['rel2']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
