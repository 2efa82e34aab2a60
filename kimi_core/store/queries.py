"""What the ``kimi-proxy`` command and the report read from the database: plain dicts, newest first."""

from __future__ import annotations

import datetime
import re
import sqlite3
from collections import defaultdict
from typing import Any

from kimi_core.errors import KimiError
from kimi_core.forecast import describe, forecast


def _rows(conn: sqlite3.Connection, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]:
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def day_start(now: datetime.datetime | None = None) -> datetime.datetime:
    """The start of the machine's day (budgets' days are local), in UTC as rows' ``ts`` are."""
    now = now or datetime.datetime.now().astimezone()
    return now.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(datetime.UTC)


def and_clauses(*conditions: tuple[str, Any]) -> tuple[str, list]:
    """`` AND a = ? AND b = ?`` for the conditions whose value is given, and those values."""
    kept = [(sql, value) for sql, value in conditions if value]
    return "".join(f" AND {sql}" for sql, _ in kept), [value for _, value in kept]


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def since_iso(text: str, now: datetime.datetime | None = None) -> str:
    """``30m``, ``2h``, ``7d`` or an ISO date as the ISO timestamp to read from."""
    now = now or datetime.datetime.now(datetime.UTC)
    m = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text)
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
        try:
            return (now - datetime.timedelta(**{unit: int(m.group(1))})).isoformat(timespec="milliseconds")
        except OverflowError:
            return datetime.datetime.min.replace(tzinfo=datetime.UTC).isoformat(timespec="milliseconds")  # all
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise KimiError(f"--since {text!r}: write 30m, 2h, 7d or a date such as 2026-11-21") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds")


def resolve_session(conn: sqlite3.Connection, session: str) -> str:
    """A session id from its id, the start of one, or its name."""
    found = [r for (r,) in conn.execute(
        "SELECT id FROM sessions WHERE id = ? OR name = ? OR id LIKE ? || '%' LIMIT 2", (session, session, session))]
    if len(found) != 1:
        raise KimiError(f"{'no' if not found else 'more than one'} session matches {session!r} "
                        "(kimi-proxy sessions lists them)")
    return found[0]


def sessions(conn: sqlite3.Connection, reject_at: float = 0.95) -> list[dict[str, Any]]:
    out = _rows(conn, """
        SELECT s.id AS session, s.name, coalesce(s.provider, max(r.provider)) AS provider,
               group_concat(DISTINCT r.model) AS models, count(r.dialect) AS requests,
               count(r.id) - count(r.dialect) AS other_calls,
               sum(r.prompt_tokens) AS prompt_tokens, sum(r.prompt_tokens_est) AS prompt_tokens_est,
               sum(r.completion_tokens) AS completion_tokens, max(r.window_share) AS peak_share,
               sum(r.action = 'rejected') AS refusals, sum(r.action = 'compacted') AS compactions,
               sum(r.cost_usd) AS cost_usd, group_concat(DISTINCT r.agent) AS agents,
               min(r.ts) AS started, max(r.ts) AS last_seen
        FROM sessions s LEFT JOIN requests r ON r.session_id = s.id
        GROUP BY s.id ORDER BY last_seen DESC""")
    series: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for sid, cal, window in conn.execute(
            "SELECT session_id, prompt_tokens_cal, context_window FROM requests "
            "WHERE prompt_tokens_cal IS NOT NULL AND action != 'rejected' ORDER BY ts"):
        series[sid].append((cal, window))
    for row in out:
        points = series.get(row["session"], [])
        f = forecast([p for p, _ in points], points[-1][1] or 0, reject_at) if points else None
        row["growth_per_turn"] = f.growth if f else None
        row["turns_left"] = f.turns_left if f else None
        row["forecast"] = describe(f) if f else None
    return out


def _filters(conn: sqlite3.Connection, session: str | None = None, agent: str | None = None,
             since: str | None = None, conversation: str | None = None, prefix: str = "",
             user: str | None = None) -> tuple[str, list]:
    """``WHERE ...`` (or "") and its parameters, for the options the commands share."""
    clauses, params = [], []
    if user:
        clauses.append(f"{prefix}user = ?")
        params.append(user)
    if session:
        clauses.append(f"{prefix}session_id = ?")
        params.append(resolve_session(conn, session))
    if agent:
        clauses.append(f"{prefix}agent = ?")
        params.append(agent)
    if since:
        clauses.append(f"{prefix}ts >= ?")
        params.append(since_iso(since))
    if conversation:
        clauses.append(f"{prefix}conversation_id LIKE ? || '%'")
        params.append(conversation)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def requests(conn: sqlite3.Connection, session: str | None = None, limit: int = 20, agent: str | None = None,
             conversation: str | None = None, user: str | None = None) -> list[dict[str, Any]]:
    where, params = _filters(conn, session, agent, conversation=conversation, user=user)
    return _rows(conn, f"""
        SELECT id, ts, session_id AS session, provider, model, dialect, method, path, status_code AS status, streamed,
               prompt_tokens_est, prompt_tokens, prompt_tokens_cal, completion_tokens, cached_tokens, window_share,
               action, tokens_before, tokens_after, ttfb_ms, duration_ms, error, agent, conversation_id AS conversation,
               cost_usd, cost_note, user
        FROM requests {where} ORDER BY ts DESC LIMIT ?""", [*params, limit])


