"""Precision and recall of the rule-based memory extractor over the labelled set in tests/.

    scripts/run python scripts/eval_memory.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from memory_cases import CASES, HELD_OUT, score

from kimi_core.memory import extract


def main() -> None:
    for name, cases in (("labelled set (rules tuned on it)", CASES), ("held-out set (not tuned on)", HELD_OUT)):
        result = score(extract, cases)
        positives = sum(1 for _, expected in cases if expected)
        print(f"{name}: {len(cases)} messages ({positives} with a statement, "
              f"{len(cases) - positives} hard negatives)")
        print(f"  precision {result['precision']:.3f}  recall {result['recall']:.3f}  "
              f"(tp {result['tp']}, fp {result['fp']}, fn {result['fn']})")
        for what, text, item in result["misses"]:
            print(f"    {what:<10} {item!r:<66} in {text[:60]!r}")


if __name__ == "__main__":
    main()
