import pytest

from kimi_core.forecast import Forecast, describe, forecast


@pytest.mark.parametrize("prompts, expected", [
    ([1000, 1500, 2000, 2500], Forecast(500, 2, 2500, 3800)),  # (3800 - 2500) / 500
    ([1000, 1500, 400, 900, 1400], Forecast(500, 4, 1400, 3800)),  # a compaction is not growth
    ([1000, 1100, 1900, 2000, 2100], Forecast(100, 17, 2100, 3800)),  # the median resists one big turn
    ([3000, 3000, 3000], Forecast(0, None, 3000, 3800)),
    ([3700, 3900], Forecast(200, 0, 3900, 3800)),
])
def test_turns_left_at_the_recent_pace(prompts, expected):
    assert forecast(prompts, 4000, 0.95) == expected


def test_one_turn_is_not_enough_to_tell():
    assert forecast([1000], 4000, 0.95) is None
    assert describe(Forecast(500, 2, 2500, 3800)) == "+500 tok/turn, ~2 turns left"
    assert describe(Forecast(0, None, 3000, 3800)) == "not growing"
