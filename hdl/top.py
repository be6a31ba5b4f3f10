"""The accelerator's top level: :class:`~.core.AcceleratorCore` with AXI4-Stream port names
(``s_axis_weights_tdata``/``_tvalid``/``_tready``/``_tlast``, ``s_axis_act_*``, ``m_axis_result_*``)
so the Verilog drops into existing designs (docs/hardware.md has the ports).
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import AccelConfig
from .core import AcceleratorCore
from .layouts import Fault, StreamLayouts

__all__ = ["Accelerator"]


class Accelerator(wiring.Component):
    """MicroScopiQ accelerator with AXI4-Stream ports (see :class:`AcceleratorCore`).

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    s_axis_weights_tdata : In(weights_width)
    s_axis_weights_tvalid, s_axis_weights_tlast : In(1)
    s_axis_weights_tready : Out(1)
    s_axis_act_tdata : In(R·a)
    s_axis_act_tvalid, s_axis_act_tlast : In(1)
    s_axis_act_tready : Out(1)
    m_axis_result_tdata : Out(result_width)
    m_axis_result_tvalid, m_axis_result_tlast : Out(1)
    m_axis_result_tready : In(1)
    fault : Out(3)
        The first :class:`~.layouts.Fault` of the weight stream since reset (sticky; 0: none).
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        self.format = sf = StreamLayouts(cfg)
        members = {}
        for name, width, outgoing in (("s_axis_weights", sf.weights_width, False),
                                      ("s_axis_act", sf.act_width, False),
                                      ("m_axis_result", sf.result_width, True)):
            flow, back = (Out, In) if outgoing else (In, Out)
            members.update({f"{name}_tdata": flow(width), f"{name}_tvalid": flow(1),
                            f"{name}_tlast": flow(1), f"{name}_tready": back(1)})
        members["fault"] = Out(Fault.as_shape())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = AcceleratorCore(self.cfg)
        for name, port in (("s_axis_weights", core.weights), ("s_axis_act", core.act)):
            m.d.comb += [
                port.payload.data.eq(getattr(self, f"{name}_tdata")),
                port.payload.last.eq(getattr(self, f"{name}_tlast")),
                port.valid.eq(getattr(self, f"{name}_tvalid")),
                getattr(self, f"{name}_tready").eq(port.ready),
            ]
        m.d.comb += [
            self.m_axis_result_tdata.eq(core.result.payload.data),
            self.m_axis_result_tlast.eq(core.result.payload.last),
            self.m_axis_result_tvalid.eq(core.result.valid),
            core.result.ready.eq(self.m_axis_result_tready),
            self.fault.eq(core.fault),
        ]
        return m
