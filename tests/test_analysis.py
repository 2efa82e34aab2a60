import json
import sqlite3

import lz4.frame
import pytest

from kimi_core.analysis import Recent, analyse
from kimi_core.store import RequestRecord, Store, load_request_body
from kimi_core.tokens import TokenCounter

LIMIT = 32 * 1024 * 1024


def body_of(n, extra=""):
    return {"model": "gpt-4", "messages": [{"role": "user", "content": f"message {i} {extra}"} for i in range(n)]}


def run(body, counter=None, raw=None):
    raw = raw if raw is not None else json.dumps(body).encode()
    return analyse(raw, "", "openai-chat", "/v1/chat/completions", counter or TokenCounter(), LIMIT)


def test_history_items_get_spans_and_digests():
    raw = b'{"model": "gpt-4",  "messages": [ {"role": "user", "content": "hi"} ,{"role":"user","content":"yo"}]}'
    result = run(None, raw=raw)
    assert result.body == json.loads(raw) and result.error is None
    text = result.text
    assert [text[a:b] for a, b in result.items] == ['{"role": "user", "content": "hi"}', '{"role":"user","content":"yo"}']
    assert len(set(result.digests)) == 2


def test_other_encodings_still_parse_without_spans():
    raw = json.dumps(body_of(2)).encode("utf-16")
    result = run(None, raw=raw)
    assert result.body == body_of(2) and result.items is None and result.count.tokens > 0


def test_a_resent_history_is_counted_only_for_new_messages():
    counter = TokenCounter()
    run(body_of(50), counter)
    misses = counter.misses
    again = run(body_of(52), counter)
    assert counter.misses == misses + 2
    assert again.count == TokenCounter().count_request(again.request)  # same count as from scratch


def test_items_are_stored_as_sent_and_the_body_rebuilds(tmp_path):
    raw = b'{"model": "gpt-4", "messages": [{"role": "user",   "content": "spaced  out"}], "api_key": "sk-proj-abcdefghijklmnopqrstuv"}'
    result = run(None, raw=raw)
    store = Store(tmp_path / "kimi.db")
    store.open()
    store.start()
    store.submit(RequestRecord({"id": "r1", "ts": "t", "dialect": "openai-chat"}, result.body, "messages",
                               text=result.text, history=result.history, items=result.items, digests=result.digests))
    store.close()
    db = sqlite3.connect(tmp_path / "kimi.db")
    blobs = [lz4.frame.decompress(d) for (d,) in db.execute("SELECT data FROM blobs")]
    assert b'{"role": "user",   "content": "spaced  out"}' in blobs
    assert not any(b"sk-proj-abcdefghijklmnopqrstuv" in b for b in blobs)
    assert load_request_body(db, "r1") == {**json.loads(raw), "api_key": "[REDACTED]"}


def agent_turns(dialect, turns):
    """Bodies of a growing agent conversation in ``dialect``, tool calls and results included."""
    history, bodies = [], []
    for t in range(turns):
        if dialect == "anthropic":
            history.append({"role": "user", "content": f"do step {t}"})
            history.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"tu{t}", "name": f"tool{t}", "input": {}}]})
            history.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"tu{t}", "content": f"out {t}"}]})
            bodies.append({"model": "claude-x", "max_tokens": 100, "system": "sys", "messages": list(history)})
        else:
            history.append({"role": "user", "content": f"do step {t}"})
            history.append({"role": "assistant", "tool_calls": [{"id": f"c{t}", "function": {"name": f"tool{t}", "arguments": "{}"}}]})
            history.append({"role": "tool", "tool_call_id": f"c{t}", "content": f"out {t}"})
            bodies.append({"model": "gpt-4", "messages": list(history), "tools": [{"type": "function", "function": {"name": "x"}}]})
    return [json.dumps(b).encode() for b in bodies]


@pytest.mark.parametrize("dialect,path", [("openai-chat", "/v1/chat/completions"), ("anthropic", "/v1/messages")])
def test_resuming_from_the_previous_turn_gives_what_a_fresh_analysis_gives(dialect, path):
    recent, counter = Recent(), TokenCounter()
    for raw in agent_turns(dialect, 12):
        resumed = analyse(raw, "", dialect, path, counter, LIMIT, recent)
        fresh = analyse(raw, "", dialect, path, TokenCounter(), LIMIT)
        assert resumed.body == fresh.body == json.loads(raw)
        assert resumed.request == fresh.request
        assert resumed.count.tokens == fresh.count.tokens
        assert resumed.digests == fresh.digests and resumed.items == fresh.items
    assert resumed.reused == 33  # the previous turn's 11 x 3 items
    assert resumed.request.messages[-1].tool_results[0].name == "tool11"


