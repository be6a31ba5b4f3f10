"""The stream beat layouts (hdl/layouts.py) are the bit layouts docs/hardware.md documents: every
offset and width written out by hand here, for per-row, shared and no ReCoN."""

from __future__ import annotations

import pytest

from microscopiq.config import AccelConfig, FormatConfig
from microscopiq.hdl.layouts import SHIFT_BITS, Mode, StreamLayouts
from microscopiq.hdl.recon_geometry import config_bits


def _offsets(layout):
    return {name: field.offset for name, field in layout}


@pytest.mark.parametrize("share, wbits", [(1, 4), (2, 2), (0, 3)])
def test_documented_offsets(share, wbits):
    cfg = AccelConfig(fmt=FormatConfig(wbits=wbits, group=8), rows=4, cols=8, recon_share=share,
                      max_tokens=4, max_k=64, max_n=64)
    lay = StreamLayouts(cfg)
    b, cols, rows = wbits, 8, 4
    # Header: mode, then M-1 (2 bits for max_tokens 4), KT-1 (64/4 = 16 tiles: 4 bits), NT-1 (8: 3).
    assert _offsets(lay.header) == {"mode": 0, "tokens": 1, "k_tiles": 3, "n_tiles": 7}
    assert lay.header.size == 10
    assert lay.tile.size == cols * SHIFT_BITS == 64
    config = config_bits(cfg.fmt, cols) if share else 0
    assert _offsets(lay.row) == {"codes": 0, "roles": cols * b, "config": cols * (b + 2)}
    assert lay.row.size == cols * (b + 2) + config
    assert lay.weights_width == cfg.weight_bus == 32                # the packed stream's bus
    assert lay.act.size == lay.act_width == rows * 8
    assert _offsets(lay.msq_result) == {"y_int": 0, "overflow": cols * cfg.acc_bits}
    assert _offsets(lay.raw_result) == {"p": 0, "s": cols * lay.partial_bits}
    body = max(cols * (cfg.acc_bits + 1), cols * lay.partial_bits + lay.sum_bits)
    assert _offsets(lay.result) == {"body": 0, "fault": body}
    assert lay.result_width == body + 3


def test_constants_round_trip():
    """A beat built with ``const`` reads back field by field with ``from_bits``."""
    lay = StreamLayouts(AccelConfig())
    header = lay.header.from_bits(lay.header.const({"mode": Mode.RAW, "tokens": 5, "k_tiles": 300,
                                                     "n_tiles": 7}).as_bits())
    assert (header.mode, header.tokens, header.k_tiles, header.n_tiles) == (Mode.RAW, 5, 300, 7)
    values = [-128, 127, 0, -1, 5, -6, 7, 8]
    assert [int(v) for v in lay.act.from_bits(lay.act.const(values).as_bits())] == values
