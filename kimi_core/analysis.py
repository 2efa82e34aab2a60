"""From the bytes of a request to its neutral view and token count (runs off the event loop)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mitmproxy.net import encoding

from kimi_core import dialects
from kimi_core.dialects.base import LLMRequest
from kimi_core.errors import BodyError
from kimi_core.tokens import Count, TokenCounter


@dataclass(slots=True)
class Analysis:
    body: Any = None  # the parsed JSON body
    raw: bytes | None = None  # the decoded body, when it is not JSON
    request: LLMRequest | None = None
    count: Count | None = None
    error: str | None = None


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
        body = json.loads(data)
    except (ValueError, RecursionError) as e:
        return Analysis(raw=data, error=f"request body is not JSON: {str(e)[:120]}")
    try:
        request = dialects.parse_request(dialect, body, path)
    except BodyError as e:
        return Analysis(body=body, error=f"not a {dialect} request: {e}")
    return Analysis(body=body, request=request, count=counter.count_request(request))
