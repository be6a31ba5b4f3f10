"""SoC-ready ports around the accelerator: whole-byte ``tdata`` and an ``aclk``/``aresetn`` pair.

AXI4-Stream IP (interconnects, DMAs, width converters) and the Vivado, LiteX and Chipyard flows
expect ``tdata`` in whole bytes and the clock and active-low reset named ``aclk`` and ``aresetn``;
the accelerator's own streams are as wide as their payload (121, 105, 242 bits) and it is clocked
by Amaranth's ``clk``/``rst``. :class:`SocAccelerator` is a thin wrapper that changes only the
ports: input ``tdata`` bits above the payload are ignored, output ``tdata`` is zero-extended, and
``aresetn`` low is the synchronous reset of the whole design. Zero cycles of latency are added.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import ClockDomain, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import AccelConfig
from .layouts import Fault, StreamLayouts
from .top import Accelerator

__all__ = ["SocPorts", "SocAccelerator", "RESET_STYLES", "STREAMS"]

#: ``rst``: Amaranth's ``clk`` and active-high ``rst``; ``aresetn``: ``aclk`` and active-low ``aresetn``.
RESET_STYLES = ("rst", "aresetn")
#: The accelerator's streams: (port prefix, True for the output).
STREAMS = (("s_axis_weights", False), ("s_axis_act", False), ("m_axis_result", True))


@dataclass(frozen=True)
class SocPorts:
    """How the generated top level's ports look.

    Parameters
    ----------
    tdata_bytes : bool
        Pad every ``tdata`` to a whole number of bytes (the payload in the low bits).
    reset_style : {"rst", "aresetn"}
        Clock and reset names and the reset's polarity (synchronous in both).
    """

    tdata_bytes: bool = False
    reset_style: str = "rst"

    def __post_init__(self):
        if not isinstance(self.tdata_bytes, bool):
            raise TypeError(f"tdata_bytes must be a bool, not {self.tdata_bytes!r}")
        if self.reset_style not in RESET_STYLES:
            raise ValueError(f"reset_style must be one of {', '.join(RESET_STYLES)}, "
                             f"not {self.reset_style!r}")

    @property
    def wrapped(self) -> bool:
        """Whether the ports differ from :class:`~microscopiq.hdl.top.Accelerator`'s."""
        return self != SocPorts()

    @property
    def clock(self) -> str:
        return "aclk" if self.reset_style == "aresetn" else "clk"

    @property
    def reset(self) -> str:
        return self.reset_style

    @property
    def reset_active_low(self) -> bool:
        return self.reset_style == "aresetn"

    def tdata_width(self, payload_bits: int) -> int:
        """Port width of a stream whose payload is ``payload_bits`` wide."""
        return -(-payload_bits // 8) * 8 if self.tdata_bytes else payload_bits

    def options(self) -> dict:
        """The ``generate accel`` options (underscored) that differ from the defaults."""
        return {name: value for name, value in (("tdata_bytes", self.tdata_bytes),
                                                ("reset_style", self.reset_style))
                if value != getattr(SocPorts(), name)}


class SocAccelerator(wiring.Component):
    """:class:`~microscopiq.hdl.top.Accelerator` with :class:`SocPorts` ports.

    Parameters
    ----------
    cfg : AccelConfig
    ports : SocPorts

    Members
    -------
    aclk, aresetn : In(1)
        Only with ``reset_style="aresetn"`` (else Amaranth's ``clk``/``rst`` of the ``sync`` domain).
    s_axis_weights_*, s_axis_act_*, m_axis_result_*
        As :class:`~microscopiq.hdl.top.Accelerator`'s, ``tdata`` ``ports.tdata_width(payload)`` wide.

    Latency and throughput are the accelerator's: the wrapper is wiring only.
    """

    def __init__(self, cfg: AccelConfig, ports: SocPorts):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        if not isinstance(ports, SocPorts):
            raise TypeError(f"ports must be a SocPorts, not {ports!r}")
        self.cfg, self.ports = cfg, ports
        sf = StreamLayouts(cfg)
        self.payload_bits = {"s_axis_weights": sf.weights_width, "s_axis_act": sf.act_width,
                             "m_axis_result": sf.result_width}
        members = {}
        if ports.reset_active_low:
            members.update({"aclk": In(1), "aresetn": In(1)})
        for prefix, outgoing in STREAMS:
            flow, back = (Out, In) if outgoing else (In, Out)
            members.update({f"{prefix}_tdata": flow(ports.tdata_width(self.payload_bits[prefix])),
                            f"{prefix}_tvalid": flow(1), f"{prefix}_tlast": flow(1),
                            f"{prefix}_tready": back(1)})
        members["fault"] = Out(Fault.as_shape())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.accel = accel = Accelerator(self.cfg)
        if self.ports.reset_active_low:
            m.domains.sync = sync = ClockDomain("sync")
            m.d.comb += [sync.clk.eq(self.aclk), sync.rst.eq(~self.aresetn)]
        for prefix, outgoing in STREAMS:
            source, sink = (accel, self) if outgoing else (self, accel)
            payload = self.payload_bits[prefix]
            # Inputs: the payload is the low bits, the padding is ignored; outputs: zero-extended.
            m.d.comb += [
                getattr(sink, f"{prefix}_tdata").eq(getattr(source, f"{prefix}_tdata")[:payload]),
                getattr(sink, f"{prefix}_tvalid").eq(getattr(source, f"{prefix}_tvalid")),
                getattr(sink, f"{prefix}_tlast").eq(getattr(source, f"{prefix}_tlast")),
                getattr(source, f"{prefix}_tready").eq(getattr(sink, f"{prefix}_tready")),
            ]
        m.d.comb += self.fault.eq(accel.fault)
        return m
