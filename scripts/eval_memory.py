"""Precision and recall of the rule-based memory reader, per kind and language.

Two sets, from tests/memory_cases.py and tests/memory_corpus.py: what the rules
were tuned on, and a held-out third written at the same time and never tuned
on. Only the tuned-on set's misses are printed (``--misses``): the held-out
set's are not looked at, so that its figures stay an estimate.

    scripts/run python scripts/eval_memory.py [--misses]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from memory_cases import CASES, HELD_OUT, score
from memory_corpus import HELD, TUNE

from kimi_core.memory import KINDS, extract

FRENCH = {"je", "on", "les", "le", "la", "de", "pas", "tu", "mon", "ne", "des", "du", "à", "est", "une"}


def french(text: str) -> bool:
    return bool(set(text.lower().split()) & FRENCH) or "j'" in text.lower()


def by_kind(cases: list, kind: str) -> dict:
    """Precision and recall for one kind: other kinds' expectations count as negatives."""
    narrowed = [(text, [e for e in expected if e[0] == kind]) for text, expected in cases]
    result = score(lambda text: [m for m in extract(text) if m.kind == kind], narrowed)
    result["n"] = sum(1 for _, expected in narrowed if expected)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--misses", action="store_true", help="list the tuned-on set's misses")
    args = parser.parse_args()
    for name, cases in (("tuned on", CASES + TUNE), ("held out (never tuned on)", HELD_OUT + HELD)):
        statements = sum(1 for _, expected in cases if expected)
        print(f"\n{name}: {len(cases)} messages, {statements} with a statement, "
              f"{len(cases) - statements} without")
        print(f"  {'':24} {'precision':>9} {'recall':>7} {'statements':>10}")
        for language, subset in (("all", cases), ("English", [c for c in cases if not french(c[0])]),
                                 ("French", [c for c in cases if french(c[0])])):
            r = score(extract, subset)
            print(f"  {language:<24} {r['precision']:9.3f} {r['recall']:7.3f} {r['tp'] + r['fn']:10}")
            for kind in KINDS:
                k = by_kind(subset, kind)
                print(f"    {kind:<22} {k['precision']:9.3f} {k['recall']:7.3f} {k['n']:10}")
        if args.misses and cases is not HELD_OUT:
            for what, text, item in score(extract, CASES + TUNE)["misses"]:
                print(f"    {what:<10} {item!r:<66} in {text[:60]!r}")
            args.misses = False


if __name__ == "__main__":
    main()
