"""Kimi's SQLite store: records in (``records``), one writer thread (``store``), bodies as blobs
(``blobs``), migrations (``migrations``), and reading back (``read``)."""

from kimi_core.store.read import load_archive, load_request_body, load_response_body
from kimi_core.store.records import (
    AlertRecord,
    ArchiveRecord,
    CalibrationRecord,
    ConversationRecord,
    MemoryRecord,
    RequestRecord,
    SessionRecord,
    WindowRecord,
)
from kimi_core.store.store import Store

__all__ = ["AlertRecord", "ArchiveRecord", "CalibrationRecord", "ConversationRecord", "MemoryRecord", "RequestRecord", "SessionRecord", "Store",
           "WindowRecord", "load_archive", "load_request_body", "load_response_body"]
