"""The context guard end to end: a real mitmdump with Kimi, the fake provider, the official SDKs."""

import json
import re
import sqlite3
import uuid

import anthropic
import openai
import pytest
from conftest import wait_rows
from test_e2e import anthropic_client, http_client, openai_client

from kimi_core.analysis import analyse
from kimi_core.testing.proxy import Mitmdump
from kimi_core.tokens import TokenCounter

pytestmark = pytest.mark.e2e

CONFIG = """
[models."small"]
context_window = 2000

[models."calibrated"]
context_window = 2000

[models."overhead"]
context_window = 10000

[models."roomy"]
context_window = 20000
"""


def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("guard-config") / "config.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def guarded(fake, tmp_path_factory):
    options = {"kimi_config": str(config_file(tmp_path_factory))}
    with Mitmdump(tmp_path_factory.mktemp("guard"), upstream_port=fake.port, options=options) as running:
        yield running


def words(tokens):
    """Text of about ``tokens`` cl100k tokens."""
    return "lorem ipsum dolor sit amet " * (tokens // 5)


def local_estimate(model, messages):
    """What Kimi counts for an OpenAI chat request."""
    body = json.dumps({"model": model, "messages": messages}).encode()
    return analyse(body, "", "openai-chat", "/v1/chat/completions", TokenCounter(), 10**8).count.tokens


def model(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def never_reached(fake, tag):
    return not [r for r in fake.seen if tag.encode() in r["body"] or tag.encode() in r["path"].encode()]


def alerts(proxy, request_id):
    db = sqlite3.connect(proxy.db)
    return db.execute("SELECT kind, level, message FROM alerts WHERE request_id = ?", (request_id,)).fetchall()


def refused_row(proxy, tag, status=400):
    [row] = wait_rows(proxy.db, "model = ?", (tag,))
    assert (row["action"], row["status_code"], row["context_window"]) == ("rejected", status, 2000)
    assert row["prompt_tokens_cal"] >= 0.95 * 2000 and row["window_share"] >= 0.95
    kinds = [k for k, _, _ in alerts(proxy, row["id"])]
    assert kinds == ["rejected"]
    return row


@pytest.mark.parametrize("stream", [False, True])
def test_openai_chat_refusal_is_a_bad_request_with_context_length_exceeded(guarded, fake, stream):
    tag = model("small")
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(guarded).chat.completions.create(
            model=tag, stream=stream, messages=[{"role": "user", "content": words(2500)}])
    err = raised.value
    assert (err.status_code, err.code, err.type, err.param) == (400, "context_length_exceeded",
                                                                 "invalid_request_error", "messages")
    assert err.response.headers["x-kimi-proxy"] == "refused: context window"
    assert "of the 2,000-token context window of " + tag in err.message
    assert "message 1 (user)" in err.message  # what would help most
    assert never_reached(fake, tag)
    refused_row(guarded, tag)


def test_openai_responses_refusal(guarded, fake):
    tag = model("small")
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(guarded).responses.create(model=tag, input=words(2500))
    assert (raised.value.code, raised.value.param) == ("context_length_exceeded", "input")
    assert raised.value.message.startswith("Error code: 400 - Your input exceeds the context window of this model.")
    assert never_reached(fake, tag)
    refused_row(guarded, tag)


def test_a_streamed_responses_call_learns_of_its_refusal_from_its_stream(guarded, fake):
    """As OpenAI ends a stream whose input does not fit: Codex reads only this as an overflow."""
    tag = model("small")
    events = list(openai_client(guarded).responses.create(model=tag, input=words(2500), stream=True))
    assert [e.type for e in events] == ["response.created", "response.failed"]
    error = events[-1].response.error
    assert error.code == "context_length_exceeded" and "Kimi Proxy refused this request" in error.message
    assert never_reached(fake, tag)
    refused_row(guarded, tag, status=200)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_refusal_says_prompt_is_too_long(guarded, fake, stream):
    tag = model("small")
    kwargs = {"model": tag, "max_tokens": 100, "messages": [{"role": "user", "content": words(2500)}]}
    with pytest.raises(anthropic.BadRequestError) as raised:
        if stream:
            with anthropic_client(guarded).messages.stream(**kwargs) as s:
                s.get_final_message()
        else:
            anthropic_client(guarded).messages.create(**kwargs)
    body = raised.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("prompt is too long: ")
    assert " tokens > 1899 maximum " in body["error"]["message"]  # the guard's limit: 95% of 2,000
    assert never_reached(fake, tag)
    refused_row(guarded, tag)


def test_gemini_refusal(guarded, fake):
    tag = model("small")
    url = f"https://generativelanguage.googleapis.com/v1beta/models/{tag}:streamGenerateContent?alt=sse"
    with http_client(guarded) as client:
        response = client.post(url, json={"contents": [{"role": "user", "parts": [{"text": words(2500)}]}]})
    assert response.status_code == 400 and response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert never_reached(fake, tag)
    refused_row(guarded, tag)


def test_requested_output_that_does_not_fit_is_refused(guarded, fake):
    tag = model("small")
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client(guarded).messages.create(model=tag, max_tokens=1900,
                                                  messages=[{"role": "user", "content": words(500)}])
    assert never_reached(fake, tag)


def test_a_request_within_the_window_passes_and_alerts_at_its_threshold(guarded, fake):
    tag = model("small")
    openai_client(guarded).chat.completions.create(model=tag, messages=[{"role": "user", "content": words(1650)}])
    [row] = wait_rows(guarded.db, "model = ?", (tag,))
    assert row["action"] == "passed" and 0.75 <= row["window_share"] < 0.95
    [(kind, level, message)] = alerts(guarded, row["id"])
    assert kind == "window_share" and level in (0.75, 0.85) and "of the 2,000-token window" in message


def test_calibration_learns_that_the_provider_counts_twice_as_many_tokens(guarded, fake):
    tag = "calibrated"
    client = openai_client(guarded)
    for i, size in enumerate((50, 150, 400, 800)):  # sizes apart, so that the slope shows
        messages = [{"role": "user", "content": words(size)}]
        estimate = local_estimate(tag, messages)
        client.chat.completions.create(model=tag, messages=messages,  # the provider reports twice the local count
                                       extra_headers={"X-Fake-Prompt-Tokens": str(2 * estimate)})
        [row] = wait_rows(guarded.db, "model = ?", (tag,), count=i + 1)[i:]
        assert row["prompt_tokens_est"] == estimate
    half = [{"role": "user", "content": words(1000)}]  # about half the window by raw count
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=tag, messages=half)
    [row] = wait_rows(guarded.db, "model = ? AND action = 'rejected'", (tag,))
    assert 1.5 < row["calibration_factor"] <= 2.5
    assert row["prompt_tokens_est"] < 0.6 * 2000 and row["prompt_tokens_cal"] >= 0.95 * 2000


def test_a_fixed_overhead_learned_on_tiny_requests_does_not_refuse_a_big_one(guarded, fake):
    """Twenty tiny requests billed about 360 tokens each (a provider's hidden prompt), then 60% of the window."""
    tag = "overhead"
    client = anthropic_client(guarded)
    for i in range(20):
        client.messages.create(model=tag, max_tokens=10, messages=[{"role": "user", "content": f"hi {i}"}],
                               extra_headers={"X-Fake-Prompt-Tokens": "360"})
    wait_rows(guarded.db, "model = ?", (tag,), count=20)
    client.messages.create(model=tag, max_tokens=100, messages=[{"role": "user", "content": words(6000)}])
    [row] = wait_rows(guarded.db, "model = ? AND messages = 1 AND prompt_tokens_est > 5000", (tag,))
    assert row["action"] == "passed" and row["status_code"] == 200
    assert row["calibration_factor"] == 1.0 and 300 < row["calibration_overhead"] < 360
    assert 0.6 < row["window_share"] < 0.7


def test_prompt_plus_max_tokens_over_the_window_is_refused_as_anthropic_words_it(guarded, fake):
    """Claude Code sends max_tokens 32000; on this wording it retries with a smaller max_tokens."""
    tag = "roomy"
    client = anthropic_client(guarded)
    messages = [{"role": "user", "content": words(3000)}]
    with pytest.raises(anthropic.BadRequestError) as raised, \
            client.messages.stream(model=tag, max_tokens=32_000, messages=messages) as stream:
        stream.get_final_message()
    message = raised.value.body["error"]["message"]
    assert message.startswith("input length and `max_tokens` exceed context limit: ")
    estimate, output, window = map(int, re.match(r".*limit: (\d+) \+ (\d+) > (\d+),", message).groups())
    assert (output, window) == (32_000, 20_000) and 2_900 < estimate < 3_200 and estimate + output > window
    reply = client.messages.create(model=tag, max_tokens=window - estimate - 1000, messages=messages)
    assert reply.content[0].text == "Hello from the fake provider."  # the smaller request goes through


def test_a_window_stated_by_a_provider_error_is_learned_and_used(guarded, fake):
    tag = model("learner")  # unknown: the provider default, 128,000
    client = openai_client(guarded)
    with pytest.raises(openai.BadRequestError) as raised:  # the provider's own refusal, passed through
        client.chat.completions.create(model=tag, messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"X-Fake-Overflow": "1000"})
    assert "maximum context length is 1000 tokens" in raised.value.message
    assert "x-kimi-proxy" not in raised.value.response.headers
    [row] = wait_rows(guarded.db, "model = ?", (tag,))
    assert [k for k, _, _ in alerts(guarded, row["id"])] == ["provider_overflow"]
    db = sqlite3.connect(guarded.db)
    assert db.execute("SELECT context_window FROM learned_windows WHERE model = ?", (tag,)).fetchone() == (1000,)
    with pytest.raises(openai.BadRequestError) as again:
        client.chat.completions.create(model=tag, messages=[{"role": "user", "content": words(1200)}])
    assert again.value.response.headers["x-kimi-proxy"] == "refused: context window"
    assert "of the 1,000-token context window" in again.value.message


