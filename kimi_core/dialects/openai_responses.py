"""OpenAI Responses API (``/v1/responses``)."""

from __future__ import annotations

from typing import Any

from kimi_core.dialects import base
from kimi_core.dialects.base import (
    LLMRequest,
    Message,
    Reply,
    ToolCall,
    ToolDef,
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
from kimi_core.dialects.openai_chat import content_text
from kimi_core.providers import OPENAI_RESPONSES

HISTORY_KEY = "input"


def parse_request(body: Any, start: int = 0, prior: tuple[Message, ...] = ()) -> LLMRequest:
    """The neutral view; ``prior`` are the messages of history items before ``start``, already parsed."""
    body = as_object(body)
    messages = list(prior)
    call_names = base.call_names(prior)
    items = body.get(HISTORY_KEY)
    if isinstance(items, str):
        messages.append(Message("user", items))
        items = []
    items = as_list(items)
    for i in range(start, len(items)):
        item = items[i]
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "function_call":
            call = ToolCall(as_str(item.get("call_id")), as_str(item.get("name")), dump(item.get("arguments")))
            call_names[call.id] = call.name
            messages.append(Message("assistant", "", (call,), index=i))
        elif kind == "function_call_output":
            call_id = as_str(item.get("call_id"))
            text, images = content_text(item.get("output"))
            result = ToolResult(call_id, call_names.get(call_id), text, False, (HISTORY_KEY, i, "output"))
            messages.append(Message("tool", "", (), (result,), images, i))
        elif kind == "message":
            role = as_str(item.get("role")) or "user"
            text, images = content_text(item.get("content"))
            messages.append(Message("system" if role == "developer" else role, text, (), (), images, i))
        elif kind == "reasoning":
            summary = " ".join(as_str(as_dict(s).get("text")) for s in as_list(item.get("summary")))
            messages.append(Message("assistant", summary, index=i))
    tools = [
        ToolDef(as_str(t.get("name")) or as_str(t.get("type")), as_str(t.get("description")), dump(t.get("parameters")))
        for t in as_list(body.get("tools"))
        if isinstance(t, dict)
    ]
    return LLMRequest(
        dialect=OPENAI_RESPONSES,
        model=as_str(body.get("model")) or None,
        system=as_str(body.get("instructions")),
        messages=tuple(messages),
        tools=tuple(tools),
        max_output_tokens=as_int(body.get("max_output_tokens")),
        stream=body.get("stream") is True,
        history_key=HISTORY_KEY,
    )


def usage_from(u: Any) -> Usage:
    u = as_dict(u)
    return Usage(
        prompt_tokens=as_int(u.get("input_tokens")),
        completion_tokens=as_int(u.get("output_tokens")),
        cached_tokens=as_int(as_dict(u.get("input_tokens_details")).get("cached_tokens")),
    )


def output_text(response: dict[str, Any]) -> str:
    texts = []
    for item in as_list(response.get("output")):
        for part in as_list(as_dict(item).get("content")):
            if as_dict(part).get("type") == "output_text":
                texts.append(as_str(part.get("text")))
    return "".join(texts)


def parse_response(body: Any) -> Reply:
    body = as_object(body)
    return Reply(
        model=as_str(body.get("model")) or None,
        text=output_text(body),
        usage=usage_from(body.get("usage")),
        error=error_message(body),
    )


class StreamReader(base.StreamReader):
    """Reads ``response.*`` events; usage arrives with ``response.completed``."""

    def feed_payload(self, event: str | None, payload: Any) -> None:
        if not isinstance(payload, dict):
            return
        kind = event or as_str(payload.get("type"))
        if kind == "response.output_text.delta":
            self._parts.append(as_str(payload.get("delta")))
        elif kind in ("response.created", "response.completed", "response.incomplete", "response.failed"):
            response = as_dict(payload.get("response"))
            self.reply.model = as_str(response.get("model")) or self.reply.model
            self.reply.usage.merge(usage_from(response.get("usage")))
            if kind == "response.failed":
                self.reply.error = error_message(response) or "response.failed"
            self.finished = kind != "response.created"
        elif kind == "error":
            self.reply.error = as_str(payload.get("message")) or error_message(payload) or dump(payload)
            self.finished = True
