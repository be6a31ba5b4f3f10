"""The core's timing (hdl/core.py): the documented numbers, and the host's cycle model is the one
the blocks state (the RTL's cycle counts are held equal to it in test_top.py)."""

from __future__ import annotations

import pytest

from microscopiq.config import AccelConfig
from microscopiq.hdl.array import Array, ArrayTiming
from microscopiq.hdl.core import CREDIT_MARGIN, RESULT_FIFO_LATENCY, CoreTiming
from microscopiq.hdl.ppu import PPU
from microscopiq.host.stream_format import CycleModel


@pytest.mark.parametrize("share, arrive, depth, gap", [(1, 14, 25, 0), (2, 15, 26, 4), (0, 11, 22, 0)])
def test_documented_timing(share, arrive, depth, gap):
    """8×8: arrive(1) = 1 + R + 1 + P + L + H; depth = arrive(1) + 7 + 1 + 3 (25 per row)."""
    timing = CoreTiming.of(AccelConfig(recon_share=share))
    assert timing.arrive(1) == arrive and timing.array.depth == arrive
    assert timing.arrive(3) == arrive + 2
    assert timing.result_fifo_depth == depth == arrive + PPU.latency + RESULT_FIFO_LATENCY + CREDIT_MARGIN
    assert timing.result_latency == 8 and timing.load_beats == 9
    assert timing.array.tile_gap_extra == gap


@pytest.mark.parametrize("share", [0, 1, 2, 4])
def test_cycle_model_is_built_from_the_blocks(share):
    cfg = AccelConfig(recon_share=share)
    model, array = CycleModel.of(cfg), Array(cfg)
    assert array.timing == ArrayTiming.of(cfg)
    assert (model.arrive(1), model.pipeline, model.tile_gap) == (array.depth, array.pipeline, array.tile_gap_extra)
    assert model.ppu_latency == PPU.latency + RESULT_FIFO_LATENCY
    array._MustUse__silence = True      # built for its timing only
