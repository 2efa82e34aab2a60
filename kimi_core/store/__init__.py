from kimi_core.store.store import (
    AlertRecord,
    ArchiveRecord,
    CalibrationRecord,
    RequestRecord,
    SessionRecord,
    Store,
    WindowRecord,
    load_archive,
    load_request_body,
)

__all__ = ["AlertRecord", "ArchiveRecord", "CalibrationRecord", "RequestRecord", "SessionRecord", "Store", "WindowRecord",
           "load_archive", "load_request_body"]
