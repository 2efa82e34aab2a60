"""A real mitmdump with Kimi, a TLS fake provider on loopback, the official SDKs as clients."""

import json
import signal
import sqlite3
import ssl
import time
import uuid

import anthropic
import openai
import pytest
from conftest import wait_rows

from kimi_core.testing.proxy import Mitmdump

pytestmark = pytest.mark.e2e

OPENAI_KEY = "sk-proj-e2eSECRETe2eSECRETe2eSECRET"
ANTHROPIC_KEY = "sk-ant-api03-e2eSECRETe2eSECRETe2eSECRET"
GEMINI_KEY = "AIzaSyE2E-SECRET-e2e-SECRET-e2e-SECRET0"


def trust(proxy):
    return ssl.create_default_context(cafile=str(proxy.ca))


def openai_client(proxy):
    return openai.OpenAI(api_key=OPENAI_KEY, max_retries=0, http_client=openai.DefaultHttpxClient(
        proxy=proxy.url, verify=trust(proxy)))


def anthropic_client(proxy):
    return anthropic.Anthropic(api_key=ANTHROPIC_KEY, max_retries=0, http_client=anthropic.DefaultHttpxClient(
        proxy=proxy.url, verify=trust(proxy)))


def http_client(proxy, verify=None):
    return openai.DefaultHttpxClient(proxy=proxy.url, verify=trust(proxy) if verify is None else verify)


def marker():
    return f"e2e-{uuid.uuid4().hex[:12]}"


def row_for(proxy, tag, count=1):
    return wait_rows(proxy.db, "model = ?", (tag,), count=count)


