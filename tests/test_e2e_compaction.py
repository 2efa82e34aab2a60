"""Tool-result compaction end to end: a real mitmdump with Kimi, the fake provider, the official SDKs."""

import json
import re
import sqlite3
import subprocess
import sys
import uuid

import pytest
from conftest import wait_rows
from test_e2e import GEMINI_KEY, anthropic_client, http_client, openai_client

from kimi_core.jsonspans import locate
from kimi_core.testing.proxy import Mitmdump
from kimi_core.tokens import TokenCounter

pytestmark = pytest.mark.e2e

BUDGET = 3000
counter = TokenCounter()


@pytest.fixture(scope="module")
def compacting(fake, tmp_path_factory):
    config = tmp_path_factory.mktemp("compaction-config") / "config.toml"
    config.write_text('[models."rescue"]\ncontext_window = 20000\n')
    options = {"kimi_config": str(config), "kimi_tool_budget": str(BUDGET)}
    with Mitmdump(tmp_path_factory.mktemp("compaction"), upstream_port=fake.port, options=options) as running:
        yield running


def tool_output(lines=1200, needle="", tag="r"):
    """A directory listing of about 25 tokens a line, with a needle in the middle."""
    out = [f"-rw-r--r-- 1 dev dev {4000 + i} Nov 21 10:{i % 60:02d} src/{tag}/pkg_{i:05d}/module_{i}.py"
           for i in range(lines)]
    if needle:
        out[lines // 2] = f"-rw------- 1 dev dev 812 Nov 21 10:00 config/{needle}.toml"
    return "\n".join(out)


def upstream(fake, tag):
    [seen] = [r for r in fake.seen if tag.encode() in r["body"] or tag.encode() in r["path"].encode()]
    return seen["body"].decode()


def restore(proxy, digest):
    return subprocess.run([sys.executable, "-m", "kimi_core.cli", "--db", str(proxy.db), "restore", digest],
                          capture_output=True, check=True).stdout


def check_compacted(proxy, fake, tag, path, original, sent_body):
    """The provider got the body with that one value compacted; row, archive and restore agree."""
    body = upstream(fake, tag)
    a, b = locate(body, 0, path)
    kept = json.loads(body[a:b])
    kept_text = kept if isinstance(kept, str) else json.dumps(kept)
    assert counter.count_text(kept_text) <= BUDGET and "needle_settings" in kept_text
    # Everything else is what the client sent.
    sent = json.loads(body[:a] + json.dumps(original) + body[b:])
    assert sent == sent_body
    [row] = wait_rows(proxy.db, "model = ? OR path LIKE ?", (tag, f"%{tag}%"))
    assert row["action"] == "compacted" and row["compacted_results"] == 1 and row["status_code"] == 200
    assert row["tokens_before"] > 20_000 > BUDGET * 1.5 > row["tokens_after"] == row["prompt_tokens_est"]
    digest = re.search(r"kimi-proxy restore ([0-9a-f]{12})", kept_text).group(1)
    assert restore(proxy, digest) == (original if isinstance(original, str) else json.dumps(original)).encode()
    db = sqlite3.connect(proxy.db)
    assert db.execute("SELECT request_id, tool_name, original_tokens > kept_tokens FROM archives "
                      "WHERE sha256 LIKE ? || '%'", (digest,)).fetchone() == (row["id"], "list_files", 1)
    assert "compacted 1 tool result" in proxy.log()
    return row, body


def tool_call(n=0, args='{"path": "/srv"}'):
    return {"id": f"call_{n}", "type": "function", "function": {"name": "list_files", "arguments": args}}


@pytest.mark.parametrize("stream", [False, True])
def test_openai_chat_tool_message(compacting, fake, stream):
    tag = f"gpt-4.1-{uuid.uuid4().hex[:8]}"
    original = tool_output(needle="needle_settings", tag=tag)
    messages = [{"role": "user", "content": "Where are the needle settings?"},
                {"role": "assistant", "content": None, "tool_calls": [tool_call()]},
                {"role": "tool", "tool_call_id": "call_0", "content": original}]
    response = openai_client(compacting).chat.completions.create(model=tag, messages=messages, stream=stream)
    if stream:
        assert "".join(c.choices[0].delta.content or "" for c in response if c.choices)
    else:
        assert response.choices[0].message.content == "Hello from the fake provider."
    sent = {"model": tag, "messages": messages, "stream": stream}
    check_compacted(compacting, fake, tag, ("messages", 2, "content"), original, sent)


def test_anthropic_tool_result_blocks(compacting, fake):
    tag = f"claude-sonnet-4-5-{uuid.uuid4().hex[:8]}"
    original = tool_output(needle="needle_settings", tag=tag)
    messages = [
        {"role": "user", "content": "Where are the needle settings?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "list_files",
                                           "input": {"path": "/srv"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1",
                                      "content": [{"type": "text", "text": original}]}]},
    ]
    reply = anthropic_client(compacting).messages.create(model=tag, max_tokens=100, messages=messages)
    assert reply.content[0].text
    check_compacted(compacting, fake, tag, ("messages", 2, "content", 0, "content", 0, "text"), original,
                    {"model": tag, "max_tokens": 100, "messages": messages})


def test_openai_responses_function_call_output(compacting, fake):
    tag = f"gpt-4.1-{uuid.uuid4().hex[:8]}"
    original = tool_output(needle="needle_settings", tag=tag)
    items = [{"type": "message", "role": "user", "content": "Where are the needle settings?"},
             {"type": "function_call", "call_id": "call_0", "name": "list_files", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "call_0", "output": original}]
    list(openai_client(compacting).responses.create(model=tag, input=items, stream=True))
    check_compacted(compacting, fake, tag, ("input", 2, "output"), original,
                    {"model": tag, "input": items, "stream": True})


