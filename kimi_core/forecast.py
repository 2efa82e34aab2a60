"""How many turns a session has left before the context guard would refuse it.

Agents resend the whole conversation every turn, so the prompt grows by
about the same amount each turn. The growth is the median of the recent
turn-to-turn increases (a compaction or a new session shrinks the prompt:
those turns are not growth), and the turns left are what fits between the
last prompt and the refusal threshold at that pace.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass

RECENT = 10  # turns the growth is taken from


@dataclass(frozen=True, slots=True)
class Forecast:
    growth: int  # prompt tokens added per turn (median of recent turns)
    turns_left: int | None  # None: the prompt is not growing
    last: int  # the last prompt, in tokens
    limit: int  # where the guard refuses, in tokens


def forecast(prompts: list[int], window: int, reject_at: float) -> Forecast | None:
    """From a session's prompt sizes in order (calibrated tokens); None with fewer than two turns."""
    if len(prompts) < 2 or window <= 0:
        return None
    steps = [b - a for a, b in itertools.pairwise(prompts) if b > a][-RECENT:]
    growth = round(statistics.median(steps)) if steps else 0
    limit = int(window * reject_at)
    last = prompts[-1]
    if growth <= 0:
        return Forecast(0, None, last, limit)
    return Forecast(growth, max(0, math.floor((limit - last) / growth)), last, limit)


def describe(f: Forecast) -> str:
    if f.turns_left is None:
        return "not growing"
    return f"+{f.growth:,} tok/turn, ~{f.turns_left} turns left"
