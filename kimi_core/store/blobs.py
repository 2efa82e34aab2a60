"""Bodies as content-addressed blobs: split, redacted, hashed once, remembered.

Runs in the store's writer thread only. A request body becomes its envelope,
one blob per history item (exactly as sent, when its text spans are known)
and the list of those blobs; every blob is keyed by the sha256 of its
redacted bytes. Recently written blobs, recent histories and when each blob
was last used are remembered so that a resent history costs what is new.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from kimi_core.redact import redact_text
from kimi_core.store.records import RequestRecord


@dataclass(slots=True)
class Prepared:
    row: dict[str, Any]
    blobs: dict[str, bytes] = field(default_factory=dict)  # new blobs: hash -> uncompressed bytes
    refs: set[str] = field(default_factory=set)  # blobs already stored, used again


def _later(ts: str, before: str, by: datetime.timedelta) -> bool:
    """True when ISO time ``ts`` is more than ``by`` after ``before``."""
    try:
        return datetime.datetime.fromisoformat(ts) - datetime.datetime.fromisoformat(before) > by
    except ValueError:
        return True


MAX_STORED = 8 * 1024 * 1024  # one part (a message, a body) larger than this is not stored, only noted


def _too_big(size: int) -> bytes:
    """What stands for a part too big to store (a JSON string, valid where the part was)."""
    return json.dumps(f"[not stored by Kimi Proxy: {size / 2**20:.1f} MB, over its {MAX_STORED // 2**20} MB "
                      "limit per part]").encode()


def _redacted(text: str) -> bytes:
    if len(text) > MAX_STORED:  # redacting it would hold the writer (and the GIL) for seconds
        return _too_big(len(text))
    try:
        return redact_text(text).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (valid in JSON escapes): keep them escaped
        return redact_text(text.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace")).encode()


MAX_LINKS = 64  # a history stored as a link to the one before it, at most this many deep
HISTORY_HASHES = 400_000  # message hashes kept for the histories that later turns resume (about 50 MB)


class Blobs:
    """Turns body parts into content-addressed blobs (writer thread only).

    Agents resend their history every turn, so most parts were stored before:
    a part is recognised by a fast hash of its JSON text and, when its blob is
    known to be in the database, only referenced again, without being redacted,
    hashed or compressed anew.
    """

    # A blob used again gets its ``last_used`` refreshed at most this often:
    # retention needs minutes, not every turn (that would be O(history) per turn).
    TOUCH_EVERY = datetime.timedelta(minutes=5)

    def __init__(self, size: int = 100_000) -> None:
        self.known: OrderedDict[str, str] = OrderedDict()  # blob in the database -> its last_used there
        self._unwritten: dict[str, str] = {}  # later uses not yet written to last_used
        self._seen: OrderedDict[bytes, str] = OrderedDict()  # JSON text hash -> blob hash
        # Recent histories by analysis number: (ts, message blob hashes, the history's blob and those
        # it links to, newest last).
        self._histories: OrderedDict[int, tuple[str, list[str], tuple[str, ...]]] = OrderedDict()
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
        the histories held here count as uses of all their messages (and of
        the history blobs they link to).
        """
        uses = dict(self._unwritten)
        for ts, hashes, chain in self._histories.values():
            for d in (*hashes, *chain):
                if ts > uses.get(d, ""):
                    uses[d] = ts
        return [(ts, d) for d, ts in uses.items()]

    def _history(self, prepared: Prepared, record: RequestRecord) -> str:
        """The blob of the record's history: the list of its items' blob hashes.

        A history that resumes a recent one is stored as a link to it: the
        prior history's blob, how many of its items this one keeps, and the
        hashes that follow (what a reader rebuilds, ``read.history_hashes``).
        A 400-turn conversation would otherwise store 400 growing lists.
        Every ``MAX_LINKS`` links the whole list is stored again, so that a
        reader never walks a long chain.
        """
        assert record.text is not None and record.items is not None and record.digests is not None
        text = record.text
        prior = self._histories.get(record.prior_seq) if record.prior_seq is not None else None
        first = record.reused if prior is not None and len(prior[1]) >= record.reused else 0
        new = [self.text(prepared, text[a:b], key) for (a, b), key in zip(record.items[first:], record.digests[first:])]
        hashes = (prior[1][:first] if prior is not None and first else []) + new
        if prior is not None and first and len(prior[2]) < MAX_LINKS:
            blob = self._put(prepared, json.dumps({"prior": prior[2][-1], "keep": first, "then": new}).encode())
            chain = (*prior[2], blob)
            prepared.refs.update(prior[2])  # in use while a later link needs them (retention goes by use)
        else:
            blob = self._put(prepared, json.dumps(hashes).encode())
            chain = (blob,)
        if record.seq:
            self._histories[record.seq] = (prepared.row.get("ts") or "", hashes, chain)
            if record.prior_seq is not None:
                self._histories.pop(record.prior_seq, None)  # the conversation moved on
            # At most 64 histories and HISTORY_HASHES hashes in all (a few 200,000-message
            # histories would otherwise hold gigabytes); the newest is always kept.
            total = sum(len(h[1]) for h in self._histories.values())
            while len(self._histories) > 1 and (len(self._histories) > 64 or total > HISTORY_HASHES):
                total -= len(self._histories.popitem(last=False)[1][1])
        return blob

    def part(self, prepared: Prepared, value: Any) -> str:
        """The blob of a body part: bytes as they are, anything else as compact JSON."""
        if isinstance(value, (bytes, bytearray)):
            if len(value) > MAX_STORED:
                return self._put(prepared, _too_big(len(value)))
            # Not UTF-8: its bytes kept as they are, its ASCII secrets redacted all the same.
            text = bytes(value).decode("utf-8", "surrogateescape")
            return self._put(prepared, redact_text(text).encode("utf-8", "surrogateescape"))
        return self.text(prepared, json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def text(self, prepared: Prepared, text: str, key: bytes | None = None) -> str:
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
    def _put(prepared: Prepared, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        prepared.blobs[digest] = data
        return digest

    def prepare(self, record: RequestRecord) -> Prepared:
        """Split a record's bodies into blobs; a body that cannot be serialised is noted, not stored."""
        prepared = Prepared(dict(record.row))
        body = record.request_body
        try:
            if record.text is not None and record.history and record.items is not None and record.digests:
                text, (start, end) = record.text, record.history
                prepared.row["request_body"] = self.text(prepared, text[:start] + "null" + text[end:])
                prepared.row["history"] = self._history(prepared, record)
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
            prepared = Prepared(dict(record.row))
            prepared.row["error"] = "; ".join(x for x in (record.row.get("error"), note) if x)
        return prepared