def test_gemini_function_response(compacting, fake):
    tag = f"gemini-2.5-pro-{uuid.uuid4().hex[:8]}"
    original = tool_output(needle="needle_settings", tag=tag)
    body = {"contents": [
        {"role": "user", "parts": [{"text": "Where are the needle settings?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "list_files", "args": {"path": "/srv"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "list_files", "response": {"output": original}}}]},
    ]}
    url = f"https://generativelanguage.googleapis.com/v1beta/models/{tag}:generateContent?key={GEMINI_KEY}"
    with http_client(compacting) as client:
        assert client.post(url, json=body).status_code == 200
    check_compacted(compacting, fake, tag,
                    ("contents", 2, "parts", 0, "functionResponse", "response", "output"), original, body)


def test_a_result_resent_on_later_turns_is_compacted_to_the_same_bytes(compacting, fake):
    tag = f"gpt-4.1-{uuid.uuid4().hex[:8]}"
    messages = [{"role": "user", "content": "Where are the needle settings?"},
                {"role": "assistant", "content": None, "tool_calls": [tool_call()]},
                {"role": "tool", "tool_call_id": "call_0", "content": tool_output(needle="needle_settings")}]
    client = openai_client(compacting)
    bodies = []
    for turn in range(3):
        client.chat.completions.create(model=tag, messages=messages)
        bodies.append([r["body"] for r in fake.seen if tag.encode() in r["body"]][-1])
        messages = messages + [{"role": "assistant", "content": f"Answer {turn}."},
                               {"role": "user", "content": f"And what about module_{turn * 100}?"}]
    kept = [json.loads(b)["messages"][2]["content"] for b in bodies]
    assert kept[0] == kept[1] == kept[2] and "needle_settings" in kept[0]
    # The provider's prompt cache sees the same prefix every turn.
    assert bodies[1].startswith(bodies[0][:bodies[0].rindex(b"]")]) and bodies[2].startswith(bodies[1][:-60])
    assert len(wait_rows(compacting.db, "model = ? AND action = 'compacted'", (tag,), count=3)) == 3


def test_small_results_pass_byte_for_byte(compacting, fake):
    tag = f"gpt-4.1-{uuid.uuid4().hex[:8]}"
    output = tool_output(lines=80)
    assert 2000 < counter.count_text(output) < BUDGET
    messages = [{"role": "user", "content": "ls"},
                {"role": "assistant", "content": None, "tool_calls": [tool_call()]},
                {"role": "tool", "tool_call_id": "call_0", "content": output}]
    with http_client(compacting) as client:
        raw = json.dumps({"model": tag, "messages": messages}, indent=3).encode()
        client.post("https://api.openai.com/v1/chat/completions", content=raw,
                    headers={"authorization": "Bearer sk-test", "content-type": "application/json"})
    assert upstream(fake, tag).encode() == raw
    [row] = wait_rows(compacting.db, "model = ?", (tag,))
    assert row["action"] == "passed" and row["tokens_before"] is None


def test_the_guard_compacts_older_results_rather_than_refuse(compacting, fake):
    tag = f"rescue-{uuid.uuid4().hex[:8]}"
    results = [tool_output(lines=68, tag=f"{tag}-{n}") for n in range(8)]  # 2,600-2,900 tokens each
    tokens = [counter.count_text(r) for r in results]
    assert max(tokens) < BUDGET and sum(tokens) > 0.95 * 20_000  # none over budget, all together too many
    messages = [{"role": "user", "content": "Survey the eight trees."}]
    for n, result in enumerate(results):
        messages += [{"role": "assistant", "content": None, "tool_calls": [tool_call(n)]},
                     {"role": "tool", "tool_call_id": f"call_{n}", "content": result}]
    reply = openai_client(compacting).chat.completions.create(model=tag, messages=messages)
    assert reply.choices[0].message.content == "Hello from the fake provider."
    sent = [m["content"] for m in json.loads(upstream(fake, tag))["messages"] if m["role"] == "tool"]
    assert sent[-3:] == results[-3:]  # the most recent stay intact
    assert sent[0] != results[0] and "kimi-proxy restore" in sent[0]
    [row] = wait_rows(compacting.db, "model = ?", (tag,))
    assert row["action"] == "compacted" and row["window_share"] < 0.75
    assert row["tokens_before"] / 20_000 > 0.95
    db = sqlite3.connect(compacting.db)
    assert [k for (k,) in db.execute("SELECT kind FROM alerts WHERE request_id = ?", (row["id"],))] == ["rescued"]


def test_what_compaction_cannot_save_is_still_refused(compacting, fake):
    tag = f"rescue-{uuid.uuid4().hex[:8]}"
    messages = [{"role": "user", "content": "lorem ipsum dolor sit amet " * 7000},
                {"role": "assistant", "content": None, "tool_calls": [tool_call()]},
                {"role": "tool", "tool_call_id": "call_0", "content": tool_output(lines=100)}]
    with pytest.raises(Exception, match="refused this request before it reached the provider"):
        openai_client(compacting).chat.completions.create(model=tag, messages=messages)
    assert not [r for r in fake.seen if tag.encode() in r["body"]]
    [row] = wait_rows(compacting.db, "model = ?", (tag,))
    assert row["action"] == "rejected"
