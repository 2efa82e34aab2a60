"""Agents and conversations end to end: a real mitmdump with Kimi, the fake provider, the official SDKs.

The SDKs speak as the agents do where it matters here: Claude Code's
User-Agent and session header (as claude-code 2.1.332 sends them), and a
model that answers with a tool call (the fake's ``X-Fake-Tool``).
"""

import sqlite3
import uuid

import pytest
from conftest import wait_rows
from test_e2e import anthropic_client, openai_client

pytestmark = pytest.mark.e2e


def claude_code(proxy, session):
    """An Anthropic client sending what Claude Code sends about itself."""
    return anthropic_client(proxy).with_options(default_headers={
        "User-Agent": "claude-cli/2.1.332 (external, sdk-cli)", "X-Claude-Code-Session-Id": session})


def ask(client, tag, *turns, tool=None):
    """One call whose history is ``turns`` (user, assistant, user, ...)."""
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": text} for i, text in enumerate(turns)]
    headers = {"X-Fake-Tool": tool} if tool else {}
    client.messages.create(model=tag, max_tokens=50, messages=messages, extra_headers=headers)


def conversations(proxy, tag):
    db = sqlite3.connect(proxy.db)
    db.row_factory = sqlite3.Row
    rows = wait_rows(proxy.db, "model = ?", (tag,), count=6)
    found = {r["conversation_id"]: dict(db.execute("SELECT * FROM conversations WHERE id = ?",
                                                   (r["conversation_id"],)).fetchone()) for r in rows}
    return rows, found


def test_two_windows_and_a_subagent_are_three_conversations_with_the_right_parent(proxy):
    tag = f"claude-sonnet-4-5-{uuid.uuid4().hex[:6]}"
    window_a, window_b = claude_code(proxy, str(uuid.uuid4())), claude_code(proxy, str(uuid.uuid4()))
    fix, docs, explore = "Fix the parser, please", "Write the docs for the CLI", "Explore src/ and report"
    ask(window_a, tag, fix, tool="Task")  # the main agent hands work to a subagent...
    ask(window_b, tag, docs)  # ...while another window works on something else
    ask(window_a, tag, explore, tool="Grep")  # the subagent, in window A's session
    ask(window_b, tag, docs, "Which format?", "Markdown")
    ask(window_a, tag, explore, "[grep]", "src/parser.py: 3 matches")
    ask(window_a, tag, fix, "[Task]", "The subagent's report")  # the main agent goes on
    rows, found = conversations(proxy, tag)
    by_call = [r["conversation_id"] for r in rows]
    main, other, sub = by_call[0], by_call[1], by_call[2]
    assert by_call == [main, other, sub, other, sub, main]
    assert len({main, other, sub}) == 3
    assert found[sub]["parent_id"] == main and found[main]["parent_id"] is None and found[other]["parent_id"] is None
    assert found[main]["title"] == fix and found[sub]["title"] == explore
    assert {(r["agent"], r["agent_version"]) for r in rows} == {("claude-code", "2.1.332")}
    assert {c["agent"] for c in found.values()} == {"claude-code"}
    assert found[main]["session_id"] == rows[0]["session_id"]


