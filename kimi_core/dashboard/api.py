"""What the dashboard's JSON API answers, read from the database: plain dicts.

Every function takes a read-only connection and is bounded (``LIMIT``, an
index) so that a database of 100,000 requests answers in milliseconds. Nothing
here returns a body's text: parts are named by kind, tool and role, and the
only free text (titles, alert messages, memories) was redacted when stored.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass
from typing import Any

from kimi_core.composition import TOOL_CALL, TOOL_DEFINITION, TOOL_RESULT, composition, summarise
from kimi_core.dialects import parse_request
from kimi_core.errors import KimiError
from kimi_core.forecast import describe, forecast
from kimi_core.store.queries import _rows, and_clauses, day_start
from kimi_core.store.read import load_request_body
from kimi_core.tokens import TokenCounter

ACTIVE_MINUTES = 30  # a conversation with a call this recent is "now"
DOMINANT_SHARE = 0.25  # a tool result this big a share of the window is a finding
CALIBRATION_FAR = 0.2  # a calibration factor further than this from 1 is a finding
MARKER_SHA = re.compile(r"the original is kept, sha ([0-9a-f]{12})")  # compaction.marker
ROW_COLUMNS = """id, ts, session_id, conversation_id, agent, provider, model, dialect, transport, status_code,
    streamed, prompt_tokens_est, prompt_tokens_cal, prompt_tokens, completion_tokens, cached_tokens,
    cache_write_tokens, reasoning_tokens, context_window, window_share, action, tokens_before, tokens_after,
    compacted_results, cost_usd, saved_usd, ttfb_ms, duration_ms, error, messages, project, hints, user"""


@dataclass(frozen=True)
class Lines:
    """The guard's lines, as the running proxy has them."""

    alerts: tuple[float, ...] = (0.75, 0.85, 0.95)
    reject_at: float = 0.95

    def as_dict(self) -> dict[str, Any]:
        return {"alerts": list(self.alerts), "reject_at": self.reject_at}


def _since(minutes: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=minutes)
    return moment.isoformat(timespec="milliseconds")


def prompt_of(row: dict[str, Any]) -> int | None:
    """The best figure of a call's prompt: reported, else calibrated, else the local count."""
    for key in ("prompt_tokens", "prompt_tokens_cal", "prompt_tokens_est"):
        if row.get(key) is not None:
            return row[key]
    return None


def _turns_left(prompts: list[int], window: int | None, lines: Lines) -> tuple[int | None, str | None]:
    if not prompts or not window:
        return None, None
    f = forecast(prompts, window, lines.reject_at)
    return (f.turns_left, describe(f)) if f else (None, None)


def now(conn: sqlite3.Connection, lines: Lines, minutes: float = ACTIVE_MINUTES, limit: int = 50,
        user: str | None = None) -> dict[str, Any]:
    """Every conversation active in the last ``minutes``: its latest call against the window, cost, cache share."""
    mine, params = and_clauses(("+user = ?", user))
    active = [r for (r,) in conn.execute(
        # "+": by the ts index (the recent rows), not by scanning the conversation index whole
        f"SELECT conversation_id FROM requests WHERE ts >= ? AND +conversation_id IS NOT NULL {mine} "
        "GROUP BY conversation_id ORDER BY max(ts) DESC LIMIT ?", (_since(minutes), *params, limit))]
    out = [conversation_summary(conn, cid, lines) for cid in active]
    totals = conn.execute(f"SELECT count(*), sum(cost_usd) FROM requests WHERE ts >= ? AND dialect IS NOT NULL {mine}",
                          (_since(minutes), *params)).fetchone()
    return {"conversations": out, "lines": lines.as_dict(), "minutes": minutes,
            "calls": totals[0], "cost_usd": totals[1], "user": user}


