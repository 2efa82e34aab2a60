"""The neutral view of an LLM call that every dialect parses into.

Parsers are total: any JSON value goes in, a view comes out. Fields of the
wrong type are skipped rather than raised on, so that a client sending
something odd still gets its request through and a row that says what could
be read. Only a body that is not a JSON object at all raises ``BodyError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kimi_core.errors import BodyError


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    name: str | None  # the tool's name, found from the call that produced it
    content: str
    is_error: bool = False
    # Where the result sits in the body, e.g. ("messages", 4, "content"): the
    # compaction pass rewrites tool results in place through this.
    locator: tuple[str | int, ...] = ()


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system", "user", "assistant" or "tool"
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()
    images: int = 0
    index: int = -1  # position in the body's history list; -1 when not from one
    media_tokens: int = 0  # what its images and documents cost (``kimi_core.media``)


@dataclass(frozen=True, slots=True)
class ToolDef:
    name: str
    description: str
    parameters: str  # JSON schema, serialised


@dataclass(frozen=True, slots=True)
class LLMRequest:
    dialect: str
    model: str | None
    system: str
    messages: tuple[Message, ...]
    tools: tuple[ToolDef, ...]
    max_output_tokens: int | None
    stream: bool
    # Key of the list that holds the conversation ("messages", "input", "contents").
    history_key: str | None = None
    # Other billed text: output schemas (structured outputs), serialised.
    extra: str = ""
    warmup: bool = False  # asks for no answer (Codex warms a socket up with "generate": false)


@dataclass(slots=True)
class Usage:
    """What the provider says it billed; None where it did not say."""

    prompt_tokens: int | None = None  # the whole prompt, cached parts included
    completion_tokens: int | None = None  # reasoning included
    cached_tokens: int | None = None  # of the prompt, read from the provider's cache
    cache_write_tokens: int | None = None  # of the prompt, written to the cache (Anthropic, Bedrock)
    reasoning_tokens: int | None = None  # of the completion

    def merge(self, other: Usage) -> None:
        for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens"):
            value = getattr(other, name)
            if value is not None:
                setattr(self, name, value)


@dataclass(slots=True)
class Reply:
    """What came back: the model's text, the usage, a provider error."""

    model: str | None = None
    text: str = ""
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    id: str | None = None  # the provider's id for the answer (what ``previous_response_id`` names)
    tool_calls: bool = False  # the answer asks the client to run a tool: the agent's turn goes on


def call_names(messages: tuple[Message, ...]) -> dict[str, str]:
    """Tool names by call id, from the tool calls in ``messages``."""
    return {c.id: c.name for m in messages for c in m.tool_calls}


def as_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BodyError(f"expected a JSON object, got {type(body).__name__}")
    return body


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def tool_def(tool: Any, schema_keys: tuple[str, ...] = ("parameters",)) -> list[ToolDef]:
    """Definitions of one tool entry, whatever its shape: a function (its schema under one of
    ``schema_keys``), a namespace of tools (flattened), or a built-in / MCP / custom tool (its
    whole definition, which the provider bills as it is)."""
    if not isinstance(tool, dict):
        return []
    if isinstance(tool.get("function"), dict):  # OpenAI chat: {"type": "function", "function": {...}}
        tool = tool["function"]
    elif isinstance(tool.get("custom"), dict):  # OpenAI chat: {"type": "custom", "custom": {...}}
        tool = tool["custom"]
    if isinstance(tool.get("tools"), list):  # a namespace: {"type": "namespace", "name", "tools": [...]}
        prefix = as_str(tool.get("name"))
        defs = [ToolDef(prefix, as_str(tool.get("description")), "")] if prefix or tool.get("description") else []
        for inner in tool["tools"]:
            defs += tool_def(inner, schema_keys)
        return defs
    name = as_str(tool.get("name"))
    for key in schema_keys:
        if key in tool:
            return [ToolDef(name, as_str(tool.get("description")), dump(tool[key]))]
    rest = {k: v for k, v in tool.items() if k not in ("name", "description", "type", "strict")}
    return [ToolDef(name or as_str(tool.get("type")), as_str(tool.get("description")), dump(rest) if rest else "")]


def tool_defs(tools: Any, schema_keys: tuple[str, ...] = ("parameters",)) -> tuple[ToolDef, ...]:
    return tuple(d for t in as_list(tools) for d in tool_def(t, schema_keys))


def dump(value: Any) -> str:
    """Compact JSON for values the model sees as text (arguments, schemas)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return ""


def error_message(body: Any) -> str | None:
    """The message of the error envelopes providers use, or None."""
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    if isinstance(err, dict):
        msg = err.get("message")
        return msg if isinstance(msg, str) else dump(err)
    if isinstance(err, str):
        return err
    message = body.get("message")  # AWS: {"message": "..."} with the kind in a header
    if isinstance(message, str) and body.get("type") != "message":
        return message
    return None


class StreamReader:
    """Reads a dialect's stream events into a ``Reply``; dialects override ``feed_payload``.

    ``finished`` turns true on the event that ends the answer, for transports
    that do not end with it (a WebSocket carries one answer after another).
    """

    envelope: str | None = None

    def __init__(self) -> None:
        self.reply = Reply()
        self.finished = False
        self._parts: list[str] = []

    def feed(self, event: str | None, data: str) -> None:
        """One event as it came: its name (SSE ``event:``), if any, and its data."""
        if data.strip() == "[DONE]":
            self.finished = True
            return
        self.feed_payload(event, json.loads(data))

    def feed_payload(self, event: str | None, payload: Any) -> None:
        """One event, its data already parsed (envelopes and binary framings hand it over this way)."""
        raise NotImplementedError

    def finish(self) -> Reply:
        self.reply.text = "".join(self._parts)
        return self.reply