def test_calls_without_ids_are_threaded_by_their_history(proxy):
    tag = f"gpt-4.1-{uuid.uuid4().hex[:6]}"
    client = openai_client(proxy)

    def chat(*turns):
        client.chat.completions.create(model=tag, messages=[
            {"role": "system", "content": "You are terse."},
            *({"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns))])

    chat("alpha task")
    chat("beta task")
    chat("alpha task", "ok", "alpha, step two")
    chat("beta task", "ok", "beta, step two")
    chat("alpha task", "ok", "alpha, step two", "done", "alpha, step three")
    chat("beta task", "ok", "beta, step two", "done", "beta, step three")
    rows, found = conversations(proxy, tag)
    ids = [r["conversation_id"] for r in rows]
    assert ids[0] != ids[1] and ids == [ids[0], ids[1]] * 3
    assert rows[0]["agent"] == "openai-python" and rows[0]["agent_version"]
    assert sorted(c["title"] for c in found.values()) == ["alpha task", "beta task"]


def test_the_cost_of_a_call_with_cache_reads_and_writes_is_genai_prices_own_figure(proxy):
    import genai_prices
    tag = f"cost-{uuid.uuid4().hex[:6]}"
    anthropic_client(proxy).messages.create(
        model="claude-sonnet-4-5", max_tokens=50, messages=[{"role": "user", "content": f"price me {tag}"}],
        extra_headers={"X-Fake-Prompt-Tokens": "5000", "X-Fake-Cache-Write": "1200", "X-Kimi-Session": tag})
    [row] = wait_rows(proxy.db, "session_id = (SELECT id FROM sessions WHERE name = ?)", (tag,))
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (5000, 3, 1200)
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=row["prompt_tokens"], cache_read_tokens=3, cache_write_tokens=1200,
                           output_tokens=row["completion_tokens"]),
        "claude-sonnet-4-5", provider_id="anthropic")
    assert row["cost_usd"] == pytest.approx(float(expected.total_price), rel=1e-9) and row["cost_usd"] > 0
    assert row["cost_note"] is None
    # Cache reads are cheaper than fresh input: the same prompt uncached would cost more.
    uncached = genai_prices.calc_price(genai_prices.Usage(input_tokens=row["prompt_tokens"],
                                                          output_tokens=row["completion_tokens"]),
                                       "claude-sonnet-4-5", provider_id="anthropic")
    assert float(uncached.total_price) != row["cost_usd"]


def test_a_model_without_a_price_has_no_cost_and_says_why(proxy):
    tag = f"unpriced-{uuid.uuid4().hex[:6]}"
    openai_client(proxy).chat.completions.create(model=tag, messages=[{"role": "user", "content": "hi"}])
    [row] = wait_rows(proxy.db, "model = ?", (tag,))
    assert row["cost_usd"] is None
    assert row["cost_note"] == f'no price known for {tag} (openai); add one under [models."{tag}"] in the config'


def alerts_of(proxy, request_id):
    db = sqlite3.connect(proxy.db)
    return [m for (m,) in db.execute("SELECT message FROM alerts WHERE request_id = ? AND kind = 'cache_break'",
                                     (request_id,))]


def test_a_changed_system_prompt_or_an_edited_message_is_a_cache_break_and_moved_markers_are_not(proxy):
    tag = f"claude-sonnet-4-5-{uuid.uuid4().hex[:6]}"
    client = claude_code(proxy, str(uuid.uuid4()))
    long = "The repository holds a parser, a CLI and the docs. " * 300  # about 3,000 tokens

    def call(system, *turns):
        messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": [{"type": "text", "text": t}]}
                    for i, t in enumerate(turns)]
        messages[-1]["content"][0]["cache_control"] = {"type": "ephemeral"}  # as Claude Code marks the last one
        client.messages.create(model=tag, max_tokens=50, system=system, messages=messages)

    call("You help. Today is Monday 10:00.", long)
    call("You help. Today is Monday 10:00.", long, "Read it.", "Now fix the parser.")  # markers moved: no break
    call("You help. Today is Monday 10:05.", long, "Read it.", "Now fix the parser.", "Done.", "Thanks.")
    call("You help. Today is Monday 10:05.", long + " (edited)", "Read it.", "Now fix the parser.", "Done.", "More.")
    rows = wait_rows(proxy.db, "model = ?", (tag,), count=4)
    assert len({r["conversation_id"] for r in rows}) == 1  # one conversation throughout
    assert alerts_of(proxy, rows[0]["id"]) == [] and alerts_of(proxy, rows[1]["id"]) == []
    [system] = alerts_of(proxy, rows[2]["id"])
    assert "the system prompt changed since its last call" in system and "claude-code conversation" in system
    [edited] = alerts_of(proxy, rows[3]["id"])
    assert "message 1 (user) changed since its last call" in edited
    paid = int(edited.split("about ")[1].split(" of ")[0].replace(",", ""))
    assert 2500 < paid < rows[3]["prompt_tokens_est"]  # from the edited message on, not the system prompt


def test_past_its_budget_a_call_is_refused_in_the_provider_form_and_the_sdks_do_not_retry(fake, tmp_path):
    import anthropic
    import openai
    from test_e2e import trust

    from kimi_core.testing.proxy import Mitmdump
    with Mitmdump(tmp_path, upstream_port=fake.port, options={"kimi_budget_daily_usd": "0.01"}) as proxy:
        client = openai.OpenAI(api_key="sk-test-budget", max_retries=3, http_client=openai.DefaultHttpxClient(
            proxy=proxy.url, verify=trust(proxy)))
        client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "spend"}],
                                       extra_headers={"X-Fake-Prompt-Tokens": "10000"})  # about $0.02
        wait_rows(proxy.db, "model = 'gpt-4.1'")
        seen = len(fake.seen)
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "more"}])
        assert raised.value.code == "insufficient_quota" and "the daily budget of $0.01 is spent" in raised.value.message
        with pytest.raises(anthropic.BadRequestError) as claude:
            anthropic.Anthropic(api_key="sk-ant-test", max_retries=3, http_client=anthropic.DefaultHttpxClient(
                proxy=proxy.url, verify=trust(proxy))).messages.create(
                model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "more"}])
        assert claude.value.body["error"]["message"].startswith("You have reached your specified API usage limits")
        assert len(fake.seen) == seen  # never left the machine
        rows = wait_rows(proxy.db, "action = 'over_budget'", count=2)
        assert len(rows) == 2 and all(r["cost_usd"] == 0 for r in rows)  # one row each: no retries
        db = sqlite3.connect(proxy.db)
        kinds = [k for (k,) in db.execute("SELECT kind FROM alerts ORDER BY id")]
        assert kinds.count("budget") == 3 and kinds.count("over_budget") == 2  # 75%, 85%, 95%, then refusals
