from kimi_core.store.store import (
    AlertRecord,
    CalibrationRecord,
    RequestRecord,
    SessionRecord,
    Store,
    WindowRecord,
    load_request_body,
)

__all__ = ["AlertRecord", "CalibrationRecord", "RequestRecord", "SessionRecord", "Store", "WindowRecord",
           "load_request_body"]
