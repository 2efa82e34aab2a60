"""OpenAI Chat Completions, and every OpenAI-compatible provider."""

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
from kimi_core.providers import OPENAI_CHAT

HISTORY_KEY = "messages"


def content_text(content: Any) -> tuple[str, int]:
    """Text and image count of a ``content`` that is a string or a list of parts."""
    if isinstance(content, str):
        return content, 0
    texts, images = [], 0
    for part in as_list(content):
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict):
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part.get("type") in ("image_url", "input_image", "image", "file", "input_file"):
                images += 1
    return "\n".join(texts), images


def content_media(content: Any) -> int:
    """What the images and files among ``content``'s parts cost, by OpenAI's formulas."""
    tokens = 0
    for part in as_list(content):
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("image_url", "input_image", "image"):
            image = part.get("image_url")
            url = as_str(as_dict(image).get("url")) if isinstance(image, dict) else as_str(image)
            detail = as_str(part.get("detail")) or as_str(as_dict(image).get("detail"))
            tokens += media.image_tokens("openai", url if url.startswith("data:") else None, detail)
        elif kind in ("file", "input_file"):
            data = as_str(as_dict(part.get("file")).get("file_data")) or as_str(part.get("file_data"))
            tokens += media.document_tokens("openai", data or None)
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
        text, images = content_text(m.get("content"))
        cost = content_media(m.get("content")) if images else 0
        calls = []
        for c in as_list(m.get("tool_calls")):
            fn = as_dict(as_dict(c).get("function"))
            call = ToolCall(as_str(as_dict(c).get("id")), as_str(fn.get("name")), dump(fn.get("arguments")))
            call_names[call.id] = call.name
            calls.append(call)
        if role == "developer":
            role = "system"
        if role == "tool":
            call_id = as_str(m.get("tool_call_id"))
            result = ToolResult(call_id, call_names.get(call_id), text, False, (HISTORY_KEY, i, "content"))
            messages.append(Message("tool", "", (), (result,), images, i, cost))
        else:
            messages.append(Message(role, text, tuple(calls), (), images, i, cost))
    tools = base.tool_defs(body.get("tools")) + base.tool_defs(body.get("functions"))
    response_format = as_dict(body.get("response_format"))
    max_out = as_int(body.get("max_completion_tokens"))
    if max_out is None:
        max_out = as_int(body.get("max_tokens"))
    return LLMRequest(
        dialect=OPENAI_CHAT,
        model=as_str(body.get("model")) or None,
        system="",
        messages=tuple(messages),
        tools=tools,
        max_output_tokens=max_out,
        stream=body.get("stream") is True,
        history_key=HISTORY_KEY,
        extra=dump(response_format) if response_format.get("type") == "json_schema" else "",
    )


def usage_from(u: Any) -> Usage:
    u = as_dict(u)
    return Usage(
        prompt_tokens=as_int(u.get("prompt_tokens")),
        completion_tokens=as_int(u.get("completion_tokens")),
        cached_tokens=as_int(as_dict(u.get("prompt_tokens_details")).get("cached_tokens")),
        reasoning_tokens=as_int(as_dict(u.get("completion_tokens_details")).get("reasoning_tokens")),
    )


def parse_response(body: Any) -> Reply:
    body = as_object(body)
    texts, tools = [], False
    for choice in as_list(body.get("choices")):
        message = as_dict(as_dict(choice).get("message"))
        text, _ = content_text(message.get("content"))
        texts.append(text)
        tools = tools or bool(as_list(message.get("tool_calls"))) or as_dict(choice).get("finish_reason") == "tool_calls"
    return Reply(
        model=as_str(body.get("model")) or None,
        text="\n".join(texts),
        usage=usage_from(body.get("usage")),
        error=error_message(body),
        id=as_str(body.get("id")) or None,
        tool_calls=tools,
    )


class StreamReader(base.StreamReader):
    """Reads ``chat.completion.chunk`` events as they pass."""

    def feed_payload(self, event: str | None, chunk: Any) -> None:
        if not isinstance(chunk, dict):
            return
        self.reply.model = as_str(chunk.get("model")) or self.reply.model
        if (err := error_message(chunk)) is not None:
            self.reply.error = err
        self.reply.id = self.reply.id or as_str(chunk.get("id")) or None
        for choice in as_list(chunk.get("choices")):
            delta = as_dict(as_dict(choice).get("delta"))
            if isinstance(delta.get("content"), str):
                self._parts.append(delta["content"])
            if delta.get("tool_calls") or as_dict(choice).get("finish_reason") == "tool_calls":
                self.reply.tool_calls = True
        if chunk.get("usage"):
            self.reply.usage.merge(usage_from(chunk["usage"]))
