"""Spending budgets: per session, per day, per agent per day and per user per day, in US dollars.

Spend is what calls cost (``kimi_core.cost``), added as each call's row is
written; at start it is read back from the database, so a restart does not
reset a day. Each budget raises an alert as spend crosses each of
``kimi_alert_at``'s shares of it, once; past the budget, the next calls are
refused before they leave the machine (see ``over_budget_response``). Days
are the machine's local days. Pure logic: the caller passes the clock.
"""

from __future__ import annotations

import datetime
import json
import time
from collections import OrderedDict
from dataclasses import dataclass

from kimi_core.guard import failed_events
from kimi_core.providers import ANTHROPIC, GEMINI, OPENAI_RESPONSES

MAX_SESSIONS = 1000  # sessions whose spend is kept in memory


def parse_usd(text: str, name: str) -> float | None:
    """A budget option: "" (none), or dollars such as ``20`` or ``2.50``."""
    text = text.strip().lstrip("$")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not an amount of US dollars (write 20 or 2.50)") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name}: a budget must be more than 0 dollars, not {text!r}")
    return value


def parse_agents(text: str, name: str, example: str = "AGENT=DOLLARS (write claude-code=10,codex=5)"
                 ) -> dict[str, float]:
    """``claude-code=10, codex=5``: a daily budget per agent (or per user: ``alice=10,*=3``)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        agent, sep, amount = part.partition("=")
        if not sep or not agent.strip():
            raise ValueError(f"{name}: {part!r} is not {example}")
        value = parse_usd(amount, f"{name} ({agent.strip()})")
        if value is not None:
            out[agent.strip()] = value
    return out


@dataclass(frozen=True, slots=True)
class Budget:
    name: str  # "the daily budget", "the session budget", "claude-code's daily budget"
    option: str  # the option that sets it
    limit: float
    spent: float


def today(now: float) -> str:
    return datetime.datetime.fromtimestamp(now).date().isoformat()


EVERYONE = "*"  # in kimi_budget_users: each user not named


class Budgets:
    """Spend and limits. ``users`` maps a user (as proxyauth names them) to a daily limit; ``*`` is everyone
    else's, each their own."""

    def __init__(self, session: float | None = None, daily: float | None = None,
                 agents: dict[str, float] | None = None, alert_at: tuple[float, ...] = (0.75, 0.85, 0.95),
                 users: dict[str, float] | None = None) -> None:
        self.session, self.daily, self.agents, self.alert_at = session, daily, dict(agents or {}), alert_at
        self.users = dict(users or {})
        self._day = ""
        self._daily = 0.0
        self._agents: dict[str, float] = {}
        self._users: dict[str, float] = {}
        self._sessions: OrderedDict[str, float] = OrderedDict()
        self._alerted: set[tuple[str, float]] = set()  # (budget key, share) already alerted

    def set_limits(self, session: float | None, daily: float | None, agents: dict[str, float],
                   alert_at: tuple[float, ...], users: dict[str, float] | None = None) -> None:
        """New limits (the options changed); what was spent stays."""
        self.session, self.daily, self.agents, self.alert_at = session, daily, dict(agents), alert_at
        self.users = dict(users or {})

    @property
    def active(self) -> bool:
        return bool(self.session or self.daily or self.agents or self.users)

    def load(self, day: str, daily: float, agents: dict[str, float], sessions: dict[str, float],
             users: dict[str, float] | None = None) -> None:
        """Spend already recorded: today's (``day``), per agent today, per session, per user today."""
        self._day, self._daily, self._agents, self._users = day, daily, dict(agents), dict(users or {})
        self._sessions = OrderedDict(sessions)
        for key, spent in [("day", daily), *((f"agent:{a}", s) for a, s in agents.items()),
                           *((f"user:{u}", s) for u, s in self._users.items()),
                           *((f"session:{k}", s) for k, s in sessions.items())]:
            limit = self._limit(key)
            for share in self.alert_at:  # crossed before the restart: not again
                if limit and spent >= share * limit:
                    self._alerted.add((key, share))

    def _roll(self, now: float) -> None:
        day = today(now)
        if day != self._day:
            self._day, self._daily, self._agents, self._users = day, 0.0, {}, {}
            self._alerted = {k for k in self._alerted if k[0].startswith("session:")}

    def _limit(self, key: str) -> float | None:
        if key == "day":
            return self.daily
        if key.startswith("agent:"):
            return self.agents.get(key[6:])
        if key.startswith("user:"):
            return self._user_limit(key[5:])
        return self.session

    def _user_limit(self, user: str) -> float | None:
        return self.users.get(user, self.users.get(EVERYONE))

    def _budgets(self, session: str | None, agent: str | None, user: str | None = None) -> list[tuple[str, Budget]]:
        out = []
        if self.daily:
            out.append(("day", Budget("the daily budget", "kimi_budget_daily_usd", self.daily, self._daily)))
        if agent and agent in self.agents:
            out.append((f"agent:{agent}", Budget(f"{agent}'s daily budget", "kimi_budget_agents",
                                                 self.agents[agent], self._agents.get(agent, 0.0))))
        if user and (limit := self._user_limit(user)):
            out.append((f"user:{user}", Budget(f"{user}'s daily budget", "kimi_budget_users", limit,
                                               self._users.get(user, 0.0))))
        if self.session and session:
            out.append((f"session:{session}", Budget("the session budget", "kimi_budget_session_usd",
                                                     self.session, self._sessions.get(session, 0.0))))
        return out

    def over(self, session: str | None, agent: str | None, now: float | None = None,
             user: str | None = None) -> Budget | None:
        """The first budget this call would go past (it is spent already), or None."""
        self._roll(time.time() if now is None else now)
        return next((b for _, b in self._budgets(session, agent, user) if b.spent >= b.limit), None)

    def add(self, session: str | None, agent: str | None, usd: float,
            now: float | None = None, user: str | None = None) -> list[tuple[Budget, float]]:
        """Count a call's cost; the (budget, share) thresholds it crossed, to alert on."""
        self._roll(time.time() if now is None else now)
        self._daily += usd
        if agent:
            self._agents[agent] = self._agents.get(agent, 0.0) + usd
        if user:
            self._users[user] = self._users.get(user, 0.0) + usd
        if session:
            self._sessions[session] = self._sessions.get(session, 0.0) + usd
            self._sessions.move_to_end(session)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        crossed = []
        for key, budget in self._budgets(session, agent, user):
            for share in self.alert_at:
                if budget.spent >= share * budget.limit and (key, share) not in self._alerted:
                    self._alerted.add((key, share))
                    crossed.append((budget, share))
        return crossed


