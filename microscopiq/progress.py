"""Stage lines for long jobs: what is being done and the seconds since the job started.

``microscopiq sim`` builds a simulator model (minutes for the 8x8 under load) and runs it before it
prints anything else; a silent terminal for that long looks like a hang. :class:`Stages` prints one
line per stage on stderr (stdout keeps the results, so scripts that read it are unaffected)::

    microscopiq sim: [   0.0 s] generating the Verilog of 8x8-b4
    microscopiq sim: [   9.8 s] building the verilator model (/…/build/cocotb/accel/8x8-b4/verilator; reused if the Verilog is unchanged)
    microscopiq sim: [ 142.0 s] built the verilator model; running microscopiq.tb.test_accel
    microscopiq sim: [ 171.3 s] checked 2048 result integers, 0 mismatches
"""

from __future__ import annotations

import sys
import time

__all__ = ["Stages"]


class Stages:
    """Call with a message to print it as a stage line; ``prefix`` names the job."""

    def __init__(self, prefix: str, stream=None):
        self.prefix = prefix
        self.stream = stream
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __call__(self, message: str) -> None:
        print(f"{self.prefix}: [{self.elapsed:6.1f} s] {message}", file=self.stream or sys.stderr,
              flush=True)
