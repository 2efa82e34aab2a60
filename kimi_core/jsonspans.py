"""Parse a JSON object and note where each item of one of its lists sits in the text.

Agents resend their whole history on every turn. Knowing the exact text of
each history item lets Kimi hash it once, as it was sent, and use that digest
everywhere (token memo, stored blobs) instead of re-serialising parsed
objects. The values come from the json module's own C scanner, so the result
is exactly ``json.loads(text)``; anything unusual makes ``parse`` raise and
the caller fall back to ``json.loads``.
"""

from __future__ import annotations

import json
import re
from typing import Any

_decoder = json.JSONDecoder()
_ws = re.compile(r"[ \t\n\r]*").match
Span = tuple[int, int]


class Unusual(ValueError):
    """Not a JSON object this scanner handles; use ``json.loads``."""


def _array(text: str, idx: int) -> tuple[list[Any], list[Span], int]:
    """Items and spans of the array starting at ``text[idx] == "["``; returns the index after it."""
    items: list[Any] = []
    spans: list[Span] = []
    idx = _ws(text, idx + 1).end()
    if text[idx:idx + 1] == "]":
        return items, spans, idx + 1
    while True:
        start = idx
        value, idx = _decoder.raw_decode(text, idx)
        items.append(value)
        spans.append((start, idx))
        idx = _ws(text, idx).end()
        c = text[idx:idx + 1]
        if c == "]":
            return items, spans, idx + 1
        if c != ",":
            raise Unusual(f"expected ',' or ']' at {idx}")
        idx = _ws(text, idx + 1).end()


def parse(text: str, key: str) -> tuple[dict[str, Any], list[Span] | None, Span | None]:
    """``json.loads(text)`` of an object, with the item spans of its list ``key`` and the list's span.

    The spans are None when ``key`` is missing or not a list (the last
    occurrence counts, as in ``json.loads``).
    """
    idx = _ws(text, 0).end()
    if text[idx:idx + 1] != "{":
        raise Unusual("not an object")
    obj: dict[str, Any] = {}
    spans: list[Span] | None = None
    whole: Span | None = None
    idx = _ws(text, idx + 1).end()
    if text[idx:idx + 1] == "}":
        idx += 1
    else:
        while True:
            if text[idx:idx + 1] != '"':
                raise Unusual(f"expected a key at {idx}")
            name, idx = json.decoder.scanstring(text, idx + 1)
            idx = _ws(text, idx).end()
            if text[idx:idx + 1] != ":":
                raise Unusual(f"expected ':' at {idx}")
            idx = _ws(text, idx + 1).end()
            if name == key and text[idx:idx + 1] == "[":
                start = idx
                obj[name], spans, idx = _array(text, idx)
                whole = (start, idx)
            else:
                obj[name], idx = _decoder.raw_decode(text, idx)
                if name == key:
                    spans = whole = None
            idx = _ws(text, idx).end()
            c = text[idx:idx + 1]
            if c == "}":
                idx += 1
                break
            if c != ",":
                raise Unusual(f"expected ',' or '}}' at {idx}")
            idx = _ws(text, idx + 1).end()
    if _ws(text, idx).end() != len(text):
        raise Unusual("extra data")
    return obj, spans, whole
