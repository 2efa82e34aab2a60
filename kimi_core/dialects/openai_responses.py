"""OpenAI Responses API (``/v1/responses``)."""

from __future__ import annotations

from typing import Any

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
from kimi_core.dialects.openai_chat import content_media, content_text
from kimi_core.providers import OPENAI_RESPONSES

HISTORY_KEY = "input"


# Input items that carry a tool call (what the model asked for) and their results, by type.
CALLS = {"function_call": "arguments", "custom_tool_call": "input", "local_shell_call": "action",
         "mcp_call": "arguments", "computer_call": "action"}
OUTPUTS = ("function_call_output", "custom_tool_call_output", "local_shell_call_output",
           "computer_call_output", "mcp_call_output")
# Keys of an unknown item that are not text to the model.
OPAQUE = ("id", "call_id", "type", "status", "encrypted_content", "role")


def parse_request(body: Any, start: int = 0, prior: tuple[Message, ...] = ()) -> LLMRequest:
    """The neutral view; ``prior`` are the messages of history items before ``start``, already parsed.

    Every input item counts: messages, tool calls and their outputs of every
    kind, reasoning summaries, tools declared in the input (Codex's
    ``additional_tools``), and any item type not known here by its text.
    """
    body = as_object(body)
    messages = list(prior)
    call_names = base.call_names(prior)
    tools = base.tool_defs(body.get("tools"))
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
        if kind in CALLS:
            call = ToolCall(as_str(item.get("call_id")), as_str(item.get("name")) or kind, dump(item.get(CALLS[kind])))
            call_names[call.id] = call.name
            text = as_str(item.get("output")) if kind == "mcp_call" else ""  # an MCP call carries its result
            messages.append(Message("assistant", text, (call,), index=i))
        elif kind in OUTPUTS:
            call_id = as_str(item.get("call_id"))
            output = item.get("output")
            text, images = content_text(output) if not isinstance(output, dict) else (dump(output), 0)
            cost = content_media(output) if images else 0
            result = ToolResult(call_id, call_names.get(call_id), text, False, (HISTORY_KEY, i, "output"))
            messages.append(Message("tool", "", (), (result,), images, i, cost))
        elif kind == "message":
            role = as_str(item.get("role")) or "user"
            text, images = content_text(item.get("content"))
            cost = content_media(item.get("content")) if images else 0
            messages.append(Message("system" if role == "developer" else role, text, (), (), images, i, cost))
        elif kind == "reasoning":  # the encrypted part is opaque; the summary and any visible text count
            texts = [as_str(as_dict(s).get("text")) for s in as_list(item.get("summary"))]
            texts += [as_str(as_dict(c).get("text")) for c in as_list(item.get("content"))]
            messages.append(Message("assistant", "\n".join(t for t in texts if t), index=i))
        elif kind == "additional_tools":  # tools declared in the input (Codex): counted with the item
            text = "\n".join(f"{d.name}\n{d.description}\n{d.parameters}" for d in base.tool_defs(item.get("tools")))
            messages.append(Message("system", text, index=i))
        else:  # an item this parser does not know: its text still reaches the model
            rest = {k: v for k, v in item.items() if k not in OPAQUE}
            messages.append(Message(as_str(item.get("role")) or "assistant", dump(rest) if rest else "", index=i))
    text_format = as_dict(as_dict(body.get("text")).get("format"))
    return LLMRequest(
        dialect=OPENAI_RESPONSES,
        model=as_str(body.get("model")) or None,
        system=as_str(body.get("instructions")),
        messages=tuple(messages),
        tools=tools,
        max_output_tokens=as_int(body.get("max_output_tokens")),
        stream=body.get("stream") is True,
        history_key=HISTORY_KEY,
        extra=dump(text_format) if text_format.get("type") == "json_schema" else "",
        warmup=body.get("generate") is False,
    )


def usage_from(u: Any) -> Usage:
    u = as_dict(u)
    return Usage(
        prompt_tokens=as_int(u.get("input_tokens")),
        completion_tokens=as_int(u.get("output_tokens")),
        cached_tokens=as_int(as_dict(u.get("input_tokens_details")).get("cached_tokens")),
        reasoning_tokens=as_int(as_dict(u.get("output_tokens_details")).get("reasoning_tokens")),
    )


# Output items that the client must run and answer (hosted tools, such as web search, run at the provider).
CLIENT_CALLS = frozenset({"function_call", "custom_tool_call", "local_shell_call", "computer_call", "shell_call",
                          "apply_patch_call"})


def asks_tools(response: dict[str, Any]) -> bool:
    return any(as_dict(item).get("type") in CLIENT_CALLS for item in as_list(response.get("output")))


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
        id=as_str(body.get("id")) or None,
        tool_calls=asks_tools(body),
    )


class StreamReader(base.StreamReader):
    """Reads ``response.*`` events; usage arrives with ``response.completed``."""

    def feed_payload(self, event: str | None, payload: Any) -> None:
        if not isinstance(payload, dict):
            return
        kind = event or as_str(payload.get("type"))
        if kind == "response.output_text.delta":
            self._parts.append(as_str(payload.get("delta")))
        elif kind == "response.output_item.added":
            self.reply.tool_calls = self.reply.tool_calls or as_dict(payload.get("item")).get("type") in CLIENT_CALLS
        elif kind in ("response.created", "response.completed", "response.incomplete", "response.failed"):
            response = as_dict(payload.get("response"))
            self.reply.model = as_str(response.get("model")) or self.reply.model
            self.reply.id = as_str(response.get("id")) or self.reply.id
            self.reply.tool_calls = self.reply.tool_calls or asks_tools(response)
            self.reply.usage.merge(usage_from(response.get("usage")))
            if kind == "response.failed":
                self.reply.error = error_message(response) or "response.failed"
            self.finished = kind != "response.created"
        elif kind == "error":
            self.reply.error = as_str(payload.get("message")) or error_message(payload) or dump(payload)
            self.finished = True
