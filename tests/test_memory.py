import json

import pytest
from memory_cases import CASES, HELD_OUT, score
from memory_corpus import HELD, TUNE

from kimi_core.memory import (
    CONSTRAINT,
    INTENTION,
    PREFERENCE,
    Memory,
    extract,
    has_cue,
    llm_body,
    parse_llm_reply,
    user_words,
)


@pytest.mark.parametrize("cases", [CASES + TUNE, HELD_OUT + HELD], ids=["tuned-on", "held-out"])
def test_rule_based_precision_and_recall_meet_their_targets(cases):
    result = score(extract, cases)
    assert result["precision"] >= 0.9 and result["recall"] >= 0.8, \
        result["misses"] if cases is not HELD_OUT + HELD else "held-out misses are not shown: they are not tuned on"


@pytest.mark.parametrize("cases", [CASES + TUNE, HELD_OUT + HELD], ids=["tuned-on", "held-out"])
@pytest.mark.parametrize("french", [False, True], ids=["en", "fr"])
def test_each_language_meets_the_targets(cases, french):
    def is_french(text):
        return bool(set(text.lower().split()) & {"je", "on", "les", "le", "la", "de", "pas", "tu", "mon", "ne",
                                                  "des", "du", "à", "est", "une"}) or "j'" in text.lower()

    result = score(extract, [c for c in cases if is_french(c[0]) == french])
    assert result["precision"] >= 0.9 and result["recall"] >= 0.8


def test_the_same_statement_in_both_languages_has_one_canonical_form_per_language():
    assert [m.content for m in extract("I prefer pytest over unittest. I'd rather use pytest than unittest.")] == \
        ["prefers pytest over unittest"]
    [m] = extract("Je préfère pytest à unittest.")
    assert (m.kind, m.content, m.source_text) == (PREFERENCE, "préfère pytest à unittest", "Je préfère pytest à unittest.")


def test_an_intention_keeps_its_timeframe():
    [m] = extract("On déploie vendredi prochain.")
    assert m.kind == INTENTION and m.content.endswith("(vendredi prochain)")
    [m] = extract("I'm going to refactor the auth module tomorrow.")
    assert m.content == "plans to refactor the auth module (tomorrow)"


def test_only_the_users_own_words_are_read():
    text = ('Look:\n```\nnever do this\n```\n> always quoted\n`never_inline` "I prefer tabs" '
            '<system-reminder>Never X</system-reminder> The README says: always Y\nNever touch prod.')
    words = user_words(text)
    for gone in ("never do this", "always quoted", "never_inline", "I prefer tabs", "Never X", "always Y"):
        assert gone not in words
    assert [(m.kind, m.content) for m in extract(text)] == [(CONSTRAINT, "never touch prod")]


def test_the_lexical_filter_lets_most_messages_go_at_once():
    plain = ["Fix the failing test in utils.py", "What does this function return", "Looks good to me",
             "Refactor the parser into two functions", "Rename the variable", "Corrige le test"]
    assert not any(has_cue(t) for t in plain)
    assert has_cue("I prefer X") and has_cue("on va livrer") and has_cue("la semaine prochaine")


def test_a_huge_pasted_message_is_cut_not_scanned_whole():
    text = "I prefer pytest over unittest.\n" + "log line with no cue at all\n" * 200_000
    assert [m.content for m in extract(text)] == ["prefers pytest over unittest"]


def reply(content):
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


def test_a_language_model_reply_is_read_or_refused():
    good = json.dumps({"memories": [{"kind": "preference", "content": "Prefers Pytest", "confidence": 0.97}]})
    assert parse_llm_reply(reply(good), "src") == [Memory(PREFERENCE, "prefers pytest", 0.97, "src")]
    assert parse_llm_reply(reply('{"memories": []}'), "src") == []
    assert parse_llm_reply(reply("[]"), "src") == []  # a bare list, as local models may answer: none
    for bad in ("Hello from the fake provider.", '{"memories": [{"kind": "wish", "content": "x"}]}',
                '{"memories": "none"}', '{"answer": 42}'):
        assert parse_llm_reply(reply(bad), "src") is None
    assert parse_llm_reply({"error": {"message": "rate limited"}}, "src") is None
    body = llm_body("small-model", "I prefer X")
    assert body["model"] == "small-model" and body["messages"][-1] == {"role": "user", "content": "I prefer X"}


