"""Reading back what the store wrote: request and response bodies, archived originals."""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

import lz4.frame

from kimi_core.dialects import MODULES
from kimi_core.errors import StoreError


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
    hashes = history_hashes(conn, row[1])
    if hashes is not None and isinstance(body, dict) and row[2] in MODULES:
        parts = [_blob(conn, h) for h in hashes]
        body[MODULES[row[2]].HISTORY_KEY] = [json.loads(p) if p is not None else None for p in parts]
    return body


def history_hashes(conn: sqlite3.Connection, digest: str | None) -> list[str] | None:
    """The blob hashes of a stored history's items; None if it, or a history it links to, expired.

    A history blob is the list itself, or a link to the history it resumed:
    ``{"prior": blob, "keep": n, "then": [hashes]}`` (``blobs.Blobs._history``).
    """
    links = []
    while digest is not None and len(links) <= 10_000:
        data = _blob(conn, digest)
        if data is None:
            return None
        value = json.loads(data)
        if isinstance(value, list):
            for link in reversed(links):
                value = value[:link["keep"]] + link["then"]
            return value
        links.append(value)
        digest = value.get("prior")
    return None


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
