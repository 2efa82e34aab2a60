"""Load and shutdown: many concurrent streams, thousands of requests, SIGTERM and SIGKILL mid-traffic."""

import json
import signal
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import wait_rows
from test_e2e import trust

from kimi_core.testing.proxy import Mitmdump

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

URL = "https://api.openai.com/v1/chat/completions"


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def request(tag, i, stream=False):
    return json.dumps({"model": tag, "stream": stream, "messages": [
        {"role": "user", "content": f"request {i}: " + "words of a prompt " * (i % 7 + 1)}]}).encode()


def stream_one(client, tag, i, delay_ms=20, on_first=None):
    with client.stream("POST", URL, content=request(tag, i, stream=True), timeout=60, headers={
            "content-type": "application/json", "x-fake-delay-ms": str(delay_ms)}) as r:
        assert r.status_code == 200
        first = True
        text = b""
        for chunk in r.iter_bytes():
            text += chunk
            if first and on_first:
                on_first()
            first = False
    assert b"[DONE]" in text
    return True


def test_200_concurrent_streams_then_5000_requests_with_flat_memory(fake, tmp_path):
    with Mitmdump(tmp_path, upstream_port=fake.port, options={"flow_detail": "0"}) as proxy:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        tag = f"load-{uuid.uuid4().hex[:6]}"
        with httpx.Client(proxy=proxy.url, verify=trust(proxy), limits=limits) as client, \
                ThreadPoolExecutor(200) as pool:
            assert all(pool.map(lambda i: stream_one(client, tag, i), range(200)))
        assert len(wait_rows(proxy.db, "model = ?", (tag,), count=200, timeout=60)) == 200

        small = f"small-{uuid.uuid4().hex[:6]}"
        rss = {}
        with httpx.Client(proxy=proxy.url, verify=trust(proxy)) as client:
            for i in range(5_000):
                r = client.post(URL, content=request(small, i), headers={"content-type": "application/json"})
                assert r.status_code == 200
                if i + 1 in (1_000, 5_000):
                    rss[i + 1] = rss_mb(proxy.proc.pid)
        rows = wait_rows(proxy.db, "model = ?", (small,), count=5_000, timeout=120)
        db = sqlite3.connect(proxy.db)
        ids = db.execute("SELECT count(*), count(DISTINCT id) FROM requests WHERE model = ?", (small,)).fetchone()
    assert len(rows) == 5_000 and ids == (5_000, 5_000)  # exactly one row per request
    assert rss[5_000] - rss[1_000] < 50, rss  # caches are bounded: memory stays flat


def test_sigterm_with_50_streams_in_flight(fake, tmp_path):
    proxy = Mitmdump(tmp_path, upstream_port=fake.port).start()
    tag = f"term-{uuid.uuid4().hex[:6]}"
    started = threading.Semaphore(0)
    done: list[bool] = []

    def one(i):
        try:
            with httpx.Client(proxy=proxy.url, verify=trust(proxy)) as client:
                done.append(stream_one(client, tag, i, delay_ms=150 if i % 2 else 10, on_first=started.release))
        except (httpx.HTTPError, AssertionError):
            done.append(False)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for _ in range(50):
        assert started.acquire(timeout=30)  # every stream has begun
    time.sleep(0.2)  # some finish (the quick half), some are still streaming
    assert proxy.stop(signal.SIGTERM) == 0
    for t in threads:
        t.join(30)
    completed = done.count(True)
    db = sqlite3.connect(proxy.db)
    rows = db.execute("SELECT count(*) FROM requests WHERE model = ? AND error IS NULL", (tag,)).fetchone()[0]
    errors = [e for (e,) in db.execute("SELECT error FROM requests WHERE model = ? AND error IS NOT NULL", (tag,))]
    assert completed > 0
    assert rows >= completed, errors  # every stream the client saw complete has its row
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize("after", [0.3, 1.0, 2.0])
def test_sigkill_at_any_moment_leaves_a_sound_database_with_what_was_committed(fake, tmp_path, after):
    proxy = Mitmdump(tmp_path, upstream_port=fake.port).start()
    tag = f"kill-{uuid.uuid4().hex[:6]}"
    stop = threading.Event()

    def traffic():
        with httpx.Client(proxy=proxy.url, verify=trust(proxy)) as client:
            i = 0
            while not stop.is_set():
                try:
                    client.post(URL, content=request(tag, i), headers={"content-type": "application/json"})
                except httpx.HTTPError:
                    return
                i += 1

    workers = [threading.Thread(target=traffic) for _ in range(4)]
    for w in workers:
        w.start()
    time.sleep(after)
    committed = len(wait_rows(proxy.db, "model = ?", (tag,), count=0))  # read while it writes
    proxy.proc.send_signal(signal.SIGKILL)
    proxy.proc.wait(10)
    stop.set()
    for w in workers:
        w.join(10)
    db = sqlite3.connect(proxy.db)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT count(*) FROM requests WHERE model = ?", (tag,)).fetchone()[0] >= committed
    proxy.stop()
