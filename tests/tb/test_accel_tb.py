"""microscopiq.tb.accel_tb host side: beat/frame conversion and the scoreboard's reports."""

import re

import pytest

from microscopiq.config import PRESETS
from microscopiq.host.stream_format import Beat, encode_layer
from microscopiq.tb.accel_tb import PAUSES, Scoreboard, beats_of, frames_of, pause_generator
from microscopiq.tb.stimulus import random_case, random_uniform_case

CFG = PRESETS["8x8-b4"]


def test_frames_round_trip_the_encoded_streams():
    case = random_case(CFG, 16, 130, 70, seed=5)   # two passes of max_tokens=64
    for beats in encode_layer(CFG, case.layer, case.x):
        frames = frames_of(beats)
        assert len(frames) == 2
        assert beats_of(frames) == beats


def test_frames_refuse_a_missing_tlast():
    with pytest.raises(ValueError, match=r"^stream ends with 1 beat\(s\) after the last tlast$"):
        frames_of([Beat(1, True), Beat(2, False)])


@pytest.mark.parametrize("maker", [random_case, random_uniform_case])
def test_scoreboard_passes_golden_and_names_the_first_mismatch(maker):
    case = maker(CFG, 12, 40, 3, seed=9)
    board = Scoreboard(CFG)
    actual = {name: value.copy() for name, value in board.expected(case).items()}
    assert board.check(case, actual) == []
    board.assert_clean()
    what = "P" if case.uniform else "y"
    index = (2, 11, 0) if case.uniform else (2, 11)
    expected = int(actual[what][index])
    actual[what][index] += 3
    (mismatch,) = board.check(case, actual)
    assert (mismatch.what, mismatch.index, mismatch.expected, mismatch.actual) == (
        what, index, expected, expected + 3)
    message = (rf"^1 mismatching result integer\(s\) of \d+ checked; first: "
               rf"{re.escape(case.name)}: {what}\[{', '.join(map(str, index))}\] expected {expected}, "
               rf"got {expected + 3}$")
    with pytest.raises(AssertionError, match=message):
        board.assert_clean()
    assert "seed=9" in case.name


def test_scoreboard_reports_a_wrong_shape():
    case = random_case(CFG, 12, 40, 3, seed=9)
    board = Scoreboard(CFG)
    actual = board.expected(case)
    actual["overflow"] = actual["overflow"][:, :5]
    (mismatch,) = board.check(case, actual)
    assert mismatch.what == "overflow.shape"


def test_pause_generators():
    assert pause_generator("none", 0) is None
    assert [next(pause_generator("cycle", 0)) for _ in range(1)] == [1]
    random_pauses = pause_generator("random", 4)
    first = [next(random_pauses) for _ in range(1000)]
    again = pause_generator("random", 4)
    assert first == [next(again) for _ in range(1000)]
    assert 200 < sum(first) < 400
    with pytest.raises(ValueError, match=rf"^pause must be one of {', '.join(PAUSES)}, not 'x'$"):
        pause_generator("x", 0)
