"""The one configuration shared by hdl/, quant/ and tb/.

Two frozen dataclasses, grouped by who needs them:

* :class:`FormatConfig` — the number formats (SPEC §1–§3): what the quantizer produces, what the
  golden model computes and what the hardware datapaths must hold. The quantizer needs only this.
* :class:`AccelConfig` — a generated accelerator: a :class:`FormatConfig` plus the array geometry,
  the accumulator and the ReCoN arrangement.

Every knob has a default; derived widths are properties; limits are checked in ``__post_init__``
with ``TypeError`` (wrong kind) or ``ValueError`` (bad value) and a message that names the parameter,
states the rule and echoes the value. Named presets live in :data:`PRESETS`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ConfigError", "FormatConfig", "AccelConfig", "ReconSharing", "PRESETS",
    "WBITS_ALLOWED", "MSQ_WBITS_ALLOWED", "ABITS_ALLOWED",
    "MAX_UBLOCK", "MAX_GROUP", "MAX_ARRAY_SIDE", "MAX_TOKENS", "MAX_LAYER_DIM", "MAX_BUS_BITS",
    "DSP_TARGETS", "resolve_config",
]

#: Slot widths b the INT PE supports (8 only in uniform mode).
WBITS_ALLOWED = (2, 3, 4, 8)
#: Slot widths b for which the MicroScopiQ (outlier) format is defined.
MSQ_WBITS_ALLOWED = (2, 3, 4)
#: Activation widths a.
ABITS_ALLOWED = (4, 8)
#: Upper bounds where the formats have them (checked before any work, see docs/verification.md):
#: a pair's row offset ``mate`` is an int8 inside its micro-block, so U <= 128; every layer is padded
#: to whole K-groups, so G is bounded to keep one padded row small (16 times the presets' max_k).
MAX_UBLOCK = 128
MAX_GROUP = 1 << 16
#: Largest array side: the stream beats carry R or C lanes (a 64-column result beat is already
#: over 2000 bits wide) and elaboration time grows with R·C; 16x16 is the largest preset.
MAX_ARRAY_SIDE = 64
#: Largest result buffer (tokens per pass): max_tokens x C accumulators, 1 Mbit for 8x8 at 32 bits,
#: about a third of the largest ECP5's block RAM.
MAX_TOKENS = 4096
#: Largest max_k and max_n: the packed file and the layer header hold n and k as u32.
MAX_LAYER_DIM = (1 << 32) - 1
#: Widest ``s_axis_weights`` / ``s_axis_act`` ``tdata``.
MAX_BUS_BITS = 1024
#: ``AccelConfig.dsp``: the PE multiplier in fabric logic (``none``, whatever synthesis infers) or
#: one ECP5 ``MULT18X18D`` instantiated with its input and output registers per PE (``ecp5``).
DSP_TARGETS = ("none", "ecp5")


class ConfigError(ValueError):
    """A parameter value breaks a documented rule (a ``ValueError``, so callers may catch either)."""


def _check_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")


def _check_choice(name: str, value, allowed) -> None:
    _check_int(name, value)
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))}, not {value!r}")


def _check_power_of_two(name: str, value, minimum: int, maximum: int) -> None:
    _check_int(name, value)
    if value < minimum or value & (value - 1):
        raise ConfigError(f"{name} must be a power of two >= {minimum}, not {value!r}")
    if value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, not {value!r}")


def _check_at_most(name: str, value: int, maximum: int) -> None:
    if value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, not {value!r}")


@dataclass(frozen=True)
class FormatConfig:
    """Number formats of SPEC §1–§3.

    Parameters
    ----------
    wbits : int
        Slot width ``b``: 2, 3 or 4 for MicroScopiQ layers, also 8 for uniform-mode layers.
    abits : int
        Activation width ``a`` (signed, symmetric): 4 or 8.
    ublock : int
        Micro-block size ``U`` (output rows sharing an outlier exponent), a power of two from 2 to
        :data:`MAX_UBLOCK`.
    group : int
        K-group size ``G`` (input columns sharing an inlier exponent), a power of two from 2 to
        :data:`MAX_GROUP`.
    xbits : int
        Width ``xb`` of the micro-block's shared unsigned outlier exponent ``X``: 1 to 6.
    """

    wbits: int = 4
    abits: int = 8
    ublock: int = 8
    group: int = 128
    xbits: int = 4

    def __post_init__(self):
        _check_choice("wbits", self.wbits, WBITS_ALLOWED)
        _check_choice("abits", self.abits, ABITS_ALLOWED)
        _check_power_of_two("ublock", self.ublock, 2, MAX_UBLOCK)
        _check_power_of_two("group", self.group, 2, MAX_GROUP)
        _check_int("xbits", self.xbits)
        if not 1 <= self.xbits <= 6:
            raise ConfigError(f"xbits must be between 1 and 6, not {self.xbits!r}")

    # -- derived values -------------------------------------------------------------------------
    @property
    def msq_capable(self) -> bool:
        """True when the MicroScopiQ outlier format exists for this ``wbits``."""
        return self.wbits in MSQ_WBITS_ALLOWED

    @property
    def amax(self) -> int:
        """Largest activation magnitude, ``2^(a-1) - 1`` (the range is symmetric)."""
        return (1 << (self.abits - 1)) - 1

    @property
    def act_bound(self) -> int:
        """Largest activation magnitude the hardware accepts, ``2^(a-1)``: datapath widths cover the
        whole a-bit input range, including ``-2^(a-1)`` which the quantizer never produces."""
        return 1 << (self.abits - 1)

    @property
    def pe_product_bits(self) -> int:
        """Signed width of a PE output (:func:`~microscopiq.quant.golden.pe_product`): ``a + b``."""
        return self.abits + self.wbits

    @property
    def qmin(self) -> int:
        """Smallest inlier code value, ``-2^(b-1)``."""
        return -(1 << (self.wbits - 1))

    @property
    def qmax(self) -> int:
        """Largest inlier code value, ``2^(b-1) - 1``."""
        return (1 << (self.wbits - 1)) - 1

    @property
    def ebits(self) -> int:
        """Width of an outlier's own exponent ``e`` (the OUT_HI code minus its sign bit)."""
        return self.wbits - 1

    @property
    def max_outliers(self) -> int:
        """Most outliers (pairs) in one micro-block, ``U/2``."""
        return self.ublock // 2

    @property
    def max_outlier_shift(self) -> int:
        """Largest ``e + X``: the biggest left shift an outlier's merged product takes."""
        return (1 << self.ebits) - 1 + (1 << self.xbits) - 1

    @property
    def max_slot_magnitude(self) -> int:
        """Largest ``|v[n,k]|`` of SPEC §3 over every code this format allows."""
        inlier = (1 << (self.wbits - 1)) << self.wbits
        if not self.msq_capable:
            return inlier
        outlier = ((1 << (self.wbits + 1)) - 1) << self.max_outlier_shift
        return max(inlier, outlier)

    @property
    def product_bits(self) -> int:
        """Signed width that holds any ``x · v[n,k]`` (activation times slot value)."""
        return (self.act_bound * self.max_slot_magnitude).bit_length() + 1

    def group_sum_bits(self) -> int:
        """Signed width of a K-group partial sum ``P[m,n,g]`` (SPEC §3), never overflowing."""
        return (self.act_bound * self.max_slot_magnitude * self.group).bit_length() + 1


