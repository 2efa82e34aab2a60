"""Tag each LLM call with its session; strip Kimi's control headers."""

from __future__ import annotations

import logging
import time

from mitmproxy import command, ctx, exceptions, http

from kimi_core.proxy.context import KimiContext
from kimi_core.sessions import MODES, Session, SessionTracker

logger = logging.getLogger(__name__)

SESSION_HEADER = "X-Kimi-Session"
CONTROL_PREFIX = "x-kimi-"


def strip_control_headers(headers: http.Headers) -> dict[str, str]:
    """Remove every ``X-Kimi-*`` header (they never reach the provider); return them."""
    prefix = CONTROL_PREFIX.encode()
    if not any(name[:len(prefix)].lower() == prefix for name, _ in headers.fields):
        return {}
    found = {}
    for name in list(headers.keys()):
        if name.lower().startswith(CONTROL_PREFIX):
            found[name.lower()] = headers.get(name, "")
            del headers[name]
    return found


class KimiSessions:
    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi
        self.tracker = SessionTracker()

    def load(self, loader) -> None:
        loader.add_option(
            "kimi_session_mode", str, "auto",
            "auto: a new session when the provider changes or after an idle gap; "
            "manual: only the X-Kimi-Session header or the kimi.session.new command change it.",
            choices=MODES,
        )
        loader.add_option(
            "kimi_session_idle", int, 1800,
            "In auto mode, seconds without LLM calls after which the next call starts a new session.",
        )

    def configure(self, updated: set[str]) -> None:
        if "kimi_session_idle" in updated and ctx.options.kimi_session_idle <= 0:
            raise exceptions.OptionsError("kimi_session_idle must be a positive number of seconds")
        if updated & {"kimi_session_mode", "kimi_session_idle"}:
            self.tracker.mode = ctx.options.kimi_session_mode
            self.tracker.idle_seconds = ctx.options.kimi_session_idle

    def running(self) -> None:
        if self.kimi.store is not None:
            for record in self.kimi.store.named_sessions:
                self.tracker.remember(Session(record.id, record.name, record.provider, 0.0, record.mode))

    def request(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None:
            return
        pinned = strip_control_headers(flow.request.headers).get(SESSION_HEADER.lower(), "").strip()
        session, is_new = self.tracker.assign(call.provider, time.time(), pinned or None)
        call.session = session
        if is_new:
            logger.info("kimi: session %r started (%s)", session.name, call.provider)

    @command.command("kimi.session.new")
    def session_new(self, *name: str) -> None:
        """Start a new session now; the next LLM call belongs to it. Optional: its name."""
        session = self.tracker.new(time.time(), name=" ".join(name) or None)
        logger.info("kimi: session %r started", session.name)
