"""All-or-nothing output: a command either leaves its complete result or nothing at all.

Files are written into a temporary sibling and renamed into place only when the whole job has
succeeded, so a failure (bad input found late, a crash, Ctrl-C) never leaves half-written output.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["OutputError", "atomic_dir", "atomic_file"]


class OutputError(ValueError):
    """The output location cannot be used (not writable, a file where a folder is wanted, ...)."""


def _writable_parent(path: Path) -> Path:
    parent = path.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {str(path)!r}: {str(probe)!r} is not a writable folder")
    return parent


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a fresh temporary folder; on success its files replace those of the same name in
    ``path`` (created if needed, other files there kept); on failure it is deleted."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write to {str(path)!r}: it exists and is not a folder")
    parent = _writable_parent(path)
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=parent))
    try:
        yield staging
        path.mkdir(exist_ok=True)
        for item in staging.iterdir():
            target = path / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb"):
    """Yield an open temporary file that replaces ``path`` only if the block succeeds."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write to {str(path)!r}: it is a folder")
    parent = _writable_parent(path)
    parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
