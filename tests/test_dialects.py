import json

import pytest

from kimi_core import dialects
from kimi_core.dialects.base import Usage
from kimi_core.errors import BodyError
from kimi_core.streams import SSEParser

OPENAI_CHAT = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "List files"},
                                      {"type": "image_url", "image_url": {"url": "data:..."}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "ls", "arguments": "{\"path\": \".\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a.py\nb.py"},
    ],
    "tools": [{"type": "function", "function": {"name": "ls", "description": "List", "parameters": {"type": "object"}}}],
    "max_completion_tokens": 500,
    "stream": True,
}

RESPONSES = {
    "model": "gpt-5",
    "instructions": "Be terse.",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "List files"}]},
        {"type": "function_call", "call_id": "fc_1", "name": "ls", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "fc_1", "output": "a.py"},
    ],
    "tools": [{"type": "function", "name": "ls", "description": "List", "parameters": {}}],
    "max_output_tokens": 300,
}

ANTHROPIC = {
    "model": "claude-sonnet-4-5",
    "system": [{"type": "text", "text": "Be terse."}],
    "messages": [
        {"role": "user", "content": "List files"},
        {"role": "assistant", "content": [{"type": "text", "text": "Sure."},
                                           {"type": "tool_use", "id": "tu_1", "name": "ls", "input": {"path": "."}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1",
                                      "content": [{"type": "text", "text": "a.py"}], "is_error": True}]},
    ],
    "tools": [{"name": "ls", "description": "List", "input_schema": {"type": "object"}}],
    "max_tokens": 1024,
    "stream": False,
}

GEMINI = {
    "systemInstruction": {"parts": [{"text": "Be terse."}]},
    "contents": [
        {"role": "user", "parts": [{"text": "List files"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "ls", "args": {"path": "."}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "ls", "response": {"files": ["a.py"]}}}]},
    ],
    "tools": [{"functionDeclarations": [{"name": "ls", "description": "List", "parameters": {}}]}],
    "generationConfig": {"maxOutputTokens": 256},
}


def test_openai_chat_request():
    r = dialects.parse_request("openai-chat", OPENAI_CHAT)
    assert (r.model, r.max_output_tokens, r.stream, r.history_key) == ("gpt-4o", 500, True, "messages")
    assert [m.role for m in r.messages] == ["system", "user", "assistant", "tool"]
    assert r.messages[1].text == "List files" and r.messages[1].images == 1
    assert r.messages[2].tool_calls[0].name == "ls"
    result = r.messages[3].tool_results[0]
    assert (result.name, result.content, result.locator) == ("ls", "a.py\nb.py", ("messages", 3, "content"))
    assert r.tools[0].name == "ls" and json.loads(r.tools[0].parameters) == {"type": "object"}


def test_openai_responses_request():
    r = dialects.parse_request("openai-responses", RESPONSES)
    assert (r.model, r.system, r.max_output_tokens, r.stream) == ("gpt-5", "Be terse.", 300, False)
    assert r.messages[0].text == "List files"
    assert r.messages[1].tool_calls[0].name == "ls"
    assert r.messages[2].tool_results[0].name == "ls"
    assert r.messages[2].tool_results[0].locator == ("input", 2, "output")
    assert dialects.parse_request("openai-responses", {"input": "hi"}).messages[0].text == "hi"


def test_anthropic_request():
    r = dialects.parse_request("anthropic", ANTHROPIC)
    assert (r.system, r.max_output_tokens, r.stream) == ("Be terse.", 1024, False)
    assert r.messages[1].text == "Sure." and r.messages[1].tool_calls[0].arguments == '{"path":"."}'
    result = r.messages[2].tool_results[0]
    assert (result.name, result.content, result.is_error) == ("ls", "a.py", True)
    assert result.locator == ("messages", 2, "content", 0, "content")


def test_gemini_request_takes_model_and_stream_from_path():
    r = dialects.parse_request("gemini", GEMINI, "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse")
    assert (r.model, r.stream, r.system, r.max_output_tokens) == ("gemini-2.5-pro", True, "Be terse.", 256)
    assert r.messages[1].role == "assistant" and r.messages[1].tool_calls[0].name == "ls"
    assert r.messages[2].role == "tool" and json.loads(r.messages[2].tool_results[0].content) == {"files": ["a.py"]}
    assert r.tools[0].name == "ls"


