import json

import pytest

from kimi_core.redact import REDACTED, redact_path, redact_text


@pytest.mark.parametrize("path,expected", [
    ("/v1beta/models/g:generateContent?key=AIzaSyA-123&alt=sse",
     f"/v1beta/models/g:generateContent?key={REDACTED}&alt=sse"),
    ("/x?alt=sse&api_key=secret", f"/x?alt=sse&api_key={REDACTED}"),
    ("/v1/chat/completions", "/v1/chat/completions"),
    ("/x?monkey=1", "/x?monkey=1"),
])
def test_redact_path(path, expected):
    assert redact_path(path) == expected


@pytest.mark.parametrize("secret", [
    "sk-proj-abcdefghijklmnopqrstuvwx",
    "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
    "AIzaSyD-abcdefghijklmnopqrstuvwxyz12345",
    "nvapi-abcdefghijklmnopqrstuvwxyz",
    "Bearer abcdefghijklmnopqrstuvwxyz.123",
])
def test_key_shaped_strings_are_removed(secret):
    out = redact_text(f'{{"content": "my key is {secret} ok"}}')
    assert secret not in out and REDACTED in out


def test_secret_named_fields_are_removed_whatever_their_value():
    out = redact_text('{"api_key": "plain-value", "password":"p\\"w", "model": "gpt-4o"}')
    assert out == f'{{"api_key": "{REDACTED}", "password":"{REDACTED}", "model": "gpt-4o"}}'


def test_ordinary_text_is_left_alone():
    text = '{"content": "ask the skeptic about the task-list"}'
    assert redact_text(text) == text


def test_secrets_in_json_pasted_inside_a_json_string_are_redacted():
    body = json.dumps({"content": "my config: " + json.dumps({"api_key": "k-123", "password": "hunter2", "n": 1})})
    out = redact_text(body)
    assert "k-123" not in out and "hunter2" not in out and '\\"n\\": 1' in out
    assert json.loads(out)["content"] == 'my config: {"api_key": "[REDACTED]", "password": "[REDACTED]", "n": 1}'


@pytest.mark.parametrize("text,secret", [
    ("MISTRAL_API_KEY=abcd1234efgh5678", "abcd1234efgh5678"),
    ("export OPENAI_API_KEY=0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
    ('{"client_secret": "s3cr3t-value"}', "s3cr3t-value"),
    ('{"refresh_token": "tok_1234567890"}', "tok_1234567890"),
    ('{"api_key": 1234567890}', "1234567890"),
    ('{"Api-Key": true}', "true"),
    ('{"\\u0061pi_key": "hunter2-key"}', "hunter2-key"),
    (json.dumps({"c": 'x {"\\u0061pi_key": "nested-secret"} y'}), "nested-secret"),
    (json.dumps({"c": 'x {"api_key": 1234567890} y'}), "1234567890"),
    ("{'password': 'hunter2'}", "hunter2"),
    ("Authorization: Bearer abcdefghijklmnop1234", "abcdefghijklmnop1234"),
    ("client_secret: abc12345", "abc12345"),
    ("DB_PASSWORD = 'p4ssw0rd!'", "p4ssw0rd!"),
])
def test_every_form_of_a_secret_is_removed(text, secret):
    out = redact_text(text)
    assert secret not in out and REDACTED in out
    try:
        json.loads(text)
    except ValueError:
        return
    json.loads(out)  # JSON stays JSON


@pytest.mark.parametrize("text", [
    '{"max_tokens": 100, "prompt_tokens": 5, "completion_tokens": 2}',  # counts, not secrets
    '{"content": "count the tokens of the key points", "monkey": "banana"}',
    "the token budget is: generous",
])
def test_names_that_only_look_secret_are_left_alone(text):
    assert redact_text(text) == text


def test_redaction_stays_quick_on_a_big_body():
    import time
    body = json.dumps({"messages": [{"role": "user", "content": "the key token of a secret passage " * 2000}] * 30})
    started = time.perf_counter()
    redact_text(body)
    assert time.perf_counter() - started < 2  # a few ms here; a backtracking pattern took seconds


def test_printable_shows_control_characters_instead_of_obeying_them():
    from kimi_core.redact import printable
    assert printable("a\x1b]0;title\x07b\x1b[2J") == "a\\x1b]0;title\\x07b\\x1b[2J"
    assert printable("line\nnext", newlines=False) == "line\\nnext"
