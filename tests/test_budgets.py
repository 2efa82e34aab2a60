"""Budgets: spend per session, per day and per agent; alerts once per threshold; the refusal's form."""

import datetime
import json

import pytest

from kimi_core.budgets import Budgets, explain, over_budget_response, parse_agents, parse_usd

NOON = datetime.datetime(2026, 12, 1, 12, 0).timestamp()
NEXT_DAY = datetime.datetime(2026, 12, 2, 9, 0).timestamp()


def test_options_are_read_as_dollars_and_refused_when_odd():
    assert parse_usd("", "x") is None and parse_usd("2.50", "x") == 2.5 and parse_usd("$20", "x") == 20
    with pytest.raises(ValueError, match="is not an amount of US dollars"):
        parse_usd("lots", "kimi_budget_daily_usd")
    with pytest.raises(ValueError, match="must be more than 0"):
        parse_usd("-1", "kimi_budget_daily_usd")
    assert parse_agents("claude-code=10, codex=2.5", "x") == {"claude-code": 10, "codex": 2.5}
    with pytest.raises(ValueError, match="is not AGENT=DOLLARS"):
        parse_agents("claude-code", "kimi_budget_agents")


def test_a_daily_budget_alerts_at_each_share_once_then_refuses_until_the_next_day():
    budgets = Budgets(daily=10.0, alert_at=(0.5, 0.9))
    assert budgets.over("s", "codex", NOON) is None
    assert [share for _, share in budgets.add("s", "codex", 4.0, NOON)] == []
    assert [share for _, share in budgets.add("s", "codex", 2.0, NOON)] == [0.5]
    assert budgets.add("s", "codex", 0.1, NOON) == []  # 0.5 is behind us
    assert [share for _, share in budgets.add("s", "codex", 4.0, NOON)] == [0.9]
    over = budgets.over("s", "claude-code", NOON)
    assert over is not None and over.name == "the daily budget" and over.spent == pytest.approx(10.1)
    assert budgets.over("s", "codex", NEXT_DAY) is None  # a new day


def test_session_and_agent_budgets_apply_to_their_own_calls():
    budgets = Budgets(session=1.0, agents={"claude-code": 2.0})
    budgets.add("s1", "claude-code", 1.5, NOON)
    assert budgets.over("s1", "codex", NOON).name == "the session budget"
    assert budgets.over("s2", "codex", NOON) is None
    budgets.add("s2", "claude-code", 0.6, NOON)
    assert budgets.over("s2", "claude-code", NOON).name == "claude-code's daily budget"
    assert budgets.over("s2", "codex", NOON) is None


def test_each_user_has_a_daily_budget_of_their_own_and_star_is_each_other_users():
    budgets = Budgets(users={"alice": 5.0, "*": 1.0})
    budgets.add("s1", "codex", 1.5, NOON, user="bob")
    over = budgets.over("s1", "codex", NOON, user="bob")
    assert over.name == "bob's daily budget" and over.option == "kimi_budget_users" and over.limit == 1.0
    assert "Ask whoever runs this proxy" in explain(over)
    assert budgets.over("s2", "codex", NOON, user="carol") is None  # * is each user's, not shared
    budgets.add("s3", "codex", 1.5, NOON, user="alice")
    assert budgets.over("s3", "codex", NOON, user="alice") is None
    assert budgets.over("s1", "codex", NOON) is None  # no user (no proxyauth): no user budget
    assert budgets.over("s1", "codex", NEXT_DAY, user="bob") is None  # a new day
    assert parse_agents("alice=20, *=3", "kimi_budget_users") == {"alice": 20, "*": 3}


def test_a_users_spend_read_back_at_start_counts():
    budgets = Budgets(users={"*": 2.0}, alert_at=(0.5,))
    budgets.load("2026-12-01", 3.0, {}, {}, {"bob": 1.5})
    assert budgets.add("s", None, 0.1, NOON, user="bob") == []  # 50% crossed before the restart
    budgets.add("s", None, 0.5, NOON, user="bob")
    assert budgets.over("s", None, NOON, user="bob").spent == pytest.approx(2.1)


def test_spend_read_back_at_start_counts_and_its_crossings_are_not_alerted_again():
    budgets = Budgets(daily=10.0, alert_at=(0.5,))
    budgets.load("2026-12-01", 6.0, {"codex": 6.0}, {"s": 6.0})
    assert budgets.add("s", "codex", 1.0, NOON) == []
    budgets.add("s", "codex", 3.0, NOON)
    assert budgets.over("s", "codex", NOON) is not None


@pytest.mark.parametrize("dialect,streamed,status,check", [
    ("openai-chat", False, 429, lambda b: b["error"]["code"] == "insufficient_quota"),
    ("openai-responses", True, 200, lambda b: b is None),
    ("anthropic", False, 400, lambda b: b["error"]["message"].startswith("You have reached your specified API usage")),
    ("gemini", False, 400, lambda b: b["error"]["status"] == "FAILED_PRECONDITION"),
])
def test_the_refusal_is_in_the_provider_form_and_not_retried(dialect, streamed, status, check):
    budgets = Budgets(daily=1.0)
    budgets.add("s", "a", 2.0, NOON)
    over = budgets.over("s", "a", NOON)
    code, body, headers = over_budget_response(dialect, over, streamed, "m", "resp_1")
    assert code == status and headers["x-should-retry"] == "false"
    text = body.decode()
    assert "the daily budget of $1.00 is spent ($2.00 so far)" in text and "--set kimi_budget_daily_usd=" in text
    assert check(None if streamed else json.loads(body))
    if streamed:
        assert '"code": "insufficient_quota"' in text and "response.failed" in text