@pytest.mark.parametrize("dialect", ["openai-chat", "openai-responses", "anthropic", "gemini"])
@pytest.mark.parametrize("body", [
    {"messages": {"role": "user"}, "input": 5, "contents": "x"},
    {"messages": [None, 3, "x", {"role": 5, "content": 7, "tool_calls": None}],
     "input": [None, {"type": "function_call_output", "output": 5}],
     "contents": [{"parts": None}, {"parts": [None, {"functionResponse": 3}]}]},
    {"model": ["x"], "max_tokens": "10", "max_completion_tokens": True, "tools": {"a": 1}, "stream": "yes"},
])
def test_wrong_types_are_skipped_not_raised(dialect, body):
    r = dialects.parse_request(dialect, body)
    assert r.max_output_tokens is None and r.stream is False


@pytest.mark.parametrize("dialect", ["openai-chat", "openai-responses", "anthropic", "gemini"])
@pytest.mark.parametrize("body", [[], "text", 5, None])
def test_a_body_that_is_not_an_object_raises_body_error(dialect, body):
    with pytest.raises(BodyError, match="expected a JSON object"):
        dialects.parse_request(dialect, body)


@pytest.mark.parametrize("dialect,body,usage", [
    ("openai-chat", {"usage": {"prompt_tokens": 10, "completion_tokens": 2,
                               "prompt_tokens_details": {"cached_tokens": 4}}}, Usage(10, 2, 4)),
    ("openai-chat", {"usage": {"prompt_tokens": 10, "completion_tokens": 90,
                               "completion_tokens_details": {"reasoning_tokens": 64}}},
     Usage(10, 90, None, reasoning_tokens=64)),
    ("openai-chat", {"choices": []}, Usage(None, None, None)),
    ("openai-responses", {"usage": {"input_tokens": 10, "output_tokens": 2,
                                    "input_tokens_details": {"cached_tokens": 1},
                                    "output_tokens_details": {"reasoning_tokens": 1}}}, Usage(10, 2, 1, None, 1)),
    # Anthropic: total input is the sum of the three input fields.
    ("anthropic", {"usage": {"input_tokens": 5, "cache_creation_input_tokens": 100,
                             "cache_read_input_tokens": 1000, "output_tokens": 7}}, Usage(1105, 7, 1000, 100)),
    ("anthropic", {"usage": {"input_tokens": 5, "output_tokens": 7}}, Usage(5, 7, None)),
    ("gemini", {"usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 5,
                                  "thoughtsTokenCount": 20, "cachedContentTokenCount": 30}},
     Usage(50, 25, 30, reasoning_tokens=20)),
    ("bedrock-converse", {"usage": {"inputTokens": 5, "cacheReadInputTokens": 10, "cacheWriteInputTokens": 20,
                                    "outputTokens": 3}}, Usage(35, 3, 10, 20)),
])
def test_response_usage(dialect, body, usage):
    assert dialects.parse_response(dialect, body).usage == usage


@pytest.mark.parametrize("dialect,body,message", [
    ("openai-chat", {"error": {"message": "This model's maximum context length is 8192 tokens.",
                               "type": "invalid_request_error", "code": "context_length_exceeded"}},
     "This model's maximum context length is 8192 tokens."),
    ("anthropic", {"type": "error", "error": {"type": "invalid_request_error",
                                              "message": "prompt is too long: 200251 tokens > 200000 maximum"}},
     "prompt is too long: 200251 tokens > 200000 maximum"),
    ("gemini", {"error": {"code": 400, "message": "The input token count (3475108) exceeds", "status": "INVALID_ARGUMENT"}},
     "The input token count (3475108) exceeds"),
])
def test_error_bodies(dialect, body, message):
    assert dialects.parse_response(dialect, body).error == message


def read_stream(dialect, raw):
    reader = dialects.stream_reader(dialect)
    parser = SSEParser()
    for event, data in parser.feed(raw) + parser.close():
        reader.feed(event, data)
    return reader.finish()


def test_openai_chat_stream_takes_usage_from_the_include_usage_chunk():
    raw = (b'data: {"model":"gpt-4o","choices":[{"delta":{"content":"Hel"}}]}\n\n'
           b'data: {"model":"gpt-4o","choices":[{"delta":{"content":"lo"}}]}\n\n'
           b'data: {"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,'
           b'"prompt_tokens_details":{"cached_tokens":0}}}\n\n'
           b'data: [DONE]\n\n')
    reply = read_stream("openai-chat", raw)
    assert (reply.text, reply.model, reply.usage) == ("Hello", "gpt-4o", Usage(9, 2, 0))


