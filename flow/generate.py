"""``microscopiq generate``: elaborate a block to Verilog and write it with its manifest.

Every generated folder holds (all written at once with :func:`~microscopiq.outputs.atomic_dir`, so
a failure leaves nothing behind):

* ``<basename>.v`` — the Verilog of the whole hierarchy (module name in the manifest);
* ``manifest.json`` — generator version, top module name, files, clock and reset, every port with
  direction, width and signedness (derived from the component's signature), and what the block
  adds: parameters, latency, throughput (see :func:`write_generated`);
* ``files.f`` — the file list, one file per line, relative to the folder (``-f`` for simulators
  after ``cd`` into it; :func:`read_manifest` gives absolute paths).

Subcommands: ``generate pe``. Other blocks add a ``_add_<block>(generators)`` function here and
call it from :func:`add_commands`, reusing :func:`add_format_arguments`, :func:`add_out_argument`
and :func:`write_generated`.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import re
from pathlib import Path

import amaranth
from amaranth import Shape
from amaranth.lib import wiring

from .. import __version__
from ..config import ConfigError, FormatConfig
from ..outputs import OutputError, atomic_dir, check_output_dir
from ..hdl.pe import PE
from .provenance import convert, generate_command, header_comment

__all__ = [
    "MANIFEST_NAME", "FILELIST_NAME", "signature_ports", "write_generated", "read_manifest",
    "add_commands", "add_format_arguments", "add_out_argument", "pe_top_name", "generate_pe",
    "generate_accel", "generate", "BLOCKS",
]

MANIFEST_NAME = "manifest.json"
FILELIST_NAME = "files.f"
#: Names Amaranth gives the ``sync`` domain's clock and reset ports.
CLOCK_PORT, RESET_PORT = "clk", "rst"


def is_enum(shape) -> bool:
    """``shape`` is an enumeration (``amaranth.lib.enum`` or a plain ``enum.Enum``, as
    :class:`~microscopiq.quant.layer.Role`)."""
    return isinstance(shape, type) and issubclass(shape, enum.Enum)


def signature_ports(component: wiring.Component) -> list[dict]:
    """The Verilog ports of ``component``'s signature, in signature order.

    Each is ``{"name", "direction" ("in"/"out"), "width", "signed"}``, plus ``"enum"`` (member name
    to value) for ``amaranth.lib.enum`` ports. Names are the member paths joined by ``__``, as
    :func:`amaranth.back.verilog.convert` names them.
    """
    ports = []
    for path, member in component.signature.members.flatten():
        if not member.is_port:
            continue
        shape = Shape.cast(member.shape)
        port = {
            "name": "__".join(str(part) for part in path),
            "direction": "in" if member.flow == wiring.In else "out",
            "width": shape.width,
            "signed": shape.signed,
        }
        if is_enum(member.shape):
            port["enum"] = {item.name: item.value for item in member.shape}
        ports.append(port)
    return ports


def _module_ports(text: str, top_name: str) -> list[str]:
    """Port names of module ``top_name`` in Verilog ``text`` (Amaranth's ``module name(a, b);``)."""
    found = re.search(rf"^module {re.escape(top_name)}\(([^)]*)\);", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"module {top_name!r} not found in the generated Verilog")
    return [name.strip() for name in found.group(1).split(",") if name.strip()]


def _clock_reset(emitted: list[str]) -> dict:
    """Manifest entries for the clock and reset, if the design has them (it uses ``sync``)."""
    out = {}
    if CLOCK_PORT in emitted:
        out["clock"] = {"name": CLOCK_PORT, "edge": "rising"}
    if RESET_PORT in emitted:
        out["reset"] = {"name": RESET_PORT, "active": "high", "kind": "synchronous"}
    return out


def write_generated(out_dir: str | os.PathLike, component: wiring.Component, top_name: str,
                    manifest_extra: dict, *, basename: str, extra_files: dict | None = None,
                    command: str | None = None) -> dict:
    """Convert ``component`` to Verilog and write ``<basename>.v``, the manifest and the file list.

    Parameters
    ----------
    out_dir : path
        Output folder (created; files of the same name replaced; nothing written on failure).
    component : wiring.Component
        The block; its signature gives the manifest's ports.
    top_name : str
        Verilog name of the top module.
    manifest_extra : dict
        Block-specific entries merged into the manifest (``block``, ``parameters``,
        ``latency_cycles``, ``throughput_per_cycle``, ...); JSON-serialisable.
    basename : str
        Stem of the Verilog file name.
    extra_files : dict of str to str, optional
        More files (name: text) written in the same all-or-nothing step, e.g. a FuseSoC core;
        listed in the manifest under ``extra_files``, not in the file list.
    command : str, optional
        The command that rebuilds the file, for its header comment (default: ``microscopiq generate
        <block>`` with the ``parameters`` as options, when ``manifest_extra`` names the ``block``).

    Returns
    -------
    dict
        The manifest as written.

    Raises
    ------
    OutputError
        ``out_dir`` cannot be created or written (see :mod:`microscopiq.outputs`).
    """
    generator = _generator()
    text = _verilog(component, top_name, generator, manifest_extra, command)
    emitted = _module_ports(text, top_name)
    ports = signature_ports(component)
    missing = [port["name"] for port in ports if port["name"] not in emitted]
    if missing:
        raise RuntimeError(f"signature ports {missing} are missing from module {top_name!r}")
    clock_reset = _clock_reset(emitted)
    implicit = [{"name": entry["name"], "direction": "in", "width": 1, "signed": False}
                for entry in clock_reset.values()]
    verilog_name = f"{basename}.v"
    manifest = {
        "generator": generator,
        "top": top_name,
        "files": [verilog_name],
        **clock_reset,
        "ports": implicit + ports,
        **manifest_extra,
    }
    if extra_files:
        manifest["extra_files"] = sorted(extra_files)
    with atomic_dir(out_dir) as staging:
        (staging / verilog_name).write_text(text)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        (staging / FILELIST_NAME).write_text("".join(f"{name}\n" for name in manifest["files"]))
        for name, content in (extra_files or {}).items():
            (staging / name).write_text(content)
    return manifest


def _generator() -> dict:
    return {"name": "microscopiq", "version": __version__, "amaranth": amaranth.__version__}


def _verilog(component, top_name: str, generator: dict, manifest_extra: dict, command) -> str:
    """Reproducible Verilog with its header comment (:mod:`microscopiq.flow.provenance`)."""
    parameters = manifest_extra.get("parameters", {})
    if command is None:
        block = manifest_extra.get("block")
        command = generate_command(block, parameters) if block else "none (not a 'generate' block)"
    return convert(component, top_name, header_comment(generator, top_name, parameters, command))


def read_manifest(folder: str | os.PathLike) -> tuple[dict, list[Path]]:
    """The manifest of a generated folder and the absolute paths of its files."""
    folder = Path(folder).resolve()
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
        return manifest, [folder / name for name in manifest["files"]]
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError) as error:
        raise ConfigError(f"{str(path)!r} is not a manifest written by 'microscopiq generate' "
                          f"({type(error).__name__}: {error})") from None


