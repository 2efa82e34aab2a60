"""How much of what matters survives compaction, against plain truncation at the same budget.

Tool outputs are built from real files on this machine, the way an agent's
tools would produce them:

- source:   ``cat`` of large modules of the installed packages
- pytest:   the ``-v -rA`` log of a real pytest run with three failures
- ls -lR:   a recursive listing of the virtualenv's site-packages
- json:     the metadata of every installed distribution, pretty-printed
- html:     pydoc's HTML page for a large installed module

Each gets questions whose answers ("needles") sit at known places: near the
beginning, in the middle, near the end (a line holding a name found nowhere
else in the output; the question names it), plus for the test log "which
tests failed and why", answered by the three assertion lines. A needle is
recalled if its line is in what the model would see (whitespace ignored); a
question is answered if all its needles are.

Strategies, at the same token budget:

- kimi:       ``kimi_core.compaction.compact`` with the question and the tool
              call's arguments as the query
- head:       the first ``budget`` tokens (what Claude Code does)
- head+tail:  the first and last ``budget / 2`` tokens (what Codex does)

The held-out corpus (``--held-out``: other tools, other shapes, its questions
written before any tuning) is for reporting only: tune on the first.

    scripts/run python scripts/bench_compaction.py [--budgets 5000,20000] [--held-out]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import pydoc
import re
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kimi_core.compaction import Query, compact
from kimi_core.tokens import FALLBACK, counter_for, encoding

SITE = Path(sysconfig.get_paths()["purelib"])
POSITIONS = {"beginning": 0.03, "quarter": 0.25, "middle": 0.5, "3 quarters": 0.75, "end": 0.97}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{7,}")


@dataclass
class Needle:
    where: str
    question: str
    lines: list[str]  # all must be kept


@dataclass
class Output:
    name: str
    args: str  # the tool call that produced it
    text: str
    needles: list[Needle]


# -- building the tool outputs from real files --------------------------------------------------


def source_files() -> str:
    wanted = ["sqlite_utils/db.py", "mitmproxy/http.py", "pydantic/main.py", "pydantic/fields.py",
              "mitmproxy/flowfilter.py", "tiktoken/core.py", "httpx/_client.py", "mitmproxy/options.py"]
    parts = []
    for rel in wanted:
        path = SITE / rel
        if path.exists():
            parts.append(f"==> {rel} <==\n{path.read_text(encoding='utf-8', errors='replace')}")
    return "\n".join(parts)


FAILING_TESTS = textwrap.dedent('''
    import logging
    import pytest

    log = logging.getLogger("ledger")
    FAIL = {17: "ledger checksum mismatch: expected 0x3fa2 got 0x91c0",
            301: "invoice total 1204.50 != 1240.50 after currency rounding",
            589: "settlement batch 77 left 3 orphaned transfers"}

    @pytest.mark.parametrize("case", range(600))
    def test_reconcile(case):
        print(f"reconciling account block {case}: {case * 7 % 113} entries, offset {case * 131 % 997}")
        log.warning("slow query on block %d (%d ms)", case, 40 + case % 17)
        assert case not in FAIL, FAIL.get(case)
''')


def pytest_log() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "test_ledger.py").write_text(FAILING_TESTS)
        run = subprocess.run([sys.executable, "-m", "pytest", "-v", "-rA", "--tb=long", "-p", "no:cacheprovider",
                              "test_ledger.py"], cwd=tmp, capture_output=True, text=True, check=False)  # it fails
    return run.stdout


def listing() -> str:
    return subprocess.run(["ls", "-lR", str(SITE)], capture_output=True, text=True, check=True).stdout


def metadata_json() -> str:
    dists = []
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: (d.metadata.get("Name") or "").lower()):
        files = dist.files or []
        dists.append({
            "name": dist.metadata.get("Name"), "version": dist.version, "summary": dist.metadata.get("Summary"),
            "requires": dist.requires or [],
            "files": [{"path": str(f), "size": f.size, "hash": f.hash.value if f.hash else None}
                      for f in files[:60]],
        })
    return json.dumps({"installed": dists}, indent=2)


def html_page() -> str:
    import sqlite_utils.db
    return pydoc.HTMLDoc().page("sqlite_utils.db", pydoc.HTMLDoc().document(sqlite_utils.db))


# -- needles --------------------------------------------------------------------------------------


def positional_needles(text: str) -> list[Needle]:
    """At each position, the first line from there that holds a name found nowhere else."""
    counts = Counter(_NAME.findall(text))
    lines = text.split("\n")
    needles = []
    for where, at in POSITIONS.items():
        for line in lines[int(at * len(lines)):]:
            stripped = line.strip()
            if not 20 <= len(stripped) <= 300:
                continue
            unique = [w for w in _NAME.findall(stripped) if counts[w] == 1 and not w.startswith("0x")]
            if unique:
                name = max(unique, key=len)
                needles.append(Needle(where, f"What does the output say about {name}?", [stripped]))
                break
    return needles


# Questions a user would ask, in their own words, and regexes for the lines that answer them.
ASKED = {
    "source": [("How does insert_all split the records into batches?", [r"def insert_all\("]),
               ("Which HTTP methods does mitmproxy's Request.make accept?", [r"def make\($"])],
    "pytest": [("Which Python version ran the tests?", [r"^platform linux -- Python"]),
               ("How many tests passed and how many failed?", [r"^=+ \d+ failed, \d+ passed"])],
    "ls -lR": [("How big is tiktoken's openai_public.py?", [r"openai_public\.py$"])],
    "json": [("Which version of pydantic is installed?", [r'^    \{$', r'^      "name": "pydantic",$',
                                                           r'^      "version": "[^"]+",$'])],
    "html": [("What are the parameters of upsert_all?", [r'name="Table-upsert_all"'])],
}


def asked_needles(name: str, text: str) -> list[Needle]:
    lines = text.split("\n")
    needles = []
    for question, patterns in ASKED.get(name, []):
        found: list[str] = []
        for pattern in patterns:  # each after the previous: the fact's lines, in order
            start = lines.index(found[-1]) + 1 if found else 0
            found += [next(line for line in lines[start:] if re.search(pattern, line))]
        needles.append(Needle("asked", question, [line.strip() for line in found[-2:] or found]))
    return needles


# -- the held-out corpus: other tools, other shapes, questions written before any tuning on them ------


def import_times() -> str:
    """``python -X importtime``: a real log, one line per module with its timings."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", "import mitmproxy.tools.main, aiohttp, boto3"],
                         capture_output=True, text=True, check=True)
    return run.stderr


