import json
import random

import pytest

from kimi_core import jsonspans

CASES = [
    '{"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "x": 1}',
    '{ "messages" : [ ] }',
    '{"messages":[1,"two",{"3":[4]},null,true]}',
    '  {"a": {"messages": [9]}, "messages": [ {"k": "\\u00e9\\ud800"} ,\n {"k": NaN} ]}\n',
    '{"messages": [1], "messages": [2, 3]}',
    '{}',
]


@pytest.mark.parametrize("text", CASES)
def test_same_value_as_json_loads_and_spans_cut_the_items(text):
    parsed = jsonspans.parse(text, "messages")
    expected = json.loads(text)
    assert json.dumps(parsed.obj, sort_keys=True) == json.dumps(expected, sort_keys=True)
    if "messages" in expected:
        assert [json.loads(text[s:e]) for s, e in parsed.items] == expected["messages"]
        assert json.loads(text[parsed.whole[0]:parsed.whole[1]]) == expected["messages"]


def test_a_later_non_list_key_drops_the_spans():
    parsed = jsonspans.parse('{"messages": [1], "messages": null}', "messages")
    assert parsed.obj == {"messages": None} and parsed.items is None and not parsed.resumable


def test_a_body_that_is_not_an_object_is_left_to_json_loads():
    with pytest.raises(jsonspans.Unusual):
        jsonspans.parse("[1]", "messages")


@pytest.mark.parametrize("text", ['{"a": 1', '{"a": 1} x', '{"messages": [1 2]}', '{a: 1}',
                                  '{"messages": [1,]}', '{} x'])
def test_what_json_loads_refuses_raises(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        jsonspans.parse(text, "messages")


def conversation(rng, turns):
    messages = []
    for t in range(turns):
        messages.append({"role": "user", "content": f"turn {t} " + "x" * rng.randrange(50)})
        if rng.random() < 0.5:
            messages.append({"role": "assistant", "content": None,
                             "tool_calls": [{"id": f"c{t}", "function": {"name": "ls", "arguments": "{}"}}]})
    return messages


@pytest.mark.parametrize("seed", range(20))
def test_resuming_after_a_prefix_gives_what_parsing_from_scratch_gives(seed):
    rng = random.Random(seed)
    history = conversation(rng, 30)
    cut = rng.randrange(1, len(history))
    indent = rng.choice([None, 1])
    def body(msgs):
        return json.dumps({"model": "m", "stream": True, "messages": msgs, "tools": [{"n": len(msgs)}]},
                          indent=indent)
    before, after = body(history[:cut]), body(history)
    prior = jsonspans.parse(before, "messages")
    assert prior.resumable and after.startswith(before[:prior.end_of_items])
    resumed = jsonspans.resume(after, "messages", prior)
    fresh = jsonspans.parse(after, "messages")
    assert resumed.obj == fresh.obj == json.loads(after)
    assert (resumed.items, resumed.whole, resumed.head) == (fresh.items, fresh.whole, fresh.head)


def test_resume_refuses_what_parse_refuses():
    prior = jsonspans.parse('{"messages": [1, 2]}', "messages")
    with pytest.raises(ValueError):
        jsonspans.resume('{"messages": [1, 2 3]}', "messages", prior)


@pytest.mark.parametrize("text, path, value", [
    ('{"a": {"b": [1, {"c": "x"}]}}', ("a", "b", 1, "c"), "x"),
    ('{"a": 1, "a": {"k": 2}}', ("a", "k"), 2),  # the last duplicate, as json.loads keeps it
    (' [ 0 , [ "y" ] ] ', (1, 0), "y"),
    ('{"a": "\\u00e9\\"}"}', ("a",), "é\"}"),
])
def test_locate_finds_the_span_json_loads_would_read(text, path, value):
    a, b = jsonspans.locate(text, 0, path)
    assert json.loads(text[a:b]) == value


@pytest.mark.parametrize("path", [("missing",), ("a", 5), ("a", 0, "x")])
def test_locate_raises_value_error_when_the_path_is_not_there(path):
    with pytest.raises(ValueError):
        jsonspans.locate('{"a": [1]}', 0, path)
