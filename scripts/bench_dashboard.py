"""How fast the dashboard's API answers on a big database.

Fills a fresh database with ``--requests`` rows (default 100,000) in
``--conversations`` conversations, the way a long-used proxy would have them,
with real stored bodies for the newest calls, then times each API call the
pages make (median of ``--repeat`` runs, read-only connection, as the server
reads):

    scripts/run python scripts/bench_dashboard.py [--requests 100000]
"""

from __future__ import annotations

import argparse
import datetime
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kimi_core.dashboard import api
from kimi_core.store import AlertRecord, RequestRecord, SessionRecord, Store
from kimi_core.tokens import TokenCounter

MODELS = [("claude-sonnet-4-5", 200_000, "anthropic"), ("gpt-4.1", 1_047_576, "openai-chat"),
          ("kimi-k2", 262_144, "openai-chat")]


def body(dialect: str, model: str, turns: int, rng: random.Random) -> dict:
    messages = []
    for i in range(turns):
        messages.append({"role": "user", "content": f"step {i}: " + "please look at the code " * rng.randint(5, 40)})
        messages.append({"role": "assistant", "content": "done " * rng.randint(5, 60)})
    out = {"model": model, "messages": messages, "max_tokens": 1000}
    if dialect == "anthropic":
        out["system"] = "You are a coding agent. " * 200
        out["tools"] = [{"name": f"tool_{k}", "description": "does things " * 30, "input_schema": {"type": "object"}}
                        for k in range(12)]
    return out


def fill(path: Path, n: int, conversations: int, bodies: int) -> None:
    rng = random.Random(7)
    store = Store(path)
    store.open()
    store.close()
    conn = sqlite3.connect(path)
    now = datetime.datetime.now(datetime.UTC)
    start = now - datetime.timedelta(days=30)
    session = uuid.uuid4().hex
    conn.execute("INSERT INTO sessions (id, name, provider, started_at, mode) VALUES (?, ?, ?, ?, ?)",
                 (session, "bench", "anthropic", start.isoformat(), "auto"))
    cids = [uuid.uuid4().hex for _ in range(conversations)]
    for i, cid in enumerate(cids):
        conn.execute("INSERT INTO conversations (id, session_id, agent, started_at, title) VALUES (?, ?, ?, ?, ?)",
                     (cid, session, rng.choice(["claude-code", "codex", "gemini-cli"]), start.isoformat(),
                      f"conversation {i}"))
    rows = []
    turn: dict[str, int] = {}
    for i in range(n):
        ts = (start + (now - start) * (i / n)).isoformat(timespec="milliseconds")
        cid = cids[min(conversations - 1, int(rng.random() ** 0.5 * conversations))]  # newer ones busier
        turn[cid] = turn.get(cid, 0) + 1
        model, window, dialect = MODELS[hash(cid) % len(MODELS)]
        est = min(window, 2000 + turn[cid] * 900 + rng.randint(0, 500))
        action = "rejected" if est > 0.95 * window else "passed"
        rows.append((str(uuid.uuid4()), ts, session, "anthropic", dialect, "api.example", "/v1/messages", "POST",
                     model, 200, 1, est, est, est, rng.randint(10, 500), rng.randint(0, est), window, est / window,
                     action, cid, "claude-code", round(est * 3e-6, 6), rng.uniform(300, 9000)))
    conn.executemany(
        "INSERT INTO requests (id, ts, session_id, provider, dialect, host, path, method, model, status_code, "
        "streamed, prompt_tokens_est, prompt_tokens_cal, prompt_tokens, completion_tokens, cached_tokens, "
        "context_window, window_share, action, conversation_id, agent, cost_usd, duration_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.executemany("INSERT INTO alerts (ts, session_id, request_id, level, kind, message) VALUES (?, ?, ?, ?, ?, ?)",
                     [(r[1], session, r[0], 0.75, "window_share", "75% of the window") for r in rows[::50]])
    conn.commit()
    conn.close()
    # The newest calls with real bodies, through the store (blobs, history links), as the proxy writes them.
    store = Store(path)
    store.open()
    store.start()
    for r in rows[-bodies:]:
        model, dialect = r[8], r[4]
        store.submit(RequestRecord(row={"id": r[0] + "-b", "ts": r[1], "session_id": session, "provider": "anthropic",
                                        "dialect": dialect, "host": "api.example", "path": "/v1/messages",
                                        "method": "POST", "model": model, "conversation_id": r[19],
                                        "prompt_tokens_est": r[11], "context_window": r[16], "action": "passed"},
                                   request_body=body(dialect, model, rng.randint(5, 60), rng),
                                   history_key="messages"))
    store.submit(SessionRecord(session, "bench", "anthropic", start.isoformat(), "auto"))
    store.submit(AlertRecord(now.isoformat(), session, rows[-1][0], 0.95, "rejected", "refused"))
    store.close()


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--conversations", type=int, default=2_000)
    parser.add_argument("--bodies", type=int, default=300, help="newest calls stored with their bodies")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="kimi-bench-dashboard-")) / "kimi.db"
    t = time.perf_counter()
    fill(path, args.requests, args.conversations, args.bodies)
    print(f"filled {path} with {args.requests:,} requests in {args.conversations:,} conversations "
          f"({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    lines, counter = api.Lines(), TokenCounter()
    with_body = conn.execute("SELECT id, conversation_id FROM requests WHERE request_body IS NOT NULL "
                             "ORDER BY ts DESC LIMIT 1").fetchone()
    busiest = conn.execute("SELECT conversation_id FROM requests GROUP BY conversation_id "
                           "ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
    turns = conn.execute("SELECT count(*) FROM requests WHERE conversation_id = ?", (busiest,)).fetchone()[0]
    cases = {
        "/api/now (last 30 min)": lambda: api.now(conn, lines),
        "/api/now (last 30 days)": lambda: api.now(conn, lines, minutes=30 * 24 * 60),
        "/api/calls (latest 25)": lambda: api.calls(conn, 25),
        f"/api/conversations/<busiest, {turns:,} calls>": lambda: api.conversation(conn, busiest, lines),
        "/api/calls/<id> (composition)": lambda: api.call(conn, with_body[0], counter, lines),
        "/api/alerts (latest 100)": lambda: api.alerts(conn, 100),
        "/api/findings (24 h)": lambda: api.findings(conn, counter, lines),
        "/api/memories": lambda: api.memories(conn),
    }
    print(f"{'endpoint':48} median ms")
    for name, fn in cases.items():
        print(f"{name:48} {timed(fn, args.repeat):9.1f}")


if __name__ == "__main__":
    main()
