"""From the bytes of a request to its neutral view and token count (runs off the event loop)."""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
import json
import threading
from dataclasses import dataclass
from typing import Any

from kimi_core import decoding, dialects, jsonspans
from kimi_core.dialects.base import LLMRequest
from kimi_core.errors import BodyError
from kimi_core.jsonspans import Parsed, Span
from kimi_core.providers import CODE_ASSIST, Route
from kimi_core.tokens import (
    TOKENS_PER_REPLY,
    Abandoned,
    Count,
    TokenCounter,
    media_allowance,
    message_text,
)


@dataclass(slots=True, eq=False)
class Analysis:
    body: Any = None  # the parsed JSON body
    raw: bytes | None = None  # the decoded body, when it is not JSON
    request: LLMRequest | None = None
    count: Count | None = None
    error: str | None = None
    # The body's text and where each history item sits in it, with a digest of
    # each item's text: the identity the token memo and the store share.
    text: str | None = None
    parsed: Parsed | None = None
    digests: list[bytes] | None = None
    dialect: str | None = None
    seq: int = 0  # this analysis's number in ``Recent``
    # The earlier analysis whose items this body begins with, and how many items it reused.
    prior_seq: int | None = None
    reused: int = 0
    # When the API's request sits inside an envelope (Gemini Code Assist), the text before
    # and after it: the body on the wire is envelope[0] + text + envelope[1].
    envelope: tuple[str, str] | None = None
    route: Route | None = None
    # A digest of what each message says (role, text, tool calls and results), blind to how the
    # body spells it (Anthropic's cache_control markers move every turn): what threads conversations.
    contents: tuple[bytes, ...] = ()
    # When it resumed a counted analysis: the tokens of what it repeats (head and kept messages), and
    # where in ``text`` the rest begins. What the guard bounds a body with before it is counted.
    prior_tokens: int | None = None
    resumed_at: int = 0

    def resumed_bound(self) -> int | None:
        """At most this many tokens (tokens never outnumber bytes), when it resumed a counted body."""
        if self.prior_tokens is None or self.text is None:
            return None
        rest = self.text[self.resumed_at:].encode("utf-8", "surrogatepass")
        return self.prior_tokens + len(rest) + media_allowance(rest)

    def wire(self, text: str) -> bytes:
        """The body to send for the request ``text``, inside its envelope if it has one."""
        return (text if self.envelope is None else self.envelope[0] + text + self.envelope[1]).encode("utf-8")

    @property
    def history(self) -> Span | None:
        return self.parsed.whole if self.parsed else None

    @property
    def items(self) -> list[Span] | None:
        return self.parsed.items if self.parsed else None


def digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


HEAD_CHARS = 4096  # of a recent body, compared with a new one's start (``Recent.likely``)


