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
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cachetools

from kimi_core import tokens

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
# Lines that may collapse although their numbers differ: progress and timestamped logs.
# Other lines differing only in numbers (file_0001.py, file_0002.py) are information.
_PROGRESS = re.compile(r"\d%|\d/\d|\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d|ETA|it/s|B/s")
_BLANKS = re.compile(r"\n{3,}")
_DIGITS = re.compile(r"\d+")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{1,}|\d{3,}")
# The parts of snake_case and camelCase identifiers, so that "needle settings" finds needle_settings.
_SUBWORD = re.compile(r"[A-Z]?[a-z]{2,}|[A-Z]{2,}(?![a-z])")
# Matched in lower-cased text, without word boundaries: ``re`` is several times
# faster so, and "fail" then also finds "failed", "failure", "FAILURES".
_SALIENT = re.compile(r"error|fail|fatal|exception|traceback|panic|warn|assert|denied|refused|timeout|"
                      r"timed out|not found|undefined|segfault|critical")
MIN_RUN = 3  # identical-shape lines in a row before they are collapsed
OVERLAP = 0.10


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def collapse_runs(lines: list[str]) -> list[str]:
    """Runs of MIN_RUN or more alike lines become their first and last line and a count.

    Alike: identical, or for progress and log lines, identical but for their numbers.
    """
    stripped = [line.strip() for line in lines]
    shapes = [_DIGITS.sub("#", line) for line in stripped]
    out: list[str] = []
    i = 0
    while i < len(lines):
        j = i + 1
        while j < len(lines) and shapes[j] == shapes[i]:
            j += 1
        if j - i >= MIN_RUN and stripped[i] and (shapes[i] == stripped[i] or _PROGRESS.search(stripped[i])):
            _collapsed(out, lines, i, j)
        else:  # same shape but not progress: only exact repeats collapse
            k = i
            while k < j:
                m = k + 1
                while m < j and stripped[m] == stripped[k]:
                    m += 1
                if m - k >= MIN_RUN and stripped[k]:
                    _collapsed(out, lines, k, m)
                else:
                    out.extend(lines[k:m])
                k = m
        i = j
    return out


def _collapsed(out: list[str], lines: list[str], start: int, end: int) -> None:
    out.append(lines[start])
    out.append(f"[... {end - start - 2} similar lines ...]")
    out.append(lines[end - 1])


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
    """Words, numbers and identifiers, and the parts of identifiers, lower-cased."""
    words = _WORD.findall(text.lower())
    parts = " ".join(p for w in _WORD.findall(text) if "_" in w or not w.islower()
                     for p in _SUBWORD.findall(w)).lower().split()
    return words + parts


@dataclass(frozen=True, slots=True)
class Chunk:
    start: int  # first line (0-based)
    end: int  # one past the last line
    text: str
    tokens: int


def chunks(lines: list[str], size: int, line_tokens: list[int]) -> list[Chunk]:
    """Consecutive chunks of about ``size`` tokens, each overlapping the previous by 10%."""
    out: list[Chunk] = []
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


def bm25(query: dict[str, float], docs: list[list[str]], k1: float = 1.2, b: float = 0.75) -> list[float]:
    """Okapi BM25 score of each document for the query's terms, each with its weight."""
    if not docs or not query:
        return [0.0] * len(docs)
    avg = sum(len(d) for d in docs) / len(docs) or 1.0
    df = Counter(t for d in docs for t in set(d) if t in query)
    n = len(docs)
    idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in query}
    scores = []
    for d in docs:
        tf = Counter(d)
        norm = k1 * (1 - b + b * len(d) / avg)
        scores.append(sum(w * idf[t] * tf[t] * (k1 + 1) / (tf[t] + norm) for t, w in query.items() if t in tf))
    return scores


@dataclass(frozen=True, slots=True)
class Query:
    """What the conversation asks of a tool result: the user's words, and the tool call's arguments.

    The arguments name what the tool read or ran, which the whole output is
    about; they weigh less than the question.
    """

    ask: str
    args: str = ""

    def terms(self) -> dict[str, float]:
        weights = dict.fromkeys(terms(self.args), ARGS_WEIGHT)
        weights.update(dict.fromkeys(terms(self.ask), 1.0))
        return weights


ARGS_WEIGHT = 0.25
RELEVANCE_WEIGHT = 2.0
SALIENCE_WEIGHT = 0.75
EDGE_BONUS = 1.5


def scores(pieces: list[Chunk], query: Query) -> list[float]:
    """Relevance to the query, plus salience, plus a bonus for the first and last chunks.

    Salience counts for less in outputs where it is everywhere (source code
    says "error" in every other function).
    """
    relevance = bm25(query.terms(), [terms(c.text) for c in pieces])
    top = max(relevance, default=0.0) or 1.0
    salient = [min(1.0, len(_SALIENT.findall(c.text.lower())) / 3) for c in pieces]
    rarity = 1 - sum(1 for x in salient if x) / max(1, len(pieces))
    out = []
    for i in range(len(pieces)):
        score = RELEVANCE_WEIGHT * relevance[i] / top + SALIENCE_WEIGHT * salient[i] * rarity
        if i == 0 or i == len(pieces) - 1:
            score += EDGE_BONUS
        out.append(score)
    return out


def marker(lines: int, tokens: int, digest: str) -> str:
    return (f"[... Kimi Proxy left out {lines} lines (about {tokens:,} tokens) of this tool result; "
            f"the original is kept, sha {digest[:12]}: the kimi_original tool reads any part of it "
            f"(or: kimi-proxy restore {digest[:12]}) ...]")


@dataclass(frozen=True, slots=True)
class Compacted:
    text: str
    sha256: str  # of the original
    original_tokens: int
    kept_tokens: int
    cleaned_only: bool  # the clean-up alone fitted the budget