def users(conn: sqlite3.Connection, days: float = 30) -> list[dict[str, Any]]:
    """The users of a shared proxy seen lately (none without proxyauth): calls and cost today and in ``days``."""
    today = day_start().isoformat(timespec="milliseconds")
    return _rows(conn, """
        SELECT user, count(*) AS calls, sum(cost_usd) AS cost_usd, sum(ts >= ?) AS calls_today,
               sum(CASE WHEN ts >= ? THEN cost_usd END) AS cost_today, max(ts) AS last_seen
        FROM requests WHERE user IS NOT NULL AND ts >= ? AND dialect IS NOT NULL
        GROUP BY user ORDER BY last_seen DESC""",
                 (today, today, _since(days * 24 * 60)))


def conversation_summary(conn: sqlite3.Connection, cid: str, lines: Lines) -> dict[str, Any]:
    meta = _rows(conn, "SELECT id, session_id, agent, agent_version, parent_id, started_at, title, project "
                       "FROM conversations WHERE id = ?", (cid,))
    agg = _rows(conn, """
        SELECT count(*) AS calls, sum(cost_usd) AS cost_usd, sum(cost_usd IS NULL) AS unpriced,
               sum(cached_tokens) AS cached_tokens, sum(prompt_tokens) AS prompt_tokens,
               sum(completion_tokens) AS completion_tokens, sum(action = 'rejected') AS refusals,
               sum(action = 'compacted') AS compactions, max(ts) AS last_seen, min(ts) AS first_seen
        FROM requests WHERE conversation_id = ? AND dialect IS NOT NULL""", (cid,))[0]
    last = _rows(conn, f"SELECT {ROW_COLUMNS} FROM requests WHERE conversation_id = ? AND dialect IS NOT NULL "
                       "ORDER BY ts DESC LIMIT 1", (cid,))
    series = [r for r in _rows(conn, """
        SELECT prompt_tokens, prompt_tokens_cal, prompt_tokens_est, context_window FROM requests
        WHERE conversation_id = ? AND dialect IS NOT NULL AND action IS NOT 'rejected' ORDER BY ts DESC LIMIT 40""",
        (cid,))][::-1]
    latest = last[0] if last else {}
    window = latest.get("context_window")
    prompts = [p for p in (prompt_of(r) for r in series) if p is not None]
    turns_left, outlook = _turns_left(prompts, window, lines)
    prompt = prompt_of(latest) if latest else None
    reported = agg["prompt_tokens"] or 0
    return {
        **(meta[0] if meta else {"id": cid}),
        **agg,
        "model": latest.get("model"),
        "provider": latest.get("provider"),
        "agent": (meta[0]["agent"] if meta else None) or latest.get("agent"),
        "user": latest.get("user"),
        "last_call": latest.get("id"),
        "last_action": latest.get("action"),
        "prompt_tokens_now": prompt,
        "context_window": window,
        "share": (prompt / window) if prompt is not None and window else latest.get("window_share"),
        "cache_share": (agg["cached_tokens"] or 0) / reported if reported else None,
        "turns_left": turns_left,
        "outlook": outlook,
    }


def calls(conn: sqlite3.Connection, limit: int = 50, conversation: str | None = None,
          before: str | None = None, user: str | None = None) -> list[dict[str, Any]]:
    where, params = and_clauses(("user = ?", user), ("conversation_id = ?", conversation), ("ts < ?", before))
    return _rows(conn, f"SELECT {ROW_COLUMNS} FROM requests WHERE dialect IS NOT NULL {where} "
                       "ORDER BY ts DESC LIMIT ?", [*params, min(max(1, limit), 1000)])


MARKS = {"rejected": "refusal", "over_budget": "refusal", "compacted": "compaction"}