class Recent:
    """The last few analyses, so that a body which begins with one of them resumes after it.

    Agents resend the whole conversation plus a message or two on every turn;
    resuming makes a turn cost what is new in it. A conversation keeps one
    entry (each turn replaces the one it resumed from); entries are bounded in
    number and in total text. Shared by the loop and the analysis thread,
    hence the lock; analyses are not changed once added.
    """

    def __init__(self, size: int = 16, max_chars: int = 16_000_000) -> None:
        self._recent: list[tuple[str, Analysis]] = []  # (text up to the end of its items, analysis)
        self._heads: list[tuple[bytes, int]] = []  # the first 4 KB of each, as UTF-8, with its number
        self._size = size
        self._max_chars = max_chars
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def number(self) -> int:
        return next(self._seq)

    def likely(self, raw: bytes) -> bool:
        """Does ``raw`` begin as a recent body did (its first 4 KB)? Then it likely resumes it: cheap
        to ask on the event loop, before anything is parsed."""
        with self._lock:
            heads = [head for head, _ in self._heads]
        return any(raw.startswith(head) for head in heads)

    def find(self, dialect: str, text: str) -> tuple[Analysis, int] | None:
        """The recent analysis this body begins with, and how many of its history items it repeats.

        All of them when the body extends it; otherwise the items before the first change
        (Claude Code moves its ``cache_control`` markers to the newest messages on every
        turn: only the end of the history differs), if that is most of it.
        """
        with self._lock:
            recent = list(self._recent)
        best: tuple[Analysis, int] | None = None
        for prefix, prior in reversed(recent):
            if prior.dialect != dialect:
                continue
            if len(text) > len(prefix) and text.startswith(prefix):
                return prior, len(prior.parsed.items)  # type: ignore[union-attr]
            keep = _repeated_items(prior, text)
            if keep and (best is None or keep > best[1]):
                best = (prior, keep)
        return best

    def add(self, analysis: Analysis) -> None:
        parsed, text = analysis.parsed, analysis.text
        if (parsed is None or not parsed.resumable or text is None or analysis.request is None
                or analysis.count is None or len(text) > self._max_chars // 2):
            return
        prefix = text[:parsed.end_of_items]
        # Kept with the prefix as its text: what resuming reads, without holding the body twice.
        entry = dataclasses.replace(analysis, text=prefix, raw=None)
        with self._lock:
            kept = [(p, a) for p, a in self._recent if a.seq != analysis.prior_seq]
            kept.append((prefix, entry))
            total = 0
            for i in range(len(kept) - 1, -1, -1):  # newest first, within the budgets
                total += len(kept[i][1].text or "")
                if total > self._max_chars or len(kept) - i > self._size:
                    kept = kept[i + 1:]
                    break
            self._recent = kept
            self._heads = [(p[:HEAD_CHARS].encode("utf-8", "surrogatepass"), a.seq) for p, a in kept
                           if len(p) > HEAD_CHARS]


def first_difference(a: str, b: str) -> int:
    """Where ``a`` and ``b`` first differ (the shorter's length if one begins the other)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # a[:lo] == b[:lo]; halving chunks: about twice the common length compared in all
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _repeated_items(prior: Analysis, text: str) -> int:
    """How many of ``prior``'s first history items ``text`` repeats byte for byte (0 unless most of them)."""
    items, ptext = prior.parsed.items if prior.parsed else None, prior.text
    if not items or ptext is None or len(items) < 4:
        return 0
    first = items[0][1]
    if not text.startswith(ptext[:first]):  # another conversation: over at once
        return 0
    same = first_difference(ptext[:items[-1][1]], text)
    keep = bisect.bisect_right([end for _, end in items], same)
    return keep if keep * 2 >= len(items) else 0


def _parse_json(data: bytes, dialect: str, recent: Recent | None) -> tuple[Analysis, Analysis | None]:
    """The body as JSON, with history spans when it is a UTF-8 object with a history list;
    and the recent analysis it resumed from, if any."""
    key = dialects.MODULES[dialect].HISTORY_KEY
    try:
        text = data.decode("utf-8")
        found = recent.find(dialect, text) if recent is not None else None
        prior, reused, parsed = None, 0, None
        if found is not None:
            prior, reused = found
            try:
                parsed = jsonspans.resume(text, key, prior.parsed, reused)
            except ValueError:
                prior = None
        if parsed is None:
            parsed = jsonspans.parse(text, key)
    except (ValueError, RecursionError):
        return Analysis(body=json.loads(data), dialect=dialect), None  # not UTF-8, not an object, or odd
    if parsed.items is None:
        return Analysis(body=parsed.obj, dialect=dialect), None
    if prior is None:
        return Analysis(body=parsed.obj, text=text, parsed=parsed, dialect=dialect,
                        digests=[digest(text[a:b]) for a, b in parsed.items]), None
    return Analysis(body=parsed.obj, text=text, parsed=parsed, dialect=dialect, prior_seq=prior.seq,
                    reused=reused, digests=prior.digests[:reused] + [
                        digest(text[a:b]) for a, b in parsed.items[reused:]]), prior


def _messages_before(prior: Analysis, items: int) -> tuple:
    """``prior``'s messages from its first ``items`` history items."""
    messages = prior.request.messages if prior.request is not None else ()
    return tuple(m for m in messages if m.index < items)


def analyse(raw: bytes, content_encoding: str, route: Route | str, path: str,
            counter: TokenCounter, max_bytes: int, recent: Recent | None = None) -> Analysis:
    """Decode, parse and count a request body; every failure becomes ``error``."""
    return count(*parse(raw, content_encoding, route, path, max_bytes, recent), counter, recent)


def unwrap(data: bytes, envelope: str | None) -> tuple[bytes, tuple[str, str] | None, str | None]:
    """The API request inside an envelope: its bytes, the text around it, the model the envelope names."""
    if envelope != CODE_ASSIST:
        return data, None, None
    text = data.decode("utf-8")
    start, end = jsonspans.locate(text, 0, ("request",))
    outer = json.loads(text[:start] + "null" + text[end:])
    model = outer.get("model") if isinstance(outer, dict) and isinstance(outer.get("model"), str) else None
    return text[start:end].encode("utf-8"), (text[:start], text[end:]), model


def parse(raw: bytes, content_encoding: str, route: Route | str, path: str, max_bytes: int,
          recent: Recent | None = None) -> tuple[Analysis, Analysis | None]:
    """The first stage of ``analyse``: decode and parse (quick); with the recent analysis it resumed from.

    Enough to know whether the body holds an oversized tool result.
    """
    route = route if isinstance(route, Route) else Route(route)
    dialect = route.dialect
    if not raw:
        return Analysis(error="empty request body"), None
    if len(raw) > max_bytes:
        return Analysis(raw=raw, error=f"request body of {len(raw) / 1e6:.1f} MB is over the "
                                       f"{max_bytes // 2**20} MB analysis limit: not counted"), None
    data = raw
    if content_encoding and content_encoding.strip().lower() != "identity":
        try:  # never more than max_bytes, whatever the body inflates to
            data = decoding.decode(raw, content_encoding, max_bytes)
        except decoding.TooLarge:
            return Analysis(raw=raw, error=f"{content_encoding}-encoded request body inflating past the "
                                           f"{max_bytes // 2**20} MB analysis limit: not counted"), None
        except ValueError as e:
            return Analysis(raw=raw, error=f"cannot decode a {content_encoding}-encoded body: {e}"), None
    try:
        inner, envelope, named = unwrap(data, route.envelope)
    except (ValueError, KeyError, IndexError, RecursionError) as e:
        return Analysis(raw=data, error=f"not a {route.envelope} envelope: {str(e)[:120]}"), None
    try:
        result, prior = _parse_json(inner, dialect, recent)
    except (ValueError, RecursionError) as e:
        return Analysis(raw=data, error=f"request body is not JSON: {str(e)[:120]}"), None
    result.envelope, result.route = envelope, route
    try:
        if prior is not None and prior.request is not None:
            request = dialects.parse_request(dialect, result.body, path, result.reused,
                                             _messages_before(prior, result.reused))
        else:
            request = dialects.parse_request(dialect, result.body, path)
    except BodyError as e:
        result.error = f"not a {dialect} request: {e}"
        return result, prior
    if request.model is None and (route.model or named):
        request = dataclasses.replace(request, model=route.model or named)
    result.request = request
    if prior is not None and prior.count is not None and result.parsed is not None and result.reused:
        kept = len(_messages_before(prior, result.reused))
        if len(prior.count.per_message) >= kept:
            result.prior_tokens = prior.count.head_tokens + TOKENS_PER_REPLY + sum(prior.count.per_message[:kept])
            result.resumed_at = result.parsed.items[result.reused - 1][1]
    return result, prior


def count(result: Analysis, prior: Analysis | None, counter: TokenCounter, recent: Recent | None = None,
          deadline: float | None = None, budget_ms: int = 0) -> Analysis:
    """The second stage of ``analyse``: count the parsed request (the longer part), remember it.

    Past ``deadline`` (``time.monotonic()``, ``budget_ms`` after the request came)
    the count is given up and ``error`` says so.
    """
    if result.request is None or result.error:
        return result
    before = prior.count if prior is not None else None
    kept_messages = len(_messages_before(prior, result.reused)) if prior is not None else 0
    if before is not None and kept_messages < before.messages:  # only the start of the prior repeated
        per = before.per_message[:kept_messages]
        before = dataclasses.replace(before, messages=kept_messages, message_tokens=sum(per), per_message=per)
    try:
        result.count = counter.count_request(result.request, result.digests, before, deadline)
    except Abandoned:
        result.error = f"not counted: over its {budget_ms:,} ms analysis budget (kimi_analysis_ms)"
        return result
    messages = result.request.messages
    kept = prior.contents[:kept_messages] if prior is not None and kept_messages <= len(messages) else ()
    result.contents = kept + tuple(digest(f"{m.role}\0{message_text(m)}") for m in messages[len(kept):])
    if recent is not None:
        result.seq = recent.number()
        recent.add(result)
    return result
