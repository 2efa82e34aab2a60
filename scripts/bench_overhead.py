"""What Kimi costs on top of mitmproxy, measured side by side in one run.

Configurations (all against the same local TLS fake provider, HTTP/1.1 keep-alive client):

- direct:        client -> fake provider
- mitmdump:      client -> plain mitmdump -> fake provider
- mitmdump+sb:   the same with --set stream_large_bodies=1 (streams responses)
- kimi:          client -> mitmdump -s addons/kimi.py -> fake provider

Measures p50 / p99 latency of 1 KB, 100 KB, 1 MB and 5 MB chat requests
(every request has new content, so Kimi's per-message memo cannot help);
throughput of 4 KB requests at concurrency 8 and 32; SSE time to first byte
(events 50 ms apart); a 200-turn agent conversation replay where each turn
resends the whole history plus one new message, every twentieth carrying a
200 KB tool result (under ``kimi_tool_budget``; the last turn is 2.4 MB,
about half of gpt-4.1's window, so that no turn is near a line, where Kimi
waits for the count by design), with the stored bytes' growth over each
half; a conversation whose first turn brings a 1 MB tool result
(an ``ls -lR``), which Kimi compacts on the way, resent on every later turn;
and each proxy's memory, its child processes included.

    scripts/run python scripts/bench_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import sqlite3
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
    """The resident memory of ``pid`` and of its descendants (Kimi's memory reader is a child process)."""
    total = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += rss_mb(int(child))
    except OSError:
        pass
    return total


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) ``pid`` has used, all its threads together."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out += [int(child), *descendants(int(child))]
    return out


def db_state(db: Path) -> tuple[int, int]:
    """Request rows, and bytes of stored bodies (compressed), as a reader sees them."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        rows = c.execute("SELECT count(*) FROM requests").fetchone()[0]
        stored = c.execute("SELECT coalesce(sum(length(data)), 0) FROM blobs").fetchone()[0]
    return rows, stored


def settled_db(db: Path, rows: int, timeout: float = 120) -> int:
    """The stored bytes once the database holds ``rows`` request rows (the writer is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        n, size = db_state(db)
        if n >= rows or time.monotonic() > deadline:
            return size
        time.sleep(0.1)


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


# 5 MB of text is about 1.1M tokens: over gpt-4.1's window (which Kimi would rightly refuse
# after counting). That size goes to a model with a 2M-token window, declared in Kimi's config.
BIG_MODEL = "bench-2m"
CONFIG = f'[models."{BIG_MODEL}"]\ncontext_window = 2000000\n'


def chat_body(content: str, stream: bool = False) -> bytes:
    return json.dumps({"model": "gpt-4.1" if len(content) < 3_000_000 else BIG_MODEL, "stream": stream,
                       "messages": [{"role": "system", "content": "You are a coding agent."},
                                    {"role": "user", "content": content}]}).encode()


TOOL_EVERY = 20  # a replay turn in this many brings a 200 KB tool result
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


def bench_throughput(targets: list[Target], concurrency: int, n: int, seed: int) -> dict[str, float]:
    """Requests per second of ``n`` 4 KB requests, ``concurrency`` at a time, each target in turn (twice)."""
    bodies = [chat_body(text_of(4_000, random.Random(seed * 100_000 + i))) for i in range(n)]
    out: dict[str, list[float]] = {t.name: [] for t in targets}
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for _ in range(2):
            for t in targets:
                started = time.perf_counter()
                list(pool.map(t.post, bodies))
                out[t.name].append(n / (time.perf_counter() - started))
    return {name: max(v) for name, v in out.items()}


def bench_replay(targets: list[Target], turns: int, seed: int, dbs: dict[str, Path]) -> tuple[
        dict[str, list[float]], dict[str, tuple[int, int]]]:
    """Each target holds the same conversation; every turn resends the whole history.

    Every twentieth turn brings a 200 KB tool result (under the tool budget: nothing to compact).
    Returns the latencies and, per target with a database, its growth over each half of the turns.
    """
    rng = random.Random(seed)
    messages: list[dict] = [{"role": "system", "content": "You are a coding agent. " + text_of(4000, rng)}]
    bodies = []
    for turn in range(turns):
        if turn % TOOL_EVERY == TOOL_EVERY - 1:
            messages.append({"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_{turn}", "type": "function", "function": {"name": "read", "arguments": "{}"}}]})
            messages.append({"role": "tool", "tool_call_id": f"call_{turn}", "content": text_of(200_000, rng)})
        else:
            messages.append({"role": "user", "content": f"turn {turn}: " + text_of(1500, rng)})
        bodies.append(json.dumps({"model": "gpt-4.1", "messages": messages}).encode())
        messages.append({"role": "assistant", "content": f"done {turn}: " + text_of(500, rng)})
    half = turns // 2
    before = {name: db_state(db) for name, db in dbs.items()}
    latencies = rotate(targets, half, lambda t, i: t.post(bodies[i]))
    middle = {name: settled_db(db, before[name][0] + half) for name, db in dbs.items()}
    more = rotate(targets, turns - half, lambda t, i: t.post(bodies[half + i]))
    end = {name: settled_db(db, before[name][0] + turns) for name, db in dbs.items()}
    growth = {name: (middle[name] - before[name][1], end[name] - middle[name]) for name in dbs}
    return {n: latencies[n] + more[n] for n in latencies}, growth


