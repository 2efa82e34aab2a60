"""Which session a request belongs to.

Auto mode: a new session starts when the provider differs from the active
session's or after an idle gap. Manual mode: sessions change only by the
``X-Kimi-Session`` header (which pins one request to a named session) or the
``kimi.session.new`` command. Pure logic: the caller passes the clock.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass

AUTO = "auto"
MANUAL = "manual"
NAMED = "named"
MODES = (AUTO, MANUAL)


@dataclass(slots=True)
class Session:
    id: str
    name: str
    provider: str | None
    started_at: float
    mode: str
    last_seen: float = 0.0
    persisted: bool = False  # written to the store


def _stamp(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


class SessionTracker:
    def __init__(self, mode: str = AUTO, idle_seconds: float = 1800) -> None:
        if mode not in MODES:
            raise ValueError(f"session mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.idle_seconds = idle_seconds
        self.active: Session | None = None
        self.named: dict[str, Session] = {}
        self.label: str | None = None  # the user whose sessions these are, at the start of their names

    def remember(self, session: Session) -> None:
        """A named session from an earlier run, so its name keeps its id."""
        session.persisted = True
        self.named[session.name] = session

    def new(self, now: float, provider: str | None = None, name: str | None = None) -> Session:
        """Start a new active session (the ``kimi.session.new`` command)."""
        mode = self.mode
        if name is None:
            name = f"{self.label + ' ' if self.label else ''}{_stamp(now)} {provider or mode}"
        self.active = Session(uuid.uuid4().hex, name, provider, now, mode, now)
        return self.active

    def assign(self, provider: str, now: float, pinned: str | None = None) -> tuple[Session, bool]:
        """The session for a request, and whether it is new to the store."""
        if pinned:
            session = self.named.get(pinned)
            if session is None:
                session = Session(uuid.uuid4().hex, pinned, provider, now, NAMED)
                self.named[pinned] = session
        else:
            session = self.active
            if session is None or (self.mode == AUTO and (
                (session.provider is not None and session.provider != provider)
                or now - session.last_seen > self.idle_seconds
            )):
                session = self.new(now, provider)
        if session.provider is None:
            session.provider = provider
        session.last_seen = now
        is_new, session.persisted = not session.persisted, True
        return session, is_new
