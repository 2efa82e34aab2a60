"""What fills a prompt: parts that add up to the request's count, in every dialect."""

import json

import pytest

from kimi_core.composition import composition, summarise
from kimi_core.dialects import parse_request
from kimi_core.tokens import TokenCounter

LISTING = "\n".join(f"drwxr-xr-x 2 dev dev 4096 src/module_{i}" for i in range(200))
THOUGHT = "Let me think about which file defines the parser before answering. " * 8

BODIES = {
    "anthropic": ("/v1/messages", {
        "model": "claude-sonnet-4-5", "max_tokens": 100, "system": "You are a coding agent. " * 30,
        "tools": [{"name": "Bash", "description": "Run a command.", "input_schema": {"type": "object"}},
                  {"name": "Read", "description": "Read a file.", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "List the sources."},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": THOUGHT, "signature": "sig"},
                                              {"type": "text", "text": "Listing them."},
                                              {"type": "tool_use", "id": "t1", "name": "Bash",
                                               "input": {"command": "ls -l src"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": LISTING}]}]}),
    "openai-responses": ("/v1/responses", {
        "model": "gpt-5", "instructions": "You are Codex. " * 20,
        "tools": [{"type": "function", "name": "shell", "description": "Run a command.", "parameters": {}}],
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List the sources."}]},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": THOUGHT}], "encrypted_content": "x"},
            {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{\"cmd\": \"ls\"}"},
            {"type": "function_call_output", "call_id": "c1", "output": LISTING}]}),
    "openai-chat": ("/v1/chat/completions", {
        "model": "gpt-4.1",
        "tools": [{"type": "function", "function": {"name": "ls", "description": "List.", "parameters": {}}}],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "List the sources."},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": LISTING}]}),
    "gemini": ("/v1beta/models/gemini-2.5-pro:generateContent", {
        "systemInstruction": {"parts": [{"text": "You are Gemini CLI."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "List the sources."}]},
            {"role": "model", "parts": [{"text": THOUGHT, "thought": True},
                                        {"functionCall": {"name": "list_directory", "args": {"path": "src"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "list_directory",
                                                             "response": {"output": LISTING}}}]}]}),
}


@pytest.mark.parametrize("dialect", sorted(BODIES))
def test_the_parts_add_up_to_the_requests_count(dialect):
    path, body = BODIES[dialect]
    body = json.loads(json.dumps(body))
    request = parse_request(dialect, body, path)
    counter = TokenCounter()
    parts, encoding = composition(request, counter, body)
    assert sum(p.tokens for p in parts) == counter.count_request(request).tokens
    assert all(p.tokens > 0 for p in parts)
    groups = {(g["kind"], g["label"]): g["tokens"] for g in summarise(parts)}
    result = next(tokens for (kind, _), tokens in groups.items() if kind == "tool_result")
    assert result == max(groups.values())  # the listing is the biggest part
    assert any(kind == "tool_call" for kind, _ in groups)
    if dialect != "openai-chat":
        assert abs(groups[("thinking", "thinking")] - counter.count_text(THOUGHT.strip(), encoding)) <= 2


def test_without_the_body_thinking_stays_in_its_message():
    path, body = BODIES["anthropic"]
    request = parse_request("anthropic", body, path)
    counter = TokenCounter()
    parts, _ = composition(request, counter)
    assert not [p for p in parts if p.kind == "thinking"]
    assert sum(p.tokens for p in parts) == counter.count_request(request).tokens


def test_memory_hints_show_apart_from_the_system_prompt():
    from kimi_core.hints import Remembered, block, inject

    path, body = BODIES["anthropic"]
    body = json.loads(json.dumps(body))
    import datetime
    inject("anthropic", body, block([Remembered(1, "constraint", "never touch the billing module", "",
                                                datetime.date(2026, 12, 2))]))
    request = parse_request("anthropic", body, path)
    counter = TokenCounter()
    parts, _ = composition(request, counter, body)
    assert sum(p.tokens for p in parts) == counter.count_request(request).tokens
    [hint] = [p for p in parts if p.kind == "hints"]
    assert 20 < hint.tokens < 80