class ReconSharing:
    """How ReCoN networks are arranged: ``"per-row"``, ``"shared:S"`` or ``"none"``.

    A plain string wrapper would do, but the parse rules and the message belong in one place.
    """

    @staticmethod
    def parse(text: str) -> int:
        """Return rows per ReCoN network: 1 for per-row, S for shared:S, 0 for none."""
        if text == "per-row":
            return 1
        if text == "none":
            return 0
        if text.startswith("shared:"):
            count = text.split(":", 1)[1]
            if count.isdigit() and int(count) >= 1:
                return int(count)
        raise ConfigError(f"recon must be 'per-row', 'shared:S' (S >= 1 rows per network) or 'none', "
                          f"not {text!r}")

    @staticmethod
    def format(rows_per_recon: int) -> str:
        return {0: "none", 1: "per-row"}.get(rows_per_recon, f"shared:{rows_per_recon}")


@dataclass(frozen=True)
class AccelConfig:
    """A generated accelerator (SPEC §5).

    Parameters
    ----------
    fmt : FormatConfig
        Number formats.
    rows, cols : int
        Array geometry ``R × C``: ``R`` input columns ``k`` per weight tile, ``C`` output rows ``n``.
        ``cols`` is a multiple of ``ublock``; ``group`` is a multiple of ``rows`` so that a K-tile
        never straddles two K-groups. Each at most :data:`MAX_ARRAY_SIDE`.
    acc_bits : int
        Width of the saturating MX accumulator (SPEC §3), 16 to 64.
    recon_share : int
        PE rows served by one ReCoN network: 1 = one per row (full rate), ``S`` > 1 = shared by
        ``S`` rows (``rows`` a multiple of ``S``), 0 = no ReCoN and no outlier support (the plain
        INT-b baseline; uniform layers only).
    max_tokens : int
        Tokens per pass the result buffer holds (``M`` is processed in chunks of this many), at
        most :data:`MAX_TOKENS`.
    max_k : int
        Largest layer ``K`` the generated instance accepts (sizes its counters), at most
        :data:`MAX_LAYER_DIM`.
    max_n : int
        Largest layer ``N`` the generated instance accepts, at most :data:`MAX_LAYER_DIM`.
    weight_bus : int
        Bits of ``s_axis_weights_tdata``, a multiple of 8 up to :data:`MAX_BUS_BITS`: the packed
        weight stream (docs/format.md) arrives at this many bits per cycle.
    act_bus : int
        Bits of ``s_axis_act_tdata``, a multiple of 8 up to :data:`MAX_BUS_BITS` holding one
        activation vector (:attr:`act_lanes` ``· a`` bits); 0: the vector's width rounded up to
        whole bytes (:attr:`act_bits`).
    multi_precision : bool
        Run-time slot width (SPEC §5, docs/hardware.md "Multi-precision PEs"): besides ``b`` passes,
        uniform (raw) passes at ``b/2`` run with two ``b/2``-bit slots per PE (two K rows, a
        ``2R``-deep K-tile, half the tiles). Needs an even ``b >= 4`` and ``G`` a multiple of ``2R``.
    dsp : str
        One of :data:`DSP_TARGETS`: ``"none"``, or ``"ecp5"``: each PE's multiplier is an ECP5
        ``MULT18X18D`` instance with its A, B and output registers (docs/hardware.md "DSP build";
        the latencies are those of ``"none"``). Not with :attr:`multi_precision` (two partial
        multipliers per PE).
    """

    fmt: FormatConfig = field(default_factory=FormatConfig)
    rows: int = 8
    cols: int = 8
    acc_bits: int = 32
    recon_share: int = 1
    max_tokens: int = 64
    max_k: int = 4096
    max_n: int = 16384
    weight_bus: int = 32
    act_bus: int = 0
    multi_precision: bool = False
    dsp: str = "none"

    def __post_init__(self):
        if not isinstance(self.fmt, FormatConfig):
            raise TypeError(f"fmt must be a FormatConfig, not {self.fmt!r}")
        for name in ("rows", "cols", "acc_bits", "recon_share", "max_tokens", "max_k", "max_n",
                     "weight_bus", "act_bus"):
            _check_int(name, getattr(self, name))
        if self.rows < 1:
            raise ConfigError(f"rows must be >= 1, not {self.rows!r}")
        if self.cols < 1 or self.cols % self.fmt.ublock:
            raise ConfigError(f"cols must be a positive multiple of ublock ({self.fmt.ublock}), "
                              f"not {self.cols!r}")
        if self.fmt.group % self.rows:
            raise ConfigError(f"group ({self.fmt.group}) must be a multiple of rows, so a K-tile never "
                              f"straddles two K-groups; rows={self.rows!r} does not divide it")
        if not 16 <= self.acc_bits <= 64:
            raise ConfigError(f"acc_bits must be between 16 and 64, not {self.acc_bits!r}")
        if self.recon_share < 0 or (self.recon_share and self.rows % self.recon_share):
            raise ConfigError(f"recon_share must be 0 (none), 1 (per-row) or a divisor of rows "
                              f"({self.rows}), not {self.recon_share!r}")
        if self.recon_share and not self.fmt.msq_capable:
            raise ConfigError(f"wbits={self.fmt.wbits} has no outlier format: use recon 'none' "
                              f"(uniform layers only)")
        if self.max_tokens < 1 or self.max_k < 1 or self.max_n < 1:
            raise ConfigError("max_tokens, max_k and max_n must be >= 1")
        for name, maximum in (("rows", MAX_ARRAY_SIDE), ("cols", MAX_ARRAY_SIDE),
                              ("max_tokens", MAX_TOKENS), ("max_k", MAX_LAYER_DIM),
                              ("max_n", MAX_LAYER_DIM)):
            _check_at_most(name, getattr(self, name), maximum)
        self._check_multi_precision()
        self._check_dsp()
        if self.max_k < self.rows:
            raise ConfigError(f"max_k ({self.max_k}) must be >= rows ({self.rows})")
        self._check_buses()
        min_acc = self.min_acc_bits
        if self.acc_bits < min_acc:
            raise ConfigError(f"acc_bits={self.acc_bits} is too small for max_k={self.max_k}: an "
                              f"all-inlier output of that many inputs needs {min_acc} bits")

    def _check_multi_precision(self) -> None:
        if not isinstance(self.multi_precision, bool):
            raise TypeError(f"multi_precision must be a bool, not {self.multi_precision!r}")
        if not self.multi_precision:
            return
        if self.fmt.wbits not in (4, 8):
            raise ConfigError(f"multi_precision needs wbits 4 or 8 (two wbits/2-bit slots per PE), "
                              f"not {self.fmt.wbits!r}")
        if self.fmt.group % (2 * self.rows):
            raise ConfigError(f"multi_precision needs group ({self.fmt.group}) a multiple of 2·rows "
                              f"({2 * self.rows}): a b/2 pass's K-tile is 2R deep")

    def _check_dsp(self) -> None:
        if self.dsp not in DSP_TARGETS:
            raise ConfigError(f"dsp must be one of {', '.join(DSP_TARGETS)}, not {self.dsp!r}")
        if self.dsp != "none" and self.multi_precision:
            raise ConfigError(f"dsp {self.dsp!r} maps one a x (b+1) multiplier per PE to a DSP; "
                              f"multi_precision's PEs have two partial multipliers: use dsp 'none'")

    def pass_pairs(self, fmt: FormatConfig, uniform: bool) -> bool:
        """Whether a layer of format ``fmt`` runs in pair mode (two ``b/2``-bit slots per PE) on this
        instance: False for the instance's own format and for a MicroScopiQ layer at ``b/2`` on a
        :attr:`multi_precision` instance with ReCoN (one slot per PE, :meth:`pass_narrow`), True
        for a uniform layer at ``b/2`` on a :attr:`multi_precision` instance; any other format
        raises :class:`ConfigError`."""
        if fmt == self.fmt:
            return False
        half = dataclasses.replace(self.fmt, wbits=self.fmt.wbits // 2)
        if self.multi_precision and fmt == half and (uniform or self.has_recon):
            return uniform
        if not self.multi_precision:
            runs = f"{self.fmt}"
        elif self.has_recon:
            runs = f"{self.fmt} or {half}"
        else:
            runs = f"{self.fmt} or (uniform layers) {half}"
        raise ConfigError(f"layer format {fmt} differs from the accelerator's {runs}")

    def pass_narrow(self, fmt: FormatConfig, uniform: bool) -> bool:
        """Whether a layer of format ``fmt`` is a MicroScopiQ pass at ``b/2`` (header ``wbits``
        ``b/2 - 1``, rows of ``C·b/2``-bit codes, one slot per PE); raises as :meth:`pass_pairs`."""
        return not self.pass_pairs(fmt, uniform) and fmt != self.fmt

    def tile_depth(self, pairs: bool) -> int:
        """K rows of a K-tile: ``R``, or ``2R`` in pair mode."""
        return 2 * self.rows if pairs else self.rows

    @property
    def act_lanes(self) -> int:
        """Activations per ``s_axis_act`` vector: ``R``, or ``2R`` on a :attr:`multi_precision`
        instance (a pair pass's ``2R``-deep K-tile; a ``b`` pass leaves the upper ``R`` unused)."""
        return self.tile_depth(self.multi_precision)

    def _check_buses(self) -> None:
        if self.weight_bus < 8 or self.weight_bus % 8 or self.weight_bus > MAX_BUS_BITS:
            raise ConfigError(f"weight_bus must be a multiple of 8 bits (whole bytes) from 8 to "
                              f"{MAX_BUS_BITS}, not {self.weight_bus!r}")
        vector = self.act_lanes * self.fmt.abits
        if self.act_bus and (self.act_bus % 8 or not vector <= self.act_bus <= MAX_BUS_BITS):
            raise ConfigError(f"act_bus must be 0 or a multiple of 8 bits (whole bytes) from one "
                              f"activation vector ({self.act_lanes}·a = {vector}) to {MAX_BUS_BITS}, "
                              f"not {self.act_bus!r}")

    # -- derived values -------------------------------------------------------------------------
    @property
    def act_bits(self) -> int:
        """Width of ``s_axis_act_tdata``: :attr:`act_bus`, or :attr:`act_lanes` ``· a`` rounded up to
        whole bytes."""
        return self.act_bus or -(-self.act_lanes * self.fmt.abits // 8) * 8

    @property
    def has_recon(self) -> bool:
        return self.recon_share > 0

    @property
    def recon_networks(self) -> int:
        """ReCoN networks in the array (0 when there is no outlier support)."""
        return self.rows // self.recon_share if self.recon_share else 0

    @property
    def column_sum_bits(self) -> int:
        """Signed width of a column partial sum over one K-tile (``rows`` products)."""
        fmt = self.fmt
        return (fmt.act_bound * fmt.max_slot_magnitude * self.rows).bit_length() + 1

    @property
    def min_acc_bits(self) -> int:
        """Smallest ``acc_bits``: the worst all-inlier output over ``max_k`` inputs must fit, so a
        layer without outliers never saturates (outliers may, and raise the sticky flag)."""
        fmt = self.fmt
        inlier_row = fmt.act_bound * ((1 << (fmt.wbits - 1)) << fmt.wbits) * self.max_k
        return max(inlier_row.bit_length() + 1, 16)

    def replace(self, **changes) -> "AccelConfig":
        """A copy with some fields changed (``fmt`` fields may be given by name too)."""
        fmt_fields = {f.name for f in dataclasses.fields(FormatConfig)}
        fmt_changes = {k: changes.pop(k) for k in list(changes) if k in fmt_fields}
        fmt = dataclasses.replace(self.fmt, **fmt_changes)
        return dataclasses.replace(self, fmt=fmt, **changes)

    def to_json(self) -> dict:
        """Plain dict (for manifests): every parameter (``dsp`` only when not ``"none"``) plus the
        ReCoN arrangement as text."""
        out = dataclasses.asdict(self)
        out["recon"] = ReconSharing.format(self.recon_share)
        if self.dsp == "none":
            # Only when set: every other build's manifest, and every key hashed from it (build
            # folders, explore's synthesis cache), stays as it was before the option.
            del out["dsp"]
        return out

    @classmethod
    def from_json(cls, data: dict) -> "AccelConfig":
        fields = {f.name for f in dataclasses.fields(cls)} - {"fmt"}
        return cls(fmt=FormatConfig(**data["fmt"]), **{k: data[k] for k in fields if k in data})


#: Named configurations used by the demo, the tests and the benchmarks.
PRESETS: dict[str, AccelConfig] = {
    "default": AccelConfig(),
    "4x8-b2": AccelConfig(fmt=FormatConfig(wbits=2), rows=4, cols=8),
    "8x8-b4": AccelConfig(fmt=FormatConfig(wbits=4), rows=8, cols=8),
    "16x16-b4-shared": AccelConfig(fmt=FormatConfig(wbits=4), rows=16, cols=16, recon_share=4),
}


def resolve_config(text: str) -> AccelConfig:
    """``--config``: a preset name (:data:`~microscopiq.config.PRESETS`) or a JSON file holding
    :meth:`AccelConfig.to_json` (a generated ``manifest.json``, whose ``parameters`` are that)."""
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"--config must be a preset ({', '.join(PRESETS)}) or a JSON file, not {text!r}")
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
                type(data), "a number")
            raise TypeError(f"it holds {kind}, not a JSON object")
        return AccelConfig.from_json(data.get("parameters", data))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"--config file {text!r} does not hold an accelerator configuration "
                          f"({error})") from None
