"""All-or-nothing output: a command either leaves its complete result or nothing at all.

Files are written into a hidden staging folder and moved into place only when the whole job has
succeeded, so a failure (bad input found late, a crash, Ctrl-C, SIGTERM) never leaves half-written
output. The staging folder lies inside the output folder when that exists (so an existing, writable
``--out`` works whatever its parent), else beside it.

Commands call :func:`check_output_dir` / :func:`check_output_file` before any work, so a typo in
``--out`` costs nothing; :func:`atomic_dir` and :func:`atomic_file` repeat the checks. Finished files
get the user's umask (as ``open`` would give them), never the 0600 of a temporary file. A staged
file never replaces a folder of the same name: the user's folder is kept and the write refused.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["OutputError", "atomic_dir", "atomic_file", "check_output_dir", "check_output_file",
           "path_arg"]


class OutputError(ValueError):
    """The output location cannot be used (not writable, a file where a folder is wanted, ...)."""


def path_arg(text: str) -> Path:
    """``type=`` of a path option: refuses the empty string, which ``Path`` would turn into ``.``."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must name a file or folder, not {text!r}")
    return Path(text)


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def _writable_parent(path: Path) -> Path:
    parent = path.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not _writable(probe):
        raise OutputError(f"cannot write to {str(path)!r}: {str(probe)!r} is not a writable folder")
    return parent


def _check_not_empty(path) -> Path:
    if not os.fspath(path).strip():
        raise OutputError("the output path is empty: name a file or folder")
    return Path(path)


def check_output_dir(path: str | os.PathLike, names=()) -> Path:
    """Refuse an output folder that :func:`atomic_dir` could not fill, before any work: a file in its
    place, an existing folder that is not writable, a missing one whose nearest existing parent is
    not writable, or a folder in it named like one of the files ``names`` to be written. Returns the
    folder the staging folder goes into."""
    path = _check_not_empty(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write to {str(path)!r}: it exists and is not a folder")
    if not path.is_dir():
        return _writable_parent(path)
    if not _writable(path):
        raise OutputError(f"cannot write to {str(path)!r}: the folder is not writable")
    for name in names:
        if (path / name).is_dir() and not (path / name).is_symlink():
            raise OutputError(f"cannot write {str(path / name)!r}: a folder of that name is in the way")
    return path


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse an output file that :func:`atomic_file` could not write (see :func:`check_output_dir`);
    returns the folder it goes into."""
    path = _check_not_empty(path)
    if path.is_dir():
        raise OutputError(f"cannot write to {str(path)!r}: it is a folder")
    return _writable_parent(path)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _commit(staging: Path, path: Path) -> None:
    """Move every item of ``staging`` into ``path``; a file never replaces a folder (checked for
    every item before the first move)."""
    items = sorted(staging.iterdir())
    for item in items:
        target = path / item.name
        if target.is_dir() and not target.is_symlink() and not item.is_dir():
            raise OutputError(f"cannot write {str(target)!r}: a folder of that name is in the way")
        if item.is_dir() and target.exists() and not (target.is_dir() and not target.is_symlink()):
            raise OutputError(f"cannot write folder {str(target)!r}: a file of that name is in the way")
    for item in items:
        target = path / item.name
        if item.is_dir() and target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, names=()):
    """Yield a fresh staging folder; on success its items replace those of the same name in
    ``path`` (created if needed, other files there kept); on failure it is deleted. ``names``: files
    the caller will write, checked up front (:func:`check_output_dir`)."""
    home = check_output_dir(path, names)
    path = Path(path)
    home.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.resolve().name}.", dir=home))
    try:
        yield staging
        path.mkdir(exist_ok=True)
        _commit(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb"):
    """Yield an open temporary file that replaces ``path`` only if the block succeeds."""
    parent = check_output_file(path)
    path = Path(path)
    parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
