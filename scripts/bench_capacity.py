"""What one Kimi instance holds, measured side by side with plain mitmdump in one run.

For the deployment notes (README, "Running Kimi for a team"): how many calls a
second one instance carries, how many streams it holds open at once, and how
big its database grows per million calls. Against the local TLS fake provider:

- mitmdump:     plain mitmdump, streaming responses (stream_large_bodies=1, as Kimi streams event
                streams: without it mitmdump holds each stream until its end)
- kimi:         mitmdump -s addons/kimi.py (bodies stored, as by default)
- kimi-rows:    the same with kimi_store_bodies=false (rows only)

Measures:

- calls/s at concurrency 32: 4 KB calls, each new (the worst case for Kimi:
  nothing to reuse), and agent turns (16 conversations at once, each turn
  resending its history, 20 KB growing by 3 KB a turn, streamed);
- concurrent streams: N streams opened at once, each 20 events 250 ms apart
  (5 s); all must finish; time to first event p50 / p99 and the proxy's
  memory with them open;
- database size per call of each kind, and per million calls.

    scripts/run python scripts/bench_capacity.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import random
import sqlite3
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_overhead import URL, Target, bench_throughput, cpu_seconds, pct, rss_mb, text_of

from kimi_core.testing.fake_provider import FakeProvider
from kimi_core.testing.proxy import Mitmdump

STREAM_EVENTS, STREAM_GAP_MS = 20, 250


def db_size(db: Path) -> tuple[int, int]:
    """(request rows, bytes the database holds), as a reader sees it (the WAL included)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        rows = c.execute("SELECT count(*) FROM requests").fetchone()[0]
        pages, size = c.execute("PRAGMA page_count").fetchone()[0], c.execute("PRAGMA page_size").fetchone()[0]
    return rows, pages * size


def settle(db: Path, rows: int, timeout: float = 180) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        found = db_size(db)
        if found[0] >= rows or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def agent_turns(targets: list[Target], conversations: int, turns: int, seed: int) -> dict[str, float]:
    """Turns/s of ``conversations`` agent conversations at once, each turn resending the history, streamed."""
    rng = random.Random(seed)
    texts = [[text_of(3_000, random.Random(rng.random())) for _ in range(turns)] for _ in range(conversations)]
    out = {}

    def converse(t: Target, c: int, tag: str) -> None:
        messages = [{"role": "system", "content": "You are a coding agent. " + text_of(20_000, random.Random(c))}]
        for i in range(turns):
            messages.append({"role": "user", "content": f"{tag} {c} {i} " + texts[c][i]})
            body = json.dumps({"model": "gpt-4.1", "stream": True, "messages": messages}).encode()
            with t.client.stream("POST", t.url, content=body, headers={
                    "content-type": "application/json", "x-fake-chunks": "20"}) as r:
                assert r.status_code == 200
                reply = b"".join(r.iter_raw())
            assert b"[DONE]" in reply
            messages.append({"role": "assistant", "content": "done: " + texts[c][(i + 1) % turns][:300]})

    with concurrent.futures.ThreadPoolExecutor(conversations) as pool:
        for t in targets:
            started = time.perf_counter()
            list(pool.map(lambda c, t=t: converse(t, c, t.name), range(conversations)))
            out[t.name] = conversations * turns / (time.perf_counter() - started)
    return out


async def _streams(proxy: Mitmdump, n: int) -> tuple[int, list[float], float, list[float]]:
    """``n`` streams opened at once through ``proxy``: how many finished, their first-event times (ms), the
    proxy's memory (MB) while all were open, and the gaps between events (ms; the provider's are 250)."""
    ctx = ssl.create_default_context(cafile=str(proxy.ca))
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    first: list[float] = []
    gaps: list[float] = []
    peak = 0.0
    opened = asyncio.Event()
    open_now = 0

    async with httpx.AsyncClient(proxy=proxy.url, verify=ctx, limits=limits, timeout=120) as client:
        async def one(i: int) -> bool:
            nonlocal open_now
            body = json.dumps({"model": "gpt-4.1", "stream": True, "messages": [
                {"role": "user", "content": f"stream {i} " + "a question " * 50}]}).encode()
            started = time.perf_counter()
            async with client.stream("POST", URL, content=body, headers={
                    "content-type": "application/json", "x-fake-chunks": str(STREAM_EVENTS),
                    "x-fake-delay-ms": str(STREAM_GAP_MS)}) as r:
                seen = b""
                last = 0.0
                async for chunk in r.aiter_raw():
                    now = time.perf_counter()
                    if seen:
                        gaps.append((now - last) * 1000)
                    last = now
                    if not seen:
                        first.append((time.perf_counter() - started) * 1000)
                        open_now += 1
                        if open_now == n:
                            opened.set()
                    seen += chunk
            return r.status_code == 200 and b"[DONE]" in seen

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, rss_mb(proxy.proc.pid))
                await asyncio.sleep(0.25)

        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
        watcher.cancel()
    return sum(r is True for r in results), first, peak, gaps


