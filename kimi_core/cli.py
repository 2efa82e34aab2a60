"""The ``kimi-proxy`` command: read what the proxy recorded, in another terminal.

    kimi-proxy sessions                      sessions, their tokens, peak share and budget forecast
    kimi-proxy requests [--session S] [--agent A] [--conversation C] [--limit N]
    kimi-proxy conversations [--agent A]     each conversation: agent, parent, calls, tokens, cache share, cost
    kimi-proxy cost [--by day|agent|model|provider|session|conversation] [--since 7d]
    kimi-proxy stats [--since 2h]            per provider and model: calls, tokens, latency, savings
    kimi-proxy alerts | memories [--kind K]
    kimi-proxy show REQUEST_ID [--response]  a stored body, credentials removed
    kimi-proxy restore SHA256_OR_PREFIX      the original of a compacted tool result
    kimi-proxy mcp                           an MCP server: the model itself reads what compaction left out
    kimi-proxy report [--session S] -o report.html
    kimi-proxy run [--session S] -- COMMAND  the command's LLM calls through Kimi, in session S
    kimi-proxy doctor                        CA trust, database, config, tokenizers: what is wrong, and the fix

Every listing is a table, or JSON with ``--json``; ``--db`` chooses the
database, and ``--db A --db B`` reads several as one (``kimi_core.store.merged``).
Errors are one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tabulate import tabulate

from kimi_core import doctor
from kimi_core.cost import usd
from kimi_core.errors import KimiError
from kimi_core.redact import printable
from kimi_core.store import queries
from kimi_core.store.merged import open_merged
from kimi_core.store.read import load_archive, load_request_body, load_response_body

DEFAULT_DB = "~/.kimi-proxy/kimi.db"
DEFAULT_CONFDIR = "~/.mitmproxy"


def connect(paths: str | list[str]) -> sqlite3.Connection:
    """The database read-only, checked and upgraded; several (``--db A --db B``) as one merged view."""
    if isinstance(paths, list):
        if len(paths) == 1:
            return connect(paths[0])
        for path in paths:
            connect(path).close()
        return open_merged([Path(p).expanduser().resolve() for p in paths])
    db = Path(paths).expanduser()
    if not db.exists():
        raise KimiError(f"no database at {db} (start the proxy first, or pass --db)")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        conn.execute("SELECT 1 FROM requests LIMIT 1")
        columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    except sqlite3.DatabaseError as e:
        raise KimiError(f"{db} is not a Kimi Proxy database ({e})") from None
    if not {"cost_usd", "project", "user"} <= columns:
        raise KimiError(f"{db} was written by an older Kimi Proxy: start the proxy once "
                        "(mitmdump -s addons/kimi.py) and it is upgraded in place")
    return conn


# -- output -----------------------------------------------------------------------------------------


def _num(value: Any) -> Any:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _cost(row: dict[str, Any]) -> str:
    """A summed cost, marked when some calls had no price (their cost is not in it)."""
    text = usd(row["cost_usd"])
    return f"{text} +{row['unpriced']} unpriced" if row.get("unpriced") else text


def _when(ts: str | None) -> str:
    return (ts or "")[:19].replace("T", " ")


def emit(rows: list[dict[str, Any]], args: argparse.Namespace, columns: dict[str, Callable[[dict], Any]],
         empty: str) -> int:
    if args.json:
        json.dump(rows, sys.stdout, indent=2, ensure_ascii=False, default=str)
        sys.stdout.write("\n")
    elif not rows:
        print(empty)
    else:
        table = [[printable(str(_num(get(r))), newlines=False) if get(r) is not None else ""
                  for get in columns.values()] for r in rows]
        print(tabulate(table, headers=list(columns), disable_numparse=True))
    return 0


# -- commands ---------------------------------------------------------------------------------------


def cmd_sessions(args: argparse.Namespace) -> int:
    rows = queries.sessions(connect(args.dbs), args.reject_at)
    return emit(rows, args, {
        "session": lambda r: r["name"] or r["session"][:8],
        "provider": lambda r: r["provider"],
        "models": lambda r: r["models"],
        "LLM calls": lambda r: r["requests"],
        "other": lambda r: r["other_calls"],
        "prompt (reported)": lambda r: r["prompt_tokens"],
        "prompt (est.)": lambda r: r["prompt_tokens_est"],
        "completion": lambda r: r["completion_tokens"],
        "peak": lambda r: _share(r["peak_share"]),
        "refused": lambda r: r["refusals"],
        "compacted": lambda r: r["compactions"],
        "cost": lambda r: usd(r["cost_usd"]),
        "agents": lambda r: r["agents"],
        "forecast": lambda r: r["forecast"],
        "started": lambda r: _when(r["started"]),
        "last seen": lambda r: _when(r["last_seen"]),
    }, "no sessions yet")


def cmd_requests(args: argparse.Namespace) -> int:
    rows = queries.requests(connect(args.dbs), args.session, args.limit, args.agent, args.conversation, args.user)
    return emit(rows, args, {
        "id": lambda r: r["id"][:8],
        "time": lambda r: _when(r["ts"]),
        "agent": lambda r: r["agent"],
        "conv.": lambda r: (r["conversation"] or "")[:8],
        "provider": lambda r: r["provider"],
        "model": lambda r: r["model"] if r["dialect"] else f"({r['method']} {r['path'].split('?')[0][:40]})",
        "status": lambda r: r["status"],
        # Kimi's figure is the one the guard judged (calibrated); the window share is of that figure.
        "prompt (Kimi)": lambda r: r["prompt_tokens_cal"] if r["prompt_tokens_cal"] is not None
        else r["prompt_tokens_est"],
        "prompt (reported)": lambda r: r["prompt_tokens"],
        "out": lambda r: r["completion_tokens"],
        "window": lambda r: _share(r["window_share"]),
        "cost": lambda r: usd(r["cost_usd"]),
        "action": lambda r: r["action"],
        "ttfb ms": lambda r: _ms(r["ttfb_ms"]),
        "ms": lambda r: _ms(r["duration_ms"]),
        "error": lambda r: (r["error"] or "")[:60],
    }, "no requests yet")


def cmd_stats(args: argparse.Namespace) -> int:
    conn = connect(args.dbs)
    rows = queries.stats(conn, args.since)
    other = queries.other_calls(conn, args.since)
    if other and not args.json:
        print(f"(not counted below: {other:,} other call{'s' if other > 1 else ''} to provider hosts, "
              "no generation: model lists, token counts, agents' settings)\n")
    return emit(rows, args, {
        "provider": lambda r: r["provider"],
        "model": lambda r: r["model"],
        "calls": lambda r: r["calls"],
        "prompt": lambda r: r["prompt_tokens"],
        "prompt (est.)": lambda r: r["prompt_tokens_est"],
        "completion": lambda r: r["completion_tokens"],
        "p50 ms": lambda r: _ms(r["p50_ms"]),
        "p95 ms": lambda r: _ms(r["p95_ms"]),
        "ttfb p50": lambda r: _ms(r["ttfb_p50_ms"]),
        "ttfb p95": lambda r: _ms(r["ttfb_p95_ms"]),
        "refused": lambda r: r["refusals"],
        "saved": lambda r: r["tokens_saved"],
        "cost": lambda r: usd(r["cost_usd"]),
        "calibration": lambda r: None if r["calibration"] is None else f"{r['calibration']:.2f}",
    }, "no requests in that period")


def cmd_conversations(args: argparse.Namespace) -> int:
    rows = queries.conversations(connect(args.dbs), args.session, args.agent, args.limit)
    return emit(rows, args, {
        "conversation": lambda r: r["conversation"][:8],
        "agent": lambda r: r["agent"],
        "parent": lambda r: (r["parent"] or "")[:8],
        "title": lambda r: (r["title"] or "")[:48],
        "model": lambda r: r["model"],
        "calls": lambda r: r["calls"],
        "prompt": lambda r: r["prompt_tokens"],
        "cached": lambda r: _share(r["cached_tokens"] / r["prompt_tokens"]) if r["prompt_tokens"] else "",
        "out": lambda r: r["completion_tokens"],
        "peak": lambda r: _share(r["peak_share"]),
        "cost": _cost,
        "last seen": lambda r: _when(r["last_seen"]),
    }, "no conversations yet")


def cmd_cost(args: argparse.Namespace) -> int:
    rows = queries.costs(connect(args.dbs), args.by, args.since, args.agent, args.session, args.user)
    if rows and not args.json:
        total = sum(r["cost_usd"] or 0 for r in rows)
        unpriced = sum(r["unpriced"] or 0 for r in rows)
        saved = sum(r["saved_usd"] or 0 for r in rows)
        print(f"{usd(total)} in {sum(r['calls'] for r in rows):,} LLM calls"
              + (f" ({unpriced:,} without a price, not included)" if unpriced else "")
              + (f"; compaction saved {usd(saved)}" if saved else "") + "\n")
    return emit(rows, args, {
        args.by: lambda r: r["group"],
        "calls": lambda r: r["calls"],
        "prompt": lambda r: r["prompt_tokens"],
        "cached": lambda r: _share(r["cached_tokens"] / r["prompt_tokens"]) if r["prompt_tokens"] else "",
        "out": lambda r: r["completion_tokens"],
        "cost": _cost,
        "estimated": lambda r: r["estimated"] or "",
        "saved": lambda r: usd(r["saved_usd"]),
    }, "no LLM calls in that period")


def cmd_alerts(args: argparse.Namespace) -> int:
    rows = queries.alerts(connect(args.dbs), args.limit)
    return emit(rows, args, {
        "time": lambda r: _when(r["ts"]), "kind": lambda r: r["kind"], "level": lambda r: _share(r["level"]),
        "request": lambda r: (r["request_id"] or "")[:8], "message": lambda r: r["message"][:110],
    }, "no alerts")


def cmd_memories(args: argparse.Namespace) -> int:
    if args.forget:
        if not args.ids:
            raise KimiError("kimi-proxy memories forget ID [ID...]: which ones? (kimi-proxy memories lists them)")
        if len(args.dbs) > 1:
            raise KimiError("kimi-proxy memories forget: one --db at a time (ids are each database's own)")
        connect(args.db).close()  # a Kimi database, upgraded
        with contextlib.closing(sqlite3.connect(Path(args.db).expanduser(), timeout=10)) as conn, conn:
            gone = [i for i in args.ids if conn.execute("DELETE FROM memories WHERE id = ?", (i,)).rowcount]
        missing = sorted(set(args.ids) - set(gone))
        if gone:
            print(f"forgotten: {', '.join(map(str, gone))} (a running proxy stops hinting them within seconds)")
        if missing:
            raise KimiError(f"no memory {', '.join(map(str, missing))}")
        return 0
    rows = queries.memories(connect(args.dbs), args.kind, args.project, args.user)
    return emit(rows, args, {
        "id": lambda r: r["id"], "kind": lambda r: r["kind"], "content": lambda r: r["content"],
        "project": lambda r: r["project"] or "", "user": lambda r: r["user"] or "", "count": lambda r: r["count"],
        "confidence": lambda r: f"{r['confidence']:.2f}", "last seen": lambda r: _when(r["last_seen"]),
    }, "no memories yet")


def cmd_show(args: argparse.Namespace) -> int:
    conn = connect(args.dbs)
    if not args.request_id.strip():
        raise KimiError("give a request id, or its first characters (kimi-proxy requests lists them)")
    matches = [r for (r,) in conn.execute("SELECT id FROM requests WHERE id LIKE ? || '%' LIMIT 2",
                                         (args.request_id,))]
    if len(matches) != 1:
        raise KimiError(f"{'no' if not matches else 'more than one'} request matches {args.request_id!r}")
    body = load_response_body(conn, matches[0]) if args.response else load_request_body(conn, matches[0])
    if body is None:
        raise KimiError(f"the body of {matches[0]} is not stored (retention, or kimi_store_bodies=false)")
    if isinstance(body, bytes):
        try:
            body = json.loads(body)
        except ValueError:
            return write_raw(body)
    json.dump(body, sys.stdout, indent=2, ensure_ascii=False)  # escapes control characters
    sys.stdout.write("\n")
    return 0


def write_raw(data: bytes) -> int:
    """Bytes as they are into a file or a pipe; to a terminal, with its control characters shown, not obeyed."""
    if sys.stdout.isatty():
        sys.stdout.write(printable(data.decode("utf-8", "replace")))
    else:
        sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    return write_raw(load_archive(connect(args.dbs), args.sha))


def cmd_report(args: argparse.Namespace) -> int:
    from kimi_core.report import build  # only this command needs it

    html = build(connect(args.dbs), args.session, args.reject_at)
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it shows your prompts: private
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(html)
    print(f"wrote {Path(args.output).resolve()} ({len(html) / 1000:.0f} KB)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from kimi_core import run  # subprocess and all: only when asked for
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return run.run(command, Path(args.db), Path(args.confdir), args.session, args.proxy_arg)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from kimi_core import run

    url = run.dashboard_url(Path(args.db).expanduser().resolve())
    if url is None:
        raise KimiError(f"no running proxy serves a dashboard for {args.db} (start one: "
                        "scripts/run mitmdump -s addons/kimi.py; kimi_web_port=0 turns it off)")
    print(url)
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    from kimi_core import retrieval  # the MCP SDK: only when asked for
    retrieval.serve(Path(args.db))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    found = doctor.checks(Path(args.db).expanduser(), Path(args.confdir).expanduser(), args.config)
    if args.json:
        json.dump([dataclasses.asdict(c) for c in found], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for c in found:
            mark = {"ok": "ok  ", "warning": "warn", "problem": "FAIL"}[c.status]
            print(printable(f"[{mark}] {c.what}: {c.detail}"))
            if c.fix:
                print(printable(f"       fix: {c.fix}"))
    return 1 if any(c.status == doctor.PROBLEM for c in found) else 0


# -- arguments --------------------------------------------------------------------------------------


def count(text: str) -> int:
    """A --limit: a whole number from 1 to a million."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text} is not between 1 and 1,000,000")
    return value