def test_an_aside_after_a_comma_is_not_part_of_the_preference():
    assert [m.content for m in extract("Thanks! I prefer pytest over unittest, remember.")] == \
        ["prefers pytest over unittest"]
    assert [m.content for m in extract("I really prefer f-strings to format()")] == ["prefers f-strings over format()"]


@pytest.mark.parametrize("text", [
    "Never do it" + " " * 20_000 + "x",  # once 200 s for 2,000 spaces: a regex backtracking cubically
    "I prefer a" + ", " * 10_000 + "b",
    "I prefer " + "pytest over " * 3_000 + "unittest",
    "Je préfère " + "le " * 6_000 + "thé à " * 1_000 + "café",
    "never " * 4_000,
    "`" * 20_000,
    "please " * 3_000 + "ok ok ok",
])
def test_pathological_messages_are_read_in_linear_time(text):
    import time
    started = time.perf_counter()
    extract(text)
    assert time.perf_counter() - started < 2  # milliseconds here


def test_the_reader_gives_up_a_batch_over_its_budget_and_reads_the_next_in_a_new_process():
    import asyncio
    import os
    import time

    from kimi_core.proxy.memory import Abandoned, Reader

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    async def main():
        reader = Reader(budget=5.0)  # a trivial batch answers in milliseconds, even on a busy machine
        assert await reader.run(abs, -3) == 3  # the process starts with the first batch
        first = reader.pid
        with pytest.raises(Abandoned):
            await reader.run(time.sleep, 60)
        assert not alive(first)
        assert await reader.run(abs, -4) == 4
        second = reader.pid
        assert second != first
        with pytest.raises(ValueError):  # the function's own failure comes back as it is
            await reader.run(int, "not a number")
        started = time.monotonic()
        busy = asyncio.ensure_future(reader.run(time.sleep, 60))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(reader.close)  # closing does not wait for the batch
        assert time.monotonic() - started < 30 and not alive(second)
        busy.cancel()

    asyncio.run(main())


def test_a_pasted_list_of_statements_yields_at_most_sixteen():
    from kimi_core.memory import MAX_STATEMENTS, read
    text = "\n".join(f"I prefer library{i} over framework{i}." for i in range(1200))
    _, passed, found = read(text)
    assert passed and len(found) == MAX_STATEMENTS == 16
    assert found[0].kind == "preference" and "library0" in found[0].content


def test_the_proxy_side_filter_passes_every_message_the_reader_finds_something_in():
    """``may_state`` decides in the proxy's process what goes to the reader: it must never drop a statement."""
    from kimi_core.memory import may_state, read
    texts = [text for text, _ in CASES + HELD_OUT + TUNE + HELD]
    texts += ["Je préfère pytest.", "We'll ship Friday.", "NEVER push to main", "Tu DOIS tester."]
    for text in texts:
        if read(text)[2]:
            assert may_state(text), text
    assert not may_state("the model reads every token of the history again on each turn")


@pytest.mark.parametrize("content", [
    '{"memories": [{"kind": "constraint", "content": "never touch prod", "confidence": 0.9}]}',
    # What local models served by Ollama or llama.cpp answer besides.
    '```json\n{"memories": [{"kind": "constraint", "content": "never touch prod", "confidence": 0.9}]}\n```',
    '<think>\nThe user states a rule.\n</think>\n{"memories": [{"kind": "Constraint", "content": "Never touch prod"}]}',
    'Here is the JSON:\n[{"kind": "constraint", "statement": "never touch prod", "confidence": "0.9"}]',
])
def test_a_local_models_reply_is_read_as_meant(content):
    from kimi_core.memory import parse_llm_reply

    found = parse_llm_reply({"choices": [{"message": {"content": content}}]}, "Never touch prod.")
    assert found is not None and [(m.kind, m.content) for m in found] == [("constraint", "never touch prod")]


@pytest.mark.parametrize("content", ["not JSON at all", '{"memories": [{"kind": "wish", "content": "x"}]}',
                                     '{"memories": "none"}', "<think>hmm</think>"])
def test_a_reply_that_is_not_what_was_asked_leaves_it_to_the_rules(content):
    from kimi_core.memory import parse_llm_reply

    assert parse_llm_reply({"choices": [{"message": {"content": content}}]}, "x") is None
