"""A database that is locked, deleted or full while the proxy runs: every request still succeeds, nothing is lost in silence."""

import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import wait_rows
from test_e2e import openai_client

from kimi_core.store import RequestRecord, Store
from kimi_core.testing.proxy import Mitmdump

pytestmark = pytest.mark.e2e


def chat(proxy, tag, n):
    client = openai_client(proxy)
    for i in range(n):
        reply = client.chat.completions.create(model=tag, messages=[{"role": "user", "content": f"hello {i}"}])
        assert reply.choices[0].message.content == "Hello from the fake provider."


def test_a_database_locked_for_ten_seconds_delays_no_request_and_loses_no_row(fake, tmp_path):
    with Mitmdump(tmp_path, upstream_port=fake.port) as proxy:
        tag = f"locked-{uuid.uuid4().hex[:6]}"
        chat(proxy, tag, 1)
        wait_rows(proxy.db, "model = ?", (tag,))
        locked, release = threading.Event(), threading.Event()  # release: never set, the lock lasts 10 s

        def hold_lock():
            other = sqlite3.connect(proxy.db, isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            locked.set()
            release.wait(10)
            other.execute("COMMIT")
            other.close()

        holder = threading.Thread(target=hold_lock)
        holder.start()
        locked.wait(5)
        chat(proxy, tag, 20)
        assert holder.is_alive()  # all 20 answered while the database was still locked
        holder.join()  # the lock ends after 10 s
        assert len(wait_rows(proxy.db, "model = ?", (tag,), count=21, timeout=30)) == 21
        log = proxy.log()
    # Writes waited (2 s busy timeout), then were held and retried: one warning, one recovery line.
    assert log.count("cannot write to") == 1 and log.count("writable again") == 1 and "Traceback" not in log


def test_a_database_deleted_while_running_is_created_again(fake, tmp_path):
    with Mitmdump(tmp_path, upstream_port=fake.port) as proxy:
        tag = f"deleted-{uuid.uuid4().hex[:6]}"
        chat(proxy, tag, 2)
        wait_rows(proxy.db, "model = ?", (tag,), count=2)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{proxy.db}{suffix}").unlink(missing_ok=True)
        chat(proxy, tag, 3)
        assert len(wait_rows(proxy.db, "model = ?", (tag,), count=3)) == 3  # in the new file
        assert Path(proxy.db).stat().st_mode & 0o777 == 0o600
        log = proxy.log()
    assert log.count("was deleted or replaced") == 1 and "Traceback" not in log


def test_a_full_database_holds_rows_until_there_is_room_again(tmp_path):
    store = Store(tmp_path / "kimi.db")
    store.open()
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # a disk with two pages left
    store.start()
    for i in range(30):
        store.submit(RequestRecord({"id": f"r{i}", "ts": f"2026-11-21T00:00:{i:02d}"},
                                   {"model": "m", "messages": [{"role": "user", "content": f"{i} " + "x" * 20_000}]},
                                   "messages"))
    deadline = time.monotonic() + 10
    while store.failures == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.failures > 0 and store.pending > 0 and store.lost == 0  # held, not dropped
    store._conn.execute("PRAGMA max_page_count = 1000000")  # room again
    deadline = time.monotonic() + 20
    while store.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    store.close()
    db = sqlite3.connect(tmp_path / "kimi.db")
    assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == 30 and store.lost == 0


def test_a_read_only_database_holds_rows_until_it_is_writable_again(tmp_path):
    # chmod cannot make a file read-only for root, who runs these tests: SQLite's query_only
    # gives the writer the same "attempt to write a readonly database" errors.
    store = Store(tmp_path / "kimi.db")
    store.open()
    store._conn.execute("PRAGMA query_only = ON")
    store.start()
    for i in range(10):
        store.submit(RequestRecord({"id": f"r{i}", "ts": f"2026-11-21T00:00:{i:02d}"}))
    deadline = time.monotonic() + 10
    while store.failures == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.failures > 0 and store.pending == 10 and store.lost == 0
    store._conn.execute("PRAGMA query_only = OFF")
    deadline = time.monotonic() + 20
    while store.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    store.close()
    db = sqlite3.connect(tmp_path / "kimi.db")
    assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == 10 and store.lost == 0
