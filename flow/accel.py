"""``generate accel``'s output: the accelerator (or its SoC wrapper), named, with its FuseSoC core.

:func:`generate_accel` writes ``accel.v`` (reproducible, with a header comment:
:mod:`~microscopiq.flow.provenance`), ``manifest.json``, ``files.f``, the FuseSoC core
``accel.core`` (:mod:`~microscopiq.flow.fusesoc`), its ``waivers.vlt`` and smoke testbench. The top
module is named by :func:`~microscopiq.flow.naming.accel_top_name` unless ``name`` is given; with
non-default :class:`~microscopiq.hdl.soc.SocPorts` the top level is the
:class:`~microscopiq.hdl.soc.SocAccelerator` wrapper.
"""

from __future__ import annotations

import argparse

from ..config import AccelConfig
from ..hdl.soc import RESET_STYLES, STREAMS, SocAccelerator, SocPorts
from .naming import accel_options, accel_top_name, check_name
from .provenance import generate_command

__all__ = ["generate_accel", "soc_manifest", "add_soc_arguments", "soc_ports_from_args"]


def soc_manifest(manifest: dict, ports: SocPorts) -> dict:
    """``manifest`` (from :func:`~microscopiq.hdl.top.accel_manifest`) with the ports' view: each
    stream's ``tdata_width`` beside its payload ``width`` and the ``used_bits`` of ``tdata``, the
    clock and reset when they are ``aclk``/``aresetn``, and ``soc_ports``."""
    streams = {}
    for prefix, _ in STREAMS:
        stream = dict(manifest["streams"][prefix])
        stream["tdata_width"] = ports.tdata_width(stream["width"])
        stream["used_bits"] = {"offset": 0, "width": stream["width"]}
        streams[prefix] = stream
    extra = {**manifest, "streams": streams,
             "soc_ports": {"tdata_bytes": ports.tdata_bytes, "reset_style": ports.reset_style}}
    if ports.reset_active_low:
        extra["clock"] = {"name": ports.clock, "edge": "rising"}
        extra["reset"] = {"name": ports.reset, "active": "low", "kind": "synchronous"}
    return extra


def generate_accel(cfg: AccelConfig, out_dir, *, name: str | None = None,
                   ports: SocPorts | None = None) -> dict:
    """Write the accelerator for ``cfg`` into ``out_dir`` (see the module doc); return the manifest.
    Nothing is written if anything fails."""
    from .. import __version__
    from ..hdl.top import CORE_NAME, WAIVERS_NAME, Accelerator, accel_manifest
    from .fusesoc import SMOKE_TB_NAME, accel_core, core_vlnv, smoke_testbench
    from .generate import signature_ports, write_generated
    from .lint import waiver_control_file
    ports = ports or SocPorts()
    top_name = check_name(name) if name is not None else accel_top_name(cfg, ports.options())
    options = accel_options(cfg) | ports.options() | ({"name": name} if name is not None else {})
    command = generate_command("accel", options)
    component = SocAccelerator(cfg, ports) if ports.wrapped else Accelerator(cfg)
    implicit = [] if ports.reset_active_low else [
        {"name": port, "direction": "in", "width": 1} for port in ("clk", "rst")]
    description = (f"MicroScopiQ accelerator {cfg.rows}x{cfg.cols}, a={cfg.fmt.abits}, "
                   f"b={cfg.fmt.wbits}, recon {options['recon']}, AXI4-Stream")
    extra = {
        CORE_NAME: accel_core(vlnv=core_vlnv(top_name, __version__), top_name=top_name,
                              description=description, command=command, verilog_name="accel.v",
                              waivers_name=WAIVERS_NAME),
        WAIVERS_NAME: waiver_control_file().read_text(),
        SMOKE_TB_NAME: smoke_testbench(cfg, top_name, implicit + signature_ports(component), ports),
    }
    return write_generated(out_dir, component, top_name, soc_manifest(accel_manifest(cfg), ports),
                           basename="accel", extra_files=extra, command=command)


def add_soc_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tdata-bytes`` and ``--reset-style`` (:class:`~microscopiq.hdl.soc.SocPorts`)."""
    parser.add_argument("--tdata-bytes", action="store_true",
                        help="pad every tdata to whole bytes (payload in the low bits; the manifest "
                             "gives tdata_width and used_bits per stream)")
    parser.add_argument("--reset-style", choices=RESET_STYLES, default="rst",
                        help="clk and active-high rst (Amaranth's), or aclk and active-low aresetn "
                             "(AXI); synchronous in both (default rst)")


def soc_ports_from_args(args) -> SocPorts:
    return SocPorts(tdata_bytes=args.tdata_bytes, reset_style=args.reset_style)
