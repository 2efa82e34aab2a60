"""Parsers from each provider API into one neutral view (see ``base``)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from kimi_core.dialects import (
    anthropic,
    base,
    bedrock_converse,
    gemini,
    openai_chat,
    openai_responses,
)
from kimi_core.dialects.base import LLMRequest, Message, Reply
from kimi_core.providers import (
    ANTHROPIC,
    BEDROCK_CONVERSE,
    CODE_ASSIST,
    GEMINI,
    OPENAI_CHAT,
    OPENAI_RESPONSES,
)

MODULES: dict[str, ModuleType] = {
    OPENAI_CHAT: openai_chat,
    OPENAI_RESPONSES: openai_responses,
    ANTHROPIC: anthropic,
    GEMINI: gemini,
    BEDROCK_CONVERSE: bedrock_converse,
}


def parse_request(dialect: str, body: Any, path: str = "", start: int = 0,
                  prior: tuple[Message, ...] = ()) -> LLMRequest:
    """The neutral view of a request body; see the dialect modules for ``start`` and ``prior``."""
    if dialect == GEMINI:
        return gemini.parse_request(body, path, start, prior)
    return MODULES[dialect].parse_request(body, start, prior)


def unwrap(body: Any, envelope: str | None) -> Any:
    """The API's own answer inside an envelope (Code Assist: ``{"response": {...}}``)."""
    if envelope == CODE_ASSIST and isinstance(body, dict) and "response" in body:
        return body["response"]
    return body


def parse_response(dialect: str, body: Any, envelope: str | None = None) -> Reply:
    if isinstance(body, list) and envelope is not None:
        body = [unwrap(b, envelope) for b in body]
    return MODULES[dialect].parse_response(unwrap(body, envelope))


class EnvelopeReader(base.StreamReader):
    """A dialect's stream reader for events that come inside an envelope."""

    def __init__(self, inner: base.StreamReader, envelope: str) -> None:
        super().__init__()
        self.inner, self.envelope = inner, envelope
        self.reply = inner.reply

    @property
    def finished(self) -> bool:  # type: ignore[override]
        return self.inner.finished

    @finished.setter
    def finished(self, value: bool) -> None:
        pass

    def feed_payload(self, event: str | None, payload: Any) -> None:
        self.inner.feed_payload(event, unwrap(payload, self.envelope))

    def finish(self) -> Reply:
        return self.inner.finish()


def stream_reader(dialect: str, envelope: str | None = None) -> base.StreamReader:
    reader = MODULES[dialect].StreamReader()
    return EnvelopeReader(reader, envelope) if envelope is not None else reader


__all__ = ["LLMRequest", "Reply", "base", "parse_request", "parse_response", "stream_reader"]