# -- the PE ---------------------------------------------------------------------------------------
def pe_top_name(fmt: FormatConfig) -> str:
    """Verilog module name of the PE for ``fmt``: ``msq_pe_a<a>_w<b>``."""
    return f"msq_pe_a{fmt.abits}_w{fmt.wbits}"


def generate_pe(fmt: FormatConfig, out_dir: str | os.PathLike) -> dict:
    """Write the PE for ``fmt`` into ``out_dir`` (``pe.v``, manifest, file list); return the manifest."""
    pe = PE(fmt)
    extra = {
        "block": "pe",
        "parameters": {"abits": fmt.abits, "wbits": fmt.wbits},
        "latency_cycles": PE.LATENCY,
        "throughput_per_cycle": PE.THROUGHPUT,
    }
    return write_generated(out_dir, pe, pe_top_name(fmt), extra, basename="pe")


# -- command line ---------------------------------------------------------------------------------
def add_format_arguments(parser: argparse.ArgumentParser) -> None:
    """``--abits`` and ``--wbits`` (integers; :class:`FormatConfig` checks the values)."""
    defaults = FormatConfig()
    parser.add_argument("--abits", type=int, default=defaults.abits, metavar="A",
                        help=f"activation width a, signed: 4 or 8 (default {defaults.abits})")
    parser.add_argument("--wbits", type=int, default=defaults.wbits, metavar="B",
                        help="weight slot width b: 2, 3 or 4 (MicroScopiQ), 8 (uniform mode only) "
                             f"(default {defaults.wbits})")


