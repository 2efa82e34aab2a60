from kimi_core.store.store import RequestRecord, SessionRecord, Store, load_request_body

__all__ = ["RequestRecord", "SessionRecord", "Store", "load_request_body"]
