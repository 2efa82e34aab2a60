"""Does memory extraction cost a request anything? A burst side by side: kimi_memory=true vs false.

Two mitmdump instances with Kimi, one with memory on and one off, against the
same local TLS fake provider. Bursts of concurrent requests, each a
conversation whose user messages are long (about 6 KB, with statements to
extract among ordinary text), go to one proxy then the other, taking turns so
that the machine's drift affects both alike. Prints the latency percentiles
of each, and what the memory side extracted.

    scripts/run python scripts/bench_memory.py [--requests 200] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import ssl
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kimi_core.testing.fake_provider import FakeProvider
from kimi_core.testing.proxy import Mitmdump

URL = "https://api.openai.com/v1/chat/completions"
FILLER = ["the", "build", "on", "the", "staging", "cluster", "went", "through", "after", "the", "cache", "was", "cleared", "and", "the", "report", "lists", "every", "module", "with", "its", "coverage", "and", "the", "time", "each", "suite", "took", "to", "run"]
STATEMENTS = ["I prefer {a} over {b}.", "Never touch the {a} module.", "We're going to migrate {a} to {b} next week.",
              "Je préfère {a} à {b}.", "Il faut toujours lancer {a} avant {b}.", "On va livrer {a} demain."]


def message(rng: random.Random, n: int) -> str:
    words = [rng.choice(FILLER) for _ in range(900)]
    statement = rng.choice(STATEMENTS).format(a=f"tool{n}", b=f"other{n}")
    return " ".join(words[:450]) + ". " + statement + " " + " ".join(words[450:]) + "."


def bodies(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for n in range(count):
        messages = [{"role": "system", "content": "You are a coding agent."}]
        for turn in range(3):
            messages += [{"role": "user", "content": message(rng, n * 10 + turn)},
                         {"role": "assistant", "content": "Done."}]
        messages.append({"role": "user", "content": message(rng, n * 10 + 9)})
        out.append(json.dumps({"model": "gpt-4.1", "messages": messages}).encode())
    return out


def burst(proxy: Mitmdump, payloads: list[bytes], concurrency: int) -> list[float]:
    context = ssl.create_default_context(cafile=str(proxy.ca))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(proxy=proxy.url, verify=context, timeout=60, limits=limits) as client:
        def one(body: bytes) -> float:
            started = time.perf_counter()
            r = client.post(URL, content=body, headers={"content-type": "application/json",
                                                        "authorization": "Bearer sk-bench"})
            r.read()
            assert r.status_code == 200, r.text[:200]
            return (time.perf_counter() - started) * 1000

        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(one, payloads))


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests per burst")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="bursts per proxy, taking turns")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kimi-bench-memory-"))
    results: dict[str, list[float]] = {"memory on": [], "memory off": []}
    with FakeProvider(tls=True) as fake:
        proxies = {
            "memory on": Mitmdump(work / "on", fake.port, options={"flow_detail": "0"}),
            "memory off": Mitmdump(work / "off", fake.port, options={"flow_detail": "0", "kimi_memory": "false"}),
        }
        try:
            for proxy in proxies.values():
                proxy.start()
            for name, proxy in proxies.items():  # warm-up
                burst(proxy, bodies(20, seed=999), args.concurrency)
            for r in range(args.rounds):
                payloads = bodies(args.requests, seed=r)  # the same new conversations for both
                order = list(proxies.items()) if r % 2 == 0 else list(proxies.items())[::-1]
                for name, proxy in order:
                    print(f"round {r + 1}: {name}...", file=sys.stderr, flush=True)
                    results[name] += burst(proxy, payloads, args.concurrency)
            time.sleep(2)  # let the workers finish before counting
        finally:
            for proxy in proxies.values():
                proxy.stop()
    db = sqlite3.connect(work / "on" / "kimi.db")
    kinds = dict(db.execute("SELECT kind, count(*) FROM memories GROUP BY kind").fetchall())
    size = len(bodies(1, seed=0)[0])
    print(f"\n{args.rounds} bursts of {args.requests} requests, {args.concurrency} at a time; "
          f"bodies of ~{size / 1000:.0f} KB with 4 user messages of ~6 KB each (ms)\n")
    print("| | p50 | p95 | p99 | max |")
    print("|---|---|---|---|---|")
    for name, values in results.items():
        print(f"| {name} | " + " | ".join(f"{pct(values, p):.1f}" for p in (50, 95, 99, 100)) + " |")
    print(f"\nmemories extracted (memory on): {kinds}")


if __name__ == "__main__":
    main()
