import json

import pytest

from kimi_core.analysis import analyse
from kimi_core.compaction import Compactor, Query, sha256
from kimi_core.jsonspans import locate
from kimi_core.tokens import TokenCounter
from kimi_core.toolresults import Plan

counter = TokenCounter()
GEMINI_PATH = "/v1beta/models/gemini-2.5-pro:generateContent"


def listing(n, tag="", needle_at=None):
    lines = [f"drwxr-xr-x 2 dev dev 4096 Nov 21 src/{tag}pkg_{i:05d}/module_{i}.py" for i in range(n)]
    if needle_at is not None:
        lines[needle_at] = "-rw------- 1 dev dev 812 Nov 21 config/kimi_secret_settings.toml"
    return "\n".join(lines)


BIG = listing(1500, needle_at=700)  # about 30,000 tokens
SMALL = "total 8\nREADME.md\nsetup.py"


def chat(*results, user="where is the settings toml file?"):
    messages = [{"role": "user", "content": user}]
    for n, content in enumerate(results):
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"c{n}", "type": "function", "function": {"name": "ls", "arguments": '{"path": "/srv"}'}}]})
        messages.append({"role": "tool", "tool_call_id": f"c{n}", "content": content})
    return {"model": "gpt-4.1", "messages": messages, "temperature": 0.20, "x_unknown": {"kept": [1, 2]}}


