"""What the fake provider answers, in each API's own shapes: whole answers, stream events,
errors, and which API a path speaks (``kimi_core.testing.fake_provider`` serves them)."""

from __future__ import annotations

import re
import threading
import urllib.parse
import zlib
from typing import Any

REPLY = "Hello from the fake provider."


def dialect_of(path: str) -> str | None:
    p = path.split("?", 1)[0].rstrip("/")
    if p.endswith("/chat/completions"):
        return "openai-chat"
    if p.endswith("/responses"):
        return "openai-responses"
    if p.endswith("/messages"):
        return "anthropic"
    if ":generateContent" in p or ":streamGenerateContent" in p:
        return "gemini"
    return None


_BEDROCK = re.compile(r"/model/([^/]+)/(invoke|invoke-with-response-stream|converse|converse-stream)$")
_RAW_PREDICT = re.compile(r"/models/([^/:]+):(stream)?[rR]awPredict$")


def route_of(path: str) -> tuple[str | None, str, str | None, bool]:
    """(dialect, variant, model named by the path, streamed by the path) of a request path.

    Variants: "" (the API as its maker serves it), "code-assist" (Gemini CLI with a
    Google login: request and answers in envelopes), "vertex" (Anthropic on Vertex
    AI), "bedrock" (Bedrock's invoke: Anthropic's body, AWS event-stream framing)
    and "converse" (Bedrock's Converse API).
    """
    p = urllib.parse.unquote(path.split("?", 1)[0]).rstrip("/")
    if m := _BEDROCK.search(p):
        converse = m.group(2).startswith("converse")
        return ("bedrock-converse" if converse else "anthropic"), ("converse" if converse else "bedrock"), \
            m.group(1), m.group(2).endswith("stream")
    if m := _RAW_PREDICT.search(p):
        return "anthropic", "vertex", m.group(1), m.group(2) is not None
    if "/v1internal:" in p and dialect_of(p) == "gemini":
        return "gemini", "code-assist", None, ":streamGenerateContent" in p
    dialect = dialect_of(p)
    model = p.split("/models/")[-1].split(":")[0] if dialect == "gemini" else None
    return dialect, "", model, ":streamGenerateContent" in p


def converse_events(prompt: int, pieces: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """The events of Bedrock's ConverseStream, by name."""
    evs: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    evs += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}}) for p in pieces]
    evs += [("contentBlockStop", {"contentBlockIndex": 0}), ("messageStop", {"stopReason": "end_turn"}),
            ("metadata", {"usage": {"inputTokens": prompt - 3, "outputTokens": len(pieces), "cacheReadInputTokens": 3,
                                    "totalTokens": prompt + len(pieces)}, "metrics": {"latencyMs": 1}})]
    return evs


def error_body(dialect: str | None, status: int, message: str) -> dict[str, Any]:
    if dialect == "anthropic":
        return {"type": "error", "error": {"type": "api_error", "message": message}}
    if dialect == "gemini":
        return {"error": {"code": status, "message": message, "status": "UNAVAILABLE"}}
    return {"error": {"message": message, "type": "server_error", "code": None}}