def test_refusals_in_french(fake, tmp_path_factory):
    options = {"kimi_config": str(config_file(tmp_path_factory)), "kimi_lang": "fr"}
    with Mitmdump(tmp_path_factory.mktemp("guard-fr"), upstream_port=fake.port, options=options) as proxy:
        with pytest.raises(openai.BadRequestError) as raised:
            openai_client(proxy).chat.completions.create(
                model="small", messages=[{"role": "user", "content": words(2500)}])
        # The provider's words stay as clients read them; Kimi's explanation follows, in French.
        assert "This model's maximum context length is 1899 tokens. However, your messages resulted in " \
            "25" in raised.value.message
        assert "Please reduce the length of the messages. Kimi Proxy a refusé cette requête avant qu" \
            in raised.value.message
        assert "fenêtre de contexte de 2\u202f000 tokens" in raised.value.message
        with pytest.raises(anthropic.BadRequestError) as claude:
            anthropic_client(proxy).messages.create(model="small", max_tokens=10,
                                                    messages=[{"role": "user", "content": words(2500)}])
        message = claude.value.body["error"]["message"]
        assert message.startswith("prompt is too long: ") and "Kimi Proxy a refusé" in message


@pytest.mark.parametrize("option,value,message", [
    ("kimi_reject_at", "lots", "kimi_reject_at / kimi_alert_at: 'lots' is not a ratio (write 0.95 or 95%)"),
    ("kimi_alert_at", "0.5,200%", "kimi_reject_at / kimi_alert_at: '200%' is not between 0 and 100%"),
    ("kimi_budget_daily_usd", "lots", "kimi_budget_daily_usd: 'lots' is not an amount of US dollars"),
    ("kimi_budget_agents", "claude-code", "kimi_budget_agents: 'claude-code' is not AGENT=DOLLARS"),
])
def test_a_bad_threshold_stops_mitmdump_at_start_up(fake, tmp_path, option, value, message):
    proxy = Mitmdump(tmp_path, upstream_port=fake.port, options={option: value})
    try:
        proxy.start(timeout=20)
    except RuntimeError:
        pass  # exited before listening
    assert proxy.proc.wait(timeout=20) == 1
    assert message in proxy.log()