def anthropic(content):
    return {"model": "claude-sonnet-4-5", "max_tokens": 1000, "messages": [
        {"role": "user", "content": "where is the settings toml file?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ls", "input": {"p": "/"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": content}]},
    ]}


def responses(output):
    return {"model": "gpt-4.1", "input": [
        {"type": "message", "role": "user", "content": "where is the settings toml file?"},
        {"type": "function_call", "call_id": "c1", "name": "ls", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": output},
    ]}


def gemini(response):
    return {"contents": [
        {"role": "user", "parts": [{"text": "where is the settings toml file?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "ls", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "ls", "response": response}}]},
    ], "generationConfig": {"temperature": 0.5}}


def plan(raw: bytes, dialect: str, compactor=None) -> Plan:
    a = analyse(raw, "", dialect, GEMINI_PATH, counter, 1 << 30)
    assert a.error is None
    return Plan(a.text, a.parsed, a.body, a.request, compactor or Compactor(), a.count.encoding)


def compacted(raw: bytes, dialect: str, budget: int = 2000):
    p = plan(raw, dialect)
    p.over_budget(budget)
    return p.apply()


def follow(value, path):
    for step in path:
        value = value[step]
    return value


@pytest.mark.parametrize("dialect, body, path", [
    ("openai-chat", chat(BIG), ("messages", 2, "content")),
    ("anthropic", anthropic(BIG), ("messages", 2, "content", 0, "content")),
    ("anthropic", anthropic([{"type": "text", "text": BIG}]), ("messages", 2, "content", 0, "content", 0, "text")),
    ("openai-responses", responses(BIG), ("input", 2, "output")),
    ("openai-responses", responses([{"type": "input_text", "text": BIG}]), ("input", 2, "output", 0, "text")),
    ("gemini", gemini({"output": BIG, "exit": 0}),
     ("contents", 2, "parts", 0, "functionResponse", "response", "output")),
])
@pytest.mark.parametrize("dumps", [
    lambda b: json.dumps(b),
    lambda b: json.dumps(b, indent=2, ensure_ascii=False),
    lambda b: json.dumps(b, separators=(",", ":")),
])
def test_only_the_oversized_result_changes_in_every_dialect(dialect, body, path, dumps):
    text = dumps(body)
    done = compacted(text.encode(), dialect)
    assert done is not None and len(done.done) == 1
    kept = follow(json.loads(done.text), path)
    assert counter.count_text(kept) <= 2000 and "kimi_secret_settings.toml" in kept
    # Every byte around the value is as the client sent it.
    a, b = locate(text, 0, path)
    c, d = locate(done.text, 0, path)
    assert text[:a] == done.text[:c] and text[b:] == done.text[d:]
    assert done.done[0].original == BIG and done.done[0].compacted.sha256 == sha256(BIG)


def test_results_under_budget_and_everything_else_stay_byte_identical():
    raw = json.dumps(chat(SMALL, BIG, SMALL), indent=1).encode()
    done = compacted(raw, "openai-chat")
    new = json.loads(done.text)
    assert [m.get("content") for m in new["messages"][2::2]] != [SMALL, BIG, SMALL]
    assert new["messages"][2]["content"] == SMALL and new["messages"][6]["content"] == SMALL
    assert len(done.done) == 1
    assert compacted(json.dumps(chat(SMALL)).encode(), "openai-chat") is None


def test_a_list_of_blocks_keeps_its_images_and_the_cache_control():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    content = [{"type": "text", "text": BIG[:20000]}, image,
               {"type": "text", "text": BIG[20000:], "cache_control": {"type": "ephemeral"}}]
    done = compacted(json.dumps(anthropic(content)).encode(), "anthropic")
    blocks = json.loads(done.text)["messages"][2]["content"][0]["content"]
    assert blocks[0] == image
    assert blocks[1]["cache_control"] == {"type": "ephemeral"} and blocks[1]["type"] == "text"
    assert done.done[0].original == BIG[:20000] + "\n" + BIG[20000:]


def test_a_structured_gemini_response_becomes_output_text():
    rows = [{"id": i, "path": f"src/pkg_{i:05d}/module_{i}.py", "size": i * 37} for i in range(3000)]
    rows[1234]["path"] = "config/kimi_secret_settings.toml"
    done = compacted(json.dumps(gemini({"rows": rows})).encode(), "gemini")
    response = json.loads(done.text)["contents"][2]["parts"][0]["functionResponse"]["response"]
    assert list(response) == ["output"] and "kimi_secret_settings.toml" in response["output"]
    assert json.loads(done.done[0].original) == {"rows": rows}  # archived as sent


def test_non_ascii_and_escapes_survive_as_the_client_wrote_them():
    text = BIG.replace("module", "modulé") + "\nfin: 😀 \u2028"
    for ensure_ascii in (True, False):
        raw = json.dumps(chat(text), ensure_ascii=ensure_ascii).encode()
        done = compacted(raw, "openai-chat")
        a, b = locate(done.text, 0, ("messages", 2, "content"))
        assert done.text[a:b].isascii() == ensure_ascii
        assert "modulé" in json.loads(done.text)["messages"][2]["content"]
    lone = "\ud800 error here\n" + BIG  # valid JSON (escaped), not valid UTF-8 unescaped
    done = compacted(json.dumps(chat(lone)).encode(), "openai-chat")
    assert json.loads(done.text.encode("utf-8"))["messages"][2]["content"].startswith("\ud800 error")


def test_the_query_is_what_was_asked_when_the_tool_ran_so_later_turns_do_not_change_it():
    first = chat(BIG)
    later = chat(BIG)
    later["messages"] += [{"role": "assistant", "content": "Found it."},
                          {"role": "user", "content": "now show me module_1234 please"}]
    p1, p2 = plan(json.dumps(first).encode(), "openai-chat"), plan(json.dumps(later).encode(), "openai-chat")
    assert p1.found[0].query == p2.found[0].query
    assert p2.found[0].query == Query("where is the settings toml file?", '{"path": "/srv"}')
    a, b = compacted(json.dumps(first).encode(), "openai-chat"), compacted(json.dumps(later).encode(), "openai-chat")
    assert json.loads(a.text)["messages"][2] == json.loads(b.text)["messages"][2]
    assert b.text.startswith(a.text[:a.text.index('], "temperature"')])  # the rewritten prefix is stable


def test_rescue_compacts_oldest_first_and_keeps_the_most_recent():
    results = [listing(400, tag=f"r{n}_") for n in range(6)]  # about 10,000 tokens each
    each = counter.count_text(results[0])
    p = plan(json.dumps(chat(*results)).encode(), "openai-chat")
    p.over_budget(50_000)
    assert p.budgets == {}
    saved = p.rescue(need=each * 3 // 2, budget=500)
    assert sorted(p.budgets) == [0, 1] and each * 3 // 2 <= saved < 2 * each
    p.rescue(need=10**9, budget=500)
    assert sorted(p.budgets) == [0, 1, 2]  # the three most recent stay intact
    new = json.loads(p.apply().text)
    contents = [m["content"] for m in new["messages"] if m["role"] == "tool"]
    assert contents[3:] == results[3:] and all(counter.count_text(c) <= 500 for c in contents[:3])


def test_a_cached_compaction_is_reused():
    compactor = Compactor()
    raw = json.dumps(chat(BIG)).encode()
    for _ in range(2):
        p = plan(raw, "openai-chat", compactor)
        p.over_budget(2000)
        p.apply()
    assert compactor.hits >= 1


def test_a_bedrock_converse_tool_result_is_compacted_in_its_text_block():
    import json as _json

    from kimi_core.analysis import analyse
    from kimi_core.compaction import Compactor
    from kimi_core.providers import Route
    from kimi_core.tokens import TokenCounter
    from kimi_core.toolresults import Plan
    listing = "\n".join(f"src/pkg_{i:05d}/mod_{i:05d}.py" for i in range(3000))
    body = {"messages": [
        {"role": "user", "content": [{"text": "where is mod_01234?"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "ls", "input": {}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": listing}]}}]}],
        "inferenceConfig": {"maxTokens": 50}}
    a = analyse(_json.dumps(body).encode(), "", Route("bedrock-converse", "amazon.nova-pro-v1:0"), "/model/x/converse",
                TokenCounter(), 10**8)
    plan = Plan(a.text, a.parsed, a.body, a.request, Compactor(), a.count.encoding)
    plan.over_budget(1000)
    sent = _json.loads(plan.apply().text)
    block = sent["messages"][2]["content"][0]["toolResult"]["content"][0]
    assert list(block) == ["text"] and len(block["text"]) < len(listing) // 10 and "kimi-proxy restore" in block["text"]
    assert sent["messages"][:2] == body["messages"][:2] and sent["inferenceConfig"] == {"maxTokens": 50}
