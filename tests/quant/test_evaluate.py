"""microscopiq.quant.evaluate: the cosine bars' axis is zoomed onto the values (b=4's 0.938-0.983
spread over a 0-1 axis looked equal), never past 1 by more than the margin, never below 0."""

import pytest

from microscopiq.quant.evaluate import _zoomed


def test_axis_zooms_onto_the_b4_cosines():
    low, high = _zoomed([0.978, 0.968, 0.975, 0.938, 0.983])
    assert (low, high) == pytest.approx((0.938 - 0.25 * 0.045, 0.983 + 0.25 * 0.045))


def test_axis_keeps_zero_for_a_wide_spread():
    assert _zoomed([0.048, 0.785]) == pytest.approx((0.0, 0.785 + 0.25 * 0.737))