def conversation(conn: sqlite3.Connection, cid: str, lines: Lines, limit: int = 500) -> dict[str, Any]:
    """A conversation's timeline: each call's prompt against the window and the lines, with what
    happened on it (refusals, compactions, cache breaks, budget and threshold alerts)."""
    summary = conversation_summary(conn, cid, lines)
    if summary.get("calls", 0) == 0 and "title" not in summary:
        raise KimiError(f"no conversation {cid!r}")
    turns = _rows(conn, f"SELECT {ROW_COLUMNS} FROM requests WHERE conversation_id = ? AND dialect IS NOT NULL "
                        "ORDER BY ts DESC LIMIT ?", (cid, limit))[::-1]
    ids = [t["id"] for t in turns]
    alerts: dict[str, list[dict[str, Any]]] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for a in _rows(conn, f"SELECT id, ts, request_id, kind, level, message FROM alerts "
                             f"WHERE request_id IN ({', '.join('?' * len(chunk))}) ORDER BY id", chunk):
            alerts.setdefault(a["request_id"], []).append(a)
    for t in turns:
        t["prompt"] = prompt_of(t)
        t["alerts"] = alerts.get(t["id"], [])
        marks = {MARKS[t["action"]]} if t["action"] in MARKS else set()
        marks |= {a["kind"] for a in t["alerts"]}
        t["marks"] = sorted(marks)
    children = _rows(conn, "SELECT id, agent, title, started_at FROM conversations WHERE parent_id = ? "
                           "ORDER BY started_at", (cid,))
    return {"conversation": summary, "turns": turns, "children": children, "lines": lines.as_dict()}


def _parsed(conn: sqlite3.Connection, request_id: str):
    row = conn.execute("SELECT dialect, path FROM requests WHERE id = ?", (request_id,)).fetchone()
    if row is None or row[0] is None:
        return None
    body = load_request_body(conn, request_id)
    if not isinstance(body, dict):
        return None
    try:
        return parse_request(row[0], body, row[1] or ""), body
    except Exception:  # noqa: BLE001  (a body the parser cannot read has no composition, nothing more)
        return None


def call(conn: sqlite3.Connection, request_id: str, counter: TokenCounter, lines: Lines) -> dict[str, Any]:
    """One call: its row, its composition (what fills the prompt, by kind and tool), what grew since
    the conversation's previous call, the compactions done to it and the alerts it raised."""
    rows = _rows(conn, f"SELECT {ROW_COLUMNS} FROM requests WHERE id = ?", (request_id,))
    if not rows:
        raise KimiError(f"no call {request_id!r}")
    row = rows[0]
    request, body = _parsed(conn, request_id) or (None, None)
    parts, encoding = composition(request, counter, body) if request is not None else ([], None)
    total = sum(p.tokens for p in parts)
    previous = None
    if row["conversation_id"]:
        prev = conn.execute("SELECT id FROM requests WHERE conversation_id = ? AND ts < ? "
                            "AND dialect IS NOT NULL ORDER BY ts DESC LIMIT 1",
                            (row["conversation_id"], row["ts"])).fetchone()
        if prev is not None:
            before, before_body = _parsed(conn, prev[0]) or (None, None)
            if before is not None and request is not None:
                previous = _growth(prev[0], composition(before, counter, before_body)[0], parts,
                                   len(before.messages))
    # Its compacted results: those compacted in it, and those it resends as compacted earlier
    # (archived once, under the call that first compacted them), found by their markers.
    prefixes = sorted({m.group(1) for msg in (request.messages if request else ()) for r in msg.tool_results
                       for m in MARKER_SHA.finditer(r.content)})
    archives = _rows(conn, "SELECT sha256, tool_name, original_tokens, kept_tokens, created_at, request_id "
                           "FROM archives WHERE request_id = ?", (request_id,))
    known = {a["sha256"] for a in archives}
    for prefix in prefixes[:100]:
        archives += [a for a in _rows(conn, "SELECT sha256, tool_name, original_tokens, kept_tokens, created_at, "
                                            "request_id FROM archives WHERE sha256 LIKE ? || '%' LIMIT 1", (prefix,))
                     if a["sha256"] not in known]
    alerts = _rows(conn, "SELECT id, ts, kind, level, message FROM alerts WHERE request_id = ? ORDER BY id",
                   (request_id,))
    return {
        "call": row | {"prompt": prompt_of(row), "hints": json.loads(row["hints"]) if row.get("hints") else []},
        "composition": {
            "encoding": encoding,
            "tokens": total,
            "parts": [p.as_dict() for p in parts],
            "groups": summarise(parts),
            "available": request is not None,
        },
        "growth": previous,
        "archives": archives,
        "alerts": alerts,
        "refusal": next((a["message"] for a in alerts if a["kind"] == "rejected"), None),
        "lines": lines.as_dict(),
    }


