"""What the proxy hands the store: one small record type per kind of row."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kimi_core.guard import Fit


def now_iso(ts: float | None = None) -> str:
    moment = datetime.datetime.fromtimestamp(ts if ts is not None else time.time(), datetime.UTC)
    return moment.isoformat(timespec="milliseconds")


@dataclass(slots=True)
class SessionRecord:
    id: str
    name: str
    provider: str | None
    started_at: str
    mode: str
    user: str | None = None  # who, on a proxy with proxyauth


@dataclass(slots=True)
class ConversationRecord:
    id: str
    session_id: str | None
    agent: str
    agent_version: str | None
    parent_id: str | None
    started_at: str
    title: str
    first_request_id: str
    project: str | None = None


@dataclass(slots=True)
class AlertRecord:
    ts: str
    session_id: str | None
    request_id: str
    level: float
    kind: str
    message: str
    user: str | None = None  # whose call it was (pushed to the dashboard; the table finds it by request_id)


@dataclass(slots=True)
class CalibrationRecord:
    model: str
    samples: list[tuple[int, int]]  # (local estimate, reported prompt tokens), newest last
    fit: Fit


@dataclass(slots=True)
class WindowRecord:
    model: str
    context_window: int
    message: str


@dataclass(slots=True)
class ArchiveRecord:
    original: str  # the tool result before compaction
    original_tokens: int
    kept_tokens: int
    request_id: str
    tool_name: str | None


@dataclass(slots=True)
class MemoryRecord:
    session_id: str | None
    provider: str | None
    kind: str
    content: str
    source_text: str
    confidence: float
    project: str | None = None  # the working directory of the conversation it was said in
    user: str | None = None  # who said it, on a proxy with proxyauth


@dataclass(slots=True)
class RequestRecord:
    row: dict[str, Any]  # columns of ``requests`` (bodies excluded)
    request_body: Any = None  # parsed JSON, or raw bytes when it did not parse
    history_key: str | None = None
    response_body: Any = None  # bytes, or a JSON-able summary of a stream
    # The request's text with its history list's span and each item's span and
    # digest (see ``kimi_core.analysis``): items are then stored as sent.
    text: str | None = None
    history: tuple[int, int] | None = None
    items: list[tuple[int, int]] | None = None
    digests: list[bytes] | None = None
    # This request's analysis number, and the earlier one whose first ``reused``
    # items it repeats: their blobs are taken from that request's history.
    seq: int = 0
    prior_seq: int | None = None
    reused: int = 0
