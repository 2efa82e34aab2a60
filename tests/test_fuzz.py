"""Arbitrary and hostile bodies through every parser and rewriter: nothing raises, rewrites keep the shape.

Property-based (hypothesis) over JSON of any shape and over bodies that look
like each dialect with wrong types in known fields; plus the hostile cases
named one by one: 10,000 levels of nesting, multi-megabyte strings, invalid
UTF-8, lone surrogates, NaN / Infinity, duplicate keys.
"""

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import http

from kimi_core import dialects
from kimi_core.analysis import analyse
from kimi_core.compaction import Compactor
from kimi_core.errors import BodyError
from kimi_core.guard import FACTOR_BOUNDS, Fit, decide, explain, fit, refusal
from kimi_core.proxy.sessions import strip_control_headers
from kimi_core.tokens import TokenCounter
from kimi_core.toolresults import Plan

counter = TokenCounter()
DIALECTS = ["openai-chat", "openai-responses", "anthropic", "gemini"]
PATH = "/v1beta/models/gemini-2.5-pro:generateContent"
FUZZ = settings(max_examples=int(__import__("os").environ.get("KIMI_FUZZ_EXAMPLES", 150)), deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=40))
anything = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                        max_leaves=20)
long_text = st.lists(st.one_of(st.text(max_size=30), st.sampled_from(
    ["\n", " ", "error: failed", "é", "\\", '"', "\ud800", "\x1b[31m", "\r", "{", "[1, 2]", "line of output\n"])),
    max_size=400).map("".join)
field = st.one_of(anything, long_text)

# Bodies shaped like each dialect, any field possibly of the wrong type.
messages_chat = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "tool", "system", 3]),
                                                "content": st.one_of(long_text, anything, st.lists(
                                                    st.fixed_dictionaries({"type": st.just("text"),
                                                                           "text": field}), max_size=3))},
                                               optional={"tool_calls": st.one_of(anything, st.lists(
                                                   st.fixed_dictionaries({"id": field, "function": st.one_of(
                                                       anything, st.fixed_dictionaries(
                                                           {"name": field, "arguments": field}))}), max_size=2)),
                                                         "tool_call_id": field}), max_size=6)
