import json

import pytest

from kimi_core.guard import (
    Calibration,
    Decision,
    decide,
    explain,
    parse_ratio,
    parse_ratios,
    refusal,
)


@pytest.mark.parametrize("text,value", [("0.95", 0.95), ("95%", 0.95), ("95", 0.95), (" 75 % ", 0.75), ("1", 1.0)])
def test_parse_ratio(text, value):
    assert parse_ratio(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "abc", "0", "150%", "-5"])
def test_parse_ratio_refuses_nonsense(text):
    with pytest.raises(ValueError, match="ratio|between"):
        parse_ratio(text)


def test_parse_ratios_sorted():
    assert parse_ratios("95%,0.75, 85") == pytest.approx((0.75, 0.85, 0.95))
    assert parse_ratios("") == ()


ALERTS = (0.75, 0.85, 0.95)


@pytest.mark.parametrize("estimate,factor,window,max_output,refuse,reason,alert", [
    (50_000, 1.0, 100_000, None, False, None, None),      # half the window
    (75_000, 1.0, 100_000, None, False, None, 0.75),      # first alert
    (90_000, 1.0, 100_000, 1_000, False, None, 0.85),
    (95_000, 1.0, 100_000, None, True, "threshold", 0.95),  # at the reject threshold
    (50_000, 2.0, 100_000, None, True, "threshold", 0.95),  # calibrated: twice the raw count
    (80_000, 1.0, 100_000, 30_000, True, "output", 0.75),   # prompt + requested output > window
    (70_000, 1.0, 100_000, 30_000, False, None, None),      # exactly fits
    (10, 1.0, 0, None, False, None, None),                  # unknown window: never refuse
])
def test_decide(estimate, factor, window, max_output, refuse, reason, alert):
    d = decide(estimate, factor, window, max_output, 0.95, ALERTS)
    assert (d.refuse, d.reason, d.alert) == (refuse, reason, alert)
    assert d.estimate == round(estimate * factor)


def test_calibration_is_the_median_of_recent_ratios():
    c = Calibration(samples=5)
    assert c.factor("m") == 1.0
    for _ in range(4):
        c.observe("m", 1000, 2000)
    assert c.observe("m", 1000, 100_000) == 2.0  # one outlier moves nothing
    assert c.factor("other") == 1.0
    for _ in range(5):
        c.observe("m", 1000, 1200)
    assert c.factor("m") == pytest.approx(1.2)  # old ratios age out


def test_calibration_ignores_empty_figures_and_round_trips():
    c = Calibration()
    c.observe("m", 0, 100)
    c.observe("m", 100, 0)
    assert c.ratios("m") == []
    c.load("m", [1.1, 1.3, 1.2])
    assert c.factor("m") == pytest.approx(1.2)


DECISION = Decision(True, 210_000, 200_000, 1.05, "threshold", 0.95)


def test_anthropic_refusal_starts_as_claude_code_expects():
    body = json.loads(refusal("anthropic", DECISION, "why"))
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("prompt is too long: 210000 tokens > 200000 maximum")


@pytest.mark.parametrize("dialect,param", [("openai-chat", "messages"), ("openai-responses", "input"), (None, "messages")])
def test_openai_refusals_carry_context_length_exceeded(dialect, param):
    error = json.loads(refusal(dialect, DECISION, "why"))["error"]
    assert error == {"message": "why", "type": "invalid_request_error", "param": param,
                     "code": "context_length_exceeded"}


def test_gemini_refusal():
    assert json.loads(refusal("gemini", DECISION, "why")) == \
        {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "why"}}


def test_explanation_gives_figures_and_what_helps_in_english_and_french():
    largest = [("tool result of read_file", 120_000), ("message 3 (user)", 4_000)]
    en = explain(DECISION, "claude-sonnet-4-5", 0.95, None, largest, "en")
    assert "210,000 tokens, 105% of the 200,000-token context window of claude-sonnet-4-5" in en
    assert "(the limit is set at 95%)" in en and "tool result of read_file (120,000 tokens)" in en
    fr = explain(DECISION, "claude-sonnet-4-5", 0.95, None, largest, "fr")
    assert fr.startswith("Kimi Proxy a refusé cette requête")
    assert "210\u202f000 tokens" in fr and "Compactez" in fr
    out = explain(Decision(True, 80_000, 100_000, 0.8, "output"), "m", 0.95, 30_000, [], "en")
    assert "plus the requested output (30,000 tokens) exceed the 100,000-token context window" in out


def test_largest_parts_names_tool_results_and_messages_by_size():
    from kimi_core import dialects
    from kimi_core.guard import largest_parts
    from kimi_core.tokens import TokenCounter
    request = dialects.parse_request("openai-chat", {"model": "gpt-4", "messages": [
        {"role": "system", "content": "short"},
        {"role": "user", "content": "list the files " * 10},
        {"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "list_files", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "file.py\n" * 500},
    ]})
    parts = largest_parts(request, TokenCounter(), "cl100k_base", n=2)
    assert [label for label, _ in parts] == ["tool result of list_files (message 4)", "message 2 (user)"]
    assert parts[0][1] > parts[1][1] > 0