def explain(budget: Budget) -> str:
    raise_it = ("Ask whoever runs this proxy to raise it (kimi_budget_users)" if budget.option == "kimi_budget_users"
                else f"Raise it with --set {budget.option}=...")
    return (f"Kimi Proxy refused this request before it left your machine: {budget.name} of "
            f"${budget.limit:,.2f} is spent (${budget.spent:,.2f} so far). {raise_it} "
            "(or wait for the next day), then try again.")


def over_budget_response(dialect: str | None, budget: Budget, streamed: bool, model: str | None,
                         response_id: str) -> tuple[int, bytes, dict[str, str]]:
    """The refusal as the provider answers when the money runs out, in a form clients do not retry.

    OpenAI: 429 ``insufficient_quota`` (Codex stops on it; the SDKs would retry a 429, so
    ``x-should-retry: false``), or ``response.failed`` with that code for a streamed Responses
    call. Anthropic: 400 ``invalid_request_error``, "You have reached your specified API usage
    limits", as for a spend limit set in its console. Gemini: 400 ``FAILED_PRECONDITION``
    (a 429 would be retried). Bedrock: ``ServiceQuotaExceededException``.
    """
    text = explain(budget)
    headers = {"content-type": "application/json", "x-should-retry": "false"}
    if dialect == OPENAI_RESPONSES and streamed:
        return 200, failed_events("insufficient_quota", text, model, response_id), \
            {**headers, "content-type": "text/event-stream"}
    if dialect == ANTHROPIC:
        return 400, json.dumps({"type": "error", "error": {
            "type": "invalid_request_error", "message": f"You have reached your specified API usage limits. {text}"}
        }).encode(), headers
    if dialect == GEMINI:
        return 400, json.dumps({"error": {"code": 400, "message": text, "status": "FAILED_PRECONDITION"}}).encode(), \
            headers
    return 429, json.dumps({"error": {
        "message": f"You exceeded your current quota, please check your plan and billing details. {text}",
        "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}).encode(), headers


def bedrock_over_budget(budget: Budget) -> tuple[int, bytes, dict[str, str]]:
    return 400, json.dumps({"message": explain(budget)}).encode(), {
        "content-type": "application/json", "x-should-retry": "false",
        "x-amzn-ErrorType": "ServiceQuotaExceededException:http://internal.amazon.com/coral/com.amazon.bedrock/"}
