import json
import re

import pytest

from kimi_core.guard import (
    Calibration,
    Decision,
    Fit,
    decide,
    explain,
    fit,
    legacy_samples,
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


@pytest.mark.parametrize("estimate,fit,window,max_output,refuse,reason,alert", [
    (50_000, Fit(), 100_000, None, False, None, None),      # half the window
    (75_000, Fit(), 100_000, None, False, None, 0.75),      # first alert
    (90_000, Fit(), 100_000, 1_000, False, None, 0.85),
    (95_000, Fit(), 100_000, None, True, "threshold", 0.95),  # at the reject threshold
    (94_999, Fit(), 100_000, None, False, None, 0.85),        # one under it
    (50_000, Fit(2.0), 100_000, None, True, "threshold", 0.95),  # calibrated: twice the raw count
    (50_000, Fit(1.0, 45_000), 100_000, None, True, "threshold", 0.95),  # plus a fixed overhead
    (80_000, Fit(), 100_000, 30_000, True, "output", 0.75),   # prompt + requested output > window
    (70_000, Fit(), 100_000, 30_000, False, None, None),      # exactly fits
    (10, Fit(), 0, None, False, None, None),                  # unknown window: never refuse
])
def test_decide(estimate, fit, window, max_output, refuse, reason, alert):
    d = decide(estimate, fit, window, max_output, 0.95, ALERTS)
    assert (d.refuse, d.reason, d.alert) == (refuse, reason, alert)
    assert d.estimate == round(fit.overhead + estimate * fit.factor)


def test_where_the_provider_caps_the_output_a_large_max_output_is_no_reason():
    assert not decide(80_000, Fit(), 100_000, 30_000, 0.95, ALERTS, output_counts=False).refuse


def test_calibration_is_robust_to_an_outlier_and_ages_out():
    c = Calibration(samples=5)
    assert c.fit("m") == Fit()
    for size in (1000, 2000, 4000, 8000):
        c.observe("m", size, 2 * size)
    assert c.observe("m", 3000, 300_000).factor == pytest.approx(2.0)  # one outlier moves nothing
    assert c.fit("other") == Fit()
    for size in (1000, 2000, 4000, 8000, 16000):
        c.observe("m", size, round(1.2 * size))
    assert c.fit("m").factor == pytest.approx(1.2)  # old samples age out


def test_a_fixed_overhead_learned_on_small_requests_is_not_extrapolated():
    """Twenty tiny requests billed ~360 tokens each (the provider's tool prompt), then a big one."""
    c = Calibration()
    for i in range(20):
        c.observe("claude", 8 + i % 5, 350 + 8 + i % 5)
    found = c.fit("claude")
    assert found.factor == 1.0 and found.overhead == pytest.approx(350, abs=1)
    d = decide(6_000, found, 10_000, None, 0.95, ALERTS)
    assert not d.refuse and d.share == pytest.approx(0.635, abs=0.001)


def test_overhead_and_factor_together():
    c = Calibration()
    for size in (20, 500, 3_000, 12_000, 40_000, 90_000):
        c.observe("m", size, round(350 + 1.25 * size))
    found = c.fit("m")
    assert found.factor == pytest.approx(1.25, abs=0.01) and found.overhead == pytest.approx(350, abs=5)


@pytest.mark.parametrize("samples,factor", [
    ([(20_000, 26_000)] * 3, 1.3),   # large and alike: their ratio (overhead is noise there)
    ([(100, 100_000)] * 3, 1.0),     # small and absurd: overhead, not a factor
    ([(1_000, 1_000), (10_000, 90_000)], 2.5),  # a slope of 9 is no tokenizer: bounded
])
def test_fit_without_a_clear_slope(samples, factor):
    assert fit(samples).factor == pytest.approx(factor)


def test_calibration_ignores_empty_figures_and_round_trips():
    c = Calibration()
    c.observe("m", 0, 100)
    c.observe("m", 100, 0)
    assert c.samples("m") == []
    c.load("m", [(1000, 1100), (5000, 5500), (20_000, 22_000)])
    assert c.fit("m").factor == pytest.approx(1.1)
    assert legacy_samples([1.2]) == [(10_000, 12_000)]


DECISION = decide(210_000, Fit(), 200_000, None, 0.95, ALERTS)
BY_OUTPUT = decide(18_303, Fit(), 20_000, 32_000, 0.95, ALERTS)
NEAR = decide(19_520, Fit(), 20_000, None, 0.95, ALERTS)


@pytest.mark.parametrize("decision,max_output,start", [
    (DECISION, None, "prompt is too long: 210000 tokens > 189999 maximum"),
    (NEAR, None, "prompt is too long: 19520 tokens > 18999 maximum"),  # true as written
    (BY_OUTPUT, 32_000, ("input length and `max_tokens` exceed context limit: 18303 + 32000 > 20000, "
                        "decrease input length or `max_tokens` and try again")),
])
def test_anthropic_refusals_are_worded_as_anthropic_words_each_case(decision, max_output, start):
    body = json.loads(refusal("anthropic", decision, "why", max_output))
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"] == f"{start} why"


@pytest.mark.parametrize("dialect,decision,max_output,message", [
    ("openai-chat", NEAR, None, ("This model's maximum context length is 18999 tokens. However, your messages "
                                "resulted in 19520 tokens. Please reduce the length of the messages.")),
    ("openai-chat", BY_OUTPUT, 32_000, ("This model's maximum context length is 20000 tokens. However, you "
                                       "requested 50303 tokens (18303 in the messages, 32000 in the completion). "
                                       "Please reduce the length of the messages or completion.")),
    ("openai-responses", NEAR, None, ("Your input exceeds the context window of this model. "
                                     "Please adjust your input and try again.")),
])
def test_openai_refusals_are_worded_as_openai_words_them(dialect, decision, max_output, message):
    error = json.loads(refusal(dialect, decision, "why", max_output))["error"]
    assert error == {"message": f"{message} why", "type": "invalid_request_error",
                     "param": "input" if dialect == "openai-responses" else "messages",
                     "code": "context_length_exceeded"}


def test_gemini_refusal():
    assert json.loads(refusal("gemini", NEAR, "why")) == {"error": {
        "code": 400, "status": "INVALID_ARGUMENT",
        "message": "The input token count (19520) exceeds the maximum number of tokens allowed (18999). why"}}


@pytest.mark.parametrize("dialect", ["openai-chat", "openai-responses", "anthropic", "gemini"])
@pytest.mark.parametrize("decision", [DECISION, NEAR, BY_OUTPUT])
def test_every_refusal_is_recognised_as_an_overflow_and_states_no_false_figures(dialect, decision):
    from kimi_core.windows import is_overflow
    message = json.dumps(json.loads(refusal(dialect, decision, "", 32_000)))
    assert is_overflow(message)
    numbers = [int(n) for n in re.findall(r"\d+", message.split("why")[0]) if int(n) > 100]
    if "resulted in" in message or "is too long" in message or "token count" in message:
        assert numbers[0] != numbers[1] and decision.estimate in numbers


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
    assert out.endswith("Ask for fewer output tokens, or compact the conversation.")
    # Advice that fits the request: no tool results, no advice to compact them.
    chat = explain(DECISION, "m", 0.95, None, [("message 3 (user)", 150_000)], "en")
    assert chat.endswith("Largest parts: message 3 (user) (150,000 tokens). Compact the conversation.")
    assert en.endswith("Compact or drop older tool results.")


def test_largest_parts_names_tool_results_and_messages_by_size():
    from kimi_core import dialects
    from kimi_core.guard import largest_parts
    from kimi_core.tokens import TokenCounter
    request = dialects.parse_request("openai-chat", {"model": "gpt-4", "messages": [
        {"role": "system", "content": "short"},
        {"role": "user", "content": "list the files " * 100},
        {"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "list_files", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "file.py\n" * 500},
    ]})
    parts = largest_parts(request, TokenCounter(), "cl100k_base", n=2)
    assert [label for label, _ in parts] == ["tool result of list_files (message 4)", "message 2 (user)"]
    assert parts[0][1] > parts[1][1] > 0


def test_a_prompt_of_many_small_messages_names_no_largest_part():
    from kimi_core import dialects
    from kimi_core.guard import largest_parts
    from kimi_core.tokens import TokenCounter
    request = dialects.parse_request("openai-chat", {"model": "gpt-4", "messages": [
        {"role": "user", "content": f"step {i}: " + "word " * 80} for i in range(40)]})
    assert largest_parts(request, TokenCounter(), "cl100k_base") == []