def test_a_body_that_does_not_extend_a_recent_one_is_parsed_whole():
    recent = Recent()
    a = analyse(json.dumps(body_of(5)).encode(), "", "openai-chat", "/", TokenCounter(), LIMIT, recent)
    b = analyse(json.dumps(body_of(6, extra="changed")).encode(), "", "openai-chat", "/", TokenCounter(), LIMIT, recent)
    assert (a.reused, b.reused, b.prior_seq) == (0, 0, None)
    assert b.body == body_of(6, extra="changed")


def test_recent_keeps_one_entry_per_conversation_and_stays_bounded():
    recent = Recent(size=3)
    for conversation in range(5):
        for turn in range(1, 4):
            analyse(json.dumps(body_of(turn, extra=str(conversation))).encode(), "", "openai-chat", "/",
                    TokenCounter(), LIMIT, recent)
    assert len(recent._recent) == 3


def test_a_resumed_conversation_is_stored_whole_and_once(tmp_path):
    recent, counter = Recent(), TokenCounter()
    store = Store(tmp_path / "kimi.db")
    store.open()
    store.start()
    bodies = agent_turns("openai-chat", 10)
    for i, raw in enumerate(bodies):
        r = analyse(raw, "", "openai-chat", "/v1/chat/completions", counter, LIMIT, recent)
        store.submit(RequestRecord({"id": f"r{i}", "ts": f"t{i:02d}", "dialect": "openai-chat"}, r.body, "messages",
                                   text=r.text, history=r.history, items=r.items, digests=r.digests,
                                   seq=r.seq, prior_seq=r.prior_seq, reused=r.reused))
    store.close()
    db = sqlite3.connect(tmp_path / "kimi.db")
    for i, raw in enumerate(bodies):
        assert load_request_body(db, f"r{i}") == json.loads(raw)
    # 30 messages + 1 envelope + 10 history lists.
    assert db.execute("SELECT count(*) FROM blobs").fetchone()[0] == 41


def test_a_history_whose_last_items_changed_resumes_before_the_change():
    """Claude Code moves its cache_control marker to the newest message each turn: the body no longer
    begins with the last one, but all items before the change are reused, and the result is the same."""
    import json

    from kimi_core.analysis import Recent, analyse, first_difference
    from kimi_core.tokens import TokenCounter

    def body(n, marked):
        messages = [{"role": "user" if i % 2 == 0 else "assistant",
                     "content": [{"type": "text", "text": f"turn {i}: " + "words " * 50}]} for i in range(n)]
        messages[marked]["content"][0]["cache_control"] = {"type": "ephemeral"}
        return json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": messages}).encode()

    recent, counter = Recent(), TokenCounter()
    first = analyse(body(10, 9), "", "anthropic", "/v1/messages", counter, 10**8, recent)
    again = analyse(body(12, 11), "", "anthropic", "/v1/messages", counter, 10**8, recent)
    fresh = analyse(body(12, 11), "", "anthropic", "/v1/messages", TokenCounter(), 10**8, None)
    assert again.prior_seq == first.seq and again.reused == 9  # all but the item whose marker moved
    assert again.count == fresh.count and again.contents == fresh.contents and again.digests == fresh.digests
    assert again.request.messages == fresh.request.messages
    other = analyse(body(6, 5).replace(b"turn 0", b"other"), "", "anthropic", "/v1/messages", counter, 10**8, recent)
    assert other.prior_seq is None  # another conversation resumes nothing
    assert first_difference("abcdef", "abcxef") == 3 and first_difference("abc", "abcdef") == 3


def test_a_body_that_resumes_a_counted_one_is_bounded_before_its_own_count():
    """What it repeats is known from the prior count; the rest is bounded by its bytes."""
    from kimi_core.analysis import parse
    recent, counter = Recent(), TokenCounter()
    messages = [{"role": "system", "content": "be brief " * 50}]
    for turn in range(6):
        messages += [{"role": "user", "content": f"question {turn} " * 200}, {"role": "assistant", "content": "ok"}]
    first = analyse(json.dumps({"model": "gpt-4o", "messages": messages}).encode(), "", "openai-chat",
                    "/v1/chat/completions", counter, 1 << 26, recent)
    messages += [{"role": "user", "content": "and now this " * 100}]
    body = json.dumps({"model": "gpt-4o", "messages": messages}).encode()
    parsed, prior = parse(body, "", "openai-chat", "/v1/chat/completions", 1 << 26, recent)
    assert prior is not None and parsed.prior_tokens is not None
    exact = TokenCounter().count_request(parsed.request).tokens
    bound = parsed.resumed_bound()
    assert exact <= bound <= exact + len("and now this " * 100) + 100
    assert bound < first.count.tokens + len(body) // 10  # far less than the body's bytes