def compact(text: str, budget: int, query: Query | str, count: Callable[[str], int],
            digest: str | None = None) -> Compacted:
    """``text`` within ``budget`` tokens (at least ``MIN_BUDGET``); deterministic for the same inputs.

    Whole texts are counted exactly, lines are estimated from the text's
    tokens per character (counting 40,000 lines one by one costs seconds);
    the result is counted again and trimmed until it really fits.
    """
    budget = max(budget, MIN_BUDGET)  # a marker alone takes about 40 tokens
    digest = digest or sha256(text)  # the caller's, when it has hashed the text already
    cleaned = clean(text)
    cleaned_tokens = count(cleaned)
    original = cleaned_tokens if cleaned == text else count(text)
    if cleaned_tokens <= budget:
        return Compacted(cleaned, digest, original, cleaned_tokens, True)
    if isinstance(query, str):
        query = Query(query)
    lines = as_lines(cleaned)
    per_char = cleaned_tokens / max(1, len(cleaned))
    line_tokens = [1 + int(len(line) * per_char) for line in lines]
    pieces = chunks(lines, min(CHUNK_TOKENS, max(64, budget // 8)), line_tokens)
    score = scores(pieces, query)
    ranked = sorted(range(len(pieces)), key=lambda i: (-score[i], i))
    kept: list[int] = []
    used = 0
    for i in ranked:  # best first, while chunks and their gap markers fit
        if used + pieces[i].tokens + MARKER_TOKENS * (len(kept) + 2) <= budget:
            kept.append(i)
            used += pieces[i].tokens
    result = _assemble(lines, pieces, sorted(kept), digest, line_tokens)
    kept_tokens = count(result)
    while kept_tokens > budget and kept:  # denser than estimated: drop the weakest
        kept.pop()
        result = _assemble(lines, pieces, sorted(kept), digest, line_tokens)
        kept_tokens = count(result)
    return Compacted(result, digest, original, kept_tokens, False)


def as_lines(text: str) -> list[str]:
    """Lines to select from: JSON one member or item per line, overlong lines cut."""
    lines = None
    if text[:1] in ("{", "["):
        try:
            lines = json_lines(json.loads(text))
        except (ValueError, RecursionError):
            pass
    if lines is None:
        lines = text.split("\n")
    out: list[str] = []
    for line in lines:
        while len(line) > MAX_LINE:  # minified code, one-line JSON values: cut, at a space if near
            cut = line.rfind(" ", MAX_LINE // 2, MAX_LINE) + 1 or MAX_LINE
            out.append(line[:cut])
            line = line[cut:]
        out.append(line)
    return out


def json_lines(value: Any, prefix: str = "", suffix: str = "") -> list[str]:
    """``value`` as JSON, one small member or item per line, no indentation (still valid JSON)."""
    flat = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if len(flat) <= JSON_LINE or not isinstance(value, (dict, list)) or not value:
        return [prefix + flat + suffix]
    if isinstance(value, dict):
        members = [(json.dumps(k, ensure_ascii=False) + ":", v) for k, v in value.items()]
        opening, closing = "{", "}"
    else:
        members = [("", v) for v in value]
        opening, closing = "[", "]"
    lines = [prefix + opening]
    for n, (key, v) in enumerate(members):
        lines.extend(json_lines(v, key, "," if n < len(members) - 1 else ""))
    lines.append(closing + suffix)
    return lines


CHUNK_TOKENS = 512  # at most: finer chunks keep more of what matters, coarser ones cost fewer markers
MAX_LINE = 2000  # characters
JSON_LINE = 200  # a JSON value this long or shorter stays on one line
MARKER_TOKENS = 40
MIN_BUDGET = 100


def _assemble(lines: list[str], pieces: list[Chunk], kept: list[int], digest: str,
              line_tokens: list[int]) -> str:
    """The kept chunks in their order, overlaps merged, a marker in each gap."""
    out: list[str] = []
    covered = 0  # lines emitted so far
    for i in kept:
        c = pieces[i]
        if c.start > covered:
            out.append(marker(c.start - covered, sum(line_tokens[covered:c.start]), digest))
        out.append("\n".join(lines[max(c.start, covered):c.end]))
        covered = max(covered, c.end)
    if covered < len(lines):
        out.append(marker(len(lines) - covered, sum(line_tokens[covered:]), digest))
    return "\n".join(out)


class Compactor:
    """``compact`` with a cache by content, query, budget and encoding.

    Agents resend the same tool results on every turn; their compaction is
    done once and reused for ``ttl`` seconds. Bounded by the characters kept.
    cachetools' TTLCache does the expiry and size accounting; the lock makes
    it safe to share between the loop and the analysis thread.
    """

    def __init__(self, ttl: float = 300, max_chars: int = 32_000_000) -> None:
        self._cache: cachetools.TTLCache = cachetools.TTLCache(
            maxsize=max_chars, ttl=ttl, getsizeof=lambda c: len(c.text) + 200)
        self._lock = threading.Lock()
        self.hits = 0

    def compact(self, text: str, budget: int, query: Query, encoding: str) -> Compacted:
        asked = f"{query.ask}\0{query.args}".encode("utf-8", "surrogatepass")
        digest = sha256(text)
        key = (digest, hashlib.blake2b(asked).digest(), budget, encoding)
        with self._lock:
            found = self._cache.get(key)
            if found is not None:  # put back: five minutes from the last use, not the first
                self.hits += 1
                self._cache[key] = found
                return found
        result = compact(text, budget, query, tokens.counter_for(encoding), digest)
        with self._lock:
            try:
                self._cache[key] = result
            except ValueError:  # bigger than the whole cache
                pass
        return result
