"""The SQLite store's writer: rows written by one background thread, never on the request path.

Data model (see ``migrations`` for every column): a ``requests`` row per LLM
call, tied to a ``sessions`` row. Bodies are split so that the database grows
with new content, not with turns: a request body becomes its envelope (the
body without its history list) plus one blob per message of the history; every
blob is stored once under the sha256 of its text, lz4-compressed, and redacted
of credentials before it is hashed. When blobs exceed the retention limit the
least recently used are deleted; the request rows stay.

Failure policy (a deliberate choice): the proxy hands records to ``submit``,
which never blocks and never raises. The writer retries failed transactions
with backoff while keeping up to ``max_pending`` records in memory; records
beyond that are counted in ``lost`` and reported in the log, never dropped in
silence. ``close`` writes what is queued before mitmdump exits.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import queue
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lz4.frame
from sqlite_utils import Database

from kimi_core.errors import StoreError
from kimi_core.guard import legacy_samples
from kimi_core.redact import redact_row, redact_text
from kimi_core.store.blobs import Blobs, Prepared
from kimi_core.store.migrations import migrations
from kimi_core.store.queries import day_start
from kimi_core.store.records import (
    AlertRecord,
    ArchiveRecord,
    CalibrationRecord,
    ConversationRecord,
    MemoryRecord,
    RequestRecord,
    SessionRecord,
    WindowRecord,
    now_iso,
)

logger = logging.getLogger(__name__)

BATCH = 256
GATHER = 0.02  # after a first record, wait this long for more: one transaction for a burst
MAX_RETRY_DELAY = 2.0
BUSY_TIMEOUT = 2.0  # seconds one write waits for another writer's lock




def unsafe_location(path: Path) -> str | None:
    """Why the database may not live at ``path``, or None: a symbolic link (it could point anywhere),
    or a folder others can write to without the sticky bit (they could swap the file)."""
    if path.is_symlink():
        return f"{path} is a symbolic link: give the real path"
    mode = path.parent.stat().st_mode
    if mode & 0o022 and not mode & stat.S_ISVTX:
        return f"{path.parent} can be written by other users (mode {oct(mode & 0o777)}): chmod go-w {path.parent}"
    return None


class Store:
    def __init__(self, path: str | Path, retention_bytes: int = 1 << 30, max_pending: int = 10_000,
                 store_bodies: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.generation = 0  # how many times the database was found gone and made anew
        self.retention_bytes = retention_bytes
        self.max_pending = max_pending
        self.store_bodies = store_bodies
        self.written = 0
        self.lost = 0
        # Called in the writer's thread with each batch once committed (the dashboard pushes them).
        self.on_written: Callable[[list[Any]], None] | None = None
        self.failures = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._queued = 0  # records submitted and not yet taken by the writer
        self._count_lock = threading.Lock()
        self._stop_at: float | None = None
        self._closing = threading.Event()  # cuts short the wait between retries
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened
        self._blobs = Blobs()
        self._blob_bytes = 0
        self.named_sessions: list[SessionRecord] = []
        self.calibration: dict[str, list[tuple[int, int]]] = {}  # model -> (estimate, reported) samples
        self.learned_windows: dict[str, int] = {}  # model -> window
        self.spend: tuple[str, float, dict[str, float], dict[str, float], dict[str, float]] = (
            "", 0.0, {}, {}, {})  # see _spend

    # -- lifecycle (main thread) --------------------------------------------------

    def open(self) -> list[SessionRecord]:
        """Create or upgrade the database; returns the named sessions it holds."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if problem := unsafe_location(self.path):
                raise StoreError(problem)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
            st = os.stat(self.path)
            if st.st_mode & 0o077 and st.st_uid == os.getuid():  # created by someone else (a reader): ours now
                os.chmod(self.path, 0o600)
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=BUSY_TIMEOUT,
                                   isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            for suffix in ("-wal", "-shm"):  # SQLite gives them the database's mode: made when it was not private?
                side = self.path.with_name(self.path.name + suffix)
                if side.exists() and not side.is_symlink() and side.stat().st_uid == os.getuid():
                    os.chmod(side, 0o600)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=OFF")
            db = Database(conn)
            migrations.apply(db)
            self._blob_bytes = conn.execute("SELECT coalesce(sum(length(data)), 0) FROM blobs").fetchone()[0]
            named = [
                SessionRecord(*row)
                for row in conn.execute(
                    "SELECT id, name, provider, started_at, mode FROM sessions WHERE mode = 'named'"
                )
            ]
            self.calibration = {
                model: [tuple(x) for x in json.loads(samples)] if samples else legacy_samples(json.loads(ratios or "[]"))
                for model, samples, ratios in conn.execute("SELECT model, samples, ratios FROM calibration")
            }
            self.learned_windows = dict(conn.execute("SELECT model, context_window FROM learned_windows"))
            self.spend = self._spend(conn)
        except (OSError, sqlite3.Error, ValueError) as e:
            raise StoreError(f"cannot open database {self.path}: {e}") from e
        self._conn = conn
        self._identity = self._file_identity()
        self.named_sessions = named
        return named

    @staticmethod
    def _spend(conn: sqlite3.Connection) -> tuple[str, float, dict[str, float], dict[str, float], dict[str, float]]:
        """What was spent today (the machine's day), per agent today, per recent session, per user today:
        for budgets."""
        now = datetime.datetime.now().astimezone()
        start = day_start(now)
        since = start.isoformat(timespec="milliseconds")
        daily = conn.execute("SELECT coalesce(sum(cost_usd), 0) FROM requests WHERE ts >= ?", (since,)).fetchone()[0]
        agents = dict(conn.execute("SELECT agent, sum(cost_usd) FROM requests WHERE ts >= ? AND agent IS NOT NULL "
                                   "AND cost_usd IS NOT NULL GROUP BY agent", (since,)))
        users = dict(conn.execute("SELECT user, sum(cost_usd) FROM requests WHERE ts >= ? AND user IS NOT NULL "
                                  "AND cost_usd IS NOT NULL GROUP BY user", (since,)))
        recent = (start - datetime.timedelta(days=2)).isoformat(timespec="milliseconds")
        sessions = dict(conn.execute(
            "SELECT session_id, sum(cost_usd) FROM requests WHERE session_id IN (SELECT DISTINCT session_id "
            "FROM requests WHERE ts >= ?) AND cost_usd IS NOT NULL GROUP BY session_id", (recent,)))
        return now.date().isoformat(), float(daily), agents, sessions, users

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _reopen_if_gone(self) -> None:
        """The database file was deleted or replaced while open: write to a new one, not to a ghost."""
        if self._file_identity() == self._identity:
            return
        logger.warning("kimi: database %s was deleted or replaced while the proxy ran; creating a new one",
                       self.path)
        old = self._conn
        self._blobs.forget()  # none of the known blobs are in the new file
        self.open()
        self.generation += 1  # what callers remember as written (archives) is not in it either
        if old is not None:
            try:
                old.close()
            except sqlite3.Error:
                pass

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kimi-store", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (for at most ``timeout`` seconds), then close."""
        if self._thread is not None:
            self._stop_at = time.monotonic() + timeout
            self._closing.set()
            self._queue.put(None)  # wake the writer
            self._thread.join(timeout + BUSY_TIMEOUT + 1.0)
            self._thread = None
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    # -- the proxy's side: never blocks, never raises ------------------------------

    def submit(self, record: Any) -> None:
        """Queue a record (``SessionRecord``, ``RequestRecord``, ``AlertRecord``, ``CalibrationRecord``,
        ``WindowRecord``, ``ArchiveRecord``) for the writer."""
        with self._count_lock:
            if self._queued >= self.max_pending:
                self.lost += 1
                lost = self.lost
            else:
                self._queued += 1
                lost = 0
        if lost:
            if lost == 1 or lost % 1000 == 0:
                logger.error("kimi: database writes are falling behind; %d record(s) not written", lost)
            return
        self._queue.put(record)

    @property
    def pending(self) -> int:
        return self._queued

    # -- the writer thread ----------------------------------------------------------

    def _take(self, block_for: float | None) -> list[Any]:
        items = []
        try:
            items.append(self._queue.get(timeout=block_for) if block_for else self._queue.get_nowait())
            if block_for and self._stop_at is None:
                time.sleep(GATHER)
            while len(items) < BATCH:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return [i for i in items if i is not None]

    def _run(self) -> None:
        pending: list[Any] = []
        delay = 0.0
        failing_since: float | None = None
        while True:
            stopping = self._stop_at is not None
            if not pending:
                pending = self._take(None if stopping else 0.5)
            if not pending:
                if stopping:
                    return
                continue
            try:
                self._reopen_if_gone()
                self._write(pending)
            except (sqlite3.Error, StoreError) as e:
                self.failures += 1
                if failing_since is None:
                    failing_since = time.monotonic()
                    logger.warning("kimi: cannot write to %s (%s); %d record(s) held, retrying",
                                   self.path, e, self.pending)
                # Read the flag again: close() may have come during this attempt.
                if self._stop_at is not None and time.monotonic() >= self._stop_at:
                    self._give_up()
                    return
                delay = min(MAX_RETRY_DELAY, max(0.05, delay * 2))
                if self._closing.wait(delay):  # closing: retry until the deadline, briskly
                    time.sleep(0.05)
                continue
            with self._count_lock:
                self._queued -= len(pending)
            self.written += len(pending)
            if self.on_written is not None:
                try:
                    self.on_written(pending)
                except Exception:  # a listener's fault is never the store's
                    logger.exception("kimi: a listener of written records failed")
            pending = []
            delay = 0.0
            if failing_since is not None:
                logger.warning("kimi: database %s writable again after %.1fs; held records written",
                               self.path, time.monotonic() - failing_since)
                failing_since = None

    def _give_up(self) -> None:
        with self._count_lock:
            n, self._queued = self._queued, 0
            self.lost += n
        logger.error("kimi: shutting down with the database unwritable: %d record(s) not written", n)

    def _write(self, records: list[Any]) -> None:
        """One transaction for a batch of records."""
        prepared: list[Any] = []
        for r in records:
            if isinstance(r, RequestRecord):
                r.row = redact_row(r.row)
            if not isinstance(r, RequestRecord):
                prepared.append(r)
            elif self.store_bodies:
                prepared.append(self._blobs.prepare(r))
            else:
                prepared.append(Prepared(dict(r.row)))
        conn = self._conn
        assert conn is not None
        stamp = now_iso()
        new_blobs: dict[str, bytes] = {}
        last_used: dict[str, str] = {}  # blob -> ts of the latest request using it
        conn.execute("BEGIN IMMEDIATE")
        try:
            for p in prepared:
                if not isinstance(p, Prepared):
                    self._write_other(conn, p, stamp)
                    continue
                ts = p.row.get("ts") or stamp
                for digest in (*p.blobs, *p.refs):
                    last_used[digest] = max(ts, last_used.get(digest, ts))
                for digest, data in p.blobs.items():
                    if digest not in self._blobs.known:
                        new_blobs[digest] = data
                cols = list(p.row)
                conn.execute(
                    f"INSERT OR REPLACE INTO requests ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [p.row[c] for c in cols],
                )
            added = 0
            for digest, data in new_blobs.items():
                packed = lz4.frame.compress(data)
                cur = conn.execute(
                    "INSERT OR IGNORE INTO blobs (hash, size, data, created_at, last_used) VALUES (?, ?, ?, ?, ?)",
                    (digest, len(data), packed, stamp, last_used[digest]),
                )
                if cur.rowcount:
                    added += len(packed)
                else:  # already there (forgotten after a retention pass): a use all the same
                    conn.execute("UPDATE blobs SET last_used = max(last_used, ?) WHERE hash = ?",
                                 (last_used[digest], digest))
            touched = self._blobs.touches(last_used, new_blobs)
            conn.executemany("UPDATE blobs SET last_used = max(last_used, ?) WHERE hash = ?", touched)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._blobs.stored({d: ts for ts, d in touched} | {d: last_used[d] for d in new_blobs})
        self._blob_bytes += added
        if self._blob_bytes > self.retention_bytes:
            self._enforce_retention()

    @staticmethod
    def _write_other(conn: sqlite3.Connection, r: Any, stamp: str) -> None:
        if isinstance(r, SessionRecord):
            conn.execute("INSERT OR IGNORE INTO sessions (id, name, provider, started_at, mode, user) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (r.id, r.name, r.provider, r.started_at, r.mode, r.user))
        elif isinstance(r, ConversationRecord):
            # Written again when its project is found after its first call: only the project changes.
            conn.execute("INSERT INTO conversations (id, session_id, agent, agent_version, parent_id, "
                         "started_at, title, first_request_id, project) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                         "ON CONFLICT (id) DO UPDATE SET project = coalesce(conversations.project, excluded.project)",
                         (r.id, r.session_id, r.agent, r.agent_version, r.parent_id, r.started_at,
                          redact_text(r.title), r.first_request_id, r.project))
        elif isinstance(r, AlertRecord):
            conn.execute("INSERT INTO alerts (ts, session_id, request_id, level, kind, message) VALUES (?, ?, ?, ?, ?, ?)",
                         (r.ts, r.session_id, r.request_id, r.level, r.kind, redact_text(r.message)))
        elif isinstance(r, CalibrationRecord):
            conn.execute("INSERT OR REPLACE INTO calibration (model, ratios, factor, updated_at, samples, overhead) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (r.model, json.dumps([round(rep / est, 4) for est, rep in r.samples]), r.fit.factor, stamp,
                          json.dumps(r.samples), r.fit.overhead))
        elif isinstance(r, ArchiveRecord):
            # Keyed by the original's digest, as the marker in the compacted text names it;
            # stored with credentials removed, like every other body.
            digest = hashlib.sha256(r.original.encode("utf-8", "surrogatepass")).hexdigest()
            data = redact_text(r.original).encode("utf-8", "surrogatepass")
            conn.execute("INSERT OR IGNORE INTO archives (sha256, original, original_tokens, kept_tokens, request_id, "
                         "tool_name, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (digest, lz4.frame.compress(data), r.original_tokens,
                          r.kept_tokens, r.request_id, r.tool_name, stamp))
        elif isinstance(r, MemoryRecord):
            # The same statement again: counted, not repeated.
            conn.execute(
                "INSERT INTO memories (created_at, last_seen, session_id, provider, kind, content, source_text, "
                "confidence, count, project, user) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?) "
                "ON CONFLICT (kind, content, project, user) DO UPDATE SET "
                "count = count + 1, last_seen = excluded.last_seen, confidence = max(confidence, excluded.confidence)",
                (stamp, stamp, r.session_id, r.provider, r.kind, redact_text(r.content), redact_text(r.source_text),
                 r.confidence, r.project or "", r.user or ""))
        elif isinstance(r, WindowRecord):
            conn.execute("INSERT OR REPLACE INTO learned_windows (model, context_window, learned_at, message) "
                         "VALUES (?, ?, ?, ?)", (r.model, r.context_window, stamp, redact_text(r.message)))

    def _enforce_retention(self) -> None:
        """Delete the least recently used blobs until under 90% of the limit."""
        conn = self._conn
        assert conn is not None
        target = int(self.retention_bytes * 0.9)
        with conn:
            conn.executemany("UPDATE blobs SET last_used = max(last_used, ?) WHERE hash = ?",
                             self._blobs.unwritten())
        doomed, freed = [], 0
        for digest, size in conn.execute("SELECT hash, length(data) FROM blobs ORDER BY last_used, rowid"):
            if self._blob_bytes - freed <= target:
                break
            doomed.append((digest,))
            freed += size
        with conn:
            conn.executemany("DELETE FROM blobs WHERE hash = ?", doomed)
        self._blob_bytes -= freed
        self._blobs.forget()
        logger.info("kimi: retention limit reached; removed %d stored bodies (%.1f MB)",
                    len(doomed), freed / 1e6)
