"""What Kimi costs on top of mitmproxy, measured side by side in one run.

Configurations (all against the same local TLS fake provider, HTTP/1.1 keep-alive client):

- direct:        client -> fake provider
- mitmdump:      client -> plain mitmdump -> fake provider
- mitmdump+sb:   the same with --set stream_large_bodies=1 (streams responses)
- kimi:          client -> mitmdump -s addons/kimi.py -> fake provider

Measures p50 / p99 latency of 1 KB, 100 KB and 2 MB chat requests (every
request has new content, so Kimi's per-message memo cannot help), SSE time to
first byte (events 50 ms apart), and a 200-turn agent conversation replay
where each turn resends the whole history plus one new message, and a
conversation that resends one huge tool result (a 2 MB ``ls -lR``) on every
turn, which Kimi compacts (``kimi_tool_budget``) on the way.

    scripts/run python scripts/bench_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import ssl
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kimi_core.testing.fake_provider import FakeProvider
from kimi_core.testing.proxy import Mitmdump

URL = "https://api.openai.com/v1/chat/completions"
WORDS = ["the", "model", "reads", "every", "token", "of", "the", "history", "again", "on", "each", "turn", "while", "the", "agent", "calls", "tools", "lists", "files", "runs", "tests", "and", "pastes", "their", "output", "into", "the", "conversation", "def", "main", "return", "self", "import", "class", "error", "warning", "failed", "passed", "0", "1", "2", "3", "42", "1024"]


def text_of(size: int, rng: random.Random) -> str:
    out, n = [], 0
    while n < size:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)[:size]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Target:
    def __init__(self, name: str, fake: FakeProvider, proxy: Mitmdump | None) -> None:
        self.name = name
        self.proxy = proxy
        if proxy is None:
            # Straight to the fake provider, which answers whatever the Host header says.
            self.url = f"https://127.0.0.1:{fake.port}/v1/chat/completions"
            self.client = openai.DefaultHttpxClient(verify=False, timeout=60)
        else:
            self.url = URL
            ctx = ssl.create_default_context(cafile=str(proxy.ca))
            self.client = openai.DefaultHttpxClient(proxy=proxy.url, verify=ctx, timeout=60)

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> float:
        started = time.perf_counter()
        r = self.client.post(self.url, content=body, headers={"content-type": "application/json", **(headers or {})})
        r.read()
        assert r.status_code == 200, r.text[:200]
        return (time.perf_counter() - started) * 1000

    def first_byte(self, body: bytes) -> float:
        started = time.perf_counter()
        with self.client.stream("POST", self.url, content=body, headers={
                "content-type": "application/json", "x-fake-delay-ms": "50", "x-fake-chunks": "10"}) as r:
            chunks = r.iter_raw()
            next(chunks)
            first = (time.perf_counter() - started) * 1000
            for _ in chunks:
                pass
        return first


def chat_body(content: str, stream: bool = False) -> bytes:
    return json.dumps({"model": "gpt-4.1", "stream": stream,
                       "messages": [{"role": "system", "content": "You are a coding agent."},
                                    {"role": "user", "content": content}]}).encode()


BLOCK = 10  # requests in a row to one target before the next one takes its turn


def rotate(targets: list[Target], n: int, measure) -> dict[str, list[float]]:
    """``measure(target, i)`` n times per target, the targets taking turns in blocks.

    All proxies run at once and share the machine's drift (this VM's speed
    moves by 2x between minutes), so the columns are comparable.
    """
    out: dict[str, list[float]] = {t.name: [] for t in targets}
    for start in range(0, n, BLOCK):
        for t in targets:
            for i in range(start, min(n, start + BLOCK)):
                out[t.name].append(measure(t, i))
    return out


def bench_sizes(targets: list[Target], counts: dict[int, int], seed: int) -> dict[int, dict[str, list[float]]]:
    results = {}
    for size, n in counts.items():
        bodies = [chat_body(text_of(size, random.Random(seed * 1000 + i))) for i in range(n + 3)]
        rotate(targets, 3, lambda t, i, bodies=bodies, n=n: t.post(bodies[n + i]))  # warm-up
        # Each target gets the same bodies, new to it: Kimi's memo cannot help.
        results[size] = rotate(targets, n, lambda t, i, bodies=bodies: t.post(bodies[i]))
    return results


def bench_replay(targets: list[Target], turns: int, seed: int) -> dict[str, list[float]]:
    """Each target holds the same conversation; every turn resends the whole history."""
    rng = random.Random(seed)
    messages = [{"role": "system", "content": "You are a coding agent. " + text_of(4000, rng)}]
    bodies = []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"turn {turn}: " + text_of(1500, rng)})
        bodies.append(json.dumps({"model": "gpt-4.1", "messages": messages}).encode())
        messages.append({"role": "assistant", "content": f"done {turn}: " + text_of(500, rng)})
    return rotate(targets, turns, lambda t, i: t.post(bodies[i]))


def bench_tool_turns(targets: list[Target], turns: int) -> dict[str, list[float]]:
    """An agent conversation holding one huge tool result (``ls -lR`` of site-packages), resent every turn.

    Kimi compacts it on the first turn and reuses the compaction after.
    """
    listing = subprocess.run(["ls", "-lR", sysconfig.get_paths()["purelib"]], capture_output=True, text=True,
                             check=True).stdout
    messages = [{"role": "system", "content": "You are a coding agent."},
                {"role": "user", "content": "Where does tiktoken keep its encodings?"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                    "name": "shell", "arguments": '{"command": "ls -lR site-packages"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": listing}]
    bodies = []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"turn {turn}: and the tests?"})
        bodies.append(json.dumps({"model": "gpt-4.1", "messages": messages}).encode())
        messages.append({"role": "assistant", "content": f"answer {turn}"})
    print(f"  tool result: {len(listing) / 1e6:.1f} MB", file=sys.stderr, flush=True)
    return rotate(targets, turns, lambda t, i: t.post(bodies[i]))


def main() -> None:
    parser = argparse.ArgumentParser(description="Kimi Proxy overhead benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    args = parser.parse_args()
    counts = {1_000: 100, 100_000: 60, 2_000_000: 15} if args.quick else {1_000: 400, 100_000: 200, 2_000_000: 40}
    ttfb_n, turns = (15, 60) if args.quick else (60, 200)

    work = Path(tempfile.mkdtemp(prefix="kimi-bench-"))
    quiet = {"flow_detail": "0"}
    with FakeProvider(tls=True) as fake:
        proxies = {
            "mitmdump": Mitmdump(work / "plain", fake.port, kimi=False, options=quiet),
            "mitmdump+sb": Mitmdump(work / "sb", fake.port, kimi=False, options={**quiet, "stream_large_bodies": "1"}),
            "kimi": Mitmdump(work / "kimi", fake.port, kimi=True, options=quiet),
        }
        try:
            for proxy in proxies.values():
                proxy.start()
            targets = [Target("direct", fake, None)] + [Target(n, fake, p) for n, p in proxies.items()]
            print("request sizes...", file=sys.stderr, flush=True)
            sizes = bench_sizes(targets, counts, seed=1)
            print("SSE first byte...", file=sys.stderr, flush=True)
            stream_body = chat_body("stream please", stream=True)
            ttfb = rotate(targets, ttfb_n, lambda t, i: t.first_byte(stream_body))
            print(f"{turns}-turn replay...", file=sys.stderr, flush=True)
            replay = bench_replay(targets, turns, seed=2)
            print("huge tool result resent...", file=sys.stderr, flush=True)
            tool_turns = bench_tool_turns(targets, 6)
            rss = {n: rss_mb(p.proc.pid) for n, p in proxies.items() if p.proc}
        finally:
            for proxy in proxies.values():
                proxy.stop()
    results = {t.name: {"sizes": {size: sizes[size][t.name] for size in counts}, "ttfb": ttfb[t.name],
                        "replay": replay[t.name], "tool": tool_turns[t.name], "rss": rss.get(t.name)}
               for t in targets}

    names = list(results)
    print(f"\n## Kimi Proxy overhead ({'quick' if args.quick else 'full'} run; ms; lower is better)\n")
    print("| measure | " + " | ".join(names) + " | kimi vs mitmdump |")
    print("|---|" + "---|" * (len(names) + 1))
    for size in counts:
        label = {1_000: "1 KB", 100_000: "100 KB", 2_000_000: "2 MB"}[size]
        for p in (50, 99):
            vals = {n: pct(results[n]["sizes"][size], p) for n in names}
            delta = (vals["kimi"] / vals["mitmdump"] - 1) * 100
            print(f"| {label} p{p} | " + " | ".join(f"{vals[n]:.2f}" for n in names) + f" | {delta:+.1f}% |")
    for p in (50, 99):
        vals = {n: pct(results[n]["ttfb"], p) for n in names}
        print(f"| SSE first byte p{p} | " + " | ".join(f"{vals[n]:.2f}" for n in names)
              + f" | {vals['kimi'] - vals['mitmdump+sb']:+.2f} ms vs mitmdump+sb |")
    quarter = max(1, turns // 4)
    for q in range(4):
        lo, hi = q * quarter, (q + 1) * quarter
        vals = {n: statistics.median(results[n]["replay"][lo:hi]) for n in names}
        print(f"| replay turns {lo + 1}-{hi} p50 | " + " | ".join(f"{vals[n]:.2f}" for n in names)
              + f" | {vals['kimi'] - vals['mitmdump']:+.2f} ms |")
    for label, part in (("first turn", slice(0, 1)), ("later turns p50", slice(1, None))):
        vals = {n: statistics.median(results[n]["tool"][part]) for n in names}
        print(f"| huge tool result, {label} | " + " | ".join(f"{vals[n]:.2f}" for n in names)
              + f" | {vals['kimi'] - vals['mitmdump']:+.2f} ms |")
    print("| proxy RSS after run (MB) | " + " | ".join(
        "-" if results[n]["rss"] is None else f"{results[n]['rss']:.0f}" for n in names) + " | |")
    print(f"\nreplay: the last turn resends ~{turns * 2} KB of history; "
          f"kimi database: {work / 'kimi' / 'kimi.db'}")


if __name__ == "__main__":
    main()
