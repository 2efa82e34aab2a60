"""A reference for what a provider bills as prompt, independent of Kimi's parsers.

Kimi counts what each API bills by reading its fields one by one; a field it
does not know (a new tool shape, a schema under another key) would be missed
without anyone noticing. This reference does not know fields: it counts the
tokens of every key and every string under the parts of a request that
providers bill (history, system text, tools, output schemas), whatever their
shape, skipping only what is not text to the model (ids, signatures,
encrypted or base64 payloads). The fake provider can report it as its usage
(``X-Fake-Usage: billed``), and tests compare Kimi's estimate with it on the
bodies the real agents send.
"""

from __future__ import annotations

import json
from typing import Any

from kimi_core.tokens import counter_for

# The top-level keys each API bills as prompt (Gemini's generationConfig: only its schemas).
BILLED = {
    "openai-chat": ("messages", "tools", "functions", "response_format"),
    "openai-responses": ("input", "instructions", "tools", "text"),
    "anthropic": ("system", "messages", "tools", "output_format"),
    "gemini": ("contents", "systemInstruction", "system_instruction", "tools", "generationConfig"),
    "bedrock-converse": ("system", "messages", "toolConfig"),
}
GEMINI_CONFIG = ("responseSchema", "responseJsonSchema", "response_schema", "response_json_schema")
# Values that are not text to the model.
OPAQUE = {"id", "call_id", "tool_call_id", "tool_use_id", "toolUseId", "signature", "encrypted_content", "data",
          "bytes", "image_url", "url", "file_data", "fileUri", "cache_control", "type"}


def billed_parts(dialect: str, body: dict[str, Any]) -> list[Any]:
    parts = []
    for key in BILLED.get(dialect, ()):
        value = body.get(key)
        if key == "generationConfig" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k in GEMINI_CONFIG}
        if value is not None:
            parts.append(value)
    return parts


def _strings(value: Any, out: list[str], depth: int = 0) -> None:
    if depth > 200:
        return
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k in OPAQUE:
                continue
            out.append(str(k))
            _strings(v, out, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out, depth + 1)


def billed_tokens(dialect: str, body: Any, encoding: str = "cl100k_base") -> int:
    """The tokens of every key and string in the billed parts of ``body``."""
    if isinstance(body, (bytes, str)):
        body = json.loads(body)
    if not isinstance(body, dict):
        return 0
    count = counter_for(encoding)
    strings: list[str] = []
    for part in billed_parts(dialect, body):
        _strings(part, strings)
    return sum(count(s) for s in strings)
