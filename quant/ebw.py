"""Effective bit width (SPEC §2): every bit the packed file holds, per real weight."""

from __future__ import annotations

from dataclasses import dataclass

from .layer import MsqLayer, UniformLayer
from .pack import section_sizes

__all__ = ["EbwReport", "effective_bits"]


@dataclass(frozen=True)
class EbwReport:
    """Bit budget of one packed layer.

    Attributes
    ----------
    code_bits : int
        Codes section: ``b`` bits per padded slot, plus the zero bits that complete its last byte.
    metadata_bits : int
        Metadata section (MicroScopiQ only): preamble, gap stream, counts, ``X`` and pairs, plus
        the padding of its last byte; 0 for uniform layers.
    scale_bits : int
        Scales section: 8 bits per exponent ``E`` (MicroScopiQ) or 2 × 32 bits per ``(scale, zero)``
        (uniform), for every padded row and K-group.
    header_bits : int
        The fixed header (with its CRC-32).
    weights : int
        ``n · k``, the real (unpadded) weights.
    """

    code_bits: int
    metadata_bits: int
    scale_bits: int
    header_bits: int
    weights: int

    @property
    def total_bits(self) -> int:
        """Everything in the file: equals ``8 · len(pack_layer(layer))``."""
        return self.code_bits + self.metadata_bits + self.scale_bits + self.header_bits

    @property
    def bits_per_weight(self) -> float:
        """The EBW: ``total_bits / (n · k)``."""
        return self.total_bits / self.weights

    def summary(self) -> str:
        """One line for logs and reports."""
        w = self.weights
        return (f"EBW {self.bits_per_weight:.4f} bits/weight = codes {self.code_bits / w:.4f} "
                f"+ metadata {self.metadata_bits / w:.4f} + scales {self.scale_bits / w:.4f} "
                f"+ header {self.header_bits / w:.4f}")


def effective_bits(layer: MsqLayer | UniformLayer) -> EbwReport:
    """The :class:`EbwReport` of ``layer`` as :func:`~microscopiq.quant.pack.pack_layer` would
    write it (computed from the section sizes, without building the file)."""
    if not isinstance(layer, (MsqLayer, UniformLayer)):
        raise TypeError(f"layer must be an MsqLayer or a UniformLayer, not {type(layer).__name__}")
    sizes = section_sizes(layer)
    return EbwReport(code_bits=8 * sizes.codes, metadata_bits=8 * sizes.metadata,
                     scale_bits=8 * sizes.scales, header_bits=8 * sizes.header,
                     weights=layer.n * layer.k)
