"""Spending budgets (see ``kimi_core.budgets``): refuse the calls past one, alert on the way there.

A call is checked when it comes, before anything else is done with it: past
a budget, Kimi answers it in the provider's words for money run out, in a
form the client does not retry, and it never leaves the machine. Spend is
added by the recorder as each row is priced.
"""

from __future__ import annotations

from mitmproxy import ctx, exceptions, http

from kimi_core.budgets import (
    bedrock_over_budget,
    over_budget_response,
    parse_agents,
    parse_usd,
)
from kimi_core.guard import parse_ratios
from kimi_core.providers import BEDROCK
from kimi_core.proxy.context import WEBSOCKET, KimiContext
from kimi_core.proxy.guard import REFUSED_HEADER


class KimiBudgets:
    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi

    def load(self, loader) -> None:
        loader.add_option("kimi_budget_session_usd", str, "",
                          "Most a session may spend, in US dollars (empty: no limit); past it, calls are refused.")
        loader.add_option("kimi_budget_daily_usd", str, "",
                          "Most all calls may spend in a day (the machine's day), in US dollars.")
        loader.add_option("kimi_budget_agents", str, "",
                          "A daily budget per agent: claude-code=10,codex=5 (agent names as kimi-proxy shows them).")
        loader.add_option("kimi_budget_users", str, "",
                          "A daily budget per user of a shared proxy (proxyauth): alice=20,bob=5,*=10 "
                          "(* is each other user's).")

    def configure(self, updated: set[str]) -> None:
        names = {"kimi_budget_session_usd", "kimi_budget_daily_usd", "kimi_budget_agents", "kimi_budget_users",
                 "kimi_alert_at"}
        if not names & updated:
            return
        try:
            limits = (parse_usd(ctx.options.kimi_budget_session_usd, "kimi_budget_session_usd"),
                      parse_usd(ctx.options.kimi_budget_daily_usd, "kimi_budget_daily_usd"),
                      parse_agents(ctx.options.kimi_budget_agents, "kimi_budget_agents"))
            users = parse_agents(ctx.options.kimi_budget_users, "kimi_budget_users",
                                 "USER=DOLLARS (write alice=20,bob=5,*=10)")
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None
        try:
            alert_at = parse_ratios(ctx.options.kimi_alert_at)
        except ValueError:  # the guard says what is wrong with it
            alert_at = self.kimi.budgets.alert_at
        self.kimi.budgets.set_limits(*limits, alert_at, users)

    def running(self) -> None:
        """What was spent before this start (the database is open by now)."""
        if self.kimi.store is not None:
            self.kimi.budgets.load(*self.kimi.store.spend)

    def request(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        budgets = self.kimi.budgets
        if call is None or call.dialect is None or flow.response is not None or not budgets.active:
            return
        over = budgets.over(call.session.id if call.session else None, call.client.agent if call.client else None,
                            user=call.user)
        if over is None:
            return
        raw = flow.request.raw_content or b""
        streamed = call.transport == WEBSOCKET or b'"stream":true' in raw or b'"stream": true' in raw
        if call.route is not None and call.route.errors == BEDROCK:
            status, body, headers = bedrock_over_budget(over)
        else:
            status, body, headers = over_budget_response(call.dialect, over, streamed, None, f"resp_kimi_{flow.id}")
        flow.response = http.Response.make(status, body, {**headers, REFUSED_HEADER: "refused: budget"})
        call.action = "over_budget"
        self.kimi.alert(flow, call, over.spent / over.limit, "over_budget",
                    f"{over.name} of ${over.limit:,.2f} is spent (${over.spent:,.2f}): a call refused")
