import json
import os
import sqlite3
import stat
import time

import lz4.frame
import pytest

from kimi_core.analysis import Recent, analyse
from kimi_core.store import MemoryRecord, RequestRecord, SessionRecord, Store, load_request_body
from kimi_core.store.blobs import MAX_LINKS
from kimi_core.store.read import load_response_body
from kimi_core.tokens import TokenCounter


def row(i, session="s1", **extra):
    return {"id": f"r{i}", "ts": f"2026-11-21T00:00:{i:02d}", "session_id": session, "provider": "openai",
            "dialect": "openai-chat", "action": "passed", **extra}


def chat_body(n):
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": f"message {i} " * 100} for i in range(n)]}


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "sub" / "kimi.db")
    s.open()
    s.start()
    yield s
    s.close()


def test_schema_after_migrating(tmp_path):
    s = Store(tmp_path / "kimi.db")
    s.open()
    s.close()
    db = sqlite3.connect(tmp_path / "kimi.db")
    tables = {name: [c[1] for c in db.execute(f"PRAGMA table_info({name})")]
              for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables["sessions"] == ["id", "name", "provider", "started_at", "mode", "user"]
    assert tables["requests"][:21] == [
        "id", "ts", "session_id", "provider", "dialect", "host", "path", "method", "model", "status_code",
        "streamed", "prompt_tokens_est", "tokenizer", "tokens_approximate", "prompt_tokens",
        "completion_tokens", "cached_tokens", "ttfb_ms", "duration_ms", "action", "error"]
    assert {"request_body", "response_body", "messages"} <= set(tables["requests"])
    assert tables["blobs"] == ["hash", "size", "data", "created_at", "last_used"]
    assert tables["requests"][-21:] == ["context_window", "window_source", "calibration_factor",
                                        "prompt_tokens_cal", "window_share",
                                        "tokens_before", "tokens_after", "compacted_results",
                                        "calibration_overhead", "transport", "agent", "agent_version",
                                        "conversation_id", "cache_write_tokens", "reasoning_tokens",
                                        "cost_usd", "cost_note", "saved_usd", "project", "hints", "user"]
    assert tables["conversations"] == ["id", "session_id", "agent", "agent_version", "parent_id", "started_at",
                                       "title", "first_request_id", "project"]
    assert tables["alerts"] == ["id", "ts", "session_id", "request_id", "level", "kind", "message"]
    assert tables["calibration"] == ["model", "ratios", "factor", "updated_at", "samples", "overhead"]
    assert tables["learned_windows"] == ["model", "context_window", "learned_at", "message"]
    assert tables["archives"] == ["sha256", "original", "original_tokens", "kept_tokens", "request_id",
                                  "tool_name", "created_at"]
    assert [n for (n,) in db.execute("SELECT name FROM _sqlite_migrations")] == [
        "001_initial", "002_context_guard", "003_archives", "004_compaction", "005_memories",
        "006_calibration_overhead", "007_conversations_and_agents", "008_cost", "009_conversation_timeline",
        "010_projects", "011_users", "012_memory_users"]
    assert tables["memories"] == ["id", "created_at", "last_seen", "session_id", "provider", "kind", "content",
                                  "source_text", "confidence", "count", "project", "user"]


def test_upgrading_a_database_of_the_first_schema_keeps_its_rows(tmp_path):
    from sqlite_utils import Database

    from kimi_core.store.migrations import migrations
    db = Database(tmp_path / "kimi.db")
    migrations.apply(db, stop_before="002_context_guard")
    db["requests"].insert({"id": "old", "ts": "2026-01-01", "provider": "openai", "action": "passed"})
    db.conn.close()
    s = Store(tmp_path / "kimi.db")
    s.open()
    s.close()
    conn = sqlite3.connect(tmp_path / "kimi.db")
    assert conn.execute("SELECT id, provider, context_window FROM requests").fetchall() == [("old", "openai", None)]


def test_guard_records_are_written_and_read_back(tmp_path):
    from kimi_core.guard import Fit
    from kimi_core.store import AlertRecord, CalibrationRecord, WindowRecord
    s = Store(tmp_path / "kimi.db")
    s.open()
    s.start()
    s.submit(AlertRecord("t", "s1", "r1", 0.85, "window_share", "85% of the window"))
    s.submit(CalibrationRecord("kimi-k2", [(1000, 1200), (2000, 2600)], Fit(1.4, -200)))
    s.submit(WindowRecord("gpt-4o", 8192, "maximum context length is 8192 tokens"))
    s.close()
    again = Store(tmp_path / "kimi.db")
    again.open()
    again.close()
    assert again.calibration == {"kimi-k2": [(1000, 1200), (2000, 2600)]} and again.learned_windows == {"gpt-4o": 8192}
    conn = sqlite3.connect(tmp_path / "kimi.db")
    assert conn.execute("SELECT level, kind, message FROM alerts").fetchall() == [(0.85, "window_share", "85% of the window")]


def test_calibration_stored_as_ratios_before_samples_is_read_as_samples(tmp_path):
    from sqlite_utils import Database

    from kimi_core.store.migrations import migrations
    db = Database(tmp_path / "kimi.db")
    migrations.apply(db, stop_before="006_calibration_overhead")
    db["calibration"].insert({"model": "kimi-k2", "ratios": "[1.2, 1.3]", "factor": 1.25, "updated_at": "t"})
    db.conn.close()
    s = Store(tmp_path / "kimi.db")
    s.open()
    s.close()
    assert s.calibration == {"kimi-k2": [(10_000, 12_000), (10_000, 13_000)]}


def test_reopening_applies_nothing_twice(tmp_path):
    for _ in range(2):
        s = Store(tmp_path / "kimi.db")
        s.open()
        s.close()
    db = sqlite3.connect(tmp_path / "kimi.db")
    total, distinct = db.execute("SELECT count(*), count(DISTINCT name) FROM _sqlite_migrations").fetchone()
    assert total == distinct >= 5


def test_database_and_directory_are_private(store):
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700


def test_a_resent_history_is_stored_once(store):
    store.submit(SessionRecord("s1", "session", "openai", "2026-11-21T00:00:00", "auto"))
    for turn in range(1, 31):
        store.submit(RequestRecord(row(turn), chat_body(turn), "messages", b'{"ok": true}'))
    store.close()
    db = sqlite3.connect(store.path)
    # 30 distinct messages + 1 envelope (same every turn) + 1 response body + 30 message lists.
    assert db.execute("SELECT count(*) FROM blobs").fetchone()[0] == 62
    assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == 30
    assert load_request_body(db, "r30") == chat_body(30)
    assert load_request_body(db, "r7") == chat_body(7)
    assert load_response_body(db, "r7") == b'{"ok": true}'


def test_credentials_in_bodies_never_reach_the_database(store):
    body = {"model": "m", "api_key": "hunter2-secret", "messages": [
        {"role": "user", "content": "use sk-proj-abcdefghijklmnopqrstuvwxyz please"}]}
    store.submit(RequestRecord(row(1), body, "messages", b'{"echo": "sk-ant-abcdefghijklmnopqrstuvwxyz"}'))
    store.close()
    dump = "\n".join(sqlite3.connect(store.path).iterdump())
    texts = [lz4.frame.decompress(d) for (d,) in sqlite3.connect(store.path).execute("SELECT data FROM blobs")]
    for secret in (b"hunter2-secret", b"sk-proj-abcdefghijklmnopqrstuvwxyz", b"sk-ant-abcdefghijklmnopqrstuvwxyz"):
        assert not any(secret in t for t in texts)
        assert secret.decode() not in dump
    assert len(texts) == 4  # envelope, message, message list, response


def test_raw_bodies_that_are_not_json_are_kept(store):
    store.submit(RequestRecord(row(1), b"\xff\xfenot json", None, None))
    store.close()
    db = sqlite3.connect(store.path)
    assert load_request_body(db, "r1") == b"\xff\xfenot json"


def test_retention_drops_least_recently_used_bodies_and_keeps_rows(tmp_path):
    s = Store(tmp_path / "kimi.db", retention_bytes=20_000)
    s.open()
    s.start()
    for i in range(20):
        s.submit(RequestRecord(row(i), {"messages": [os.urandom(3000).hex()]}, "messages"))
    s.close()
    db = sqlite3.connect(tmp_path / "kimi.db")
    assert db.execute("SELECT sum(length(data)) FROM blobs").fetchone()[0] <= 20_000
    assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == 20
    assert load_request_body(db, "r19")["messages"][0] is not None
    assert load_request_body(db, "r0") == {"messages": None}  # its history expired


def test_a_locked_database_delays_nothing_and_loses_nothing(store):
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    for i in range(50):
        store.submit(RequestRecord(row(i), chat_body(2), "messages"))
    assert time.monotonic() - started < 1.0  # submit never waits for the database
    deadline = time.monotonic() + 10
    while store.failures == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.failures >= 1 and store.written == 0 and store.pending == 50
    blocker.execute("ROLLBACK")
    blocker.close()
    store.close()
    assert store.written == 50 and store.lost == 0
    assert sqlite3.connect(store.path).execute("SELECT count(*) FROM requests").fetchone()[0] == 50


def test_what_cannot_be_written_is_counted_not_dropped_in_silence(tmp_path, caplog):
    s = Store(tmp_path / "kimi.db", max_pending=5)
    s.open()
    s.start()
    blocker = sqlite3.connect(s.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    for i in range(8):
        s.submit(RequestRecord(row(i)))
    time.sleep(0.3)  # the writer is now inside a write attempt, waiting for the lock
    s.close(timeout=0.5)
    assert s.lost == 8  # 3 refused at once, 5 given up at shutdown
    assert "not written" in caplog.text
    blocker.execute("ROLLBACK")


def test_named_sessions_are_read_back(tmp_path):
    s = Store(tmp_path / "kimi.db")
    s.open()
    s.start()
    s.submit(SessionRecord("a", "auto one", "openai", "t", "auto"))
    s.submit(SessionRecord("n", "refactor", "anthropic", "t", "named"))
    s.close()
    again = Store(tmp_path / "kimi.db")
    assert [x.name for x in again.open()] == ["refactor"]
    again.close()


def test_a_body_that_cannot_be_serialised_is_noted_and_the_writer_goes_on(store):
    deep = []
    for _ in range(100_000):
        deep = [deep]
    store.submit(RequestRecord(row(1, error="request body is not JSON"), {"messages": [deep]}, "messages"))
    store.submit(RequestRecord(row(2), chat_body(1), "messages"))
    store.close()
    db = sqlite3.connect(store.path)
    errors = dict(db.execute("SELECT id, error FROM requests"))
    assert errors["r1"].startswith("request body is not JSON; body not stored: RecursionError")
    assert errors["r2"] is None and load_request_body(db, "r2") == chat_body(1)


def test_a_memory_said_again_is_counted_not_repeated(store, tmp_path):
    key = "sk-proj-" + "m" * 30
    store.submit(MemoryRecord("s1", "openai", "preference", "prefers pytest over unittest",
                              f"I prefer pytest over unittest ({key})", 0.7))
    store.submit(MemoryRecord("s2", "anthropic", "preference", "prefers pytest over unittest", "again", 0.9))
    store.submit(MemoryRecord("s2", "anthropic", "constraint", "never touch prod", "Never touch prod.", 0.9))
    store.submit(MemoryRecord("s3", "anthropic", "constraint", "never touch prod", "Never touch prod.", 0.9,
                              user="bob"))  # another person's, on a shared proxy: a memory of their own
    store.close()
    db = sqlite3.connect(store.path)
    rows = db.execute("SELECT session_id, provider, kind, content, source_text, confidence, count FROM memories "
                      "ORDER BY id").fetchall()
    assert rows == [("s1", "openai", "preference", "prefers pytest over unittest",
                     "I prefer pytest over unittest ([REDACTED])", 0.9, 2),
                    ("s2", "anthropic", "constraint", "never touch prod", "Never touch prod.", 0.9, 1),
                    ("s3", "anthropic", "constraint", "never touch prod", "Never touch prod.", 0.9, 1)]


def test_a_database_file_someone_else_created_is_made_private(tmp_path):
    path = tmp_path / "kimi.db"
    sqlite3.connect(path).close()  # a reader that connected first created it, with the umask's mode
    path.chmod(0o644)
    s = Store(path)
    s.open()
    s.close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_symlink_at_the_database_path_is_refused(tmp_path):
    from kimi_core.errors import StoreError
    (tmp_path / "elsewhere.db").write_bytes(b"")
    (tmp_path / "kimi.db").symlink_to(tmp_path / "elsewhere.db")
    with pytest.raises(StoreError, match="is a symbolic link"):
        Store(tmp_path / "kimi.db").open()


def test_a_folder_others_can_write_to_is_refused_unless_sticky(tmp_path):
    from kimi_core.errors import StoreError
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(StoreError, match="can be written by other users"):
        Store(shared / "kimi.db").open()
    os.chmod(shared, 0o1777)  # like /tmp: others cannot replace our file
    s = Store(shared / "kimi.db")
    s.open()
    s.close()


def test_the_write_ahead_log_is_private_too(tmp_path):
    old = os.umask(0o022)
    try:
        # A database made readable by all (by an earlier reader), in use: its side files are too.
        reader = sqlite3.connect(tmp_path / "kimi.db")
        reader.execute("PRAGMA journal_mode=WAL")
        reader.execute("CREATE TABLE t (x)")
        reader.execute("INSERT INTO t VALUES (1)")
        reader.commit()
        assert stat.S_IMODE((tmp_path / "kimi.db-wal").stat().st_mode) == 0o644
        s = Store(tmp_path / "kimi.db")
        s.open()
        for suffix in ("", "-wal", "-shm"):
            assert stat.S_IMODE((tmp_path / f"kimi.db{suffix}").stat().st_mode) == 0o600, suffix
        s.close()
        reader.close()
    finally:
        os.umask(old)


def test_a_body_that_is_not_utf8_keeps_its_bytes_but_not_its_keys(store):
    raw = b"\xff\xfe api_key=sk-proj-RAWsecretRAWsecretRAW01 \x80"
    store.submit(RequestRecord(row(1), raw, None, None))
    store.close()
    conn = sqlite3.connect(store.path)
    body = load_request_body(conn, "r1")
    assert b"RAWsecret" not in body and body.startswith(b"\xff\xfe api_key=") and body.endswith(b" \x80")


def test_a_part_too_big_to_store_is_noted_not_stored(store):
    from kimi_core.store.blobs import MAX_STORED
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * (MAX_STORED + 1)},
                                       {"role": "user", "content": "small"}]}
    store.submit(RequestRecord(row(1), body, "messages", None))
    store.close()
    stored = load_request_body(sqlite3.connect(store.path), "r1")
    assert stored["messages"][0].startswith("[not stored by Kimi Proxy: 8.0 MB")
    assert stored["messages"][1] == {"role": "user", "content": "small"}


