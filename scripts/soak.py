"""Mixed traffic through one mitmdump with Kimi for a number of minutes; what held and what did not.

Workers loop over every dialect, streamed and not, requests with oversized
tool results (compacted), requests that overflow a small model's window
(refused), and conversations that grow turn by turn, against the local TLS
fake provider. At the end: requests, client errors, rows written, records
the database lost, p50 / p99 latency, and the proxy's RSS at the start and
the end.

    scripts/run python scripts/soak.py [--minutes 10] [--workers 8]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sqlite3
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kimi_core.testing.fake_provider import FakeProvider
from kimi_core.testing.proxy import Mitmdump

LISTING = "\n".join(f"-rw-r--r-- 1 dev dev {4000 + i} Nov 21 src/pkg_{i:05d}/module_{i}.py" for i in range(3000))


def scenarios(n: int, rng: random.Random) -> tuple[str, dict, dict]:
    """The n-th request: (url, JSON body, headers)."""
    words = " ".join(rng.choice(["the", "agent", "reads", "files", "and", "runs", "tests", "error"])
                     for _ in range(rng.randint(5, 400)))
    kind = n % 8
    stream = n % 3 == 0
    if kind == 0:
        return "https://api.openai.com/v1/chat/completions", {
            "model": "gpt-4.1", "stream": stream, "messages": [{"role": "user", "content": f"{n} {words}"}]}, {}
    if kind == 1:
        return "https://api.anthropic.com/v1/messages", {
            "model": "claude-opus-4-5", "max_tokens": 100, "stream": stream,
            "messages": [{"role": "user", "content": f"{n} I prefer pytest. {words}"}]}, {}
    if kind == 2:
        return "https://api.openai.com/v1/responses", {"model": "gpt-4.1", "stream": stream, "input": f"{n} {words}"}, {}
    if kind == 3:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:{method}", {
            "contents": [{"role": "user", "parts": [{"text": f"{n} {words}"}]}]}, {}
    if kind == 4:  # an oversized tool result: compacted
        return "https://api.openai.com/v1/chat/completions", {"model": "gpt-4.1", "messages": [
            {"role": "user", "content": f"{n} where is module_{n % 3000}?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": LISTING}]}, {}
    if kind == 5:  # too big for the small model: refused
        return "https://api.openai.com/v1/chat/completions", {
            "model": "soak-small", "messages": [{"role": "user", "content": "lorem ipsum " * 3000}]}, {}
    if kind == 6:  # a conversation that grows
        turns = n % 40
        messages = [{"role": "user", "content": "start the refactor"}]
        for t in range(turns):
            messages += [{"role": "assistant", "content": f"step {t} done"}, {"role": "user", "content": f"step {t + 1}"}]
        return "https://api.openai.com/v1/chat/completions", {"model": "gpt-4.1", "messages": messages}, {
            "X-Kimi-Session": f"soak-{n // 40}"}
    return "https://api.openai.com/v1/chat/completions", {
        "model": "gpt-4.1", "stream": True, "messages": [{"role": "user", "content": f"{n} slow stream"}]}, {
        "x-fake-delay-ms": "30"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kimi-soak-"))
    config = work / "config.toml"
    config.write_text('[models."soak-small"]\ncontext_window = 2000\n')
    counter = itertools.count()
    latencies: list[float] = []
    errors: list[str] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    with FakeProvider(tls=True) as fake, Mitmdump(work, fake.port, options={
            "kimi_config": str(config), "flow_detail": "0", "kimi_tool_budget": "5000"}) as proxy:
        assert proxy.proc is not None
        trust = ssl.create_default_context(cafile=str(proxy.ca))
        time.sleep(1)
        rss_start = rss_mb(proxy.proc.pid)
        deadline = time.monotonic() + args.minutes * 60

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(proxy=proxy.url, verify=trust, timeout=60) as client:
                while time.monotonic() < deadline:
                    n = next(counter)
                    url, body, headers = scenarios(n, rng)
                    started = time.perf_counter()
                    try:
                        r = client.post(url, json=body, headers={"authorization": "Bearer sk-soak", **headers})
                        status = r.status_code
                    except httpx.HTTPError as e:
                        with lock:
                            errors.append(f"{type(e).__name__}: {e}")
                        continue
                    with lock:
                        latencies.append((time.perf_counter() - started) * 1000)
                        statuses[status] = statuses.get(status, 0) + 1

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.workers)]
        for t in threads:
            t.start()
        last = time.monotonic()
        while any(t.is_alive() for t in threads):
            time.sleep(1)
            if time.monotonic() - last >= 60:
                last = time.monotonic()
                print(f"  {len(latencies):,} requests, RSS {rss_mb(proxy.proc.pid):.0f} MB", file=sys.stderr, flush=True)
        rss_end = rss_mb(proxy.proc.pid)
        sent = len(latencies)
    time.sleep(0.5)
    db = sqlite3.connect(proxy.db)
    rows = db.execute("SELECT count(*) FROM requests").fetchone()[0]
    actions = dict(db.execute("SELECT action, count(*) FROM requests GROUP BY action").fetchall())
    log = proxy.log()
    lost = sum(int(word) for line in log.splitlines() if "record(s) not written" in line
               for word in line.split() if word.isdigit()) if "not written" in log else 0
    ordered = sorted(latencies)
    print(f"\nsoak: {args.minutes:g} min, {args.workers} workers, all dialects, streamed and not")
    print(json.dumps({
        "requests": sent, "client errors": len(errors), "statuses": statuses, "rows": rows, "actions": actions,
        "lost writes": lost, "p50 ms": round(statistics.median(ordered), 1) if ordered else None,
        "p99 ms": round(ordered[int(len(ordered) * 0.99)], 1) if ordered else None,
        "RSS start MB": round(rss_start), "RSS end MB": round(rss_end),
        "tracebacks in the log": log.count("Traceback"),
    }, indent=2))
    for e in errors[:5]:
        print("  error:", e)


if __name__ == "__main__":
    main()
