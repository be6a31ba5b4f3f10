"""Checks of command-line input that must run before any expensive work (docs/verification.md,
"Bad input").

The rules themselves live with the code that owns them (:class:`~microscopiq.config.AccelConfig`,
:func:`microscopiq.host.stream_format.check_layer`, :mod:`microscopiq.quant.pack`, ...); the
functions here call them up front for a command and name the option in the message, so a bad value
is refused in well under a second, before a simulator is built or a quantizer runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import AccelConfig, ConfigError
from .outputs import OutputError, check_output_dir

__all__ = ["SEED_MAX", "SIM_TOKENS_MAX", "check_seed", "check_count", "check_out_dir", "check_sim_layer"]

#: Largest seed: cocotb's ``COCOTB_RANDOM_SEED`` and NumPy's generators take unsigned 32-bit seeds.
SEED_MAX = (1 << 32) - 1
#: Most tokens ``microscopiq sim`` streams: a simulated accelerator runs some thousand cycles a
#: second, so this is already hours for a large layer; more is a typo, not a test.
SIM_TOKENS_MAX = 1 << 16


def check_seed(name: str, seed: int) -> None:
    """``seed`` must be an integer from 0 to :data:`SEED_MAX`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"{name} must be an integer from 0 to {SEED_MAX}, not {seed!r}")


def check_count(name: str, value: int, maximum: int | None = None) -> None:
    """``value`` must be an integer >= 1 (and <= ``maximum`` when given)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be >= 1, not {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, not {value!r}")


def check_out_dir(path: str | os.PathLike, names=(), option: str = "--out") -> None:
    """:func:`microscopiq.outputs.check_output_dir` with the option named in the message: a typo in
    ``--out`` must cost nothing, so commands call this before any work."""
    try:
        check_output_dir(path, names)
    except OutputError as error:
        raise OutputError(f"{option}: {error}") from None


def check_sim_layer(path: str | os.PathLike, cfg: AccelConfig, tokens: int, seed: int):
    """Every check of ``microscopiq sim`` before anything is generated or built: ``--tokens``,
    ``--seed``, the ``--layer`` file (exists, a well-formed packed layer) and whether the instance
    ``cfg`` can run it (format, ReCoN, ``k <= max_k``, ``n <= max_n``). Returns the layer."""
    from .host.stream_format import StreamError, check_layer
    from .quant.layer import UniformLayer
    from .quant.pack import FormatError, load_layer
    check_count("--tokens", tokens, SIM_TOKENS_MAX)
    check_seed("--seed", seed)
    text = os.fspath(path)
    if not Path(text).is_file():
        raise ConfigError(f"--layer {text!r} is not a file")
    try:
        layer = load_layer(text)
    except FormatError as error:
        raise FormatError(f"--layer {error}") from None
    except OSError as error:
        raise ConfigError(f"--layer {text!r} cannot be read: {error.strerror or error}") from None
    try:   # (a multi-precision accelerator also runs layers at b/2: AccelConfig.pass_pairs)
        cfg.pass_pairs(layer.fmt, isinstance(layer, UniformLayer))
    except ConfigError:
        raise ConfigError(f"--layer {text!r} has format {layer.fmt}, the accelerator {cfg.fmt}: "
                          f"choose a --config with the same format") from None
    try:
        check_layer(cfg, layer)
    except StreamError as error:
        raise StreamError(f"--layer {text!r} does not fit --config: {error}") from None
    return layer
