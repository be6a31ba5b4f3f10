"""The beats of the accelerator's three streams, one :mod:`amaranth.lib.data` layout each.

The RTL reads ``tdata`` through a :class:`~amaranth.lib.data.View` of these layouts, the host
encoder builds beats with ``layout.const({...}).as_bits()`` and decodes them with
``layout.from_bits(...)`` (:mod:`microscopiq.host.stream_format`), the tests drive them as dicts
and the generator writes the manifest's stream section from them (``docs/hardware.md``). Every
field is two's complement (signed) or plain binary (unsigned), LSB first at its offset.

``s_axis_weights`` carries the packed weight stream (:data:`PACKED_HEADER`, docs/format.md); the on-chip
decoders turn each pass into a :attr:`StreamLayouts.header`, and per weight tile the PPU shifts
(:attr:`StreamLayouts.tile`) and ``R`` decoded PE rows (:attr:`StreamLayouts.row`).
``s_axis_act`` carries one :attr:`StreamLayouts.act` vector per token and tile; ``m_axis_result`` one
:attr:`StreamLayouts.result` beat per result (MicroScopiQ or raw fields, and the pass's fault). A
beat narrower than its stream's ``tdata`` fills its low bits; the rest are 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from amaranth import Mux, signed, unsigned
from amaranth.lib import data, enum, stream

from ..config import AccelConfig
from ..quant.layer import Role, padded
from .bits import residue_is
from .recon_network import ReconNetwork

__all__ = ["SHIFT_BITS", "EXP_BITS", "STREAM_VERSION", "PACKED_HEADER", "Mode", "Fault", "StreamLayouts",
           "axis_signature", "group_last"]

#: Width of one PPU shift ``d = E - E_min`` (0 … 255), in the tile header and in the PPU.
SHIFT_BITS = 8
#: Width of an inlier exponent ``E`` and of a row minimum ``E_min`` in the packed weight stream
#: (two's complement; host/packed_stream.py).
EXP_BITS = 8


class Mode(enum.Enum, shape=1):
    """The layer header's ``mode``: MicroScopiQ (``Y_int`` and overflow out) or raw (``P`` and ``S``)."""

    MSQ = 0
    RAW = 1


#: The packed weight stream's ``version`` (docs/format.md, "Streaming format").
STREAM_VERSION = 2

#: The packed weight stream's 64-bit pass header, fields at fixed offsets whatever the instance
#: (``wbits`` holds ``b - 1``; ``tokens``, ``k_tiles``, ``n_tiles`` hold ``M - 1``, ``KT - 1``, ``NT - 1``;
#: ``msq_pairs`` 1: a MicroScopiQ pass at ``b/2`` with two K rows per PE row, docs/format.md).
PACKED_HEADER = data.StructLayout({
    "version": unsigned(4), "mode": Mode, "wbits": unsigned(3), "msq_pairs": unsigned(1), "reserved": unsigned(7),
    "tokens": unsigned(16), "k_tiles": unsigned(16), "n_tiles": unsigned(16),
})


class Fault(enum.Enum, shape=3):
    """Why the core rejected a pass of the weight stream (``status`` and the result beats' ``fault``;
    docs/hardware.md, "Malformed weight streams")."""

    NONE = 0
    #: A header field the instance cannot take (version, reserved bits, ``wbits``, a MicroScopiQ pass
    #: without ReCoN, more tokens or tiles than the instance's limits, ``KT`` not whole K-groups).
    HEADER = 1
    #: ``tlast`` before the pass's last field.
    TRUNCATED = 2
    #: The pass's last field not in its ``tlast`` beat, or nonzero padding after it.
    OVERRUN = 3
    #: A micro-block record naming one slot twice (an outlier that is its own partner, or two pairs
    #: sharing a slot).
    PAIRS = 4
    #: An inlier exponent below its row minimum ``E_min``.
    EXPONENT = 5


def axis_signature(width: int, *, always_ready: bool = False) -> stream.Signature:
    """One AXI4-Stream port as an Amaranth stream: ``data`` (``tdata``) and ``last`` (``tlast``)."""
    return stream.Signature(data.StructLayout({"data": unsigned(width), "last": 1}),
                            always_ready=always_ready)