def test_a_large_request_naming_its_model_after_the_messages_is_judged(guarded, fake):
    """The SDKs write "model" after "messages": in a big body it is far from the start."""
    tag = model("small")  # a 2,000-token window; the provider's default is 128,000
    messages = [{"role": "user", "content": words(15_000)}]
    client = openai_client(guarded)
    raw = client.chat.completions.with_raw_response
    with pytest.raises(openai.BadRequestError) as raised:
        raw.create(messages=messages, model=tag)
    assert raised.value.code == "context_length_exceeded" and never_reached(fake, tag)
    [row] = wait_rows(guarded.db, "model = ?", (tag,))
    assert row["action"] == "rejected" and row["request_bytes"] > 60_000


def test_a_model_named_inside_a_message_does_not_hide_the_real_one():
    from kimi_core.proxy.guard import candidate_models
    body = json.dumps({"messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "configure", "input": {"model": "gpt-4.1"}}]}],
        "model": "small"}).encode()
    assert set(candidate_models(body, None)) == {"gpt-4.1", "small"}  # the smallest window of them counts


def test_a_request_whose_analysis_outlasts_its_budget_goes_on_unjudged(fake, tmp_path_factory):
    """``kimi_analysis_ms`` bounds how long a request waits for Kimi: past it, the request is sent as is."""
    options = {"kimi_config": str(config_file(tmp_path_factory)), "kimi_analysis_ms": "1"}
    with Mitmdump(tmp_path_factory.mktemp("guard-budget"), upstream_port=fake.port, options=options) as proxy:
        tag = model("small")  # a 2,000-token window: 400,000 tokens would be refused
        reply = openai_client(proxy).chat.completions.create(
            model=tag, messages=[{"role": "user", "content": words(400_000)}])
        assert reply.choices[0].message.content and not never_reached(fake, tag)
        [row] = wait_rows(proxy.db, "model = ?", (tag,))
        assert row["action"] == "passed" and row["status_code"] == 200
        # Whichever came first: the request stopped waiting, or the count was given up.
        assert "not counted: over its 1 ms analysis budget (kimi_analysis_ms)" in row["error"]
        assert row["prompt_tokens_est"] is None
        assert "1 ms analysis budget (kimi_analysis_ms)" in proxy.log()


def test_a_big_body_is_searched_for_its_model_at_its_ends_and_whole_only_if_need_be():
    from kimi_core.proxy.guard import candidate_models, requested_output
    history = b'[' + b",".join(b'{"role": "user", "content": "%s"}' % (b"x" * 1000) for _ in range(2000)) + b']'
    claude_code = b'{"model": "claude-opus-4-5", "messages": ' + history + b', "max_tokens": 32000}'
    sdk = b'{"messages": ' + history + b', "model": "gpt-4.1", "max_completion_tokens": 900}'
    middle = b'{"messages": ' + history + b', "model": "gpt-4o", "tools": ' + history + b'}'
    assert candidate_models(claude_code, None) == ["claude-opus-4-5"] and requested_output(claude_code) == 32000
    assert candidate_models(sdk, None) == ["gpt-4.1"] and requested_output(sdk) == 900
    assert candidate_models(middle, None) == ["gpt-4o"]  # not at the ends: found by the whole search
