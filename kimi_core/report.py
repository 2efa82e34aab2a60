"""``kimi-proxy report``: one self-contained HTML file (inline SVG and CSS, no script, no network).

Per session: prompt tokens per turn against the window and the alert
thresholds, where compaction saved tokens, where requests were refused, the
budget forecast, and the largest tool results of the session's last stored
request.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import sqlite3
from typing import Any

from kimi_core import dialects
from kimi_core.cost import usd
from kimi_core.errors import BodyError, StoreError
from kimi_core.store import queries
from kimi_core.store.read import load_request_body
from kimi_core.tokens import TokenCounter

THRESHOLDS = (0.75, 0.85, 0.95)
W, H, PAD = 860, 280, 48

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2.2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6em 0; } td, th { padding: .2em .7em; text-align: left; }
th { background: #f3f3f3; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: #777; } svg { background: #fcfcfc; border: 1px solid #e4e4e4; }
.legend span { margin-right: 1.2em; } .swatch { display: inline-block; width: 12px; height: 12px;
  vertical-align: -1px; margin-right: .3em; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value if value is not None else ""))


def short(n: float) -> str:
    """1.05M, 566K, 950."""
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e3:.0f}K" if n >= 1e3 else f"{n:.0f}"


def ticks(top: float, count: int = 5) -> list[float]:
    """Evenly spaced round values from 0 up to ``top``: 0, 50K, 100K, ... (steps of 1, 2, 2.5 or 5 x 10^k)."""
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(top // step) + 1)]


def chart(points: list[dict[str, Any]], window: int | None) -> str:
    """Prompt tokens per turn (SVG): the line, compactions as green bars from before to after, refusals in red."""
    if not points:
        return '<p class="muted">No counted requests.</p>'
    # Scaled to the window and the prompts sent: a compaction's "before" (often many windows big)
    # would flatten everything else; it is drawn up to the top, its size written there.
    top = max([window or 0] + [p["prompt"] or 0 for p in points]) * 1.08 or 1
    n = len(points)

    def x(i: int) -> float:
        return PAD + (W - 2 * PAD) * (i / max(1, n - 1))

    def y(v: float) -> float:
        return H - PAD + (2 * PAD - H) * (v / top)

    parts = [(f'<svg id="prompt-chart" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" role="img" aria-label="prompt tokens per turn">')]
    parts.append(f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#999"/>')
    if window:
        parts.append(f'<line class="window" x1="{PAD}" y1="{y(window):.1f}" x2="{W - PAD}" y2="{y(window):.1f}" '
                     f'stroke="#333" stroke-width="1.5"/><text x="{W - PAD}" y="{y(window) - 4:.1f}" '
                     f'text-anchor="end" font-size="11">window {window:,}</text>')
        label_x = W - PAD - 2.0
        last_y = None
        for t in THRESHOLDS:
            ty = y(window * t)
            # Right-aligned under its line (the window's label is above its own); lines closer
            # than a label's height: the next label goes left of the previous one.
            label_x = label_x - 34 if last_y is not None and abs(last_y - ty) < 12 else W - PAD - 2.0
            last_y = ty
            parts.append(f'<line class="threshold" x1="{PAD}" y1="{ty:.1f}" x2="{W - PAD}" '
                         f'y2="{ty:.1f}" stroke="#d98c00" stroke-dasharray="4 4"/>'
                         f'<text class="threshold-label" x="{label_x:.1f}" y="{ty + 11:.1f}" font-size="10" '
                         f'text-anchor="end" fill="#a66a00">{t:.0%}</text>')
    line = " ".join(f"{x(i):.1f},{y(p['prompt'] or 0):.1f}" for i, p in enumerate(points))
    parts.append(f'<polyline class="prompt" points="{line}" fill="none" stroke="#2563eb" stroke-width="2"/>')
    for i, p in enumerate(points):
        title = f"turn {i + 1}: {p['prompt'] or 0:,} tokens ({p['action']})"
        if p["action"] == "rejected":
            parts.append(f'<g class="refusal"><title>{_e(title)}</title><circle cx="{x(i):.1f}" '
                         f'cy="{y(p["prompt"] or 0):.1f}" r="6" fill="#dc2626"/></g>')
        elif p["before"] is not None:
            over = p["before"] > top
            parts.append(f'<g class="compaction"><title>{_e(title)}, {p["before"]:,} before compaction</title>'
                         f'<line x1="{x(i):.1f}" y1="{y(min(p["before"], top)):.1f}" x2="{x(i):.1f}" '
                         f'y2="{y(p["prompt"] or 0):.1f}" stroke="#16a34a" stroke-width="3"/>'
                         f'<circle cx="{x(i):.1f}" cy="{y(p["prompt"] or 0):.1f}" r="4" fill="#16a34a"/>'
                         + (f'<text x="{x(i) + 4:.1f}" y="{y(top) + 10:.1f}" font-size="10" fill="#16a34a">'
                            f'\u2191 {short(p["before"])}</text>' if over else "") + '</g>')
        else:
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(p["prompt"] or 0):.1f}" r="2.5" fill="#2563eb">'
                         f'<title>{_e(title)}</title></circle>')
    for v in ticks(top):
        parts.append(f'<text class="tick" x="{PAD - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="10">'
                     f'{short(v)}</text><line x1="{PAD - 3}" y1="{y(v):.1f}" x2="{PAD}" y2="{y(v):.1f}" stroke="#999"/>')
    parts.append(f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle" font-size="11">turn (1 to {n})</text>')
    parts.append("</svg>")
    legend = ('<div class="legend"><span><i class="swatch" style="background:#2563eb"></i>prompt tokens</span>'
              '<span><i class="swatch" style="background:#333"></i>context window</span>'
              '<span><i class="swatch" style="background:#d98c00"></i>alert thresholds</span>'
              '<span><i class="swatch" style="background:#16a34a"></i>saved by compaction</span>'
              '<span><i class="swatch" style="background:#dc2626"></i>refused</span></div>')
    return "".join(parts) + legend


def largest_tool_results(conn: sqlite3.Connection, request_id: str | None, dialect: str | None,
                         counter: TokenCounter, n: int = 10) -> list[dict[str, Any]]:
    if request_id is None or dialect is None:
        return []
    try:
        body = load_request_body(conn, request_id)
        if isinstance(body, bytes):
            body = json.loads(body)
        request = dialects.parse_request(dialect, body, "")
    except (StoreError, BodyError, ValueError, TypeError):
        return []
    found = [{"tool": r.name or "?", "message": m.index + 1, "tokens": counter.count_text(r.content),
              "start": r.content[:90]} for m in request.messages for r in m.tool_results]
    return sorted(found, key=lambda r: -r["tokens"])[:n]


def conversations_table(conn: sqlite3.Connection, session: str) -> str:
    """The session's conversations: agent, parent (a subagent's), calls, tokens, cache share, cost."""
    rows = queries.conversations(conn, session=session, limit=50)
    if not rows:
        return ""
    short = {r["conversation"]: r["conversation"][:8] for r in rows}
    out = ["<h3>Conversations</h3><table><tr>" + "".join(f"<th>{h}</th>" for h in (
        "conversation", "agent", "started by", "title", "calls", "prompt", "cached", "cost")) + "</tr>"]
    for r in rows:
        cached = f"{r['cached_tokens'] / r['prompt_tokens']:.0%}" if r["prompt_tokens"] else ""
        unpriced = f" (+{r['unpriced']} unpriced)" if r["unpriced"] else ""
        out.append(
            f'<tr class="conversation"><td>{_e(short[r["conversation"]])}</td><td>{_e(r["agent"])}</td>'
            f'<td>{_e(short.get(r["parent"], (r["parent"] or "")[:8]))}</td><td>{_e((r["title"] or "")[:70])}</td>'
            f'<td class="n">{r["calls"]}</td><td class="n">{r["prompt_tokens"] or 0:,}</td>'
            f'<td class="n">{cached}</td><td class="n">{_e(usd(r["cost_usd"]) + unpriced)}</td></tr>')
    out.append("</table>")
    return "".join(out)


def session_section(conn: sqlite3.Connection, s: dict[str, Any], counter: TokenCounter) -> str:
    rows = conn.execute(
        "SELECT id, dialect, coalesce(prompt_tokens_cal, prompt_tokens_est), tokens_before, action, context_window, "
        "coalesce(calibration_factor, 1), tokens_after FROM requests WHERE session_id = ? ORDER BY ts",
        (s["session"],)).fetchall()
    # The prompt as the guard saw it (calibrated), and before compaction on the same scale.
    points = [{"prompt": r[2], "before": round(r[3] * r[6]) if r[3] is not None else None, "action": r[4]}
              for r in rows if r[2] is not None]
    window = next((r[5] for r in reversed(rows) if r[5]), None)
    saved = sum(r[3] - r[7] for r in rows if r[3] is not None and r[7] is not None)  # local tokens
    last = next(((r[0], r[1]) for r in reversed(rows) if r[4] != "rejected"), (None, None))
    top = largest_tool_results(conn, last[0], last[1], counter)
    out = [(f'<section class="session"><h2>{_e(s["name"] or s["session"][:8])} '
           f'<span class="muted">{_e(s["provider"])} · {_e(s["models"])}</span></h2>'),
           "<table><tr>" + "".join(f"<th>{h}</th>" for h in (
               "requests", "prompt (reported)", "completion", "peak share", "refused", "compacted", "saved",
               "cost", "forecast")) + "</tr><tr>",
           "".join(f'<td class="n">{_e(v)}</td>' for v in (
               s["requests"], f"{s['prompt_tokens'] or 0:,}", f"{s['completion_tokens'] or 0:,}",
               f"{s['peak_share']:.0%}" if s["peak_share"] is not None else "", s["refusals"], s["compactions"],
               f"{saved:,}", usd(s["cost_usd"]), s["forecast"] or "")),
           "</tr></table>", chart(points, window), conversations_table(conn, s["session"])]
    if top:
        out.append("<h3>Largest tool results (in the last request, as sent)</h3><table><tr><th>tool</th><th>message</th>"
                   "<th>tokens</th><th>begins with</th></tr>")
        out += [f'<tr><td>{_e(t["tool"])}</td><td class="n">{t["message"]}</td><td class="n">{t["tokens"]:,}</td>'
                f'<td class="muted">{_e(t["start"])}</td></tr>' for t in top]
        out.append("</table>")
    out.append("</section>")
    return "".join(out)


def build(conn: sqlite3.Connection, session: str | None = None, reject_at: float = 0.95) -> str:
    sessions = queries.sessions(conn, reject_at)
    if session is not None:
        sid = queries.resolve_session(conn, session)
        sessions = [s for s in sessions if s["session"] == sid]
    sessions = [s for s in sessions if s["requests"]]
    counter = TokenCounter()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join(session_section(conn, s, counter) for s in sessions) or "<p>No sessions with requests yet.</p>"
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Kimi Proxy report</title>"
            f"<style>{CSS}</style></head><body><h1>Kimi Proxy report</h1>"
            f"<p class=\"muted\">{len(sessions)} session(s), generated {stamp}.</p>{body}</body></html>")
