"""What fills a prompt: its parts by kind, with their tokens, as the dashboard's treemap shows them.

The parts add up to what ``TokenCounter.count_request`` counts for the same
request, framing included, so a call's composition and its row's
``prompt_tokens_est`` are the same figure. Computed when someone looks, from
the stored body, never on the request path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kimi_core import hints
from kimi_core.dialects.base import LLMRequest, Message, as_dict, as_list, as_str
from kimi_core.providers import ANTHROPIC, BEDROCK_CONVERSE, GEMINI, OPENAI_RESPONSES
from kimi_core.tokens import (
    TOKENS_PER_MESSAGE,
    TOKENS_PER_REPLY,
    TokenCounter,
    encoding,
    message_text,
    wanted_encoding,
)

SYSTEM = "system"
TOOL_DEFINITION = "tool_definition"
TOOL_RESULT = "tool_result"
USER = "user"
ASSISTANT = "assistant"
TOOL_CALL = "tool_call"
THINKING = "thinking"
HINTS = "hints"
MEDIA = "media"
SCHEMA = "schema"
FRAMING = "framing"
KINDS = (SYSTEM, HINTS, TOOL_DEFINITION, TOOL_RESULT, USER, ASSISTANT, TOOL_CALL, THINKING, MEDIA, SCHEMA, FRAMING)


@dataclass(frozen=True, slots=True)
class Part:
    kind: str
    label: str  # the tool's name, the role, "system prompt"...
    tokens: int
    message: int | None = None  # index in the request's messages, None for what precedes them

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def thinking_texts(dialect: str, body: Any) -> dict[int, str]:
    """The model's earlier thinking that a body sends back, by history index. The parsers count
    it with its message's text (it is billed as such); the composition shows it apart."""
    found: dict[int, list[str]] = {}
    if not isinstance(body, dict):
        return {}
    if dialect == ANTHROPIC or dialect == BEDROCK_CONVERSE:
        for i, message in enumerate(as_list(body.get("messages"))):
            for block in as_list(as_dict(message).get("content")):
                block = as_dict(block)
                if block.get("type") == "thinking":  # Anthropic
                    found.setdefault(i, []).append(as_str(block.get("thinking")))
                elif "reasoningContent" in block:  # Bedrock Converse
                    text = as_dict(as_dict(block["reasoningContent"]).get("reasoningText")).get("text")
                    found.setdefault(i, []).append(as_str(text))
    elif dialect == OPENAI_RESPONSES:
        for i, item in enumerate(as_list(body.get("input"))):
            item = as_dict(item)
            if item.get("type") == "reasoning":
                texts = [as_str(as_dict(x).get("text")) for x in as_list(item.get("summary"))]
                texts += [as_str(as_dict(x).get("text")) for x in as_list(item.get("content"))]
                found[i] = [t for t in texts if t]
    elif dialect == GEMINI:
        for i, content in enumerate(as_list(body.get("contents"))):
            for part in as_list(as_dict(content).get("parts")):
                if as_dict(part).get("thought") is True:
                    found.setdefault(i, []).append(as_str(as_dict(part).get("text")))
    return {i: "\n".join(t for t in texts if t) for i, texts in found.items() if any(texts)}


def composition(request: LLMRequest, counter: TokenCounter, body: Any = None) -> tuple[list[Part], str]:
    """The request's parts, and the encoding they were counted with (``body``, the JSON it was
    parsed from, lets earlier thinking show apart from the rest of its message)."""
    _, used = encoding(wanted_encoding(request.model)[0])
    thinking = thinking_texts(request.dialect, body)
    parts: list[Part] = []
    framing = TOKENS_PER_REPLY
    if request.system:
        whole = counter.count_text(request.system, used)
        hint = _hints_tokens(request.system, counter, used)
        parts.append(Part(SYSTEM, "system prompt", whole - hint))
        if hint:
            parts.append(Part(HINTS, "memory hints (Kimi)", hint))
        framing += TOKENS_PER_MESSAGE
    for tool in request.tools:
        parts.append(Part(TOOL_DEFINITION, tool.name or "(unnamed tool)",
                          counter.count_text(f"{tool.name}\n{tool.description}\n{tool.parameters}", used)))
    if request.extra:
        parts.append(Part(SCHEMA, "output schema", counter.count_text(request.extra, used)))
    for i, message in enumerate(request.messages):
        parts.extend(_message_parts(message, i, counter, used, thinking.get(message.index, "")))
        framing += TOKENS_PER_MESSAGE
    parts.append(Part(FRAMING, "message framing", framing))
    return [p for p in parts if p.tokens > 0], used


def _hints_tokens(text: str, counter: TokenCounter, used: str) -> int:
    """What the memory hints Kimi added weigh in ``text`` (0: none)."""
    start = text.find(hints.BEGIN)
    end = text.find(hints.END, start) if start >= 0 else -1
    return counter.count_text(text[start:end + len(hints.END)], used) if end >= 0 else 0


def _message_parts(message: Message, i: int, counter: TokenCounter, used: str, thinking: str = "") -> list[Part]:
    """A message's parts. Counted whole first, as ``count_request`` counts it, so that the
    parts add up to its count: the newlines joining them go to its text part."""
    whole = counter.count_text(message_text(message), used)
    parts = []
    for result in message.tool_results:
        parts.append(Part(TOOL_RESULT, result.name or "(unknown tool)", counter.count_text(result.content, used), i))
    for call in message.tool_calls:
        parts.append(Part(TOOL_CALL, call.name or "(unnamed tool)",
                          counter.count_text(f"{call.name}\n{call.arguments}", used), i))
    if thinking:
        parts.append(Part(THINKING, "thinking", counter.count_text(thinking, used), i))
    if message.role == "system" and (hint := _hints_tokens(message.text, counter, used)):
        parts.append(Part(HINTS, "memory hints (Kimi)", hint, i))
    if message.media_tokens:
        parts.append(Part(MEDIA, f"{message.images or 1} image(s) or document(s)", message.media_tokens, i))
    rest = whole - sum(p.tokens for p in parts if p.kind != MEDIA)
    kind = USER if message.role == "user" else ASSISTANT if message.role == "assistant" else \
        SYSTEM if message.role in ("system", "developer") else TOOL_RESULT
    if rest > 0 or not parts:
        label = f"{message.role} message" if kind != TOOL_RESULT else "tool message"
        parts.insert(0, Part(kind, label, max(rest, 0), i))
    elif rest < 0 and parts:  # tokens merged across the joins: take them off the largest part
        big = max(range(len(parts)), key=lambda k: parts[k].tokens if parts[k].kind != MEDIA else -1)
        p = parts[big]
        parts[big] = Part(p.kind, p.label, max(0, p.tokens + rest), p.message)
    return parts


def summarise(parts: list[Part]) -> list[dict[str, Any]]:
    """Tokens by kind and label (all results of one tool together), largest first."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for p in parts:
        g = groups.setdefault((p.kind, p.label), {"kind": p.kind, "label": p.label, "tokens": 0, "count": 0})
        g["tokens"] += p.tokens
        g["count"] += 1
    return sorted(groups.values(), key=lambda g: -g["tokens"])