def overflow_body(dialect: str | None, window: int, prompt: int) -> dict[str, Any]:
    """A context-overflow error as each provider words it (see REFERENCE.md)."""
    if dialect == "anthropic":
        return {"type": "error", "error": {"type": "invalid_request_error",
                                           "message": f"prompt is too long: {prompt} tokens > {window} maximum"}}
    if dialect == "gemini":
        return {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                          f"The input token count ({prompt}) exceeds the maximum number of tokens allowed ({window})."}}
    return {"error": {"message": f"This model's maximum context length is {window} tokens. However, your messages "
                                 f"resulted in {prompt} tokens. Please reduce the length of the messages.",
                      "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}


def whole(dialect: str, model: str, prompt: int, out: int, reply: str = REPLY, tool: str | None = None) -> dict[str, Any]:
    """A non-streamed answer in ``dialect``; with ``tool``, one that asks the client to run that tool."""
    answer = _whole(dialect, model, prompt, out, reply)
    if tool is None:
        return answer
    if dialect == "openai-chat":
        answer["choices"][0]["message"]["tool_calls"] = [
            {"id": "call_fake", "type": "function", "function": {"name": tool, "arguments": "{}"}}]
        answer["choices"][0]["finish_reason"] = "tool_calls"
    elif dialect == "openai-responses":
        answer["output"].append({"type": "function_call", "id": "fc_fake", "call_id": "call_fake", "name": tool,
                                 "arguments": "{}", "status": "completed"})
    elif dialect == "anthropic":
        answer["content"].append({"type": "tool_use", "id": "toolu_fake", "name": tool, "input": {}})
        answer["stop_reason"] = "tool_use"
    elif dialect == "bedrock-converse":
        answer["output"]["message"]["content"].append({"toolUse": {"toolUseId": "t", "name": tool, "input": {}}})
        answer["stopReason"] = "tool_use"
    else:
        answer["candidates"][0]["content"]["parts"].append({"functionCall": {"name": tool, "args": {}}})
    return answer


def _whole(dialect: str, model: str, prompt: int, out: int, reply: str) -> dict[str, Any]:
    if dialect == "openai-chat":
        return {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out,
                      "prompt_tokens_details": {"cached_tokens": 3}},
        }
    if dialect == "openai-responses":
        return {
            "id": "resp_fake", "object": "response", "created_at": 0, "model": model, "status": "completed",
            "output": [{"type": "message", "id": "msg_fake", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": reply, "annotations": []}]}],
            "usage": {"input_tokens": prompt, "output_tokens": out, "total_tokens": prompt + out,
                      "input_tokens_details": {"cached_tokens": 3},
                      "output_tokens_details": {"reasoning_tokens": 0}},
        }
    if dialect == "anthropic":
        return {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": reply}], "stop_reason": "end_turn",
            "usage": {"input_tokens": prompt - 3, "cache_read_input_tokens": 3,
                      "cache_creation_input_tokens": 0, "output_tokens": out},
        }
    if dialect == "bedrock-converse":
        return {"output": {"message": {"role": "assistant", "content": [{"text": reply}]}}, "stopReason": "end_turn",
                "usage": {"inputTokens": prompt - 3, "cacheReadInputTokens": 3, "outputTokens": out,
                          "totalTokens": prompt + out}, "metrics": {"latencyMs": 1}}
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": reply}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": out,
                          "totalTokenCount": prompt + out, "cachedContentTokenCount": 3},
        "modelVersion": model,
    }


def events(dialect: str, model: str, prompt: int, pieces: list[str]) -> list[tuple[str | None, dict | str]]:
    """The SSE events of a streamed answer in ``dialect``: (event name, data)."""
    out = len(pieces)
    if dialect == "openai-chat":
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model}
        evs: list[tuple[str | None, dict | str]] = [
            (None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": p},
                                         "finish_reason": None}]}) for p in pieces]
        evs.append((None, {**base, "choices": [], "usage": {
            "prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out,
            "prompt_tokens_details": {"cached_tokens": 3}}}))
        evs.append((None, "[DONE]"))
        return evs
    if dialect == "openai-responses":
        final = whole(dialect, model, prompt, out)
        final["output"][0]["content"][0]["text"] = "".join(pieces)
        created = {**final, "status": "in_progress", "output": [], "usage": None}
        evs = [("response.created", {"type": "response.created", "sequence_number": 0, "response": created}),
               ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                               "sequence_number": 0, "item": {**final["output"][0], "content": [],
                                                                              "status": "in_progress"}})]
        evs += [("response.output_text.delta", {"type": "response.output_text.delta", "item_id": "msg_fake",
                                                "output_index": 0, "content_index": 0, "delta": p,
                                                "sequence_number": i + 1, "logprobs": []})
                for i, p in enumerate(pieces)]
        # Codex builds its answer from the finished items, not from the deltas.
        evs.append(("response.output_item.done", {"type": "response.output_item.done", "output_index": 0,
                                                   "sequence_number": out + 1, "item": final["output"][0]}))
        evs.append(("response.completed", {"type": "response.completed", "sequence_number": out + 2,
                                           "response": final}))
        return evs
    if dialect == "anthropic":
        start = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [],
                 "stop_reason": None, "usage": {"input_tokens": prompt - 3, "cache_read_input_tokens": 3,
                                                "cache_creation_input_tokens": 0, "output_tokens": 1}}
        evs = [("message_start", {"type": "message_start", "message": start}),
               ("content_block_start", {"type": "content_block_start", "index": 0,
                                        "content_block": {"type": "text", "text": ""}})]
        evs += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "text_delta", "text": p}}) for p in pieces]
        evs += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                   "usage": {"output_tokens": out}}),
                ("message_stop", {"type": "message_stop"})]
        return evs
    evs = []
    for i, p in enumerate(pieces):
        chunk: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": [{"text": p}]}}],
                                 "modelVersion": model}
        chunk["usageMetadata"] = {"promptTokenCount": prompt, "candidatesTokenCount": i + 1,
                                  "totalTokenCount": prompt + i + 1, "cachedContentTokenCount": 3}
        if i == len(pieces) - 1:
            chunk["candidates"][0]["finishReason"] = "STOP"  # Gemini CLI retries a stream without one
        evs.append((None, chunk))
    return evs


BOMB_SIZE = 1024 ** 3
_bombs: dict[str, bytes] = {}
_bombs_lock = threading.Lock()


def gzip_bomb(kind: str) -> bytes:
    """About a megabyte of gzip that inflates to BOMB_SIZE: one JSON string, or tiny SSE events."""
    with _bombs_lock:
        if kind not in _bombs:
            z = zlib.compressobj(9, zlib.DEFLATED, 31)
            unit = b"data: {}\n\n" * 4096 if kind == "sse" else b"x" * 65536
            head = b"" if kind == "sse" else b'{"choices": [{"message": {"content": "'
            parts = [z.compress(head)]
            block = z.compress(unit * (16 * 1024 * 1024 // len(unit)))
            parts += [block] + [z.compress(unit * (16 * 1024 * 1024 // len(unit))) for _ in range(BOMB_SIZE // 2**24 - 1)]
            parts.append(z.compress(b"" if kind == "sse" else b'"}}]}') + z.flush())
            _bombs[kind] = b"".join(parts)
        return _bombs[kind]
