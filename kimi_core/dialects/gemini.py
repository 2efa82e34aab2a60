"""Google Gemini ``generateContent`` / ``streamGenerateContent``.

The model is in the path (``/v1beta/models/gemini-2.5-pro:generateContent``),
not in the body. Streams are SSE with ``?alt=sse``, a JSON array otherwise.
"""

from __future__ import annotations

import re
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
    error_message,
)
from kimi_core.providers import GEMINI

HISTORY_KEY = "contents"
# Where a function declaration's schema is (Gemini CLI sends parametersJsonSchema), and its answer's.
SCHEMA_KEYS = ("parameters", "parametersJsonSchema", "parameters_json_schema")
OUTPUT_SCHEMA_KEYS = ("responseSchema", "responseJsonSchema", "response_schema", "response_json_schema")
_MODEL_IN_PATH = re.compile(r"/models/([^/:?]+):")


def model_from_path(path: str) -> str | None:
    m = _MODEL_IN_PATH.search(path)
    return m.group(1) if m else None


def is_stream_path(path: str) -> bool:
    return ":streamGenerateContent" in path.split("?", 1)[0]


def parts_text(parts: Any) -> tuple[str, int]:
    texts, images = [], 0
    for part in as_list(parts):
        part = as_dict(part)
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif "inlineData" in part or "inline_data" in part or "fileData" in part or "file_data" in part:
            images += 1
    return "\n".join(texts), images


def parts_media(parts: Any) -> int:
    """What the inline images and PDFs among ``parts`` cost, by Gemini's formulas."""
    tokens = 0
    for part in as_list(parts):
        part = as_dict(part)
        inline = as_dict(part.get("inlineData") or part.get("inline_data"))
        file = as_dict(part.get("fileData") or part.get("file_data"))
        mime = as_str(inline.get("mimeType") or inline.get("mime_type") or file.get("mimeType")
                      or file.get("mime_type"))
        if not inline and not file:
            continue
        data = as_str(inline.get("data")) or None
        if mime == "application/pdf":
            tokens += media.document_tokens("gemini", data)
        elif mime.startswith("image/") or not mime:
            tokens += media.image_tokens("gemini", data)
    return tokens


def parse_request(body: Any, path: str = "", start: int = 0, prior: tuple[Message, ...] = ()) -> LLMRequest:
    """The neutral view; ``prior`` are the messages of history items before ``start``, already parsed."""
    body = as_object(body)
    messages = list(prior)
    items = as_list(body.get(HISTORY_KEY))
    for i in range(start, len(items)):
        content = as_dict(items[i])
        role = "assistant" if content.get("role") == "model" else "user"
        calls, results = [], []
        for j, part in enumerate(as_list(content.get("parts"))):
            part = as_dict(part)
            call = as_dict(part.get("functionCall") or part.get("function_call"))
            if call:
                calls.append(ToolCall(as_str(call.get("id")), as_str(call.get("name")), dump(call.get("args"))))
            response = as_dict(part.get("functionResponse") or part.get("function_response"))
            if response:
                key = "functionResponse" if "functionResponse" in part else "function_response"
                name = as_str(response.get("name"))
                results.append(ToolResult(
                    as_str(response.get("id")), name or None, dump(response.get("response")), False,
                    (HISTORY_KEY, i, "parts", j, key, "response"),
                ))
        text, images = parts_text(content.get("parts"))
        if results and not text and not calls:
            role = "tool"
        cost = parts_media(content.get("parts")) if images else 0
        messages.append(Message(role, text, tuple(calls), tuple(results), images, i, cost))
    tools: list[ToolDef] = []
    for t in as_list(body.get("tools")):
        t = as_dict(t)
        declarations = t.get("functionDeclarations") or t.get("function_declarations")
        if declarations is None:  # a built-in tool: googleSearch, codeExecution, urlContext...
            tools += base.tool_def(t)
        for d in as_list(declarations):
            tools += base.tool_def(d, SCHEMA_KEYS)
    system = body.get("systemInstruction") or body.get("system_instruction")
    config = as_dict(body.get("generationConfig") or body.get("generation_config"))
    schemas = [config[k] for k in OUTPUT_SCHEMA_KEYS if k in config]
    return LLMRequest(
        dialect=GEMINI,
        model=model_from_path(path) or (as_str(body.get("model")) or None),
        system=parts_text(as_dict(system).get("parts"))[0],
        messages=tuple(messages),
        tools=tuple(tools),
        max_output_tokens=as_int(config.get("maxOutputTokens", config.get("max_output_tokens"))),
        stream=is_stream_path(path),
        history_key=HISTORY_KEY,
        extra="\n".join(dump(schema) for schema in schemas),
    )


def usage_from(u: Any) -> Usage:
    u = as_dict(u)
    out = as_int(u.get("candidatesTokenCount"))
    thoughts = as_int(u.get("thoughtsTokenCount"))
    if out is not None and thoughts is not None:
        out += thoughts
    return Usage(
        prompt_tokens=as_int(u.get("promptTokenCount")),
        completion_tokens=out,
        cached_tokens=as_int(u.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def _chunk_into(reply: Reply, chunk: dict[str, Any], parts: list[str]) -> None:
    reply.model = as_str(chunk.get("modelVersion")) or reply.model
    reply.id = reply.id or as_str(chunk.get("responseId")) or None
    for cand in as_list(chunk.get("candidates")):
        content_parts = as_dict(as_dict(cand).get("content")).get("parts")
        parts.append(parts_text(content_parts)[0])
        reply.tool_calls = reply.tool_calls or any("functionCall" in as_dict(p) for p in as_list(content_parts))
    if chunk.get("usageMetadata"):
        reply.usage.merge(usage_from(chunk["usageMetadata"]))
    if (err := error_message(chunk)) is not None:
        reply.error = err


def parse_response(body: Any) -> Reply:
    """A whole response: one object, or the array a non-SSE stream sends."""
    reply, parts = Reply(), []
    chunks = body if isinstance(body, list) else [as_object(body)]
    for chunk in chunks:
        if isinstance(chunk, dict):
            _chunk_into(reply, chunk, parts)
    reply.text = "".join(parts)
    return reply


class StreamReader(base.StreamReader):
    """SSE chunks (``alt=sse``); each is a GenerateContentResponse."""

    def feed_payload(self, event: str | None, chunk: Any) -> None:
        if isinstance(chunk, dict):
            _chunk_into(self.reply, chunk, self._parts)