def ratio(text: str) -> float:
    """A --reject-at: 0.95 or 95%."""
    from kimi_core.guard import parse_ratio  # tiktoken and all: only when asked for
    try:
        return parse_ratio(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kimi-proxy", description="Read what Kimi Proxy recorded.")
    p.add_argument("--db", action="append", help=f"the database (default {DEFAULT_DB}); repeated, the listings "
                   "read several as one (a proxy per core or machine)")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, func: Callable, help: str, listing: bool = True, merges: bool = True
                ) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.add_argument("--db", dest="more_db", action="append", default=argparse.SUPPRESS,
                       help="the database" + (" (repeat it to read several as one)" if merges else ""))
        if listing:
            c.add_argument("--json", action="store_true", help="JSON instead of a table")
        c.set_defaults(func=func, merges=merges)
        return c

    c = command("sessions", cmd_sessions, "sessions: tokens, peak share of the window, refusals, forecast")
    c.add_argument("--reject-at", type=ratio, default=0.95, help="the guard's refusal threshold, for the forecast")
    c = command("requests", cmd_requests, "the latest calls, one line each")
    c.add_argument("--session", help="a session id, its start, or its name")
    c.add_argument("--agent", help="only this agent's calls (claude-code, codex, gemini-cli, openai-python, ...)")
    c.add_argument("--conversation", help="only this conversation's calls (an id, or its start)")
    c.add_argument("--user", help="only this user's calls (a shared proxy with proxyauth)")
    c.add_argument("--limit", type=count, default=20)
    c = command("conversations", cmd_conversations,
                "conversations: agent, parent (for a subagent), calls, tokens, cache share, cost")
    c.add_argument("--session", help="a session id, its start, or its name")
    c.add_argument("--agent", help="only this agent's conversations")
    c.add_argument("--limit", type=count, default=20)
    c = command("cost", cmd_cost, "what LLM calls cost, by day, agent, model, provider, session or conversation")
    c.add_argument("--by", choices=tuple(queries.GROUPINGS), default="day")
    c.add_argument("--since", help="30m, 2h, 7d or a date")
    c.add_argument("--agent", help="only this agent's calls")
    c.add_argument("--session", help="only this session")
    c.add_argument("--user", help="only this user's calls (a shared proxy with proxyauth)")
    c = command("stats", cmd_stats, "per provider and model: calls, tokens, latency, refusals, savings")
    c.add_argument("--since", help="30m, 2h, 7d or a date")
    c = command("alerts", cmd_alerts, "context-window alerts, newest first")
    c.add_argument("--limit", type=count, default=50)
    c = command("memories", cmd_memories, "what users told their agents about themselves "
                "(kimi-proxy memories forget ID... deletes some)")
    c.add_argument("--kind", choices=("preference", "intention", "constraint"))
    c.add_argument("--project", help="only those said in this project (a working directory)")
    c.add_argument("--user", help="only what this user said (a shared proxy with proxyauth)")
    c.add_argument("forget", nargs="?", choices=("forget",), help="forget the memories whose ids follow")
    c.add_argument("ids", nargs="*", type=int, help="ids of the memories to forget")
    c = command("show", cmd_show, "print a stored request body (or its response)", listing=False)
    c.add_argument("request_id", help="a request id, or the start of one")
    c.add_argument("--response", action="store_true", help="the response instead of the request")
    c = command("restore", cmd_restore, "print the original of a compacted tool result, byte for byte",
                listing=False)
    c.add_argument("sha", help="its sha256 (as the marker in the compacted text gives it), or a prefix")
    c = command("report", cmd_report, "write a self-contained HTML report", listing=False)
    c.add_argument("--session", help="only this session")
    c.add_argument("-o", "--output", default="kimi-report.html")
    c.add_argument("--reject-at", type=ratio, default=0.95, help="the guard's refusal threshold")
    c = command("run", cmd_run, "run a command with its LLM calls through Kimi (the running proxy, or one "
                "started for it): kimi-proxy run [--session NAME] -- claude", listing=False, merges=False)
    c.add_argument("--session", help="the session its calls go in (default: the command's name and the time)")
    c.add_argument("--confdir", default=DEFAULT_CONFDIR, help="mitmproxy's confdir, for a proxy started here")
    c.add_argument("--proxy-arg", action="append", default=[], metavar="ARG",
                   help="an argument for a proxy started here (repeat: --proxy-arg=--set "
                        "--proxy-arg=kimi_budget_daily_usd=5)")
    c.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    command("dashboard", cmd_dashboard, "print the address of the running proxy's live dashboard "
            "(token included)", listing=False, merges=False)
    command("mcp", cmd_mcp, "an MCP server (stdio) whose tool kimi_original lets an agent's model read what "
            "compaction left out", listing=False, merges=False)
    c = command("doctor", cmd_doctor, "check CA trust, the database, the config and the tokenizers", merges=False)
    c.add_argument("--confdir", default=DEFAULT_CONFDIR, help="mitmproxy's confdir")
    c.add_argument("--config", help="Kimi's config file (default ~/.kimi-proxy/config.toml)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.dbs = (args.db or []) + getattr(args, "more_db", []) or [DEFAULT_DB]
    args.db = args.dbs[0]
    try:
        if len(args.dbs) > 1 and not args.merges:
            raise KimiError(f"kimi-proxy {args.command} reads one database: give one --db")
        return args.func(args)
    except BrokenPipeError:  # kimi-proxy requests | head
        return 0
    except (KimiError, sqlite3.Error, OSError) as e:
        print(f"kimi-proxy: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
