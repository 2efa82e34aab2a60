"""The static report's chart: scaled to what was sent, even ticks, threshold labels apart."""

import itertools
import math
import re

from kimi_core.report import chart, ticks


def numbers(svg, cls, attr):
    return [float(v) for v in re.findall(rf'class="{cls}"[^>]*?\b{attr}="([-\d.]+)"', svg)]


def test_ticks_are_round_and_evenly_spaced():
    for top in (950, 1_080, 21_600, 216_000, 1_131_000, 3_333_333):
        values = ticks(top)
        steps = {round(b - a, 6) for a, b in itertools.pairwise(values)}
        assert values[0] == 0 and len(steps) == 1 and 3 <= len(values) <= 7 and values[-1] <= top
        step = steps.pop()
        assert round(step / 10 ** math.floor(math.log10(step)), 6) in (1, 2, 2.5, 5), step


def test_a_compaction_does_not_flatten_the_prompt_line():
    window = 200_000
    points = [{"prompt": 20_000 + 5_000 * i, "before": None, "action": "passed"} for i in range(10)]
    points[5] = {"prompt": 40_000, "before": 1_100_000, "action": "compacted"}  # 5.5 windows before
    svg = chart(points, window)
    ys = [float(y) for _, y in re.findall(r"([\d.]+),([\d.]+)", re.search(r'class="prompt" points="([^"]+)"', svg)[1])]
    assert max(ys) - min(ys) > 30  # 20K..65K of a 216K scale: it rises (on a 1.19M scale: 7 px)
    assert "\u2191 1.10M" in svg  # the size before compaction, written at the top


def test_threshold_labels_do_not_overlap():
    for window, prompts in ((200_000, [10_000, 190_000]), (6_000, [500, 5_800]), (200_000, [1_000, 2_000_000])):
        svg = chart([{"prompt": p, "before": None, "action": "passed"} for p in prompts], window)
        xs, ys = numbers(svg, "threshold-label", "x"), numbers(svg, "threshold-label", "y")
        assert len(xs) == 3
        for i in range(3):
            for j in range(i + 1, 3):
                assert abs(ys[i] - ys[j]) >= 12 or abs(xs[i] - xs[j]) >= 30, (window, prompts, xs, ys)