def _growth(previous_id: str, before: list, after: list, before_messages: int) -> dict[str, Any]:
    """What this call has that the previous one had not: its new messages' parts, and the change
    of what precedes the messages (system prompt, tool definitions)."""
    new = [p for p in after if p.message is not None and p.message >= before_messages]
    head_before = sum(p.tokens for p in before if p.message is None and p.kind != "framing")
    head_after = sum(p.tokens for p in after if p.message is None and p.kind != "framing")
    return {
        "previous_call": previous_id,
        "tokens": sum(p.tokens for p in after) - sum(p.tokens for p in before),
        "new_parts": summarise(new),
        "head_change": head_after - head_before,
    }


def alerts(conn: sqlite3.Connection, limit: int = 100, after_id: int | None = None,
           user: str | None = None) -> list[dict[str, Any]]:
    mine, params = and_clauses(("r.user = ?", user))
    if after_id is not None:
        mine, params = mine + " AND a.id > ?", [*params, after_id]
    return _rows(conn, f"""
        SELECT a.id, a.ts, a.session_id, a.request_id, a.kind, a.level, a.message, r.conversation_id, r.model, r.user
        FROM alerts a LEFT JOIN requests r ON r.id = a.request_id WHERE 1 {mine}
        ORDER BY a.id DESC LIMIT ?""", [*params, min(max(1, limit), 1000)])


def memories(conn: sqlite3.Connection, query: str | None = None, limit: int = 200,
             user: str | None = None) -> list[dict[str, Any]]:
    where, params = and_clauses(("user = ?", user))
    if query:
        where += (" AND (content LIKE '%' || ? || '%' OR source_text LIKE '%' || ? || '%' OR kind = ? "
                  "OR project LIKE '%' || ? || '%')")
        params += [query, query, query, query]
    return _rows(conn, f"SELECT id, kind, content, source_text, count, confidence, created_at, last_seen, "
                       f"session_id, provider, project, user FROM memories WHERE 1 {where} "
                       "ORDER BY last_seen DESC LIMIT ?", [*params, limit])


def findings(conn: sqlite3.Connection, counter: TokenCounter, lines: Lines,
             minutes: float = 24 * 60, conversations_limit: int = 20, user: str | None = None) -> list[dict[str, Any]]:
    """What deserves a look, computed from the latest call of each recent conversation, the alerts
    and the calibration: most serious first."""
    out: list[dict[str, Any]] = []
    mine, params = and_clauses(("+user = ?", user))
    recent = [r for (r,) in conn.execute(
        "SELECT conversation_id FROM requests WHERE ts >= ? AND +conversation_id IS NOT NULL AND dialect IS NOT NULL "
        f"{mine} GROUP BY conversation_id ORDER BY max(ts) DESC LIMIT ?",
        (_since(minutes), *params, conversations_limit))]
    for cid in recent:
        summary = conversation_summary(conn, cid, lines)
        out.extend(_conversation_findings(conn, summary, counter, lines))
    since = _since(minutes)
    mine, params = and_clauses(("(SELECT user FROM requests r WHERE r.id = alerts.request_id) = ?", user))
    for kind, n, last, request_id in conn.execute(
            f"SELECT kind, count(*), max(ts), max(request_id) FROM alerts WHERE ts >= ? AND kind = 'cache_break' "
            f"{mine} GROUP BY kind", (since, *params)):
        out.append({"kind": "cache_breaks", "severity": 2, "request_id": request_id,
                    "title": f"{n} cache break{'s' if n != 1 else ''} in the last {_span(minutes)}",
                    "detail": f"the last at {last}: a prompt that changed before its end was billed again "
                              "at the full input price", "count": n})
    for model, factor, samples in conn.execute("SELECT model, factor, samples FROM calibration"):
        if factor is None or abs(factor - 1) <= CALIBRATION_FAR:
            continue
        n = len(json.loads(samples)) if samples else 0
        out.append({"kind": "calibration", "severity": 1, "model": model, "factor": factor,
                    "title": f"{model}: the provider counts {factor:.2f}x the local estimate",
                    "detail": f"from {n} call{'s' if n != 1 else ''}: the local tokenizer is not this model's own; "
                              "Kimi's figures are calibrated with this factor"})
    return sorted(out, key=lambda f: -f["severity"])


