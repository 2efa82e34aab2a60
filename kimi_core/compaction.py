"""Shrinking an oversized tool result to a token budget, keeping what matters.

Two stages, pure and deterministic (the same input gives the same bytes, so a
result resent on every turn keeps the provider's prompt cache hitting):

1. ``clean``: clean-up that loses no information a reader needs: ANSI escape
   codes, trailing whitespace, runs of blank lines, pretty-printed JSON made
   compact, and runs of identical or near-identical lines (progress bars,
   repeated log lines) collapsed to one with a count. Often enough alone.
2. ``select``: split into line chunks with 10% overlap, score each against
   what the conversation asks (BM25 over the latest user message and the tool
   call's arguments) and for salience (errors, failures, exceptions, warnings,
   the beginning and the end), and keep the best chunks in their original
   order within the budget. Each gap gets a marker saying how many lines and
   tokens were left out and how to get them back.

The original is archived by the caller under its sha256; markers name it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
# Lines that may collapse although their numbers differ: progress and timestamped logs.
# Other lines differing only in numbers (file_0001.py, file_0002.py) are information.
_PROGRESS = re.compile(r"\d%|\d+/\d+|\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}|\bETA\b|it/s|[KMG]i?B/s", re.IGNORECASE)
_BLANKS = re.compile(r"\n{3,}")
_DIGITS = re.compile(r"\d+")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{1,}|\d{3,}")
_SALIENT = re.compile(
    r"\b(?:error|errors|failed|failure|fail|fatal|exception|traceback|panic|warning|warn|"
    r"assert(?:ion)?|denied|refused|timeout|timed out|not found|undefined|segfault|critical)\b",
    re.IGNORECASE,
)
MIN_RUN = 3  # identical-shape lines in a row before they are collapsed
OVERLAP = 0.10


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _shape(line: str) -> str:
    """What makes lines alike: the line itself, or for progress and log lines, its numbers blanked."""
    line = line.strip()
    return _DIGITS.sub("#", line) if _PROGRESS.search(line) else line


def collapse_runs(lines: list[str]) -> list[str]:
    """Runs of MIN_RUN or more same-shape lines become their first and last line and a count."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        j = i + 1
        shape = _shape(lines[i])
        while j < len(lines) and shape and _shape(lines[j]) == shape:
            j += 1
        run = j - i
        if run >= MIN_RUN:
            out.append(lines[i])
            out.append(f"[... {run - 2} similar lines ...]")
            out.append(lines[j - 1])
        else:
            out.extend(lines[i:j])
        i = j
    return out


def clean(text: str) -> str:
    """Clean-up that keeps every piece of information a reader needs."""
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and "\n" in stripped:
        try:
            return json.dumps(json.loads(stripped), ensure_ascii=False, separators=(",", ":"))
        except (ValueError, RecursionError):
            pass
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    # A carriage return redraws the line: keep what the terminal showed last.
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]
    text = "\n".join(collapse_runs(lines))
    return _BLANKS.sub("\n\n", text).strip("\n")


def terms(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


@dataclass(frozen=True, slots=True)
class Chunk:
    start: int  # first line (0-based)
    end: int  # one past the last line
    text: str
    tokens: int


def chunks(lines: list[str], size: int, count: Callable[[str], int]) -> list[Chunk]:
    """Consecutive chunks of about ``size`` tokens, each overlapping the previous by 10%."""
    out: list[Chunk] = []
    line_tokens = [count(line) + 1 for line in lines]
    start = 0
    while start < len(lines):
        end, total = start, 0
        while end < len(lines) and (total + line_tokens[end] <= size or end == start):
            total += line_tokens[end]
            end += 1
        out.append(Chunk(start, end, "\n".join(lines[start:end]), total))
        if end >= len(lines):
            break
        back, overlap = end, 0
        while back > start + 1 and overlap < size * OVERLAP:
            back -= 1
            overlap += line_tokens[back]
        start = back
    return out


def bm25(query: list[str], docs: list[list[str]], k1: float = 1.2, b: float = 0.75) -> list[float]:
    """Okapi BM25 score of each document for the query."""
    if not docs or not query:
        return [0.0] * len(docs)
    avg = sum(len(d) for d in docs) / len(docs) or 1.0
    df = Counter(t for d in docs for t in set(d))
    n = len(docs)
    scores = []
    for d in docs:
        tf = Counter(d)
        score = 0.0
        for t in set(query):
            if t in tf:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                score += idf * tf[t] * (k1 + 1) / (tf[t] + k1 * (1 - b + b * len(d) / avg))
        scores.append(score)
    return scores


def scores(pieces: list[Chunk], query: str) -> list[float]:
    """Relevance to the query plus salience; the first and last chunks always rank high."""
    relevance = bm25(terms(query), [terms(c.text) for c in pieces])
    top = max(relevance, default=0.0) or 1.0
    out = []
    for i, c in enumerate(pieces):
        salient = len(_SALIENT.findall(c.text))
        score = relevance[i] / top + min(1.0, salient / 3)
        if i == 0 or i == len(pieces) - 1:
            score += 1.5
        out.append(score)
    return out


def marker(lines: int, tokens: int, digest: str) -> str:
    return (f"[... Kimi Proxy left out {lines} lines (about {tokens:,} tokens) of this tool result; "
            f"the original is kept: kimi-proxy restore {digest[:12]} ...]")


@dataclass(frozen=True, slots=True)
class Compacted:
    text: str
    sha256: str  # of the original
    original_tokens: int
    kept_tokens: int
    cleaned_only: bool  # the clean-up alone fitted the budget


def compact(text: str, budget: int, query: str, count: Callable[[str], int]) -> Compacted:
    """``text`` within ``budget`` tokens; deterministic for the same inputs."""
    digest = sha256(text)
    original = count(text)
    cleaned = clean(text)
    cleaned_tokens = count(cleaned)
    if cleaned_tokens <= budget:
        return Compacted(cleaned, digest, original, cleaned_tokens, True)
    lines = cleaned.split("\n")
    pieces = chunks(lines, max(64, budget // 8), count)
    score = scores(pieces, query)
    ranked = sorted(range(len(pieces)), key=lambda i: (-score[i], i))
    kept: list[int] = []
    used = 0
    for i in ranked:  # best first, while chunks and their gap markers fit
        if used + pieces[i].tokens + MARKER_TOKENS * (len(kept) + 2) <= budget:
            kept.append(i)
            used += pieces[i].tokens
    result = _assemble(lines, pieces, sorted(kept), digest, count)
    while count(result) > budget and kept:  # markers longer than reckoned: drop the weakest
        kept.pop()
        result = _assemble(lines, pieces, sorted(kept), digest, count)
    return Compacted(result, digest, original, count(result), False)


MARKER_TOKENS = 40


def _assemble(lines: list[str], pieces: list[Chunk], kept: list[int], digest: str,
              count: Callable[[str], int]) -> str:
    """The kept chunks in their order, overlaps merged, a marker in each gap."""
    out: list[str] = []
    covered = 0  # lines emitted so far
    for i in kept:
        c = pieces[i]
        if c.start > covered:
            gap = lines[covered:c.start]
            out.append(marker(len(gap), count("\n".join(gap)), digest))
        out.append("\n".join(lines[max(c.start, covered):c.end]))
        covered = max(covered, c.end)
    if covered < len(lines):
        gap = lines[covered:]
        out.append(marker(len(gap), count("\n".join(gap)), digest))
    return "\n".join(out)
