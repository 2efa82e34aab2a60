"""From the bytes of a request to its neutral view and token count (runs off the event loop)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from mitmproxy.net import encoding

from kimi_core import dialects, jsonspans
from kimi_core.dialects.base import LLMRequest
from kimi_core.errors import BodyError
from kimi_core.jsonspans import Span
from kimi_core.tokens import Count, TokenCounter


@dataclass(slots=True)
class Analysis:
    body: Any = None  # the parsed JSON body
    raw: bytes | None = None  # the decoded body, when it is not JSON
    request: LLMRequest | None = None
    count: Count | None = None
    error: str | None = None
    # The body's text and where each history item sits in it, with a digest of
    # each item's text: the identity the token memo and the store share.
    text: str | None = None
    history: Span | None = None
    items: list[Span] | None = None
    digests: list[bytes] | None = None


def digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def parse_json(data: bytes, history_key: str | None) -> Analysis:
    """The body as JSON, with history spans when it is a UTF-8 object with a history list."""
    if history_key is not None:
        try:
            text = data.decode("utf-8")
            body, items, history = jsonspans.parse(text, history_key)
        except (ValueError, RecursionError):
            pass  # not UTF-8, not an object, or odd: json.loads decides below
        else:
            if items is None:
                return Analysis(body=body)
            return Analysis(body=body, text=text, history=history, items=items,
                            digests=[digest(text[a:b]) for a, b in items])
    return Analysis(body=json.loads(data))


def analyse(raw: bytes, content_encoding: str, dialect: str, path: str,
            counter: TokenCounter, max_bytes: int) -> Analysis:
    """Decode, parse and count a request body; every failure becomes ``error``."""
    if not raw:
        return Analysis(error="empty request body")
    if len(raw) > max_bytes:
        return Analysis(raw=raw, error=f"request body of {len(raw) / 1e6:.1f} MB is over the "
                                       f"{max_bytes / 1e6:.0f} MB analysis limit: not counted")
    data = raw
    if content_encoding and content_encoding.strip().lower() != "identity":
        try:
            data = encoding.decode(raw, content_encoding)
        except ValueError as e:
            return Analysis(raw=raw, error=f"cannot decode a {content_encoding}-encoded body: {e}")
        if len(data) > max_bytes:
            return Analysis(raw=raw, error=f"decoded request body of {len(data) / 1e6:.1f} MB is over the "
                                           f"{max_bytes / 1e6:.0f} MB analysis limit: not counted")
    try:
        result = parse_json(data, dialects.MODULES[dialect].HISTORY_KEY)
    except (ValueError, RecursionError) as e:
        return Analysis(raw=data, error=f"request body is not JSON: {str(e)[:120]}")
    try:
        result.request = dialects.parse_request(dialect, result.body, path)
    except BodyError as e:
        result.error = f"not a {dialect} request: {e}"
        return result
    result.count = counter.count_request(result.request, result.digests)
    return result
