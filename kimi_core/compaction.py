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

import bisect
import hashlib
import itertools
import json
import math
import re
import threading
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
    shapes = _DIGITS.sub("#", "\n".join(stripped)).split("\n")  # one pass over the text, not one per line
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
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    text = text.replace("\r\n", "\n")
    # A carriage return redraws the line: keep what the terminal showed last.
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]
    text = "\n".join(collapse_runs(lines))
    return (_BLANKS.sub("\n\n", text) if "\n\n\n" in text else text).strip("\n")


# What a question is made of: names (identifiers, dotted and dashed ones, paths, versions such as
# python3.11), words, and numbers. Names are searched whole; their parts weigh less.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/:]*[A-Za-z0-9_]|[A-Za-z0-9_]")
_PART = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_STOPWORDS = """
a about above after again all also am an and any are as at be been before being below between both but by
can could did do does doing done down during each few for from further get gets got had has have having he
her here hers him his how i if in into is it its itself just let me more most my no nor not now of off on
once only or other our out over own please same she should show shows so some such tell than that the their
them then there these they this those through to too under until up us very was we were what when where
which while who whom why will with would you your yours give find see look say says said output result
le la les un une des du de et ou est sont dans pour par sur avec ce cette ces qui que quoi quel quelle
quels quelles comment où il elle ils elles je tu nous vous mon ma mes ton ta tes son sa ses au aux ne pas
"""
STOPWORDS = frozenset(_STOPWORDS.split())
PART_WEIGHT = 0.3  # a part of a name ("settings" of needle_settings) against the name itself
MAX_HITS = 20_000  # occurrences of one term looked at: a term that common says nothing anyway


def terms(text: str) -> dict[str, float]:
    """The terms of a question, lower-cased, each with its weight: names and words 1, parts of names less."""
    out: dict[str, float] = {}
    for name in _NAME.findall(text):
        whole = name.lower().strip(".-/:")
        if len(whole) >= 2 and whole not in STOPWORDS and not (whole.isdigit() and len(whole) < 2):
            out[whole] = 1.0
        parts = _PART.findall(name)
        if len(parts) > 1:
            for part in parts:
                part = part.lower()
                if len(part) >= 3 and part not in STOPWORDS and part not in out:
                    out[part] = PART_WEIGHT
    return out


def bm25(query: dict[str, float], tf: list[dict[str, int]], lengths: list[float], k1: float = 1.2,
         b: float = 0.75) -> list[float]:
    """Okapi BM25 score of each document, given each one's term frequencies and length, for weighted terms."""
    n = len(tf)
    if not n or not query:
        return [0.0] * n
    avg = sum(lengths) / n or 1.0
    df = {t: sum(1 for d in tf if d.get(t)) for t in query}
    idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in query}
    scores = []
    for d, length in zip(tf, lengths, strict=True):
        norm = k1 * (1 - b + b * length / avg)
        scores.append(sum(w * idf[t] * d[t] * (k1 + 1) / (d[t] + norm) for t, w in query.items() if d.get(t)))
    return scores


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


@dataclass(frozen=True, slots=True)
class Query:
    """What the conversation asks of a tool result: the user's words, and the tool call's arguments.

    The arguments name what the tool read or ran, which the whole output is
    about; they weigh less than the question.
    """

    ask: str
    args: str = ""

    def terms(self) -> dict[str, float]:
        weights = {t: w * ARGS_WEIGHT for t, w in terms(self.args).items()}
        weights.update(terms(self.ask))
        return weights


ARGS_WEIGHT = 0.25
RELEVANCE_WEIGHT = 2.0
SALIENCE_WEIGHT = 0.75
DEFINITION_BONUS = 1.0
EDGE_BONUS = 1.5
# What comes before a name where it is defined (code, SQL, a JSON record's name or id).
_DEFINES = re.compile(r"(?:\b(?:def|class|function|func|fn|struct|interface|type|enum|const|let|var|module|trait|"
                      r"impl|macro|table|create table|message|service)\s+|^\s*|\"(?:name|id|key|title)\"\s*:\s*\")\Z")


class Index:
    """Where things are in a text split into lines: which line an offset is on, which chunks hold a line."""

    def __init__(self, lines: list[str], pieces: list[Chunk]) -> None:
        self.text = "\n".join(lines).lower()
        self.starts = list(itertools.accumulate((len(line) + 1 for line in lines[:-1]), initial=0))
        self.pieces = pieces
        self.chunk_starts = [c.start for c in pieces]

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1

    def chunks_of(self, line: int) -> list[int]:
        """The chunks holding ``line``: one, or two where they overlap."""
        i = bisect.bisect_right(self.chunk_starts, line) - 1
        return [j for j in (i - 1, i) if j >= 0 and self.pieces[j].start <= line < self.pieces[j].end]

    def hits(self, term: str, anywhere: bool = False) -> list[int]:
        """Where ``term`` starts a word (after a non-alphanumeric: "test" is not in "latest", but
        "settings" is in needle_settings); ``anywhere``: inside words too (parts of camelCase names)."""
        out, text, at = [], self.text, self.text.find(term)
        while at >= 0 and len(out) < MAX_HITS:
            if anywhere or at == 0 or not text[at - 1].isalnum():
                out.append(at)
            at = text.find(term, at + 1)
        return out