def main() -> None:
    parser = argparse.ArgumentParser(description="Kimi Proxy capacity benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer calls and streams, for a smoke run")
    args = parser.parse_args()
    n_small, conversations, turns = (600, 8, 10) if args.quick else (2_000, 16, 25)
    stream_levels = (200, 500) if args.quick else (250, 500, 1000)

    work = Path(tempfile.mkdtemp(prefix="kimi-capacity-"))
    quiet = {"flow_detail": "0"}
    with FakeProvider(tls=True) as fake:
        proxies = {
            "mitmdump": Mitmdump(work / "plain", fake.port, kimi=False,
                                 options={**quiet, "stream_large_bodies": "1"}),
            "kimi": Mitmdump(work / "kimi", fake.port, kimi=True, options=quiet),
            "kimi-rows": Mitmdump(work / "rows", fake.port, kimi=True,
                                  options={**quiet, "kimi_store_bodies": "false"}),
        }
        kimis = {n: p for n, p in proxies.items() if n != "mitmdump"}
        try:
            for proxy in proxies.values():
                proxy.start()
            targets = [Target(n, fake, p) for n, p in proxies.items()]
            print("small calls...", file=sys.stderr, flush=True)
            small = bench_throughput(targets, 32, n_small, seed=1)  # new 4 KB calls, best of two runs each
            after_small = {n: settle(p.db, 2 * n_small) for n, p in kimis.items()}
            print("agent turns...", file=sys.stderr, flush=True)
            turns_s = agent_turns(targets, conversations, turns, seed=2)
            after_turns = {n: settle(p.db, after_small[n][0] + conversations * turns) for n, p in kimis.items()}
            streams = {}
            for level in stream_levels:
                print(f"{level} streams at once...", file=sys.stderr, flush=True)
                for name, proxy in proxies.items():
                    cpu = cpu_seconds(proxy.proc.pid)
                    done, first, peak, gaps = asyncio.run(_streams(proxy, level))
                    streams[(level, name)] = (done, first, peak, cpu_seconds(proxy.proc.pid) - cpu, gaps)
        finally:
            for proxy in proxies.values():
                proxy.stop()

    names = list(proxies)
    print(f"\n## One instance's capacity ({'quick' if args.quick else 'full'} run, 2 cores shared by client, "
          "proxy and fake provider)\n")
    print("| measure | " + " | ".join(names) + " | kimi vs mitmdump |")
    print("|---|" + "---|" * (len(names) + 1))
    print("| new 4 KB calls/s, c=32 | " + " | ".join(f"{small[n]:.0f}" for n in names)
          + f" | {small['kimi'] / small['mitmdump']:.2f}x |")
    print(f"| agent turns/s ({conversations} conversations, streamed) | "
          + " | ".join(f"{turns_s[n]:.1f}" for n in names) + f" | {turns_s['kimi'] / turns_s['mitmdump']:.2f}x |")
    for level in stream_levels:
        row = {n: streams[(level, n)] for n in names}
        print(f"| {level} streams: finished | " + " | ".join(f"{row[n][0]}/{level}" for n in names) + " | |")
        for p in (50, 99):
            vals = {n: pct(row[n][1], p) if row[n][1] else float("nan") for n in names}
            print(f"| {level} streams: first event p{p} ms | " + " | ".join(f"{vals[n]:.0f}" for n in names)
                  + f" | {vals['kimi'] - vals['mitmdump']:+.0f} ms |")
        gap = {n: pct(row[n][4], 99) if row[n][4] else float("nan") for n in names}
        print(f"| {level} streams: gap between events p99 ms (sent {STREAM_GAP_MS}) | "
              + " | ".join(f"{gap[n]:.0f}" for n in names) + f" | {gap['kimi'] - gap['mitmdump']:+.0f} ms |")
        print(f"| {level} streams: proxy memory MB | " + " | ".join(f"{row[n][2]:.0f}" for n in names)
              + f" | {row['kimi'][2] / row['mitmdump'][2]:.2f}x |")
        print(f"| {level} streams: proxy CPU s | " + " | ".join(f"{row[n][3]:.1f}" for n in names) + " | |")
    print("\n| database | kimi (bodies) | kimi-rows (no bodies) |\n|---|---|---|")
    small_rows = {n: after_small[n][0] for n in kimis}
    per_small = {n: after_small[n][1] / max(1, after_small[n][0]) for n in kimis}
    per_turn = {n: (after_turns[n][1] - after_small[n][1]) / max(1, after_turns[n][0] - small_rows[n])
                for n in kimis}
    print("| bytes per new 4 KB call | " + " | ".join(f"{per_small[n]:,.0f}" for n in kimis) + " |")
    print(f"| bytes per agent turn (history resent, {turns} turns) | "
          + " | ".join(f"{per_turn[n]:,.0f}" for n in kimis) + " |")
    print("| GB per million agent turns | " + " | ".join(f"{per_turn[n] * 1e6 / 1e9:.1f}" for n in kimis) + " |")
    print("| GB per million new 4 KB calls | " + " | ".join(f"{per_small[n] * 1e6 / 1e9:.1f}" for n in kimis) + " |")


if __name__ == "__main__":
    threading.stack_size(512 * 1024)  # the client's threads: many, small
    main()