def test_a_long_conversation_stores_its_history_in_linear_space_and_reads_back_whole(store):
    """Each turn's history is stored as a link to the one before it plus what is new (whole every
    ``MAX_LINKS`` turns): 300 turns store about what 300 turns say, not 300 growing lists."""
    recent, counter = Recent(), TokenCounter()
    messages, bodies = [], []
    for turn in range(300):
        messages = messages + [{"role": "user", "content": f"turn {turn} " + "word " * 40},
                               {"role": "assistant", "content": f"answer {turn}"}]
        body = {"model": "gpt-4o", "messages": messages}
        bodies.append(body)
        result = analyse(json.dumps(body).encode(), "", "openai-chat", "/v1/chat/completions", counter,
                         1 << 25, recent)
        store.submit(RequestRecord(row=row(turn % 60, id=f"t{turn}"), request_body=result.body,
                                   history_key="messages", text=result.text, history=result.history,
                                   items=result.items, digests=result.digests, seq=result.seq,
                                   prior_seq=result.prior_seq, reused=result.reused))
    store.close()
    db = sqlite3.connect(store.path)
    for turn in (0, 1, MAX_LINKS, MAX_LINKS + 1, 150, 299):
        assert load_request_body(db, f"t{turn}") == bodies[turn]
    sizes = [db.execute("SELECT size FROM blobs WHERE hash = (SELECT history FROM requests WHERE id = ?)",
                        (f"t{turn}",)).fetchone()[0] for turn in range(300)]
    # Whole lists would make the second half 3x the first; links keep them level.
    assert sum(sizes[150:]) < 1.6 * sum(sizes[:150])
    assert max(sizes[1:MAX_LINKS]) < 250  # a link: the prior's hash, a count, two new hashes