def group_last(cfg: AccelConfig, k, pairs=None, ahead: int = 0):
    """Whether K-tile ``k + ahead`` (``k`` a value) is the last of its K-group: ``G/R`` K-tiles per
    K-group, or ``G/2R`` where ``pairs`` (a 1-bit value; None: never) is 1. A test of ``k``'s
    residue (``ahead`` moves the residue, so no adder comes before it)."""
    def last(per_group):
        return residue_is(k, per_group, (per_group - 1 - ahead) % per_group)
    per_group = cfg.fmt.group // cfg.rows
    return last(per_group) if pairs is None else Mux(pairs, last(per_group // 2), last(per_group))


def _bits(maximum: int) -> int:
    """Unsigned width that holds 0 … ``maximum``."""
    return max(1, int(maximum).bit_length())


@dataclass(frozen=True)
class StreamLayouts:
    """Every beat layout and stream width of one :class:`AccelConfig`."""

    cfg: AccelConfig

    # -- sizes -----------------------------------------------------------------------------------
    @property
    def max_k_tiles(self) -> int:
        return padded(self.cfg.max_k, self.cfg.fmt.group) // self.cfg.rows

    @property
    def max_n_tiles(self) -> int:
        return -(-self.cfg.max_n // self.cfg.cols)

    @property
    def sum_bits(self) -> int:
        """Signed width of ``S[m,g]`` (sum of a K-group's activations)."""
        fmt = self.cfg.fmt
        return (fmt.act_bound * fmt.group).bit_length() + 1

    @property
    def partial_bits(self) -> int:
        """Signed width of ``P[m,n,g]`` in raw mode."""
        return self.cfg.fmt.group_sum_bits()

    # -- s_axis_weights --------------------------------------------------------------------------
    @cached_property
    def header(self) -> data.StructLayout:
        """The layer header: ``mode``, ``tokens`` (M-1), ``k_tiles`` (KT-1), ``n_tiles`` (NT-1); on a
        multi-precision instance also ``pairs`` (the pass's ``b`` is half the instance's: two slots
        per PE, ``2R``-deep K-tiles) and ``narrow`` (a MicroScopiQ pass at half the instance's ``b``,
        one slot per PE)."""
        fields = {
            "mode": Mode, "tokens": unsigned(_bits(self.cfg.max_tokens - 1)),
            "k_tiles": unsigned(_bits(self.max_k_tiles - 1)),
            "n_tiles": unsigned(_bits(self.max_n_tiles - 1)),
        }
        if self.cfg.multi_precision:
            fields["pairs"] = unsigned(1)
            fields["narrow"] = unsigned(1)
        return data.StructLayout(fields)

    @cached_property
    def tile(self) -> data.StructLayout:
        """A tile header: the PPU shift ``d`` of every column."""
        return data.StructLayout({"d": data.ArrayLayout(unsigned(SHIFT_BITS), self.cfg.cols)})

    @cached_property
    def recon_config(self) -> data.Layout:
        """One PE row's ReCoN configuration (:meth:`ReconNetwork.config_layout`; 0 bits without ReCoN)."""
        cfg = self.cfg
        return ReconNetwork.config_layout(cfg.fmt, cfg.cols) if cfg.has_recon else data.StructLayout({})

    @cached_property
    def row(self) -> data.StructLayout:
        """One PE row of a weight tile: the ``b``-bit codes, the roles and the ReCoN configuration."""
        cfg = self.cfg
        return data.StructLayout({
            "codes": data.ArrayLayout(unsigned(cfg.fmt.wbits), cfg.cols),
            "roles": data.ArrayLayout(Role, cfg.cols),
            "config": self.recon_config,
        })

    @property
    def weights_width(self) -> int:
        """``s_axis_weights_tdata`` width: :attr:`AccelConfig.weight_bus` (the packed stream's
        bytes, docs/format.md "Streaming format"; the header, tile and row layouts above are
        what the on-chip decoders make of it)."""
        return self.cfg.weight_bus

    # -- s_axis_act ------------------------------------------------------------------------------
    @cached_property
    def act(self) -> data.ArrayLayout:
        """:attr:`AccelConfig.act_lanes` signed ``a``-bit activations, lane ``i`` at ``i·a``: the
        K-tile's ``x[m, k]`` in ``k`` order (``R``, or ``2R`` on a multi-precision instance, whose
        ``b`` passes leave the upper ``R`` unused)."""
        return data.ArrayLayout(signed(self.cfg.fmt.abits), self.cfg.act_lanes)

    @property
    def act_width(self) -> int:
        """``s_axis_act_tdata`` width: :attr:`AccelConfig.act_bits` (the vector in its low bits)."""
        return self.cfg.act_bits

    # -- m_axis_result ---------------------------------------------------------------------------
    @cached_property
    def msq_result(self) -> data.StructLayout:
        """MicroScopiQ mode: ``Y_int`` per column, then the sticky overflow flag per column."""
        cols = self.cfg.cols
        return data.StructLayout({"y_int": data.ArrayLayout(signed(self.cfg.acc_bits), cols),
                                  "overflow": data.ArrayLayout(unsigned(1), cols)})

    @cached_property
    def raw_result(self) -> data.StructLayout:
        """Raw mode: ``P`` per column, then ``S``."""
        return data.StructLayout({"p": data.ArrayLayout(signed(self.partial_bits), self.cfg.cols),
                                  "s": signed(self.sum_bits)})

    @cached_property
    def result(self) -> data.StructLayout:
        """A result beat: the MicroScopiQ or raw fields (``body``, at bit 0), then ``fault``: the
        pass's :class:`Fault` (nonzero on every beat from the first fault on, always on the pass's
        last beat; a pass whose header was refused is one beat, ``body`` 0)."""
        return data.StructLayout({
            "body": data.UnionLayout({"msq": self.msq_result, "raw": self.raw_result}), "fault": Fault})

    @property
    def result_width(self) -> int:
        """``m_axis_result_tdata`` width: :attr:`result`."""
        return self.result.size