def scores(pieces: list[Chunk], query: Query, index: Index) -> list[float]:
    """Relevance to the query (BM25 over where its terms occur), a bonus for where a name it asks
    about is defined, salience (errors, failures, warnings), and a bonus for the first and last chunks.

    Salience counts for less in outputs where it is everywhere (source code
    says "error" in every other function).
    """
    asked = query.terms()
    tf: list[dict[str, int]] = [{} for _ in pieces]
    defines = [0.0] * len(pieces)
    for term, weight in asked.items():
        for at in index.hits(term, anywhere=weight < 1.0):
            line = index.line_of(at)
            chunks_ = index.chunks_of(line)
            for j in chunks_:
                tf[j][term] = tf[j].get(term, 0) + 1
            if weight >= 1.0 and len(term) >= 4 and not term.isdigit():
                before = index.text[index.starts[line]:at][-40:]
                end = at + len(term)
                after = index.text[end:end + 1]
                if _DEFINES.search(before) and not after.isalnum() and after != "_":
                    for j in chunks_:
                        defines[j] = 1.0
    relevance = bm25(asked, tf, [float(c.tokens) for c in pieces])
    top = max(relevance, default=0.0) or 1.0
    salient_hits = [0] * len(pieces)
    for m in _SALIENT.finditer(index.text):
        for j in index.chunks_of(index.line_of(m.start())):
            salient_hits[j] += 1
    salient = [min(1.0, n / 3) for n in salient_hits]
    rarity = 1 - sum(1 for x in salient if x) / max(1, len(pieces))
    out = []
    for i in range(len(pieces)):
        score = RELEVANCE_WEIGHT * relevance[i] / top + SALIENCE_WEIGHT * salient[i] * rarity \
            + DEFINITION_BONUS * defines[i]
        if i == 0 or i == len(pieces) - 1:
            score += EDGE_BONUS
        out.append(score)
    return out