def test_anthropic_stream_takes_input_from_start_and_last_output_from_delta():
    raw = (b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-x",'
           b'"usage":{"input_tokens":25,"cache_read_input_tokens":5,"output_tokens":1}}}\n\n'
           b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
           b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'
           b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":3}}\n\n'
           b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":15}}\n\n'
           b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    reply = read_stream("anthropic", raw)
    assert (reply.text, reply.model, reply.usage) == ("Hi", "claude-x", Usage(30, 15, 5))


def test_responses_stream_takes_usage_from_completed():
    raw = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Yo"}\n\n'
           b'event: response.completed\ndata: {"type":"response.completed","response":{"model":"gpt-5",'
           b'"usage":{"input_tokens":11,"output_tokens":1,"input_tokens_details":{"cached_tokens":0}}}}\n\n')
    reply = read_stream("openai-responses", raw)
    assert (reply.text, reply.usage) == ("Yo", Usage(11, 1, 0))


def test_gemini_stream_takes_the_last_usage():
    raw = (b'data: {"candidates":[{"content":{"parts":[{"text":"A"}]}}],"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":1}}\r\n\r\n'
           b'data: {"candidates":[{"content":{"parts":[{"text":"B"}]}}],"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":2}}\r\n\r\n')
    reply = read_stream("gemini", raw)
    assert (reply.text, reply.usage) == ("AB", Usage(7, 2, None))


def test_gemini_json_array_response():
    body = [{"candidates": [{"content": {"parts": [{"text": "A"}]}}]},
            {"candidates": [{"content": {"parts": [{"text": "B"}]}}], "usageMetadata": {"promptTokenCount": 4}}]
    reply = dialects.parse_response("gemini", body)
    assert (reply.text, reply.usage.prompt_tokens) == ("AB", 4)


def test_stream_error_event_is_kept():
    raw = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    assert read_stream("anthropic", raw).error == "Overloaded"


# -- every billed field counts ---------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"path": {"type": "string", "description": "the file to read, " * 20}}}


def tokens(dialect, body, path=""):
    from kimi_core.tokens import TokenCounter
    return TokenCounter().count_request(dialects.parse_request(dialect, body, path)).tokens


def schema_tokens():
    from kimi_core.tokens import counter_for
    return counter_for("cl100k_base")(json.dumps(SCHEMA, separators=(",", ":")))


@pytest.mark.parametrize("dialect,bare,extra", [
    # Gemini CLI: schemas as parametersJsonSchema
    ("gemini", {"contents": []}, {"tools": [{"functionDeclarations": [
        {"name": "read_file", "description": "Read.", "parametersJsonSchema": SCHEMA}]}]}),
    # Codex: a namespace of custom and function tools
    ("openai-responses", {"input": "hi"}, {"tools": [{"type": "namespace", "name": "functions", "description": "",
                                                       "tools": [{"type": "function", "name": "read_file",
                                                                  "parameters": SCHEMA}]}]}),
    # Codex over its WebSocket: tools declared in the input
    ("openai-responses", {"input": [{"type": "message", "role": "user", "content": "hi"}]},
     {"input": [{"type": "additional_tools", "role": "developer", "tools": [
         {"type": "namespace", "name": "functions", "tools": [{"type": "function", "name": "read_file",
                                                                "parameters": SCHEMA}]}]},
                {"type": "message", "role": "user", "content": "hi"}]}),
    ("openai-responses", {"input": "hi"}, {"tools": [{"type": "custom", "name": "exec", "description": "Run.",
                                                       "format": {"type": "grammar", "definition": json.dumps(SCHEMA)}}]}),
    ("openai-responses", {"input": "hi"}, {"tools": [{"type": "mcp", "server_label": "files",
                                                       "server_description": json.dumps(SCHEMA)}]}),
    # structured outputs
    ("openai-responses", {"input": "hi"}, {"text": {"format": {"type": "json_schema", "name": "out",
                                                                "schema": SCHEMA}}}),
    ("openai-chat", {"messages": []}, {"response_format": {"type": "json_schema",
                                                           "json_schema": {"name": "out", "schema": SCHEMA}}}),
    ("openai-chat", {"messages": []}, {"tools": [{"type": "custom", "custom": {"name": "exec",
                                                                               "format": SCHEMA}}]}),
    ("gemini", {"contents": []}, {"generationConfig": {"responseJsonSchema": SCHEMA}}),
    ("anthropic", {"messages": []}, {"output_format": {"type": "json_schema", "schema": SCHEMA}}),
    ("anthropic", {"messages": []}, {"tools": [{"name": "read_file", "input_schema": SCHEMA}]}),
    ("bedrock-converse", {"messages": []}, {"toolConfig": {"tools": [{"toolSpec": {
        "name": "read_file", "inputSchema": {"json": SCHEMA}}}]}}),
])
def test_every_billed_field_is_counted(dialect, bare, extra):
    assert tokens(dialect, {**bare, **extra}) - tokens(dialect, bare) >= schema_tokens()