def _span(minutes: float) -> str:
    return f"{minutes / 60:g} h" if minutes >= 60 else f"{minutes:g} min"


def _conversation_findings(conn: sqlite3.Connection, summary: dict[str, Any], counter: TokenCounter,
                           lines: Lines) -> list[dict[str, Any]]:
    cid = summary["id"]
    name = summary.get("title") or cid[:8]
    out: list[dict[str, Any]] = []
    share = summary.get("share")
    first_line = min(lines.alerts) if lines.alerts else lines.reject_at
    if share is not None and (share >= first_line or (summary.get("turns_left") is not None
                                                       and summary["turns_left"] <= 3)):
        out.append({"kind": "overflow", "severity": 3, "conversation_id": cid, "share": share,
                    "title": f"{name}: {share:.0%} of the window",
                    "detail": summary.get("outlook") or f"above the {first_line:.0%} line"})
    last = summary.get("last_call")
    request, body = (_parsed(conn, last) if last else None) or (None, None)
    if request is None:
        return out
    parts, _ = composition(request, counter, body)
    window = summary.get("context_window")
    for g in summarise([p for p in parts if p.kind == TOOL_RESULT]):
        if window and g["tokens"] >= DOMINANT_SHARE * window:
            out.append({"kind": "dominant_tool_result", "severity": 3, "conversation_id": cid, "request_id": last,
                        "tool": g["label"], "tokens": g["tokens"],
                        "title": f"{name}: results of {g['label']} fill {g['tokens'] / window:.0%} of the window",
                        "detail": f"{g['count']} result(s), {g['tokens']:,} tokens"})
    called = {p.label for p in parts if p.kind == TOOL_CALL}
    unused = [p for p in parts if p.kind == TOOL_DEFINITION and p.label not in called]
    if unused and summary.get("calls", 0) >= 2:
        cost = sum(p.tokens for p in unused)
        out.append({"kind": "unused_tools", "severity": 1, "conversation_id": cid, "request_id": last,
                    "tools": sorted(p.label for p in unused), "tokens": cost,
                    "title": f"{name}: {len(unused)} tool definition(s) never called, {cost:,} tokens every turn",
                    "detail": ", ".join(sorted(p.label for p in unused)[:12])
                              + (" ..." if len(unused) > 12 else "")})
    seen: Counter[tuple[str, str]] = Counter()
    for m in request.messages:
        for r in m.tool_results:
            if len(r.content) >= 200:
                seen[(r.name or "a tool", hashlib.sha256(r.content.encode("utf-8", "replace")).hexdigest())] += 1
    repeats = [(tool, n) for (tool, _), n in seen.items() if n > 1]
    if repeats:
        tool, n = max(repeats, key=lambda x: x[1])
        out.append({"kind": "repeated_tool_results", "severity": 2, "conversation_id": cid, "request_id": last,
                    "tool": tool, "count": n,
                    "title": f"{name}: the same result of {tool} is in the prompt {n} times",
                    "detail": f"{len(repeats)} result(s) appear more than once"})
    return out