def conversations(conn: sqlite3.Connection, session: str | None = None, agent: str | None = None,
                  limit: int = 20) -> list[dict[str, Any]]:
    """Conversations, most recently active first: their agent, parent, calls, tokens, cache share and cost."""
    where, params = _filters(conn, session, agent, prefix="c.")
    return _rows(conn, f"""
        SELECT c.id AS conversation, c.agent, c.agent_version, c.parent_id AS parent, c.title,
               c.session_id AS session, c.started_at AS started, count(r.id) AS calls, max(r.ts) AS last_seen,
               (SELECT model FROM requests m WHERE m.conversation_id = c.id ORDER BY m.ts DESC LIMIT 1) AS model,
               sum(r.prompt_tokens) AS prompt_tokens, sum(r.cached_tokens) AS cached_tokens,
               sum(r.completion_tokens) AS completion_tokens, max(r.window_share) AS peak_share,
               sum(r.cost_usd) AS cost_usd, sum(r.cost_usd IS NULL) AS unpriced
        FROM conversations c LEFT JOIN requests r ON r.conversation_id = c.id {where}
        GROUP BY c.id ORDER BY last_seen DESC LIMIT ?""", [*params, limit])


GROUPINGS = {  # kimi-proxy cost --by ...
    "day": "substr(r.ts, 1, 10)",
    "agent": "coalesce(r.agent, 'unknown')",
    "model": "coalesce(r.model, '')",
    "provider": "r.provider",
    "session": "coalesce(s.name, r.session_id)",
    "conversation": "coalesce(substr(r.conversation_id, 1, 8) || ' ' || c.title, '(none)')",
    "user": "coalesce(r.user, '(no proxyauth)')",
}


def costs(conn: sqlite3.Connection, by: str = "day", since: str | None = None, agent: str | None = None,
          session: str | None = None, user: str | None = None) -> list[dict[str, Any]]:
    """What LLM calls cost, grouped ``by`` day, agent, model, provider, session, conversation or user."""
    where, params = _filters(conn, session, agent, since, prefix="r.", user=user)
    where = (where + " AND " if where else "WHERE ") + "r.dialect IS NOT NULL"
    return _rows(conn, f"""
        SELECT {GROUPINGS[by]} AS "group", count(*) AS calls, sum(r.prompt_tokens) AS prompt_tokens,
               sum(r.cached_tokens) AS cached_tokens, sum(r.completion_tokens) AS completion_tokens,
               sum(r.cost_usd) AS cost_usd, sum(r.cost_usd IS NULL) AS unpriced,
               sum(r.cost_note LIKE 'estimated%') AS estimated, sum(r.saved_usd) AS saved_usd
        FROM requests r LEFT JOIN sessions s ON s.id = r.session_id
             LEFT JOIN conversations c ON c.id = r.conversation_id
        {where} GROUP BY 1 ORDER BY {"1 DESC" if by == "day" else "cost_usd DESC NULLS LAST, calls DESC"}""", params)


def other_calls(conn: sqlite3.Connection, since: str | None = None) -> int:
    """Calls to provider hosts that are no generation (model lists, token counts, an agent's settings)."""
    where, params = ("AND ts >= ?", [since_iso(since)]) if since else ("", [])
    return conn.execute(f"SELECT count(*) FROM requests WHERE dialect IS NULL {where}", params).fetchone()[0]


def stats(conn: sqlite3.Connection, since: str | None = None) -> list[dict[str, Any]]:
    """LLM calls only, by provider and model (``other_calls`` counts the rest)."""
    where, params = ("AND ts >= ?", [since_iso(since)]) if since else ("", [])
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in _rows(conn, f"""
            SELECT provider, coalesce(model, '') AS model, prompt_tokens, prompt_tokens_est, completion_tokens,
                   duration_ms, ttfb_ms, action, tokens_before, tokens_after, cost_usd
            FROM requests WHERE dialect IS NOT NULL {where} ORDER BY ts""", params):
        g = groups.setdefault((r["provider"], r["model"]), {
            "provider": r["provider"], "model": r["model"], "calls": 0, "prompt_tokens": 0,
            "prompt_tokens_est": 0, "completion_tokens": 0, "refusals": 0, "tokens_saved": 0, "cost_usd": 0.0,
            "_latency": [], "_ttfb": []})
        g["calls"] += 1
        for col in ("prompt_tokens", "prompt_tokens_est", "completion_tokens"):
            g[col] += r[col] or 0
        g["refusals"] += r["action"] == "rejected"
        g["cost_usd"] += r["cost_usd"] or 0.0
        if r["tokens_before"] is not None and r["tokens_after"] is not None:
            g["tokens_saved"] += r["tokens_before"] - r["tokens_after"]
        if r["duration_ms"] is not None:
            g["_latency"].append(r["duration_ms"])
        if r["ttfb_ms"] is not None:
            g["_ttfb"].append(r["ttfb_ms"])
    factors = dict(conn.execute("SELECT model, factor FROM calibration").fetchall())
    out = []
    for g in sorted(groups.values(), key=lambda g: (-g["calls"], g["provider"], g["model"])):
        latency, ttfb = g.pop("_latency"), g.pop("_ttfb")
        g |= {"p50_ms": percentile(latency, 50), "p95_ms": percentile(latency, 95),
              "ttfb_p50_ms": percentile(ttfb, 50), "ttfb_p95_ms": percentile(ttfb, 95),
              "calibration": factors.get(g["model"])}
        out.append(g)
    return out


def alerts(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    return _rows(conn, "SELECT ts, session_id AS session, request_id, kind, level, message FROM alerts "
                       "ORDER BY ts DESC LIMIT ?", (limit,))


def memories(conn: sqlite3.Connection, kind: str | None = None, project: str | None = None,
             user: str | None = None) -> list[dict[str, Any]]:
    where, params = and_clauses(("user = ?", user), ("kind = ?", kind),
                                ("project = ?", project and (project.rstrip("/") or "/")))
    return _rows(conn, f"SELECT id, kind, content, project, count, confidence, last_seen, session_id AS session, "
                       f"provider, source_text, user FROM memories WHERE 1 {where} ORDER BY last_seen DESC", params)
