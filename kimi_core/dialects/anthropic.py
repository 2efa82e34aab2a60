"""Anthropic Messages (``/v1/messages``), also served by Moonshot, DeepSeek, Z.ai."""

from __future__ import annotations

from typing import Any

from kimi_core import media
from kimi_core.dialects import base
from kimi_core.dialects.base import (
    LLMRequest,
    Message,
    Reply,
    ToolCall,
    ToolResult,
    Usage,
    as_dict,
    as_int,
    as_list,
    as_object,
    as_str,
    dump,
    error_message,
)
from kimi_core.providers import ANTHROPIC

HISTORY_KEY = "messages"
OPAQUE = ("type", "id", "tool_use_id", "cache_control", "signature", "data", "citations")


def blocks_text(content: Any) -> tuple[str, int]:
    """Text and image count of a string or a list of text/image blocks."""
    if isinstance(content, str):
        return content, 0
    texts, images = [], 0
    for block in as_list(content):
        block = as_dict(block)
        kind = block.get("type")
        if kind == "text":
            texts.append(as_str(block.get("text")))
        elif kind == "thinking":
            texts.append(as_str(block.get("thinking")))
        elif kind == "document" and as_dict(block.get("source")).get("type") == "text":
            texts.append(as_str(as_dict(block.get("source")).get("data")))
        elif kind in ("image", "document"):
            images += 1
        elif kind not in ("redacted_thinking", "tool_use", "tool_result") and block:
            # Server tools' calls and results, search results...: their text reaches the model.
            rest = {k: v for k, v in block.items() if k not in OPAQUE}
            if rest:
                texts.append(dump(rest))
    return "\n".join(texts), images


def blocks_media(content: Any) -> int:
    """What the images and PDFs among ``content``'s blocks cost, by Anthropic's formulas."""
    tokens = 0
    for block in as_list(content):
        block = as_dict(block)
        source = as_dict(block.get("source"))
        data = as_str(source.get("data")) if source.get("type") == "base64" else None
        if block.get("type") == "image":
            tokens += media.image_tokens("anthropic", data)
        elif block.get("type") == "document" and source.get("type") != "text":
            tokens += media.document_tokens("anthropic", data)
        elif block.get("type") == "tool_result":
            tokens += blocks_media(block.get("content"))
    return tokens


def parse_request(body: Any, start: int = 0, prior: tuple[Message, ...] = ()) -> LLMRequest:
    """The neutral view; ``prior`` are the messages of history items before ``start``, already parsed."""
    body = as_object(body)
    messages = list(prior)
    call_names = base.call_names(prior)
    items = as_list(body.get(HISTORY_KEY))
    for i in range(start, len(items)):
        m = items[i]
        if not isinstance(m, dict):
            continue
        role = as_str(m.get("role")) or "user"
        content = m.get("content")
        if isinstance(content, str):
            messages.append(Message(role, content, index=i))
            continue
        texts, calls, results, images = [], [], [], 0
        for j, block in enumerate(as_list(content)):
            block = as_dict(block)
            kind = block.get("type")
            if kind == "tool_use":
                call = ToolCall(as_str(block.get("id")), as_str(block.get("name")), dump(block.get("input")))
                call_names[call.id] = call.name
                calls.append(call)
            elif kind == "tool_result":
                call_id = as_str(block.get("tool_use_id"))
                text, n = blocks_text(block.get("content"))
                images += n
                results.append(ToolResult(
                    call_id, call_names.get(call_id), text, block.get("is_error") is True,
                    (HISTORY_KEY, i, "content", j, "content"),
                ))
            else:
                text, n = blocks_text([block])
                images += n
                if text:
                    texts.append(text)
        cost = blocks_media(content) if images else 0
        messages.append(Message(role, "\n".join(texts), tuple(calls), tuple(results), images, i, cost))
    tools = base.tool_defs(body.get("tools"), ("input_schema",)) + base.tool_defs(body.get("mcp_servers"))
    output = as_dict(body.get("output_format")) or as_dict(as_dict(body.get("output_config")).get("format"))
    return LLMRequest(
        dialect=ANTHROPIC,
        model=as_str(body.get("model")) or None,
        system=blocks_text(body.get("system"))[0],
        messages=tuple(messages),
        tools=tools,
        max_output_tokens=as_int(body.get("max_tokens")),
        stream=body.get("stream") is True,
        history_key=HISTORY_KEY,
        extra=dump(output) if output else "",
    )


def usage_from(u: Any) -> Usage:
    """Anthropic's input side comes in three parts; the prompt is their sum."""
    u = as_dict(u)
    parts = [as_int(u.get(k)) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")]
    known = [p for p in parts if p is not None]
    return Usage(
        prompt_tokens=sum(known) if known else None,
        completion_tokens=as_int(u.get("output_tokens")),
        cached_tokens=parts[2],
        cache_write_tokens=parts[1],
    )


def parse_response(body: Any) -> Reply:
    body = as_object(body)
    return Reply(
        model=as_str(body.get("model")) or None,
        text=blocks_text(body.get("content"))[0],
        usage=usage_from(body.get("usage")),
        error=error_message(body),
        id=as_str(body.get("id")) or None,
        tool_calls=body.get("stop_reason") == "tool_use"
        or any(as_dict(b).get("type") == "tool_use" for b in as_list(body.get("content"))),
    )


class StreamReader(base.StreamReader):
    """``message_start`` carries the input side, each ``message_delta`` the output so far."""

    def feed_payload(self, event: str | None, payload: Any) -> None:
        if not isinstance(payload, dict):
            return
        kind = event or as_str(payload.get("type"))
        if kind == "message_start":
            message = as_dict(payload.get("message"))
            self.reply.model = as_str(message.get("model")) or self.reply.model
            self.reply.id = as_str(message.get("id")) or self.reply.id
            self.reply.usage.merge(usage_from(message.get("usage")))
        elif kind == "content_block_start":
            if as_dict(payload.get("content_block")).get("type") == "tool_use":
                self.reply.tool_calls = True
        elif kind == "content_block_delta":
            delta = as_dict(payload.get("delta"))
            self._parts.append(as_str(delta.get("text")))
        elif kind == "message_delta":
            # Output is cumulative; input fields, when present, are final counts.
            self.reply.usage.merge(usage_from(payload.get("usage")))
            if as_dict(payload.get("delta")).get("stop_reason") == "tool_use":
                self.reply.tool_calls = True
        elif kind == "error" or kind == "exception" or kind.endswith("Exception"):  # Bedrock: exception frames
            self.reply.error = error_message(payload) or dump(payload)
            self.finished = True
        elif kind == "message_stop":
            self.finished = True