def add_out_argument(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--out", default=default, metavar="DIR",
                        help=f"output folder, created if needed; files of the same name are "
                             f"replaced, nothing is written on error (default {default})")


def _output_error(out, error: Exception) -> OutputError:
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return OutputError(f"--out must be a folder that can be created and written, not {str(out)!r} "
                       f"({reason})")


def _run_pe(args: argparse.Namespace) -> int:
    fmt = FormatConfig(abits=args.abits, wbits=args.wbits)
    try:
        check_output_dir(args.out)
        manifest = generate("pe", fmt, args.out)
    except (OutputError, OSError) as error:
        raise _output_error(args.out, error) from error
    print(f"wrote {Path(args.out) / manifest['files'][0]} (module {manifest['top']}, "
          f"latency {PE.LATENCY}, throughput {PE.THROUGHPUT}/cycle), {MANIFEST_NAME}, {FILELIST_NAME}")
    return 0


def _add_pe(generators) -> None:
    parser = generators.add_parser(
        "pe", help="the multi-precision INT processing element",
        description="Generate the multi-precision INT PE: a-bit signed activation times a b-bit "
                    "weight slot by role (INLIER x*q, OUT_HI +-x, OUT_LO x*f), double-buffered "
                    "weights, product registered (latency 1, one product per cycle). Writes pe.v, "
                    f"{MANIFEST_NAME} (parameters, ports, latency) and {FILELIST_NAME}.",
        epilog="example: microscopiq generate pe --abits 8 --wbits 4 --out build/pe/")
    add_format_arguments(parser)
    add_out_argument(parser, "build/pe")
    parser.set_defaults(func=_run_pe)


def add_commands(subparsers) -> None:
    """Add ``generate`` and its blocks to the ``microscopiq`` command."""
    parser = subparsers.add_parser(
        "generate", help="generate Verilog and a manifest for a block",
        description="Elaborate a block with Amaranth and write its Verilog, a JSON manifest "
                    "(parameters, ports, latency, throughput, generator version) and a file list.",
        epilog="Run 'microscopiq generate BLOCK --help' for the options of one block.")
    generators = parser.add_subparsers(dest="block", metavar="BLOCK", required=True)
    _add_pe(generators)
    _add_accel(generators)


# -- the accelerator (flow/accel.py) -------------------------------------------------------------------
def generate_accel(cfg, out_dir: str | os.PathLike, **options) -> dict:
    """Write the accelerator for ``cfg`` (see :func:`microscopiq.flow.accel.generate_accel`)."""
    from .accel import generate_accel as generate
    return generate(cfg, out_dir, **options)


def _add_accel(generators) -> None:
    from .accel import add_accel_command
    add_accel_command(generators)


#: The blocks :func:`generate` writes.
BLOCKS = ("pe", "accel")


def generate(block: str, cfg, out_dir: str | os.PathLike, **options) -> dict:
    """Write ``block`` for ``cfg`` into ``out_dir`` and return its manifest: the one entry point of
    the ``generate``, ``synth`` and ``sim`` commands and the tests.

    ``block`` is ``"pe"`` (``cfg`` a :class:`FormatConfig`, or an ``AccelConfig`` whose ``fmt`` is
    used) or ``"accel"`` (``cfg`` an ``AccelConfig``; ``options`` are
    :func:`~microscopiq.flow.accel.generate_accel`'s ``name`` and ``ports``)."""
    if block == "pe":
        return generate_pe(getattr(cfg, "fmt", cfg), out_dir)
    if block == "accel":
        return generate_accel(cfg, out_dir, **options)
    raise ValueError(f"block must be one of {', '.join(BLOCKS)}, not {block!r}")
