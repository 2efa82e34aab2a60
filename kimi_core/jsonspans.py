"""Parse a JSON object and note where each item of one of its lists sits in the text.

Agents resend their whole history on every turn. Knowing the exact text of
each history item lets Kimi hash it once, as it was sent, and use that digest
everywhere (token memo, stored blobs) instead of re-serialising parsed
objects; and when a body begins with the previous body's items, parsing can
resume after them (``resume``). Values come from the json module's own C
scanner, so the result is exactly ``json.loads(text)``; anything unusual
raises ``ValueError`` and the caller falls back to ``json.loads``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_decoder = json.JSONDecoder()
_ws = re.compile(r"[ \t\n\r]*").match
Span = tuple[int, int]


class Unusual(ValueError):
    """Not a JSON object this scanner handles; use ``json.loads``."""


@dataclass(slots=True)
class Parsed:
    obj: dict[str, Any]
    items: list[Span] | None = None  # span of each item of the list; None: no such list
    whole: Span | None = None  # span of the list itself
    head: list[tuple[str, Any]] | None = None  # the keys before the list, to resume from
    resumable: bool = False  # the list is the key's only occurrence and has items

    @property
    def end_of_items(self) -> int:
        assert self.items
        return self.items[-1][1]


def _items(text: str, idx: int, values: list[Any], spans: list[Span]) -> int:
    """Read items into ``values``/``spans`` from ``idx`` just after an item; return the index after ``]``."""
    while True:
        idx = _ws(text, idx).end()
        c = text[idx:idx + 1]
        if c == "]":
            return idx + 1
        if c != ",":
            raise Unusual(f"expected ',' or ']' at {idx}")
        idx = _ws(text, idx + 1).end()
        start = idx
        value, idx = _decoder.raw_decode(text, idx)
        values.append(value)
        spans.append((start, idx))


def _array(text: str, idx: int) -> tuple[list[Any], list[Span], int]:
    """Items and spans of the array starting at ``text[idx] == "["``; returns the index after it."""
    values: list[Any] = []
    spans: list[Span] = []
    idx = _ws(text, idx + 1).end()
    if text[idx:idx + 1] == "]":
        return values, spans, idx + 1
    start = idx
    value, idx = _decoder.raw_decode(text, idx)
    values.append(value)
    spans.append((start, idx))
    return values, spans, _items(text, idx, values, spans)


def _rest(text: str, idx: int, key: str, parsed: Parsed) -> Parsed:
    """Read the object's remaining members from ``idx``, just after a value."""
    while True:
        idx = _ws(text, idx).end()
        c = text[idx:idx + 1]
        if c == "}":
            break
        if c != ",":
            raise Unusual(f"expected ',' or '}}' at {idx}")
        idx = _ws(text, idx + 1).end()
        idx = _member(text, idx, key, parsed)
    if _ws(text, idx + 1).end() != len(text):
        raise Unusual("extra data")
    return parsed


def _member(text: str, idx: int, key: str, parsed: Parsed) -> int:
    """Read one ``"name": value`` member at ``idx``; return the index after the value."""
    if text[idx:idx + 1] != '"':
        raise Unusual(f"expected a key at {idx}")
    name, idx = json.decoder.scanstring(text, idx + 1)
    idx = _ws(text, idx).end()
    if text[idx:idx + 1] != ":":
        raise Unusual(f"expected ':' at {idx}")
    idx = _ws(text, idx + 1).end()
    if name == key:
        seen_before = name in parsed.obj
        if text[idx:idx + 1] == "[":
            start = idx
            parsed.head = list(parsed.obj.items())
            parsed.obj[name], parsed.items, idx = _array(text, idx)
            parsed.whole = (start, idx)
            parsed.resumable = not seen_before and bool(parsed.items)
            return idx
        parsed.items = parsed.whole = parsed.head = None
        parsed.resumable = False
    parsed.obj[name], idx = _decoder.raw_decode(text, idx)
    return idx


def parse(text: str, key: str) -> Parsed:
    """``json.loads(text)`` of an object, with the spans of the items of its list ``key``."""
    idx = _ws(text, 0).end()
    if text[idx:idx + 1] != "{":
        raise Unusual("not an object")
    parsed = Parsed({})
    idx = _ws(text, idx + 1).end()
    if text[idx:idx + 1] == "}":
        if _ws(text, idx + 1).end() != len(text):
            raise Unusual("extra data")
        return parsed
    idx = _member(text, idx, key, parsed)
    return _rest(text, idx, key, parsed)


def resume(text: str, key: str, prior: Parsed, keep: int | None = None) -> Parsed:
    """``parse(text, key)`` for a text that starts with ``prior``'s text up to the end of its
    ``keep``-th item (all of them by default).

    The caller checks that prefix; the items before are reused, only what
    follows is read.
    """
    assert prior.resumable and prior.items and prior.head is not None and prior.whole
    keep = len(prior.items) if keep is None else keep
    if not 0 < keep <= len(prior.items):
        raise Unusual(f"cannot resume after item {keep} of {len(prior.items)}")
    values = list(prior.obj[key][:keep])
    spans = list(prior.items[:keep])
    parsed = Parsed(dict(prior.head))
    end = _items(text, spans[-1][1], values, spans)
    parsed.obj[key] = values
    parsed.items, parsed.whole, parsed.head, parsed.resumable = spans, (prior.whole[0], end), prior.head, True
    return _rest(text, end, key, parsed)


def locate(text: str, idx: int, path: tuple[str | int, ...]) -> Span:
    """The span of the value at ``path`` inside the JSON value starting at ``text[idx]``.

    Object keys are matched as ``json.loads`` keeps them (the last duplicate
    wins), list positions count from 0. Raises ``Unusual`` (a ValueError) if
    the path is not there.
    """
    idx = _ws(text, idx).end()
    for step in path:
        if isinstance(step, int):
            if text[idx:idx + 1] != "[":
                raise Unusual(f"expected a list at {idx}")
            spans = elements(text, idx)
            if not 0 <= step < len(spans):
                raise Unusual(f"no item {step} in the list at {idx}")
            idx = spans[step][0]
            continue
        if text[idx:idx + 1] != "{":
            raise Unusual(f"expected an object at {idx}")
        found = None
        idx = _ws(text, idx + 1).end()
        while text[idx:idx + 1] != "}":
            name, idx = json.decoder.scanstring(text, idx + 1)
            idx = _ws(text, _ws(text, idx).end() + 1).end()  # past ':'
            if name == step:
                found = idx
            _, idx = _decoder.raw_decode(text, idx)
            idx = _ws(text, idx).end()
            if text[idx:idx + 1] == ",":
                idx = _ws(text, idx + 1).end()
        if found is None:
            raise Unusual(f"no key {step!r} in the object")
        idx = found
    _, end = _decoder.raw_decode(text, idx)
    return idx, end


def elements(text: str, idx: int) -> list[Span]:
    """The span of each item of the list starting at ``text[idx] == "["``."""
    return _array(text, idx)[1]