def marker(lines: int, tokens: int, digest: str, gist: str = "") -> str:
    gist = f"; {gist}" if gist else ""
    return (f"[... Kimi Proxy left out {lines} lines (about {tokens:,} tokens{gist}) of this tool result; "
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
            digest: str | None = None, original: int | None = None) -> Compacted:
    """``text`` within ``budget`` tokens (at least ``MIN_BUDGET``); deterministic for the same inputs.

    ``original``: the text's token count, when the caller knows it; else it
    is counted, or estimated from a sample when over ``ESTIMATED_OVER``
    budgets (then it decides nothing; counting 400,000 tokens takes 0.2 s).
    What is kept is counted exactly; the cleaned text only when it may fit,
    else estimated, as are lines (from the tokens per character: counting
    40,000 lines one by one costs seconds). The result is trimmed until it
    really fits.
    """
    budget = max(budget, MIN_BUDGET)  # a marker alone takes about 40 tokens
    digest = digest or sha256(text)  # the caller's, when it has hashed the text already
    cleaned = clean(text)
    if original is None:  # far over the budget, the original's size is only reported: estimated
        original = sampled(text, count)
        if original <= budget * ESTIMATED_OVER:
            original = count(text)
    if cleaned == text:
        cleaned_tokens = original
    else:
        cleaned_tokens = sampled(cleaned, count)
        if cleaned_tokens <= budget * 1.25:
            cleaned_tokens = count(cleaned)
    if cleaned_tokens <= budget:
        return Compacted(cleaned, digest, original, cleaned_tokens, True)
    if isinstance(query, str):
        query = Query(query)
    lines = as_lines(cleaned)
    per_char = cleaned_tokens / max(1, len(cleaned))
    line_tokens = [1 + int(len(line) * per_char) for line in lines]
    pieces = chunks(lines, min(CHUNK_TOKENS, max(64, budget // 8)), line_tokens)
    index = Index(lines, pieces)
    score = scores(pieces, query, index)
    ranked = sorted(range(len(pieces)), key=lambda i: (-score[i], i))
    kept: list[int] = []
    used = 0
    for i in ranked:  # best first, while chunks and their gap markers fit
        if used + pieces[i].tokens + MARKER_TOKENS * (len(kept) + 2) <= budget:
            kept.append(i)
            used += pieces[i].tokens
    result = _assemble(lines, pieces, sorted(kept), digest, line_tokens, index)
    kept_tokens = count(result)
    while kept_tokens > budget and kept:  # denser than estimated: drop the weakest
        kept.pop()
        result = _assemble(lines, pieces, sorted(kept), digest, line_tokens, index)
        kept_tokens = count(result)
    return Compacted(result, digest, original, kept_tokens, False)


def sampled(text: str, count: Callable[[str], int], slices: int = 32, size: int = 2048) -> int:
    """``count(text)`` estimated from ``slices`` evenly spread slices (exact for a short text)."""
    if len(text) <= slices * size * 2:
        return count(text)
    stride = len(text) // slices
    return round(sum(count(text[i * stride:i * stride + size]) for i in range(slices)) * len(text)
                 / (slices * size))


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
ESTIMATED_OVER = 4  # an original over this many budgets is estimated from a sample, not counted


def _assemble(lines: list[str], pieces: list[Chunk], kept: list[int], digest: str,
              line_tokens: list[int], index: Index | None = None) -> str:
    """The kept chunks in their order, overlaps merged, a marker in each gap saying what it holds."""
    out: list[str] = []
    covered = 0  # lines emitted so far
    for i in kept:
        c = pieces[i]
        if c.start > covered:
            out.append(marker(c.start - covered, sum(line_tokens[covered:c.start]), digest,
                              _gist(lines, covered, c.start)))
        out.append("\n".join(lines[max(c.start, covered):c.end]))
        covered = max(covered, c.end)
    if covered < len(lines):
        out.append(marker(len(lines) - covered, sum(line_tokens[covered:]), digest,
                          _gist(lines, covered, len(lines))))
    return "\n".join(out)


# What a gap's marker counts among the lines it stands for.
_KINDS = (("error", re.compile(r"error|exception|traceback|fatal|panic|critical")),
          ("fail", re.compile(r"fail")), ("warn", re.compile(r"warn")))


_DEFINED = re.compile(r"^[ \t]*(?:(?:pub(?:\([\w:]+\))?|export|async|static|public|private)\s+)*"
                      r"(?:def|class|function|func|fn|interface|struct|enum|trait)\s+([A-Za-z_$][\w$]*)", re.MULTILINE)
GIST_NAMES = 6


def _gist(lines: list[str], start: int, end: int) -> str:
    """What the lines left out hold: ``"error in 12 lines, warn in 3; defines parse, Reader and 4 more"``."""
    text = "\n".join(lines[start:end])
    gap = text.lower()
    found, salient = [], []
    if _SALIENT.search(gap):
        for kind, pattern in _KINDS:
            n = len({gap.rfind("\n", 0, m.start()) for m in pattern.finditer(gap)})  # lines, by where they start
            if n:
                salient.append(f"{kind} in {n:,} line{'s' if n > 1 else ''}")
    if salient:
        found.append(", ".join(salient))
    names = list(dict.fromkeys(m.group(1) for m in _DEFINED.finditer(text)))
    if names:
        more = f" and {len(names) - GIST_NAMES} more" if len(names) > GIST_NAMES else ""
        found.append(f"defines {', '.join(names[:GIST_NAMES])}{more}")
    return "; ".join(found)


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
        # By (sha256, encoding): what ``compact`` reported as the original's tokens (perhaps estimated),
        # and what ``count`` counted (exact).
        self._counts: cachetools.LRUCache = cachetools.LRUCache(maxsize=10_000)
        self._sizes: cachetools.LRUCache = cachetools.LRUCache(maxsize=10_000)
        # Tokens of tool results by where they sit in a history item and the item's digest (the
        # parse gives those for free): a result resent every turn is looked at once.
        self._results: cachetools.LRUCache = cachetools.LRUCache(maxsize=50_000)
        self._lock = threading.Lock()
        self.hits = 0

    def known(self, key: tuple | None) -> int | None:
        """The tokens of the tool result known by ``key`` (``toolresults.result_key``), if counted before."""
        if key is None:
            return None
        with self._lock:
            return self._results.get(key)

    def remember(self, key: tuple | None, tokens_: int) -> None:
        if key is not None:
            with self._lock:
                self._results[key] = tokens_

    def count(self, text: str, encoding: str) -> int:
        """``text``'s tokens, remembered by content: a result resent every turn is counted once."""
        key = (sha256(text), encoding)
        with self._lock:
            n = self._sizes.get(key)
        if n is None:
            n = tokens.counter_for(encoding)(text)
            with self._lock:
                self._sizes[key] = n
        return n

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
        with self._lock:
            original = self._counts.get((digest, encoding)) or self._sizes.get((digest, encoding))
        result = compact(text, budget, query, tokens.counter_for(encoding), digest, original)
        with self._lock:
            self._counts[(digest, encoding)] = result.original_tokens  # other budgets: counted once
            try:
                self._cache[key] = result
            except ValueError:  # bigger than the whole cache
                pass
        return result