def grep_defs() -> str:
    """``grep -rn "def "`` over a few packages: path:line:code."""
    dirs = [str(SITE / d) for d in ("httpx", "h2", "anthropic/resources", "click") if (SITE / d).exists()]
    run = subprocess.run(["grep", "-rn", "--include=*.py", "def ", *dirs], capture_output=True, text=True,
                         check=False)
    return run.stdout.replace(str(SITE) + "/", "")


def files_csv() -> str:
    """A CSV of every installed file with its size and hash (what a data tool prints)."""
    rows = ["distribution,version,path,size,sha256"]
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: (d.metadata.get("Name") or "").lower()):
        for f in (dist.files or [])[:80]:
            rows.append(f"{dist.metadata.get('Name')},{dist.version},{f},{f.size or ''},"
                        f"{f.hash.value if f.hash else ''}")
    return "\n".join(rows)


def records_json() -> str:
    """A JSON array of flat objects (an API's list endpoint), pretty-printed."""
    records = []
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: (d.metadata.get("Name") or "").lower()):
        m = dist.metadata
        records.append({"name": m.get("Name"), "version": dist.version, "license": m.get("License-Expression")
                        or (m.get("License") or "")[:60], "requires_python": m.get("Requires-Python"),
                        "author": m.get("Author") or m.get("Author-email"), "homepage": m.get("Home-page"),
                        "files": len(dist.files or [])})
    return json.dumps(records, indent=2)


