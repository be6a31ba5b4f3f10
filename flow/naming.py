"""Names of generated designs: unique per configuration, overridable, always valid Verilog.

Two configurations that differ only in, say, ``acc_bits`` used to get the same top module and
FuseSoC core name, so FuseSoC replaced one core with the other and the two could not sit in one
SoC. A name now carries a readable part (geometry, widths, ReCoN) and a short hash of *every*
parameter that shapes the RTL, so distinct configurations get distinct names and equal ones equal
names. ``--name`` replaces the whole name; it must be a plain Verilog identifier, because it names
the top module and, as a prefix, every module under it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re

from ..config import AccelConfig, ConfigError, ReconSharing

__all__ = ["config_digest", "check_name", "accel_top_name", "option_values", "add_name_argument"]

#: Hex digits of the configuration hash in a name: 32 bits, a collision among the configurations
#: of one project is unlikely enough (and would show as a FuseSoC duplicate-core error, not silently).
DIGEST_DIGITS = 8
#: A simple Verilog identifier (IEEE 1364 §3.7.1) that every tool accepts as a module and file name.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_MAX_IDENTIFIER = 1024


def config_digest(parameters: dict) -> str:
    """Short hex hash of ``parameters`` (JSON-serialisable), independent of key order."""
    text = json.dumps(parameters, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_DIGITS]


def check_name(name: str) -> str:
    """``name`` if it is a simple Verilog identifier of at most 1024 characters, else ConfigError."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {name!r}")
    if not _IDENTIFIER.fullmatch(name) or len(name) > _MAX_IDENTIFIER:
        raise ConfigError(f"name must be a Verilog identifier (a letter or _, then letters, digits, "
                          f"_ or $), not {name!r}")
    return name


def option_values(cfg: AccelConfig) -> dict:
    """Every ``generate accel`` option (underscored name: value) that rebuilds ``cfg``."""
    fmt = cfg.fmt
    return {"rows": cfg.rows, "cols": cfg.cols, "wbits": fmt.wbits, "abits": fmt.abits,
            "ublock": fmt.ublock, "group": fmt.group, "xbits": fmt.xbits, "acc_bits": cfg.acc_bits,
            "recon": ReconSharing.format(cfg.recon_share), "max_tokens": cfg.max_tokens,
            "max_k": cfg.max_k, "max_n": cfg.max_n,
            # (only when set: the names and hashes of every other build stay as they were)
            **({"multi_precision": True} if cfg.multi_precision else {}),
            **({"dsp": cfg.dsp} if cfg.dsp != "none" else {})}


def accel_top_name(cfg: AccelConfig, ports: dict | None = None) -> str:
    """``msq_accel_<R>x<C>_a<a>_w<b>_<recon>_<hash>``: the hash covers every parameter of ``cfg``
    and the SoC port options ``ports`` (see :mod:`microscopiq.hdl.soc`), when they are not the
    defaults."""
    recon = {0: "plain", 1: "rowrecon"}.get(cfg.recon_share, f"shared{cfg.recon_share}")
    hashed = option_values(cfg) | (ports or {})
    return (f"msq_accel_{cfg.rows}x{cfg.cols}_a{cfg.fmt.abits}_w{cfg.fmt.wbits}_{recon}_"
            f"{config_digest(hashed)}")


def add_name_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", metavar="IDENT",
                        help="top module name (and FuseSoC core name), a Verilog identifier "
                             "(default: the parameters and a hash of the whole configuration)")