def bench_tool_turns(targets: list[Target], turns: int) -> dict[str, list[float]]:
    """An agent conversation whose first turn brings a 1 MB tool result (``ls -lR`` of site-packages),
    resent on every turn after. Kimi compacts it on the first turn and reuses the compaction after."""
    listing = subprocess.run(["ls", "-lR", sysconfig.get_paths()["purelib"]], capture_output=True, text=True,
                             check=True).stdout[:1_000_000]
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


LABELS = {1_000: "1 KB", 100_000: "100 KB", 1_000_000: "1 MB", 5_000_000: "5 MB"}


def main() -> None:
    parser = argparse.ArgumentParser(description="Kimi Proxy overhead benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    args = parser.parse_args()
    counts = {1_000: 100, 100_000: 40, 1_000_000: 12, 5_000_000: 5} if args.quick \
        else {1_000: 400, 100_000: 200, 1_000_000: 40, 5_000_000: 15}
    ttfb_n, turns, per_level = (15, 60, 160) if args.quick else (60, 200, 800)

    work = Path(tempfile.mkdtemp(prefix="kimi-bench-"))
    config = work / "config.toml"
    config.write_text(CONFIG)
    quiet = {"flow_detail": "0"}
    with FakeProvider(tls=True) as fake:
        proxies = {
            "mitmdump": Mitmdump(work / "plain", fake.port, kimi=False, options=quiet),
            "mitmdump+sb": Mitmdump(work / "sb", fake.port, kimi=False, options={**quiet, "stream_large_bodies": "1"}),
            "kimi": Mitmdump(work / "kimi", fake.port, kimi=True, options={**quiet, "kimi_config": str(config)}),
        }
        try:
            for proxy in proxies.values():
                proxy.start()
            targets = [Target("direct", fake, None)] + [Target(n, fake, p) for n, p in proxies.items()]
            print("request sizes...", file=sys.stderr, flush=True)
            sizes = bench_sizes(targets, counts, seed=1)
            print("throughput...", file=sys.stderr, flush=True)
            throughput = {c: bench_throughput(targets, c, per_level, seed=c) for c in (8, 32)}
            print("SSE first byte...", file=sys.stderr, flush=True)
            stream_body = chat_body("stream please", stream=True)
            ttfb = rotate(targets, ttfb_n, lambda t, i: t.first_byte(stream_body))
            print(f"{turns}-turn replay...", file=sys.stderr, flush=True)
            replay, growth = bench_replay(targets, turns, 2, {"kimi": work / "kimi" / "kimi.db"})
            print("huge tool result resent...", file=sys.stderr, flush=True)
            tool_turns = bench_tool_turns(targets, 6)
            rss = {n: rss_mb(p.proc.pid) for n, p in proxies.items() if p.proc}
            kimi_pid = proxies["kimi"].proc.pid
            cpu = {n: cpu_seconds(p.proc.pid) for n, p in proxies.items() if p.proc}
            reader_cpu = sum(cpu_seconds(pid) for pid in descendants(kimi_pid))  # the memory reader
            children = [pid for p in proxies.values() if p.proc for pid in descendants(p.proc.pid)]
        finally:
            for proxy in proxies.values():
                proxy.stop()
        deadline = time.monotonic() + 5
        while (left := [pid for pid in children if Path(f"/proc/{pid}").exists()]) and time.monotonic() < deadline:
            time.sleep(0.1)
    names = [t.name for t in targets]

    def ratio(kimi: float, plain: float) -> str:
        return f"{kimi / plain:.2f}x"

    print(f"\n## Kimi Proxy overhead ({'quick' if args.quick else 'full'} run; ms; lower is better)\n")
    print("| measure | " + " | ".join(names) + " | kimi vs mitmdump |")
    print("|---|" + "---|" * (len(names) + 1))
    for size in counts:
        for p in (50, 99):
            vals = {n: pct(sizes[size][n], p) for n in names}
            print(f"| {LABELS[size]} p{p} | " + " | ".join(f"{vals[n]:.2f}" for n in names)
                  + f" | {ratio(vals['kimi'], vals['mitmdump'])} |")
    for c, vals in throughput.items():
        print(f"| 4 KB requests/s at c={c} (higher is better) | " + " | ".join(f"{vals[n]:.0f}" for n in names)
              + f" | {ratio(vals['kimi'], vals['mitmdump'])} |")
    for p in (50, 99):
        vals = {n: pct(ttfb[n], p) for n in names}
        print(f"| SSE first byte p{p} | " + " | ".join(f"{vals[n]:.2f}" for n in names)
              + f" | {vals['kimi'] - vals['mitmdump+sb']:+.2f} ms vs mitmdump+sb |")
    step = max(1, turns // 10)
    added = [statistics.median(replay["kimi"][i:i + step]) - statistics.median(replay["mitmdump"][i:i + step])
             for i in range(0, turns, step)]
    for lo in range(0, turns, step):
        vals = {n: statistics.median(replay[n][lo:lo + step]) for n in names}
        print(f"| replay turns {lo + 1}-{lo + step} p50 | " + " | ".join(f"{vals[n]:.2f}" for n in names)
              + f" | {vals['kimi'] - vals['mitmdump']:+.2f} ms |")
    tools = [i for i in range(turns) if i % TOOL_EVERY == TOOL_EVERY - 1]
    others = [i for i in range(turns) if i % TOOL_EVERY != TOOL_EVERY - 1]
    for label, idx in (("replay turns bringing a 200 KB tool result", tools), ("replay other turns", others)):
        vals = {n: statistics.median(replay[n][i] for i in idx) for n in names}
        print(f"| {label} p50 | " + " | ".join(f"{vals[n]:.2f}" for n in names)
              + f" | {vals['kimi'] - vals['mitmdump']:+.2f} ms |")
    for label, part in (("1 MB tool result, first turn", slice(0, 1)), ("1 MB tool result, later turns p50",
                                                                       slice(1, None))):
        vals = {n: statistics.median(tool_turns[n][part]) for n in names}
        print(f"| {label} | " + " | ".join(f"{vals[n]:.2f}" for n in names)
              + f" | {vals['kimi'] - vals['mitmdump']:+.2f} ms |")
    print("| proxy RSS after run, children included (MB) | " + " | ".join(
        f"{rss[n]:.0f}" if n in rss else "-" for n in names) + f" | {ratio(rss['kimi'], rss['mitmdump'])} |")
    print("| proxy CPU over the whole run, children included (s) | " + " | ".join(
        f"{cpu[n] + (reader_cpu if n == 'kimi' else 0):.1f}" if n in cpu else "-" for n in names)
        + f" | {ratio(cpu['kimi'] + reader_cpu, cpu['mitmdump'])} |")
    print(f"\nkimi's CPU: mitmdump process {cpu['kimi']:.1f} s, memory reader {reader_cpu:.1f} s "
          f"({reader_cpu / (cpu['kimi'] + reader_cpu):.1%} of Kimi's CPU)")
    first, second = growth["kimi"]
    print(f"\nreplay: added ms per turn, turns {step + 1}-{2 * step}: {added[1]:+.2f}, last {step}: {added[-1]:+.2f} "
          f"(ratio {added[-1] / added[1] if added[1] > 0 else float('nan'):.2f})")
    print(f"kimi's stored bodies over the replay: first half {first / 1e6:.2f} MB, second half {second / 1e6:.2f} MB "
          f"(ratio {second / first if first else float('nan'):.2f}); database: {work / 'kimi' / 'kimi.db'}")
    print(f"child processes still running 5 s after the proxies stopped: {len(left)}")


if __name__ == "__main__":
    main()