def other_sources() -> str:
    wanted = ["h2/connection.py", "click/core.py", "aiohttp/client.py", "anthropic/_base_client.py"]
    return "\n".join(f"==> {rel} <==\n{(SITE / rel).read_text(encoding='utf-8', errors='replace')}"
                     for rel in wanted if (SITE / rel).exists())


def git_log() -> str:
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(["git", "-C", str(root), "log", "--stat", "-n", "300"], capture_output=True, text=True,
                         check=False)
    return run.stdout


HELD_OUT_ASKED = {
    "importtime": [("How long did importing aiohttp.client take?", [r"\|\s+aiohttp\.client$"]),
                   ("What is the cumulative import time of botocore.session?", [r"\|\s+botocore\.session$"])],
    "grep": [("Where is send_headers defined in h2?", [r"h2/connection\.py:\d+:\s+def send_headers\("]),
             ("Which file defines the click command decorator?", [r"click/decorators\.py:\d+:def command\("])],
    "csv": [("What is the size of h2/connection.py?", [r"^h2,[^,]+,h2/connection\.py,"]),
            ("Which sha256 does certifi's cacert.pem have?", [r"^certifi,[^,]+,certifi/cacert\.pem,"])],
    "records": [("What license does the click package use?", [r'^    "name": "click",$', r'^    "license": '])],
    "source2": [("How does h2 handle an incoming WINDOW_UPDATE frame?", [r"def _receive_window_update_frame\("]),
                ("What does click's Context.invoke do?", [r"    def invoke\($"])],
    "git log": [("Which files did the commit about the sampled estimate change?",
                 [r"sampled estimate"])],
}


def held_out_outputs() -> list[Output]:
    built = [
        ("importtime", '{"command": "python -X importtime -c \'import mitmproxy.tools.main, aiohttp, boto3\'"}',
         import_times()),
        ("grep", '{"command": "grep -rn \'def \' httpx h2 anthropic/resources click"}', grep_defs()),
        ("csv", '{"command": "python list_files.py --csv"}', files_csv()),
        ("records", '{"url": "https://registry.local/api/packages"}', records_json()),
        ("source2", '{"command": "cat h2/connection.py click/core.py aiohttp/client.py ..."}', other_sources()),
        ("git log", '{"command": "git log --stat -n 300"}', git_log()),
    ]
    out = []
    for name, args, text in built:
        if not text.strip():
            continue
        needles = positional_needles(text)
        lines = text.split("\n")
        for question, patterns in HELD_OUT_ASKED.get(name, []):
            found: list[str] = []
            for pattern in patterns:
                start = lines.index(found[-1]) + 1 if found else 0
                match = next((line for line in lines[start:] if re.search(pattern, line)), None)
                if match is None:
                    break
                found.append(match)
            if len(found) == len(patterns):
                needles.append(Needle("asked", question, [line.strip() for line in found]))
        out.append(Output(name, args, text, needles))
    return out


def outputs() -> list[Output]:
    built = [
        ("source", '{"command": "cat sqlite_utils/db.py mitmproxy/http.py pydantic/main.py ..."}', source_files()),
        ("pytest", '{"command": "python -m pytest -v -rA test_ledger.py"}', pytest_log()),
        ("ls -lR", f'{{"command": "ls -lR {SITE}"}}', listing()),
        ("json", '{"command": "pip inspect"}', metadata_json()),
        ("html", '{"url": "file:///docs/sqlite_utils.db.html"}', html_page()),
    ]
    out = []
    for name, args, text in built:
        needles = positional_needles(text) + asked_needles(name, text)
        if name == "pytest":
            failures = sorted({line.strip() for line in text.split("\n") if line.startswith("E   ")})
            needles.append(Needle("failures", "Which tests failed, and why?", failures))
        out.append(Output(name, args, text, needles))
    return out


# -- strategies -----------------------------------------------------------------------------------


def head(text: str, budget: int, enc) -> str:
    return enc.decode(enc.encode_ordinary(text)[:budget])