def test_codex_custom_tool_outputs_are_tool_results():
    request = dialects.parse_request("openai-responses", {"input": [
        {"type": "custom_tool_call", "call_id": "c1", "name": "exec", "input": "ls -R"},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "a.py\nb.py"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Listing."}], "encrypted_content": "x" * 99},
        {"type": "compaction_summary", "encrypted_content": "y" * 99, "text": "what happened so far"}]})
    [result] = request.messages[1].tool_results
    assert (result.name, result.content, result.locator) == ("exec", "a.py\nb.py", ("input", 1, "output"))
    assert request.messages[2].text == "Listing." and "x" * 99 not in request.messages[2].text
    assert "what happened so far" in request.messages[3].text and "y" * 99 not in request.messages[3].text


@pytest.mark.parametrize("dialect,image", [
    ("openai-chat", {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}}),
    ("anthropic", {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}),
])
def test_images_cost_what_the_provider_charges(dialect, image):
    with_image = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what is this"}, image]}]}
    without = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what is this"}]}]}
    expected = 765 if dialect == "openai-chat" else 1398  # a 1024x1024 image, by each formula
    assert tokens(dialect, with_image) - tokens(dialect, without) == expected


@pytest.mark.parametrize("dialect,body,asks", [
    ("openai-chat", {"id": "chatcmpl-1", "choices": [{"finish_reason": "tool_calls", "message": {
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]}, True),
    ("openai-chat", {"id": "chatcmpl-1", "choices": [{"finish_reason": "stop", "message": {"content": "hi"}}]}, False),
    ("openai-responses", {"id": "resp_1", "output": [{"type": "function_call", "name": "shell"}]}, True),
    ("openai-responses", {"id": "resp_1", "output": [{"type": "web_search_call"}, {"type": "message"}]}, False),
    ("anthropic", {"id": "msg_1", "stop_reason": "tool_use", "content": [{"type": "tool_use", "name": "Task"}]}, True),
    ("anthropic", {"id": "msg_1", "stop_reason": "end_turn", "content": [{"type": "text", "text": "hi"}]}, False),
    ("gemini", {"responseId": "r1", "candidates": [{"content": {"parts": [{"functionCall": {"name": "ls"}}]}}]}, True),
    ("bedrock-converse", {"stopReason": "tool_use", "output": {"message": {"content": []}}}, True),
])
def test_an_answer_says_whether_it_asks_for_a_tool_and_its_id(dialect, body, asks):
    reply = dialects.parse_response(dialect, body)
    assert reply.tool_calls is asks
    assert reply.id == {"openai-chat": "chatcmpl-1", "openai-responses": "resp_1", "anthropic": "msg_1",
                        "gemini": "r1", "bedrock-converse": None}[dialect]


def test_a_stream_says_it_asks_for_a_tool():
    from kimi_core.dialects import anthropic, openai_chat, openai_responses
    reader = anthropic.StreamReader()
    reader.feed_payload("message_start", {"message": {"id": "msg_9", "usage": {"input_tokens": 3}}})
    reader.feed_payload("content_block_start", {"content_block": {"type": "tool_use", "name": "Task"}})
    assert reader.reply.tool_calls and reader.reply.id == "msg_9"
    chat = openai_chat.StreamReader()
    chat.feed_payload(None, {"id": "c1", "choices": [{"delta": {"content": "hi"}}]})
    assert not chat.reply.tool_calls
    chat.feed_payload(None, {"id": "c1", "choices": [{"delta": {"tool_calls": [{"index": 0}]}}]})
    assert chat.reply.tool_calls and chat.reply.id == "c1"
    responses = openai_responses.StreamReader()
    responses.feed_payload("response.output_item.added", {"item": {"type": "function_call"}})
    responses.feed_payload("response.completed", {"response": {"id": "resp_2", "output": []}})
    assert responses.reply.tool_calls and responses.reply.id == "resp_2"
