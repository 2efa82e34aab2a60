"""Parsers from each provider API into one neutral view (see ``base``)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from kimi_core.dialects import anthropic, base, gemini, openai_chat, openai_responses
from kimi_core.dialects.base import LLMRequest, Message, Reply
from kimi_core.providers import ANTHROPIC, GEMINI, OPENAI_CHAT, OPENAI_RESPONSES

MODULES: dict[str, ModuleType] = {
    OPENAI_CHAT: openai_chat,
    OPENAI_RESPONSES: openai_responses,
    ANTHROPIC: anthropic,
    GEMINI: gemini,
}


def parse_request(dialect: str, body: Any, path: str = "", start: int = 0,
                  prior: tuple[Message, ...] = ()) -> LLMRequest:
    """The neutral view of a request body; see the dialect modules for ``start`` and ``prior``."""
    if dialect == GEMINI:
        return gemini.parse_request(body, path, start, prior)
    return MODULES[dialect].parse_request(body, start, prior)


def parse_response(dialect: str, body: Any) -> Reply:
    return MODULES[dialect].parse_response(body)


def stream_reader(dialect: str) -> Any:
    return MODULES[dialect].StreamReader()


__all__ = ["LLMRequest", "Reply", "base", "parse_request", "parse_response", "stream_reader"]
