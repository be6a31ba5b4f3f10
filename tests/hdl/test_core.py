"""The core's timing (hdl/core.py): the documented numbers, and the host's cycle model is the one
the blocks state (the RTL's cycle counts are held equal to it in test_top.py)."""

from __future__ import annotations

import pytest
from amaranth.hdl import Fragment

from microscopiq.config import AccelConfig
from microscopiq.hdl.array import Array, ArrayTiming
from microscopiq.hdl.core import CREDIT_MARGIN, ISSUE_STAGE, RESULT_FIFO_LATENCY, AcceleratorCore, CoreTiming
from microscopiq.hdl.ppu import PPU
from microscopiq.host.stream_format import CycleModel


@pytest.mark.parametrize("share, arrive, depth, gap, queue", [(1, 15, 26, 0, 5), (2, 18, 29, 1, 6), (0, 12, 23, 0, 5),
                                                             (4, 18, 29, 3, 6)])
def test_documented_timing(share, arrive, depth, gap, queue):
    """8×8: arrive(1) = 1 + 1 + R + 1 + P + I + L + H + O (the issue register and the array;
    I = H = O = 1 when shared); depth = arrive(1) + 7 + 1 + 3 (26 per row); the shift queue ceil(arrive(max T) / R) + 3; first tokens of
    two tiles at least R = 8 cycles apart; a tile may start with its last row's write unless ReCoN
    is shared."""
    timing = CoreTiming.of(AccelConfig(recon_share=share))
    assert timing.arrive(1) == arrive and timing.array.depth + ISSUE_STAGE == arrive
    assert timing.start_with_last_row == (share < 2)
    assert timing.arrive(3) == arrive + 2
    assert timing.result_fifo_depth == depth == arrive + PPU.latency + RESULT_FIFO_LATENCY + CREDIT_MARGIN
    assert timing.result_latency == 8 and timing.tile_spacing == 8
    assert timing.array.tile_gap_extra == gap
    assert timing.shift_queue_depth == queue and timing.tile_spacing == 8
    assert CoreTiming.of(AccelConfig().replace(rows=1, group=2)).tile_spacing == 2


@pytest.mark.parametrize("share", [1, 2])
def test_queue_depths_are_the_timings(share):
    cfg = AccelConfig().replace(rows=4, group=4, recon_share=share)
    core = AcceleratorCore(cfg)
    m = core.elaborate(None)
    assert m.submodules.shift_queue.depth == core.timing.shift_queue_depth
    assert m.submodules.result_fifo.depth == core.timing.result_fifo_depth
    core._MustUse__silence = True       # elaborated by hand for its structure,
    Fragment.get(m, None)               # and its blocks with it, so that nothing is left unused


@pytest.mark.parametrize("share", [0, 1, 2, 4])
def test_cycle_model_is_built_from_the_blocks(share):
    cfg = AccelConfig(recon_share=share)
    model, array = CycleModel.of(cfg), Array(cfg)
    assert array.timing == ArrayTiming.of(cfg)
    assert (model.arrive(1), model.pipeline, model.tile_gap) == (ISSUE_STAGE + array.depth, array.pipeline,
                                                                 array.tile_gap_extra)
    assert model.ppu_latency == PPU.latency + RESULT_FIFO_LATENCY
    array._MustUse__silence = True      # built for its timing only
