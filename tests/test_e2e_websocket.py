"""The Responses API over a WebSocket (Codex's default transport): the openai SDK's
``responses.connect()`` through a real mitmdump with Kimi to the fake provider."""

import json
import uuid

import pytest
from conftest import wait_rows
from test_e2e import openai_client, trust
from test_e2e_guard import config_file, words

from kimi_core.testing.proxy import Mitmdump

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def guarded(fake, tmp_path_factory):
    options = {"kimi_config": str(config_file(tmp_path_factory)), "kimi_tool_budget": "1000"}
    with Mitmdump(tmp_path_factory.mktemp("ws"), upstream_port=fake.port, options=options) as running:
        yield running


def connect(proxy, **headers):
    return openai_client(proxy).responses.connect(
        extra_headers=headers, websocket_connection_options={"proxy": proxy.url, "ssl": trust(proxy)})


def answer(connection):
    """The events of one answer, up to the one that ends it."""
    events = []
    for event in connection:
        events.append(event)
        if event.type in ("response.completed", "response.failed", "response.incomplete", "error"):
            return events
    raise AssertionError(f"the socket closed after {[e.type for e in events]}")


def tag():
    return f"ws-{uuid.uuid4().hex[:10]}"


def test_each_response_create_is_a_call_with_its_usage(guarded, fake):
    first, second = tag(), tag()
    with connect(guarded) as connection:
        connection.response.create(model=first, input="Say hello.", instructions="Be terse.")
        events = answer(connection)
        connection.response.create(model=second, input=[
            {"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "piece 0"},
            {"role": "user", "content": "Again."}])
        again = answer(connection)
    assert events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == \
        "piece 0 piece 1 piece 2 piece 3 piece 4 "
    usage = events[-1].response.usage
    [row] = wait_rows(guarded.db, "model = ?", (first,))
    assert (row["provider"], row["dialect"], row["transport"], row["method"], row["path"], row["streamed"]) == \
        ("openai", "openai-responses", "websocket", "POST", "/v1/responses", 1)
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == \
        (usage.input_tokens, usage.output_tokens, 3)
    assert row["prompt_tokens_est"] > 0 and row["action"] == "passed" and row["error"] is None
    assert row["status_code"] == 200 and row["duration_ms"] >= row["ttfb_ms"] > 0
    [row2] = wait_rows(guarded.db, "model = ?", (second,))
    assert row2["messages"] == 3 and row2["id"] != row["id"] and again[-1].type == "response.completed"
    # The upgrade itself is no LLM call: kept apart, as other calls are.
    upgrades = wait_rows(guarded.db, "dialect IS NULL AND status_code = 101")
    assert upgrades and all(u["path"] == "/v1/responses" and u["transport"] == "http" for u in upgrades)
    # The provider received each message as the client sent it.
    sent = [r for r in fake.seen if r.get("transport") == "websocket" and first.encode() in r["body"]]
    assert len(sent) == 1 and json.loads(sent[0]["body"])["type"] == "response.create"


def test_an_overflow_is_refused_on_the_socket_as_the_provider_does(guarded, fake):
    model = f"small-{uuid.uuid4().hex[:8]}"  # a 2,000-token window
    with connect(guarded) as connection:
        connection.response.create(model=model, input=words(2500))
        events = answer(connection)
        # The socket stays usable: the next call, small enough, goes through.
        connection.response.create(model=model, input="Say hello.")
        after = answer(connection)
    assert [e.type for e in events] == ["response.created", "response.failed"]
    error = events[-1].response.error
    assert error.code == "context_length_exceeded"
    assert error.message.startswith("Your input exceeds the context window of this model.")
    assert "Kimi Proxy refused this request" in error.message
    assert not [r for r in fake.seen if model.encode() in r["body"] and b"lorem" in r["body"]]
    assert after[-1].type == "response.completed"
    rows = wait_rows(guarded.db, "model = ?", (model,), count=2)
    assert [(r["action"], r["transport"]) for r in rows] == [("rejected", "websocket"), ("passed", "websocket")]


def test_an_oversized_tool_result_is_compacted_in_the_message(guarded, fake):
    model = tag()
    listing = "\n".join(f"src/module_{i:05d}/file_{i:05d}.py  {i * 37} bytes" for i in range(4000))
    with connect(guarded) as connection:
        connection.response.create(model=model, input=[
            {"role": "user", "content": "Which file is module_01234?"},
            {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": '{"cmd": "ls -R"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": listing}])
        assert answer(connection)[-1].type == "response.completed"
    [sent] = [r for r in fake.seen if model.encode() in r["body"]]
    output = json.loads(sent["body"])["input"][2]["output"]
    assert len(output) < len(listing) // 5 and "kimi-proxy restore" in output
    [row] = wait_rows(guarded.db, "model = ?", (model,))
    assert (row["action"], row["compacted_results"], row["transport"]) == ("compacted", 1, "websocket")


def test_a_socket_closed_mid_answer_records_the_cut(guarded, fake):
    model = tag()
    with connect(guarded, **{"X-Fake-Chunks": "4000"}) as connection:
        connection.response.create(model=model, input="Tell me a long story.")
        next(iter(connection))  # the first event, then the client leaves
    [row] = wait_rows(guarded.db, "model = ?", (model,))
    assert row["transport"] == "websocket" and row["error"] and "WebSocket closed" in row["error"]


def test_a_message_kimi_cannot_read_goes_on_byte_for_byte(guarded, fake):
    model = tag()
    bad = '{"type": "response.create", "model": "' + model + '", "input": [{"role": "user", "content": "cut'
    with connect(guarded) as connection:
        connection._connection.send(bad)  # what a buggy client might send: JSON cut short
        connection.response.create(model=model, input="Say hello.")
        assert answer(connection)[-1].type == "response.completed"
    sent = [r["body"] for r in fake.seen if model.encode() in r["body"]]
    assert sent[0] == bad.encode()  # untouched
    rows = wait_rows(guarded.db, "model = ? OR (error LIKE '%not JSON%' AND transport = 'websocket')", (model,),
                     count=2)
    assert any("request body is not JSON" in (r["error"] or "") for r in rows)
    assert any(r["model"] == model and r["action"] == "passed" and r["prompt_tokens"] for r in rows)
