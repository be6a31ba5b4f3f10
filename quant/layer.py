"""In-memory quantized layers: the objects the quantizers produce, the packer serialises, the golden
model evaluates and the hardware driver streams.

Shapes use the padded sizes ``Np`` (N rounded up to a multiple of U) and ``Kp`` (K rounded up to a
multiple of G); ``n`` and ``k`` keep the unpadded sizes. Padding slots are INLIER code 0.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from ..config import FormatConfig

__all__ = ["Role", "MsqLayer", "UniformLayer", "LayerError", "padded"]


class Role(enum.IntEnum):
    """What a weight slot holds (SPEC §2). The hardware enum mirrors these values (2 bits)."""

    INLIER = 0
    OUT_HI = 1
    OUT_LO = 2


class LayerError(ValueError):
    """A layer breaks a format invariant; the message names the invariant and the first offender."""


def padded(size: int, multiple: int) -> int:
    """``size`` rounded up to a multiple of ``multiple``."""
    return -(-size // multiple) * multiple


def _first_index(mask: np.ndarray) -> tuple:
    return tuple(int(i) for i in np.argwhere(mask)[0])


@dataclass(frozen=True, eq=False)
class MsqLayer:
    """A MicroScopiQ layer (SPEC §2).

    Attributes
    ----------
    fmt : FormatConfig
    n, k : int
        Unpadded ``out_features`` and ``in_features``.
    codes : ndarray of uint8, (Np, Kp)
        The b-bit code of every slot (raw bits, unsigned).
    roles : ndarray of uint8, (Np, Kp)
        :class:`Role` of every slot.
    mate : ndarray of int8, (Np, Kp)
        For OUT_HI and OUT_LO slots, the row offset (0..U-1) inside the micro-block of the other half
        of the pair; -1 for inliers.
    exps : ndarray of int16, (Np, Kp // G)
        Inlier exponents ``E[n,g]``, each in the signed 8-bit range.
    xexp : ndarray of uint8, (Np // U, Kp)
        Shared outlier exponent ``X`` of every micro-block (0 where the block has no outlier).
    """

    fmt: FormatConfig
    n: int
    k: int
    codes: np.ndarray
    roles: np.ndarray
    mate: np.ndarray
    exps: np.ndarray
    xexp: np.ndarray

    @property
    def np_(self) -> int:
        return self.codes.shape[0]

    @property
    def kp(self) -> int:
        return self.codes.shape[1]

    def validate(self) -> "MsqLayer":
        """Check every invariant of SPEC §2; raise :class:`LayerError` naming the first violation."""
        fmt = self.fmt
        if not fmt.msq_capable:
            raise LayerError(f"wbits={fmt.wbits} has no MicroScopiQ format (allowed: 2, 3, 4)")
        np_, kp = padded(self.n, fmt.ublock), padded(self.k, fmt.group)
        if self.n < 1 or self.k < 1:
            raise LayerError(f"layer must be non-empty, got n={self.n}, k={self.k}")
        expected = {"codes": (np_, kp), "roles": (np_, kp), "mate": (np_, kp),
                    "exps": (np_, kp // fmt.group), "xexp": (np_ // fmt.ublock, kp)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise LayerError(f"{name} has shape {getattr(self, name).shape}, expected {shape}")
        if (bad := self.codes >= (1 << fmt.wbits)).any():
            raise LayerError(f"code at {_first_index(bad)} does not fit in wbits={fmt.wbits}")
        if (bad := self.roles > Role.OUT_LO).any():
            raise LayerError(f"role at {_first_index(bad)} is not INLIER/OUT_HI/OUT_LO")
        if (bad := (self.exps < -128) | (self.exps > 127)).any():
            raise LayerError(f"exponent at {_first_index(bad)} is outside the signed 8-bit range")
        if (bad := self.xexp >= (1 << fmt.xbits)).any():
            raise LayerError(f"shared exponent X at {_first_index(bad)} does not fit in xbits={fmt.xbits}")
        self._validate_pairs()
        return self

    def _validate_pairs(self) -> None:
        fmt = self.fmt
        inlier = self.roles == Role.INLIER
        if (bad := inlier != (self.mate < 0)).any():
            raise LayerError(f"slot {_first_index(bad)}: an inlier has no mate and an outlier half has one")
        if (bad := self.mate >= fmt.ublock).any():
            raise LayerError(f"slot {_first_index(bad)}: mate offset outside the micro-block (U={fmt.ublock})")
        # Outlier halves are sparse: check each one's mate through its (row, column) index.
        rows, cols = np.nonzero(~inlier)
        offset = rows % fmt.ublock
        mate_row = rows - offset + self.mate[rows, cols]
        roles = self.roles[rows, cols]
        paired = (self.mate[mate_row, cols] == offset) & (self.roles[mate_row, cols] + roles == Role.OUT_HI + Role.OUT_LO)
        if not paired.all():
            first = int(np.argmin(paired))
            raise LayerError(f"slot {(int(rows[first]), int(cols[first]))}: its mate does not point back with the "
                             f"other role (each outlier needs exactly one partner in its micro-block)")
        hi = roles == Role.OUT_HI
        hi_per_block = np.bincount(rows[hi] // fmt.ublock * self.kp + cols[hi],
                                   minlength=self.np_ // fmt.ublock * self.kp).reshape(-1, self.kp)
        if (bad := hi_per_block > fmt.max_outliers).any():
            raise LayerError(f"micro-block {_first_index(bad)} has {hi_per_block.max()} outliers, "
                             f"at most U/2 = {fmt.max_outliers} allowed")
        if any(((self.codes[pad] != 0) & inlier[pad]).any() for pad in (np.s_[self.n:], np.s_[:, self.k:])):
            rows, cols = np.arange(self.np_)[:, None], np.arange(self.kp)
            bad = (self.codes != 0) & inlier & ((rows >= self.n) | (cols >= self.k))
            raise LayerError(f"padding slot {_first_index(bad)} is not zero")


@dataclass(frozen=True, eq=False)
class UniformLayer:
    """A uniform-mode layer (decoupleQ, GPTQ, RTN; SPEC §3 "Uniform mode").

    ``W[n,k] ≈ scale[n,g] · q[n,k] + zero[n,g]`` with ``q`` a signed b-bit integer.

    Attributes
    ----------
    fmt : FormatConfig
    n, k : int
    q : ndarray of int8, (Np, Kp)  — Np = N rounded to U, Kp = K rounded to G
    scale, zero : ndarray of float32, (Np, Kp // G)
    """

    fmt: FormatConfig
    n: int
    k: int
    q: np.ndarray
    scale: np.ndarray
    zero: np.ndarray

    def validate(self) -> "UniformLayer":
        fmt = self.fmt
        np_, kp = padded(self.n, fmt.ublock), padded(self.k, fmt.group)
        if self.n < 1 or self.k < 1:
            raise LayerError(f"layer must be non-empty, got n={self.n}, k={self.k}")
        for name, shape in {"q": (np_, kp), "scale": (np_, kp // fmt.group),
                            "zero": (np_, kp // fmt.group)}.items():
            if getattr(self, name).shape != shape:
                raise LayerError(f"{name} has shape {getattr(self, name).shape}, expected {shape}")
        if (bad := (self.q < fmt.qmin) | (self.q > fmt.qmax)).any():
            raise LayerError(f"q at {_first_index(bad)} is outside [{fmt.qmin}, {fmt.qmax}] for wbits={fmt.wbits}")
        for name in ("scale", "zero"):
            if not np.isfinite(getattr(self, name)).all():
                raise LayerError(f"{name} has a NaN or Inf")
        return self