def head_tail(text: str, budget: int, enc) -> str:
    ids = enc.encode_ordinary(text)
    if len(ids) <= budget:
        return text
    half = budget // 2
    return enc.decode(ids[:half]) + "\n[... truncated ...]\n" + enc.decode(ids[-half:])


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def evaluate(docs: list[Output], budget: int, strategies: dict[str, Callable[[str, Query, int], str]], count,
             title: str) -> dict[str, float]:
    totals = {s: [0, 0, 0, 0] for s in strategies}  # questions answered, questions, tokens kept, tokens in
    seconds = []
    print(f"\n### {title}, budget {budget:,} tokens ({FALLBACK})\n")
    print(f"{'output':<10} {'tokens':>9} {'needle':<10} " + " ".join(f"{s:>10}" for s in strategies))
    for doc in docs:
        original = count(doc.text)
        for needle in doc.needles:
            query = Query(needle.question, doc.args)
            cells = []
            for name, strategy in strategies.items():
                started = time.perf_counter()
                kept = strategy(doc.text, query, budget)
                if name == "kimi":
                    seconds.append(time.perf_counter() - started)
                found = sum(squash(line) in squash(kept) for line in needle.lines)
                t = totals[name]
                t[0] += found == len(needle.lines)
                t[1] += 1
                t[2] += count(kept)
                t[3] += original
                cells.append(f"{found}/{len(needle.lines)}")
            print(f"{doc.name:<10} {original:>9,} {needle.where:<10} " + " ".join(f"{c:>10}" for c in cells))
    print()
    print(f"{'':<31}" + " ".join(f"{s:>10}" for s in strategies))
    print(f"{'questions answered':<31}" + " ".join(f"{t[0] / t[1]:>10.0%}" for t in totals.values()))
    print(f"{'token reduction':<31}" + " ".join(f"{1 - t[2] / t[3]:>10.1%}" for t in totals.values()))
    print(f"\nkimi compaction time per output: median {sorted(seconds)[len(seconds) // 2]:.2f} s, "
          f"max {max(seconds):.2f} s")
    kimi = totals["kimi"]
    return {"answered": kimi[0] / kimi[1], "questions": kimi[1], "reduction": 1 - kimi[2] / kimi[3]}


def timing(count) -> None:
    """Compaction alone, on about 100K and 1M tokens of a file listing and of source code."""
    print("\n### Compaction time (median of 3)\n")
    texts = {"ls -lR": listing(), "source": source_files() * 3}
    for name, text in texts.items():
        for size in (100_000, 1_000_000):
            part = text
            while count(part) > size * 1.1:
                part = part[:int(len(part) * size / count(part))]
            runs = []
            for _ in range(3):
                started = time.perf_counter()
                compact(part, 20_000, Query("where are the encodings registered?", name), count)
                runs.append(time.perf_counter() - started)
            print(f"{name:<8} {count(part):>10,} tokens: {sorted(runs)[1] * 1000:8.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="5000,20000", help="token budgets, comma-separated")
    parser.add_argument("--held-out", action="store_true", help="also the held-out corpus (not for tuning)")
    args = parser.parse_args()
    enc, _ = encoding(FALLBACK)
    count = counter_for(FALLBACK)
    strategies: dict[str, Callable[[str, Query, int], str]] = {
        "kimi": lambda text, query, budget: compact(text, budget, query, count).text,
        "head": lambda text, query, budget: head(text, budget, enc),
        "head+tail": lambda text, query, budget: head_tail(text, budget, enc),
    }
    corpora = [("tuning corpus", outputs())] + ([("held-out corpus", held_out_outputs())] if args.held_out else [])
    summary = []
    for budget in (int(b) for b in args.budgets.split(",")):
        for title, docs in corpora:
            summary.append((title, budget, evaluate(docs, budget, strategies, count, title)))
    timing(count)
    print("\n### Summary (kimi)\n")
    for title, budget, r in summary:
        print(f"{title:<16} budget {budget:>6,}: {r['answered']:.1%} of {r['questions']} questions answered, "
              f"{r['reduction']:.1%} fewer tokens")


if __name__ == "__main__":
    main()
