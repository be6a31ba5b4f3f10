"""One build at a time per build folder, across processes.

Two runs that build the same configuration into the same folder at once corrupt each other (a
Verilator precompiled header half-written by one compile was read by the other: GCC internal
compiler error). Every cached build (simulator builds, synthesis runs, the native harness) holds
:func:`build_lock` on its folder for as long as it builds or reads the folder's products.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from pathlib import Path

__all__ = ["build_lock"]


@contextlib.contextmanager
def build_lock(folder: str | os.PathLike, *, quiet: bool = False):
    """Hold an exclusive lock on ``folder`` (the file ``<folder>.lock`` beside it) until the block
    ends; a second process asking for the same folder waits, saying so on stderr unless ``quiet``.

    The lock is an ``flock`` on an open file: the kernel releases it when the process ends, however
    it ends, so a killed build never leaves a stale lock behind."""
    folder = Path(folder).resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.with_name(folder.name + ".lock")
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not quiet:
                print(f"waiting for another build of {folder} to finish", file=sys.stderr, flush=True)
            started = time.monotonic()
            fcntl.flock(handle, fcntl.LOCK_EX)
            if not quiet:
                print(f"lock on {folder} acquired after {time.monotonic() - started:.0f} s",
                      file=sys.stderr, flush=True)
        try:
            yield folder
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
