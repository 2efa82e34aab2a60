import json

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
    obj, spans, whole = jsonspans.parse(text, "messages")
    expected = json.loads(text)
    assert json.dumps(obj, sort_keys=True) == json.dumps(expected, sort_keys=True)
    if "messages" in expected:
        assert [json.loads(text[s:e]) for s, e in spans] == expected["messages"]
        assert json.loads(text[whole[0]:whole[1]]) == expected["messages"]


def test_a_later_non_list_key_drops_the_spans():
    obj, spans, whole = jsonspans.parse('{"messages": [1], "messages": null}', "messages")
    assert obj == {"messages": None} and spans is None and whole is None


@pytest.mark.parametrize("text", ['[1]', '{"a": 1', '{"a": 1} x', '{"messages": [1 2]}', '{a: 1}', '{"messages": [1,]}'])
def test_what_json_loads_refuses_raises(text):
    with pytest.raises(ValueError):
        jsonspans.parse(text, "messages")
