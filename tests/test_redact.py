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