def seen_by_provider(fake, tag):
    return [r for r in fake.seen if tag.encode() in r["body"]]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_chat(proxy, fake, stream):
    tag = marker()
    client = openai_client(proxy)
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Say hello."}]
    if stream:
        chunks = list(client.chat.completions.create(model=tag, messages=messages, stream=True,
                                                     stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = chunks[-1].usage
        assert text == "piece 0 piece 1 piece 2 piece 3 piece 4 "
    else:
        reply = client.chat.completions.create(model=tag, messages=messages)
        assert reply.choices[0].message.content == "Hello from the fake provider."
        usage = reply.usage
    [row] = row_for(proxy, tag)
    assert (row["provider"], row["dialect"], row["host"], row["path"], row["status_code"], row["streamed"]) == \
        ("openai", "openai-chat", "api.openai.com", "/v1/chat/completions", 200, int(stream))
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == \
        (usage.prompt_tokens, usage.completion_tokens, 3)
    assert row["prompt_tokens_est"] > 0 and row["action"] == "passed" and row["error"] is None
    assert row["ttfb_ms"] > 0 and row["duration_ms"] >= row["ttfb_ms"]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_responses(proxy, stream):
    tag = marker()
    client = openai_client(proxy)
    if stream:
        events = list(client.responses.create(model=tag, input="Say hello.", instructions="Be terse.", stream=True))
        usage = events[-1].response.usage
        assert events[-1].type == "response.completed"
    else:
        reply = client.responses.create(model=tag, input="Say hello.", instructions="Be terse.")
        assert reply.output_text == "Hello from the fake provider."
        usage = reply.usage
    [row] = row_for(proxy, tag)
    assert (row["dialect"], row["streamed"], row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == \
        ("openai-responses", int(stream), usage.input_tokens, usage.output_tokens, 3)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages(proxy, stream):
    tag = marker()
    client = anthropic_client(proxy)
    kwargs = {"model": tag, "max_tokens": 100, "system": "Be terse.", "messages": [{"role": "user", "content": "Hello"}]}
    if stream:
        with client.messages.stream(**kwargs) as s:
            text = "".join(s.text_stream)
            message = s.get_final_message()
        assert text == "piece 0 piece 1 piece 2 piece 3 piece 4 "
    else:
        message = client.messages.create(**kwargs)
        assert message.content[0].text == "Hello from the fake provider."
    u = message.usage
    [row] = row_for(proxy, tag)
    assert (row["provider"], row["dialect"], row["streamed"]) == ("anthropic", "anthropic", int(stream))
    # Anthropic's prompt is input + cache creation + cache read.
    assert row["prompt_tokens"] == u.input_tokens + u.cache_read_input_tokens + (u.cache_creation_input_tokens or 0)
    assert (row["completion_tokens"], row["cached_tokens"]) == (u.output_tokens, 3)


@pytest.mark.parametrize("method,query", [
    ("generateContent", ""),
    ("streamGenerateContent", "&alt=sse"),
    ("streamGenerateContent", ""),  # a streamed JSON array
])
def test_gemini(proxy, method, query):
    tag = marker()
    url = f"https://generativelanguage.googleapis.com/v1beta/models/{tag}:{method}?key={GEMINI_KEY}{query}"
    body = {"contents": [{"role": "user", "parts": [{"text": "Say hello."}]}]}
    with http_client(proxy) as client:
        response = client.post(url, json=body)
    assert response.status_code == 200
    reported = int(response.headers["x-fake-prompt-tokens"])
    [row] = row_for(proxy, tag)
    assert (row["provider"], row["dialect"], row["prompt_tokens"], row["cached_tokens"]) == \
        ("gemini", "gemini", reported, 3)
    assert (row["completion_tokens"], row["streamed"]) == (5, int(method == "streamGenerateContent"))
    assert GEMINI_KEY not in row["path"] and "key=[REDACTED]" in row["path"]


def test_first_streamed_chunk_arrives_long_before_the_stream_ends(proxy):
    tag = marker()
    client = openai_client(proxy)
    started = time.monotonic()
    arrivals = []
    stream = client.chat.completions.create(
        model=tag, messages=[{"role": "user", "content": "hi"}], stream=True,
        extra_headers={"X-Fake-Delay-Ms": "400", "X-Fake-Chunks": "6"})
    for chunk in stream:
        arrivals.append(time.monotonic() - started)
    # Six pieces 400 ms apart: a buffering proxy would deliver everything at the end.
    assert arrivals[-1] >= 2.0
    assert arrivals[0] < arrivals[-1] / 2
    [row] = row_for(proxy, tag)
    assert row["ttfb_ms"] < row["duration_ms"] / 2


def test_other_hosts_are_tunnelled_not_decrypted(proxy, fake):
    # Every upstream connection goes to the fake provider in tests; a host Kimi does not
    # know is passed through as TLS, so the client sees the fake's own certificate.
    tag = marker()
    with http_client(proxy, verify=False) as client:
        response = client.post("https://example.org/v1/chat/completions", json={"model": tag, "messages": []})
    assert response.status_code == 200
    # mitmproxy's CA does not vouch for it: it was not intercepted.
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"), http_client(proxy) as client:
        client.post("https://example.org/v1/chat/completions", json={"model": tag, "messages": []})
    time.sleep(0.5)
    assert wait_rows(proxy.db, "model = ?", (tag,), timeout=0.5) == []


def test_session_header_is_removed_before_the_provider(proxy, fake):
    tag = marker()
    openai_client(proxy).chat.completions.create(
        model=tag, messages=[{"role": "user", "content": "hi"}], extra_headers={"X-Kimi-Session": "my-task"})
    [seen] = seen_by_provider(fake, tag)
    assert not any(k.lower().startswith("x-kimi-") for k in seen["headers"])
    [row] = row_for(proxy, tag)
    db = sqlite3.connect(proxy.db)
    assert db.execute("SELECT name, mode FROM sessions WHERE id = ?", (row["session_id"],)).fetchone() == \
        ("my-task", "named")


@pytest.mark.parametrize("body", [
    b'{"model": "MARK", "messages": [{"role": "user", "content": "unterminated',
    b'\xff\xfe{"model": "MARK"} not utf-8 \xc3\x28',
])
def test_bad_bodies_reach_the_provider_byte_for_byte(proxy, fake, body):
    tag = marker()
    body = body.replace(b"MARK", tag.encode())
    with http_client(proxy) as client:
        response = client.post("https://api.openai.com/v1/chat/completions", content=body,
                               headers={"content-type": "application/json", "authorization": f"Bearer {OPENAI_KEY}"})
    assert response.status_code == 200
    [seen] = seen_by_provider(fake, tag)
    assert seen["body"] == body
    rows = wait_rows(proxy.db, "error LIKE 'request body is not JSON%' AND request_bytes = ?", (len(body),))
    assert rows and rows[-1]["prompt_tokens"] == len(body) // 4
    assert "Traceback" not in proxy.log()


def test_a_5mb_body_is_forwarded_and_counted(proxy, fake):
    tag = f"gpt-4.1-{marker()}"  # a 1M-token window: the guard lets it through
    big = "=" * 5_400_000  # 5.4 MB, about 84,000 tokens
    reply = openai_client(proxy).chat.completions.create(model=tag, messages=[{"role": "user", "content": big}])
    assert reply.choices[0].message.content
    [seen] = seen_by_provider(fake, tag)
    assert json.loads(seen["body"])["messages"][0]["content"] == big
    [row] = row_for(proxy, tag)
    assert row["prompt_tokens_est"] > 80_000 and row["error"] is None and row["action"] == "passed"


def test_credentials_never_reach_the_database_or_the_log(proxy):
    tags = marker(), marker()
    openai_client(proxy).chat.completions.create(model=tags[0], messages=[{"role": "user", "content": "hi"}])
    anthropic_client(proxy).messages.create(model=tags[1], max_tokens=5, messages=[{"role": "user", "content": "x"}])
    for tag in tags:  # written (with their headers and bodies) before looking
        assert wait_rows(proxy.db, "model = ?", (tag,))
    stored = b"".join(p.read_bytes() for p in proxy.db.parent.glob("kimi.db*"))
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, GEMINI_KEY):
        assert secret.encode() not in stored
        assert secret not in proxy.log()


def test_reverse_mode_is_recognised_from_its_target(fake, tmp_path):
    with Mitmdump(tmp_path, upstream_port=fake.port, args=("--mode", "reverse:https://api.moonshot.ai")) as proxy:
        tag = marker()
        client = openai.OpenAI(api_key=OPENAI_KEY, base_url=f"{proxy.url}/v1", max_retries=0)
        client.chat.completions.create(model=tag, messages=[{"role": "user", "content": "hi"}])
        [row] = row_for(proxy, tag)
    assert (row["provider"], row["host"], row["dialect"]) == ("moonshot", "api.moonshot.ai", "openai-chat")


def test_no_row_is_lost_on_sigterm(fake, tmp_path):
    proxy = Mitmdump(tmp_path, upstream_port=fake.port).start()
    client = openai_client(proxy)
    tag = marker()
    for _ in range(40):
        client.chat.completions.create(model=tag, messages=[{"role": "user", "content": "hi"}])
    assert proxy.stop(signal.SIGTERM) == 0
    db = sqlite3.connect(proxy.db)
    assert db.execute("SELECT count(*) FROM requests WHERE model = ?", (tag,)).fetchone()[0] == 40
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
