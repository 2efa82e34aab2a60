"""AWS Bedrock's Converse API (``/model/{id}/converse`` and ``/converse-stream``), for any model family.

The model is in the path. Content blocks are keyed by kind (``{"text": ...}``,
``{"toolUse": ...}``, ``{"toolResult": ...}``, ``{"image": ...}``); the stream
is AWS event-stream framed, one Converse event per message, its name in the
``:event-type`` header (``contentBlockDelta``, ``metadata``...).
"""

from __future__ import annotations

from typing import Any

from kimi_core import media
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
)
from kimi_core.providers import BEDROCK_CONVERSE

HISTORY_KEY = "messages"
MEDIA = ("image", "document", "video")


def blocks_text(blocks: Any) -> tuple[str, int]:
    """Text and media count of a list of content blocks (``json`` blocks count as their text)."""
    texts, count = [], 0
    for block in as_list(blocks):
        block = as_dict(block)
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif "json" in block:
            texts.append(dump(block["json"]))
        elif "reasoningContent" in block:
            texts.append(as_str(as_dict(as_dict(block["reasoningContent"]).get("reasoningText")).get("text")))
        elif any(kind in block for kind in MEDIA):
            count += 1
    return "\n".join(texts), count


def blocks_media(blocks: Any) -> int:
    """What the images and PDFs among ``blocks`` cost (Anthropic's formulas: Claude is Bedrock's usual model)."""
    tokens = 0
    for block in as_list(blocks):
        block = as_dict(block)
        image, document = as_dict(block.get("image")), as_dict(block.get("document"))
        if image:
            tokens += media.image_tokens("anthropic", as_str(as_dict(image.get("source")).get("bytes")) or None)
        elif document:
            tokens += media.document_tokens("anthropic", as_str(as_dict(document.get("source")).get("bytes")) or None)
        elif "toolResult" in block:
            tokens += blocks_media(as_dict(block["toolResult"]).get("content"))
    return tokens


def _result_locator(i: int, j: int, content: Any) -> tuple[str | int, ...]:
    """Where a tool result's text sits: its one text block's string when it has just that."""
    blocks = as_list(content)
    if len(blocks) == 1 and isinstance(as_dict(blocks[0]).get("text"), str):
        return (HISTORY_KEY, i, "content", j, "toolResult", "content", 0, "text")
    return (HISTORY_KEY, i, "content", j, "toolResult", "content")


def parse_request(body: Any, start: int = 0, prior: tuple[Message, ...] = ()) -> LLMRequest:
    """The neutral view; ``prior`` are the messages of history items before ``start``, already parsed."""
    body = as_object(body)
    messages = list(prior)
    call_names = base.call_names(prior)
    items = as_list(body.get(HISTORY_KEY))
    for i in range(start, len(items)):
        m = as_dict(items[i])
        role = as_str(m.get("role")) or "user"
        texts, calls, results, media_count = [], [], [], 0
        for j, block in enumerate(as_list(m.get("content"))):
            block = as_dict(block)
            if "toolUse" in block:
                use = as_dict(block["toolUse"])
                call = ToolCall(as_str(use.get("toolUseId")), as_str(use.get("name")), dump(use.get("input")))
                call_names[call.id] = call.name
                calls.append(call)
            elif "toolResult" in block:
                result = as_dict(block["toolResult"])
                call_id = as_str(result.get("toolUseId"))
                text, n = blocks_text(result.get("content"))
                media_count += n
                results.append(ToolResult(call_id, call_names.get(call_id), text, result.get("status") == "error",
                                          _result_locator(i, j, result.get("content"))))
            else:
                text, n = blocks_text([block])
                media_count += n
                if text:
                    texts.append(text)
        cost = blocks_media(m.get("content")) if media_count else 0
        messages.append(Message(role, "\n".join(texts), tuple(calls), tuple(results), media_count, i, cost))
    tools = []
    for tool in as_list(as_dict(body.get("toolConfig")).get("tools")):
        spec = as_dict(as_dict(tool).get("toolSpec"))
        if spec:
            schema = as_dict(spec.get("inputSchema"))
            tools.append(ToolDef(as_str(spec.get("name")), as_str(spec.get("description")),
                                 dump(schema.get("json", schema))))
    return LLMRequest(
        dialect=BEDROCK_CONVERSE,
        model=None,  # in the path
        system=blocks_text(body.get("system"))[0],
        messages=tuple(messages),
        tools=tuple(tools),
        max_output_tokens=as_int(as_dict(body.get("inferenceConfig")).get("maxTokens")),
        stream=False,  # the path says: converse-stream
        history_key=HISTORY_KEY,
    )


def usage_from(u: Any) -> Usage:
    """Converse's ``inputTokens`` excludes the cached part: the prompt is their sum."""
    u = as_dict(u)
    parts = [as_int(u.get(k)) for k in ("inputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")]
    known = [p for p in parts if p is not None]
    return Usage(prompt_tokens=sum(known) if known else None, completion_tokens=as_int(u.get("outputTokens")),
                 cached_tokens=parts[1], cache_write_tokens=parts[2])


def error_of(body: dict[str, Any]) -> str | None:
    message = body.get("message", body.get("Message"))
    return message if isinstance(message, str) and "output" not in body else None


def parse_response(body: Any) -> Reply:
    body = as_object(body)
    message = as_dict(as_dict(body.get("output")).get("message"))
    return Reply(text=blocks_text(message.get("content"))[0], usage=usage_from(body.get("usage")),
                 error=error_of(body), tool_calls=body.get("stopReason") == "tool_use")


class StreamReader(base.StreamReader):
    """Converse events, by the name the event-stream header gives them."""

    def feed_payload(self, event: str | None, payload: Any) -> None:
        if not isinstance(payload, dict):
            return
        if event == "contentBlockDelta":
            self._parts.append(as_str(as_dict(payload.get("delta")).get("text")))
        elif event == "messageStop":
            self.reply.tool_calls = as_dict(payload).get("stopReason") == "tool_use"
        elif event == "metadata":
            self.reply.usage.merge(usage_from(payload.get("usage")))
            self.finished = True
        elif event == "exception" or (event or "").endswith("Exception"):
            self.reply.error = error_of(payload) or dump(payload)
            self.finished = True