blocks = st.lists(st.one_of(anything, st.fixed_dictionaries({"type": st.sampled_from(
    ["text", "tool_use", "tool_result", "image", "thinking"]), "text": field, "content": st.one_of(
    long_text, anything, st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": field}), max_size=3)),
    "input": field, "id": field, "tool_use_id": field, "name": field})), max_size=4)
BODIES = {
    "openai-chat": st.fixed_dictionaries({"model": field, "messages": st.one_of(messages_chat, anything)},
                                         optional={"tools": anything, "max_tokens": field, "stream": field}),
    "anthropic": st.fixed_dictionaries({"model": field, "messages": st.one_of(st.lists(st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", 1]), "content": st.one_of(long_text, blocks, anything)}),
        max_size=5), anything)}, optional={"system": field, "max_tokens": field}),
    "openai-responses": st.fixed_dictionaries({"model": field, "input": st.one_of(long_text, st.lists(st.one_of(
        anything, st.fixed_dictionaries({"type": st.sampled_from(
            ["message", "function_call", "function_call_output", "reasoning"]), "call_id": field, "output": st.one_of(
            long_text, anything), "content": field, "role": field, "arguments": field, "name": field})),
        max_size=5), anything)}),
    "gemini": st.fixed_dictionaries({"contents": st.one_of(st.lists(st.fixed_dictionaries({
        "role": st.sampled_from(["user", "model", 0]), "parts": st.one_of(anything, st.lists(st.one_of(
            anything, st.fixed_dictionaries({"text": field}), st.fixed_dictionaries({"functionResponse": st.one_of(
                anything, st.fixed_dictionaries({"name": field, "response": st.one_of(
                    anything, st.fixed_dictionaries({"output": long_text}))}))})), max_size=3))}), max_size=5),
        anything)}),
}


def follow_and_clear(value, path):
    """``value`` with the item at ``path`` set to None (if it is there)."""
    *head, last = path
    for step in head:
        value = value[step]
    value[last] = None


@pytest.mark.parametrize("dialect", DIALECTS)
@FUZZ
@given(data=st.data())
def test_any_body_is_parsed_or_refused_with_an_error_never_raised(dialect, data):
    body = data.draw(st.one_of(BODIES[dialect], anything))
    raw = json.dumps(body, allow_nan=True).encode()
    a = analyse(raw, "", dialect, PATH, counter, 1 << 30)
    assert (a.error is None) == (a.count is not None)
    assert a.error is None or isinstance(body, dict) is False or "not a" in a.error or "JSON" in a.error


@pytest.mark.parametrize("dialect", DIALECTS)
@FUZZ
@given(data=st.data(), budget=st.integers(100, 600), dumps=st.sampled_from([
    {}, {"indent": 2}, {"ensure_ascii": False}, {"separators": (",", ":")}]))
def test_a_rewritten_body_is_json_of_the_same_shape_with_only_the_results_changed(dialect, data, budget, dumps):
    body = data.draw(BODIES[dialect])
    text = json.dumps(body, allow_nan=True, **dumps)
    a = analyse(text.encode("utf-8", "surrogatepass"), "", dialect, PATH, counter, 1 << 30)
    if a.error or a.parsed is None or a.text is None:
        return
    plan = Plan(a.text, a.parsed, a.body, a.request, Compactor(), a.count.encoding)
    plan.over_budget(budget)
    rewritten = plan.apply()
    if rewritten is None:
        return
    new = json.loads(rewritten.text.encode("utf-8"))  # valid JSON, valid UTF-8
    old = copy.deepcopy(a.body)
    for done in rewritten.done:
        assert done.compacted.kept_tokens <= budget
        follow_and_clear(new, done.locator)
        follow_and_clear(old, done.locator)
    assert json.dumps(new, allow_nan=True, sort_keys=True) == json.dumps(old, allow_nan=True, sort_keys=True)


@FUZZ
@given(raw=st.binary(max_size=2000), dialect=st.sampled_from(DIALECTS),
       encoding=st.sampled_from(["", "gzip", "br", "identity", "x-unknown"]))
def test_any_bytes_are_analysed_without_raising(raw, dialect, encoding):
    a = analyse(raw, encoding, dialect, PATH, counter, 1 << 20)
    assert a.error is not None or a.count is not None


@FUZZ
@given(headers=st.lists(st.tuples(st.sampled_from([b"X-Kimi-Session", b"x-kimi-other", b"X-KIMI-", b"Authorization",
                                                   b"x-kimikimi", b"content-type"]) | st.binary(min_size=1, max_size=12)
                                  .filter(lambda b: b":" not in b and b"\n" not in b and b"\r" not in b),
                                  st.binary(max_size=20)), max_size=8))
def test_control_headers_go_and_every_other_header_stays(headers):
    h = http.Headers(headers)
    others = [(k, v) for k, v in headers if not k.lower().startswith(b"x-kimi-")]
    strip_control_headers(h)
    assert h.fields == tuple(others)


@FUZZ
@given(estimate=st.integers(-10, 10**9), factor=st.floats(0, 10, allow_nan=False),
       overhead=st.floats(-10**4, 10**4, allow_nan=False), window=st.integers(-5, 10**7),
       max_output=st.one_of(st.none(), st.integers(-5, 10**7)), reject=st.floats(0.01, 1),
       dialect=st.sampled_from([*DIALECTS, None, "???"]), lang=st.sampled_from(["en", "fr", "xx"]),
       parts=st.lists(st.tuples(st.text(max_size=30), st.integers(0, 10**7)), max_size=3))
def test_guard_decisions_and_refusals_never_raise(estimate, factor, overhead, window, max_output, reject, dialect,
                                                  lang, parts):
    d = decide(estimate, Fit(factor, overhead), window, max_output, reject, (0.5, 0.75))
    body = json.loads(refusal(dialect, d, explain(d, "m", reject, max_output, parts, lang), max_output))
    assert "error" in body


@FUZZ
@given(samples=st.lists(st.tuples(st.integers(-5, 10**7), st.integers(-5, 10**7)), max_size=30))
def test_calibration_fits_stay_within_bounds(samples):
    found = fit(samples)
    assert FACTOR_BOUNDS[0] <= found.factor <= FACTOR_BOUNDS[1] and found.apply(1000) >= 0


# -- hostile bodies, one by one ---------------------------------------------------------------------------

DEEP = "[" * 10_000 + "]" * 10_000
HOSTILE = [
    ("nesting 10,000 deep", f'{{"model": "m", "messages": [{{"role": "user", "content": {DEEP}}}]}}'.encode()),
    ("nesting as the body", DEEP.encode()),
    ("a 4 MB string", json.dumps({"model": "m", "messages": [{"role": "tool", "content": "é" * 2_000_000}]}).encode()),
    ("invalid UTF-8", b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}'),
    ("lone surrogates", b'{"model": "m", "messages": [{"role": "tool", "content": "\\ud800 \\udfff x"}]}'),
    ("NaN and Infinity", (b'{"model": "m", "temperature": NaN, "top_p": Infinity, "messages": [{"role": "user", '
                         b'"content": -Infinity}]}')),
    ("duplicate keys", b'{"model": "a", "model": "b", "messages": [], "messages": [{"role": "user", "content": "x"}]}'),
    ("content as a number", b'{"model": "m", "messages": [{"role": "user", "content": 42}]}'),
    ("messages as an object", b'{"model": "m", "messages": {"role": "user"}}'),
    ("tool_calls null", b'{"model": "m", "messages": [{"role": "assistant", "tool_calls": null}]}'),
    ("input as a string", b'{"model": "m", "input": "hello", "messages": "x", "contents": "y"}'),
]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name, raw", HOSTILE, ids=[n for n, _ in HOSTILE])
def test_hostile_bodies_are_analysed_and_compacted_without_raising(dialect, name, raw):
    a = analyse(raw, "", dialect, PATH, counter, 32 << 20)
    assert a.error is not None or a.count is not None
    if a.error is None and a.parsed is not None and a.text is not None:
        plan = Plan(a.text, a.parsed, a.body, a.request, Compactor(), a.count.encoding)
        plan.over_budget(1000)
        rewritten = plan.apply()
        if rewritten is not None:
            json.loads(rewritten.text.encode("utf-8"))


def test_duplicate_keys_are_read_as_json_loads_reads_them():
    a = analyse(HOSTILE[6][1], "", "openai-chat", "", counter, 1 << 20)
    assert a.request.model == "b" and [m.text for m in a.request.messages] == ["x"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_dialect_parser_takes_any_json_value(dialect):
    for value in (None, 1, "x", [], [1, {}], {"messages": None}, {"contents": [None, 1, {"parts": 3}]}):
        try:
            dialects.parse_request(dialect, value, PATH)
        except BodyError:
            assert not isinstance(value, dict)
