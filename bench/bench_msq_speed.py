"""MicroScopiQ quantizer speed on one layer: wall and CPU seconds, peak RSS and an output digest.

``quantize_msq(w, h, FormatConfig(wbits=b))`` on bench_quant's ``synthetic(N, K, tokens)`` layer
(Student-t weights, heavy-tailed activations, ``h = 2XᵀX``), each bit width in a fresh child
process so the peak resident memory (``ru_maxrss``) is that of one run. The digest (SHA-256 over the
layer's codes, roles, mates, exponents and shared exponents) tells whether two versions of the
quantizer produce bit-identical layers; it depends on the torch thread count (BLAS blocking).

    python bench/bench_msq_speed.py                      # 4096x4096, 2048 tokens, b = 2 and 4, 2 threads
    python bench/bench_msq_speed.py --size 1024 --threads 1 --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def child(spec: dict) -> dict:
    """One timed ``quantize_msq`` call (runs in a fresh process)."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from bench_quant import synthetic

    from microscopiq.config import FormatConfig
    from microscopiq.quant.msq import quantize_msq

    torch.set_num_threads(spec["threads"])
    w, h = synthetic(spec["size"], spec["size"], spec["tokens"])
    runs = []
    for _ in range(spec["repeat"]):
        start, cpu = time.perf_counter(), time.process_time()
        layer = quantize_msq(w, h, FormatConfig(wbits=spec["wbits"]))
        runs.append((time.perf_counter() - start, time.process_time() - cpu))
    digest = hashlib.sha256()
    for name in ("codes", "roles", "mate", "exps", "xexp"):
        digest.update(np.ascontiguousarray(getattr(layer, name)).tobytes())
    wall, cpu = min(runs)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall": wall, "cpu": cpu, "peak_mib": peak_mib, "digest": digest.hexdigest()[:16]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="N = K of the layer (default 4096)")
    parser.add_argument("--tokens", type=int, default=2048, help="calibration tokens (default 2048)")
    parser.add_argument("--wbits", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="calls per child; the fastest is reported")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    print(f"{args.size}x{args.size}, {args.tokens} tokens, {args.threads} torch threads, "
          f"best of {args.repeat}; load average {os.getloadavg()[0]:.2f} at start")
    print("| b | wall s | CPU s | peak RSS (MiB) | digest |\n| ---: | ---: | ---: | ---: | --- |")
    for wbits in args.wbits:
        spec = dict(size=args.size, tokens=args.tokens, wbits=wbits, threads=args.threads, repeat=args.repeat)
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                              text=True, check=True)
        out = json.loads(proc.stdout.splitlines()[-1])
        print(f"| {wbits} | {out['wall']:.2f} | {out['cpu']:.2f} | {out['peak_mib']:.0f} | {out['digest']} |",
              flush=True)


if __name__ == "__main__":
    main()
