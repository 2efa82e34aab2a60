"""Tool results inside a request body: find them, compact them, splice them back.

A request is rewritten only where a tool result is replaced; every other
byte of the body (other messages, unknown fields, whitespace, the escaping
the client chose) stays as it was sent. Each result is found through its
``ToolResult.locator`` and the span of its JSON value in the body's text
(``jsonspans.locate``), and only that span is replaced:

- a string (OpenAI ``tool`` content, Responses ``output``, Anthropic
  ``tool_result`` content) by the compacted string;
- a list of content blocks by the same list with its text blocks merged into
  one (the one with most keys, such as ``cache_control``, which it keeps),
  other blocks such as images unchanged;
- a Gemini ``functionResponse.response`` object by the same object with its
  largest string compacted when that string is most of it, or else by
  ``{"output": ...}``, the key Gemini documents for a function's output.

What the conversation asked for when the tool ran (the user message before
the result and the arguments of the call) is the query that decides which
parts of a result matter. It does not change on later turns, so a result
resent on every turn is compacted to the same bytes every time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kimi_core.compaction import Compacted, Compactor, Query
from kimi_core.dialects.base import LLMRequest, ToolResult
from kimi_core.jsonspans import Parsed, Span, elements, locate
from kimi_core.tokens import estimate_text

TEXT_BLOCKS = ("text", "input_text", "output_text")
KEEP_RECENT = 3  # tool results a rescue leaves intact, the most recent ones (as Anthropic's context editing)


@dataclass(frozen=True, slots=True)
class Found:
    result: ToolResult
    query: Query  # what the conversation asked for when the tool ran
    message: int = -1  # the position of its message in the request


def result_key(digests: list[bytes], index: int, result: ToolResult, encoding: str) -> tuple | None:
    """What a tool result is known by across turns (``Compactor.known``): its history item's
    digest (``Analysis.digests``, the item at ``index``), where it sits in the item, the encoding."""
    if not 0 <= index < len(digests):
        return None
    return digests[index], result.locator[2:], encoding


def find(request: LLMRequest) -> list[Found]:
    """Every tool result of the request in order, with its query."""
    found: list[Found] = []
    last_user = ""
    args: dict[str, str] = {}
    for position, message in enumerate(request.messages):
        if message.role == "user" and message.text:
            last_user = message.text
        for call in message.tool_calls:
            args[call.id or call.name] = call.arguments
        for result in message.tool_results:
            call_args = args.get(result.call_id) or args.get(result.name or "", "")
            found.append(Found(result, Query(last_user, call_args), position))
    return found


@dataclass(frozen=True, slots=True)
class Piece:
    """A tool result as it sits in the body text."""

    text: str  # what is compacted and archived
    span: Span  # of the JSON value to replace
    form: str  # "string", "blocks" or "object"
    ascii: bool  # the client escaped non-ASCII characters: do the same
    reserve: int = 0  # tokens of the value around ``text``, kept as they are
    # For "blocks": each block's span, which are text blocks, the one that
    # takes the compacted text and the span of its "text" value.
    blocks: tuple[Span, ...] = ()
    text_blocks: frozenset[int] = frozenset()
    carrier: int = -1
    carrier_text: Span | None = None


def _follow(value: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def _largest_string(value: Any, path: tuple[str | int, ...] = (), depth: int = 0) -> tuple[tuple[str | int, ...], str]:
    best: tuple[tuple[str | int, ...], str] = ((), "")
    if depth > 32:
        return best
    if isinstance(value, str):
        return path, value
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found = _largest_string(child, (*path, key), depth + 1)
        if len(found[1]) > len(best[1]):
            best = found
    return best


def piece(text: str, parsed: Parsed, body: dict[str, Any], locator: tuple[str | int, ...]) -> Piece | None:
    """Where and in what form the tool result at ``locator`` sits; None if it cannot be rewritten."""
    if len(locator) < 2 or parsed.items is None or not isinstance(locator[1], int):
        return None
    key, index, *rest = locator
    try:
        value = _follow(body[key][index], rest)
        span = locate(text, parsed.items[index][0], tuple(rest))
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    ascii_only = text[span[0]:span[1]].isascii()
    if isinstance(value, str):
        return Piece(value, span, "string", ascii_only)
    if isinstance(value, list):
        texts = [j for j, b in enumerate(value)
                 if isinstance(b, dict) and b.get("type") in TEXT_BLOCKS and isinstance(b.get("text"), str)]
        if not texts:
            return None
        blocks = tuple(elements(text, span[0]))
        carrier = max(texts, key=lambda j: (len(value[j]), -j))
        return Piece("\n".join(value[j]["text"] for j in texts), span, "blocks", ascii_only,
                     blocks=blocks, text_blocks=frozenset(texts), carrier=carrier,
                     carrier_text=locate(text, blocks[carrier][0], ("text",)))
    if isinstance(value, dict):
        raw = text[span[0]:span[1]]
        path, leaf = _largest_string(value)
        if len(leaf) * 2 >= len(raw):  # most of it: compact that string, keep the rest
            leaf_span = locate(text, span[0], path)
            rest_chars = len(raw) - (leaf_span[1] - leaf_span[0])
            return Piece(leaf, leaf_span, "string", ascii_only, reserve=rest_chars // 2 + 1)
        return Piece(raw, span, "object", ascii_only)
    return None


def json_string(text: str, ascii_only: bool) -> str:
    if ascii_only:
        return json.dumps(text)
    out = json.dumps(text, ensure_ascii=False)
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: only escaped they are valid
        return json.dumps(text)
    return out


def replacement(text: str, p: Piece, new: str) -> str:
    """The JSON text that takes the place of ``p.span``."""
    string = json_string(new, p.ascii)
    if p.form == "string":
        return string
    if p.form == "object":
        return '{"output":' + string + "}"
    assert p.carrier_text is not None
    blocks, (start, end) = p.blocks, p.span
    kept = [j for j in range(len(blocks)) if j == p.carrier or j not in p.text_blocks]
    out = [text[start:blocks[0][0]]]  # "[" and the client's whitespace
    for n, j in enumerate(kept):
        a, b = blocks[j]
        if j == p.carrier:
            out.append(text[a:p.carrier_text[0]] + string + text[p.carrier_text[1]:b])
        else:
            out.append(text[a:b])
        if n < len(kept) - 1:
            out.append(text[b:blocks[j + 1][0]])  # the separator that followed this block
    out.append(text[blocks[-1][1]:end])
    return "".join(out)


def splice(text: str, edits: list[tuple[Span, str]]) -> str:
    """``text`` with each span replaced; spans must not overlap."""
    out, at = [], 0
    for (a, b), new in sorted(edits):
        out.append(text[at:a])
        out.append(new)
        at = b
    out.append(text[at:])
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Done:
    """One tool result compacted."""

    name: str | None
    original: str
    compacted: Compacted
    locator: tuple[str | int, ...] = ()  # where the result sits in the body


@dataclass(frozen=True, slots=True)
class Rewritten:
    text: str  # the new body text
    done: tuple[Done, ...]

    @property
    def saved(self) -> int:
        return sum(d.compacted.original_tokens - d.compacted.kept_tokens for d in self.done)


class Plan:
    """Which tool results of one request to compact, and to what budget.

    Made from the request's text, parsed body and neutral view; results are
    compacted through a shared ``Compactor`` (cached) with token counts in
    ``encoding``.
    """

    def __init__(self, text: str, parsed: Parsed, body: dict[str, Any], request: LLMRequest,
                 compactor: Compactor, encoding: str, per_message: tuple[int, ...] = (),
                 digests: list[bytes] | None = None) -> None:
        """``per_message``: each message's tokens, when the request was counted (``Count.per_message``);
        ``digests``: its history items' (``Analysis.digests``), which key what is known of each result."""
        self.text, self.parsed, self.body = text, parsed, body
        self.per_message = per_message
        self.digests = digests or []
        self.request = request
        self.found = find(request)
        self.compactor = compactor
        self.encoding = encoding
        self.budgets: dict[int, int] = {}  # by position in ``found``
        self._pieces: dict[int, Piece | None] = {}

    def piece(self, n: int) -> Piece | None:
        if n not in self._pieces:
            self._pieces[n] = piece(self.text, self.parsed, self.body, self.found[n].result.locator)
        return self._pieces[n]

    def compact(self, n: int, budget: int) -> Compacted | None:
        """Result ``n`` compacted to ``budget``; None if it already fits (or cannot be rewritten)."""
        content = self.found[n].result.content
        if len(content) * 4 <= budget:  # fits whatever it says: skip finding it
            return None
        # Its tokens if known from an earlier turn; else its message's count bounds it (all its results,
        # framing included); else it is counted, once, unless far over by a quick estimate.
        key = self.key(n)
        known = self.compactor.known(key)
        at = self.found[n].message
        if known is None and 0 <= at < len(self.per_message) and self.per_message[at] <= budget:
            self.compactor.remember(key, self.per_message[at])  # at most that: enough to know it fits
            return None
        if known is None and not 0 <= at < len(self.per_message) \
                and estimate_text(content, self.encoding) <= 2 * budget:
            known = self.compactor.count(content, self.encoding)
            self.compactor.remember(key, known)
        if known is not None and known <= budget:
            return None
        p = self.piece(n)
        # Tokens never outnumber UTF-8 bytes: smaller texts fit without counting.
        if p is None or len(p.text.encode("utf-8", "surrogatepass")) <= budget - p.reserve:
            return None
        result = self.compactor.compact(p.text, max(1, budget - p.reserve), self.found[n].query, self.encoding)
        if known is None:
            self.compactor.remember(key, result.original_tokens)  # the next turn need not estimate it
        return result if result.original_tokens > budget - p.reserve else None

    def key(self, n: int) -> tuple | None:
        at = self.found[n].message
        index = self.request.messages[at].index if 0 <= at < len(self.request.messages) else -1
        return result_key(self.digests, index, self.found[n].result, self.encoding)

    def over_budget(self, budget: int) -> None:
        """Compact every result larger than ``budget``."""
        for n in range(len(self.found)):
            if self.compact(n, budget) is not None:
                self.budgets[n] = budget

    def rescue(self, need: int, budget: int, keep: int = KEEP_RECENT) -> int:
        """Compact older results to ``budget``, oldest first, until ``need`` tokens are saved.

        The ``keep`` most recent results stay as they are. Returns the tokens saved.
        """
        saved = 0
        for n in range(max(0, len(self.found) - keep)):
            if saved >= need:
                break
            before = self.compact(n, self.budgets[n]) if n in self.budgets else None
            after = self.compact(n, min(budget, self.budgets.get(n, budget)))
            if after is None:
                continue
            self.budgets[n] = min(budget, self.budgets.get(n, budget))
            saved += (before.kept_tokens if before else after.original_tokens) - after.kept_tokens
        return saved

    def apply(self) -> Rewritten | None:
        """The body text with the planned results replaced; None if there is nothing to replace."""
        edits: list[tuple[Span, str]] = []
        done: list[Done] = []
        for n, budget in sorted(self.budgets.items()):
            p, compacted = self.piece(n), self.compact(n, budget)
            if p is None or compacted is None:
                continue
            edits.append((p.span, replacement(self.text, p, compacted.text)))
            result = self.found[n].result
            done.append(Done(result.name, p.text, compacted, result.locator))
        if not edits:
            return None
        return Rewritten(splice(self.text, edits), tuple(done))

