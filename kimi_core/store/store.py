"""The SQLite store: rows written by one background thread, never on the request path.

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
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lz4.frame
from sqlite_utils import Database

from kimi_core.dialects import MODULES
from kimi_core.errors import StoreError
from kimi_core.redact import redact_text
from kimi_core.store.migrations import migrations

logger = logging.getLogger(__name__)

BATCH = 256
GATHER = 0.02  # after a first record, wait this long for more: one transaction for a burst
MAX_RETRY_DELAY = 2.0
BUSY_TIMEOUT = 2.0  # seconds one write waits for another writer's lock


def now_iso(ts: float | None = None) -> str:
    moment = datetime.datetime.fromtimestamp(ts if ts is not None else time.time(), datetime.UTC)
    return moment.isoformat(timespec="milliseconds")


@dataclass(slots=True)
class SessionRecord:
    id: str
    name: str
    provider: str | None
    started_at: str
    mode: str


@dataclass(slots=True)
class AlertRecord:
    ts: str
    session_id: str | None
    request_id: str
    level: float
    kind: str
    message: str


@dataclass(slots=True)
class CalibrationRecord:
    model: str
    ratios: list[float]
    factor: float


@dataclass(slots=True)
class WindowRecord:
    model: str
    context_window: int
    message: str


@dataclass(slots=True)
class ArchiveRecord:
    original: str  # the tool result before compaction
    original_tokens: int
    kept_tokens: int
    request_id: str
    tool_name: str | None


@dataclass(slots=True)
class RequestRecord:
    row: dict[str, Any]  # columns of ``requests`` (bodies excluded)
    request_body: Any = None  # parsed JSON, or raw bytes when it did not parse
    history_key: str | None = None
    response_body: Any = None  # bytes, or a JSON-able summary of a stream
    # The request's text with its history list's span and each item's span and
    # digest (see ``kimi_core.analysis``): items are then stored as sent.
    text: str | None = None
    history: tuple[int, int] | None = None
    items: list[tuple[int, int]] | None = None
    digests: list[bytes] | None = None
    # This request's analysis number, and the earlier one whose first ``reused``
    # items it repeats: their blobs are taken from that request's history.
    seq: int = 0
    prior_seq: int | None = None
    reused: int = 0


@dataclass(slots=True)
class _Prepared:
    row: dict[str, Any]
    blobs: dict[str, bytes] = field(default_factory=dict)  # new blobs: hash -> uncompressed bytes
    refs: set[str] = field(default_factory=set)  # blobs already stored, used again


def _later(ts: str, before: str, by: datetime.timedelta) -> bool:
    """True when ISO time ``ts`` is more than ``by`` after ``before``."""
    try:
        return datetime.datetime.fromisoformat(ts) - datetime.datetime.fromisoformat(before) > by
    except ValueError:
        return True


def _redacted(text: str) -> bytes:
    try:
        return redact_text(text).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (valid in JSON escapes): keep them escaped
        return redact_text(text.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace")).encode()


class _Blobs:
    """Turns body parts into content-addressed blobs (writer thread only).

    Agents resend their history every turn, so most parts were stored before:
    a part is recognised by a fast hash of its JSON text and, when its blob is
    known to be in the database, only referenced again, without being redacted,
    hashed or compressed anew.
    """

    # A blob used again gets its ``last_used`` refreshed at most this often:
    # retention needs minutes, not every turn (that would be O(history) per turn).
    TOUCH_EVERY = datetime.timedelta(minutes=5)

    def __init__(self, size: int = 200_000) -> None:
        self.known: OrderedDict[str, str] = OrderedDict()  # blob in the database -> its last_used there
        self._unwritten: dict[str, str] = {}  # later uses not yet written to last_used
        self._seen: OrderedDict[bytes, str] = OrderedDict()  # JSON text hash -> blob hash
        # Recent histories by analysis number: (ts, message blob hashes).
        self._histories: OrderedDict[int, tuple[str, list[str]]] = OrderedDict()
        self._size = size

    def forget(self) -> None:
        self.known.clear()
        self._unwritten.clear()
        self._seen.clear()
        self._histories.clear()

    def stored(self, written: dict[str, str]) -> None:
        """These blobs now have these ``last_used`` in the database."""
        for d, ts in written.items():
            self.known[d] = ts
            self.known.move_to_end(d)
            self._unwritten.pop(d, None)
        while len(self.known) > self._size:
            self._unwritten.pop(self.known.popitem(last=False)[0], None)

    def touches(self, last_used: dict[str, str], new: dict[str, bytes]) -> list[tuple[str, str]]:
        """``(ts, hash)`` of the blobs whose ``last_used`` is worth writing now; the rest is remembered."""
        out = []
        for digest, ts in last_used.items():
            if digest in new:
                continue
            before = self.known.get(digest)
            if before is None or _later(ts, before, self.TOUCH_EVERY):
                out.append((ts, digest))
            elif ts > before:
                self._unwritten[digest] = max(ts, self._unwritten.get(digest, ts))
        return out

    def unwritten(self) -> list[tuple[str, str]]:
        """Every remembered use, to write before retention decides what is oldest.

        Messages reused from an earlier history were not looked at one by one:
        the histories held here count as uses of all their messages.
        """
        uses = dict(self._unwritten)
        for ts, hashes in self._histories.values():
            for d in hashes:
                if ts > uses.get(d, ""):
                    uses[d] = ts
        return [(ts, d) for d, ts in uses.items()]

    def _history(self, prepared: _Prepared, record: RequestRecord) -> list[str]:
        """The blob hashes of the record's history items; reused ones come from the prior history."""
        assert record.text is not None and record.items is not None and record.digests is not None
        text = record.text
        prior = self._histories.get(record.prior_seq) if record.prior_seq is not None else None
        first = record.reused if prior is not None and len(prior[1]) >= record.reused else 0
        hashes = prior[1][:first] if prior is not None and first else []
        hashes += [self.text(prepared, text[a:b], key)
                   for (a, b), key in zip(record.items[first:], record.digests[first:])]
        if record.seq:
            self._histories[record.seq] = (prepared.row.get("ts") or "", hashes)
            if record.prior_seq is not None:
                self._histories.pop(record.prior_seq, None)  # the conversation moved on
            while len(self._histories) > 64:
                self._histories.popitem(last=False)
        return hashes

    def part(self, prepared: _Prepared, value: Any) -> str:
        """The blob of a body part: bytes as they are, anything else as compact JSON."""
        if isinstance(value, (bytes, bytearray)):
            try:
                data = _redacted(bytes(value).decode("utf-8"))
            except UnicodeDecodeError:
                data = bytes(value)
            return self._put(prepared, data)
        return self.text(prepared, json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def text(self, prepared: _Prepared, text: str, key: bytes | None = None) -> str:
        """The blob of a JSON text, known by ``key`` (a digest of the text) when given."""
        if key is None:
            key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        digest = self._seen.get(key)
        if digest is not None and digest in self.known:
            self._seen.move_to_end(key)
            prepared.refs.add(digest)
            return digest
        digest = self._put(prepared, _redacted(text))
        self._seen[key] = digest
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return digest

    @staticmethod
    def _put(prepared: _Prepared, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        prepared.blobs[digest] = data
        return digest

    def prepare(self, record: RequestRecord) -> _Prepared:
        """Split a record's bodies into blobs; a body that cannot be serialised is noted, not stored."""
        prepared = _Prepared(dict(record.row))
        body = record.request_body
        try:
            if record.text is not None and record.history and record.items is not None and record.digests:
                text, (start, end) = record.text, record.history
                prepared.row["request_body"] = self.text(prepared, text[:start] + "null" + text[end:])
                hashes = self._history(prepared, record)
                prepared.row["history"] = self._put(prepared, json.dumps(hashes).encode())
            elif isinstance(body, dict) and record.history_key and isinstance(body.get(record.history_key), list):
                envelope = {k: (None if k == record.history_key else v) for k, v in body.items()}
                prepared.row["request_body"] = self.part(prepared, envelope)
                hashes = [self.part(prepared, m) for m in body[record.history_key]]
                prepared.row["history"] = self._put(prepared, json.dumps(hashes).encode())
            elif body is not None:
                prepared.row["request_body"] = self.part(prepared, body)
            if record.response_body is not None:
                prepared.row["response_body"] = self.part(prepared, record.response_body)
        except (ValueError, TypeError, RecursionError) as e:
            note = f"body not stored: {type(e).__name__}: {str(e)[:100]}"
            prepared = _Prepared(dict(record.row))
            prepared.row["error"] = "; ".join(x for x in (record.row.get("error"), note) if x)
        return prepared


class Store:
    def __init__(self, path: str | Path, retention_bytes: int = 1 << 30, max_pending: int = 10_000,
                 store_bodies: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.retention_bytes = retention_bytes
        self.max_pending = max_pending
        self.store_bodies = store_bodies
        self.written = 0
        self.lost = 0
        self.failures = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._queued = 0  # records submitted and not yet taken by the writer
        self._count_lock = threading.Lock()
        self._stop_at: float | None = None
        self._closing = threading.Event()  # cuts short the wait between retries
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._blobs = _Blobs()
        self._blob_bytes = 0
        self.named_sessions: list[SessionRecord] = []
        self.calibration: dict[str, list[float]] = {}  # model -> ratios, as stored
        self.learned_windows: dict[str, int] = {}  # model -> window

    # -- lifecycle (main thread) --------------------------------------------------

    def open(self) -> list[SessionRecord]:
        """Create or upgrade the database; returns the named sessions it holds."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=BUSY_TIMEOUT,
                                   isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
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
                model: json.loads(ratios) for model, ratios in conn.execute("SELECT model, ratios FROM calibration")
            }
            self.learned_windows = dict(conn.execute("SELECT model, context_window FROM learned_windows"))
        except (OSError, sqlite3.Error, ValueError) as e:
            raise StoreError(f"cannot open database {self.path}: {e}") from e
        self._conn = conn
        self.named_sessions = named
        return named

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
                self._write(pending)
            except sqlite3.Error as e:
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
            if not isinstance(r, RequestRecord):
                prepared.append(r)
            elif self.store_bodies:
                prepared.append(self._blobs.prepare(r))
            else:
                prepared.append(_Prepared(dict(r.row)))
        conn = self._conn
        assert conn is not None
        stamp = now_iso()
        new_blobs: dict[str, bytes] = {}
        last_used: dict[str, str] = {}  # blob -> ts of the latest request using it
        conn.execute("BEGIN IMMEDIATE")
        try:
            for p in prepared:
                if not isinstance(p, _Prepared):
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
            conn.execute("INSERT OR IGNORE INTO sessions (id, name, provider, started_at, mode) VALUES (?, ?, ?, ?, ?)",
                         (r.id, r.name, r.provider, r.started_at, r.mode))
        elif isinstance(r, AlertRecord):
            conn.execute("INSERT INTO alerts (ts, session_id, request_id, level, kind, message) VALUES (?, ?, ?, ?, ?, ?)",
                         (r.ts, r.session_id, r.request_id, r.level, r.kind, r.message))
        elif isinstance(r, CalibrationRecord):
            conn.execute("INSERT OR REPLACE INTO calibration (model, ratios, factor, updated_at) VALUES (?, ?, ?, ?)",
                         (r.model, json.dumps(r.ratios), r.factor, stamp))
        elif isinstance(r, ArchiveRecord):
            data = r.original.encode("utf-8", "surrogatepass")
            conn.execute("INSERT OR IGNORE INTO archives (sha256, original, original_tokens, kept_tokens, request_id, "
                         "tool_name, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (hashlib.sha256(data).hexdigest(), lz4.frame.compress(data), r.original_tokens,
                          r.kept_tokens, r.request_id, r.tool_name, stamp))
        elif isinstance(r, WindowRecord):
            conn.execute("INSERT OR REPLACE INTO learned_windows (model, context_window, learned_at, message) "
                         "VALUES (?, ?, ?, ?)", (r.model, r.context_window, stamp, r.message))

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


def _blob(conn: sqlite3.Connection, digest: str | None) -> bytes | None:
    if digest is None:
        return None
    row = conn.execute("SELECT data FROM blobs WHERE hash = ?", (digest,)).fetchone()
    return lz4.frame.decompress(row[0]) if row else None


def load_request_body(conn: sqlite3.Connection, request_id: str) -> Any:
    """The stored request body rebuilt as JSON (bytes if it was not JSON); None if expired.

    Parts dropped by retention come back as None: the whole history list, or
    single messages.
    """
    row = conn.execute("SELECT request_body, history, dialect FROM requests WHERE id = ?",
                       (request_id,)).fetchone()
    if row is None:
        raise StoreError(f"no request {request_id!r}")
    envelope = _blob(conn, row[0])
    if envelope is None:
        return None
    try:
        body = json.loads(envelope)
    except (ValueError, UnicodeDecodeError):
        return envelope
    history = _blob(conn, row[1])
    if history is not None and isinstance(body, dict) and row[2] in MODULES:
        parts = [_blob(conn, h) for h in json.loads(history)]
        body[MODULES[row[2]].HISTORY_KEY] = [json.loads(p) if p is not None else None for p in parts]
    return body


def load_archive(conn: sqlite3.Connection, digest_or_prefix: str) -> bytes:
    """The original bytes of a compacted tool result, by its sha256 or a unique prefix of it."""
    prefix = digest_or_prefix.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{4,64}", prefix):
        raise StoreError(f"{digest_or_prefix!r} is not a sha256 or a prefix of one (4 to 64 hex digits)")
    rows = conn.execute("SELECT sha256, original FROM archives WHERE sha256 LIKE ? || '%' LIMIT 2",
                        (prefix,)).fetchall()
    if not rows:
        raise StoreError(f"no archived tool result matches {prefix}")
    if len(rows) > 1:
        raise StoreError(f"more than one archived tool result matches {prefix}: give more digits")
    return lz4.frame.decompress(rows[0][1])


def load_response_body(conn: sqlite3.Connection, request_id: str) -> bytes | None:
    row = conn.execute("SELECT response_body FROM requests WHERE id = ?", (request_id,)).fetchone()
    if row is None:
        raise StoreError(f"no request {request_id!r}")
    return _blob(conn, row[0])
