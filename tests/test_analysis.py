import json
import sqlite3

import lz4.frame

from kimi_core.analysis import analyse
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
