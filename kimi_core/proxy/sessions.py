"""Tag each LLM call with its session; strip Kimi's control headers."""

from __future__ import annotations

import base64
import logging
import time
import urllib.parse

from mitmproxy import command, ctx, exceptions, http

from kimi_core.proxy.context import KimiContext
from kimi_core.redact import printable
from kimi_core.sessions import MODES, Session, SessionTracker

logger = logging.getLogger(__name__)

SESSION_HEADER = "X-Kimi-Session"
CONTROL_PREFIX = "x-kimi-"
PROXY_USER = "kimi"  # proxy credentials kimi:NAME (as kimi-proxy run sets them) name a session


def proxy_session(headers: http.Headers) -> str | None:
    """The session named by ``Proxy-Authorization: Basic kimi:NAME``, if that is what it says."""
    value = headers.get("proxy-authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        user, sep, name = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    if not sep or user != PROXY_USER:
        return None
    return urllib.parse.unquote(name).strip()[:200] or None


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


def user_of(flow: http.HTTPFlow) -> str | None:
    """The user mitmproxy's ``proxyauth`` let in (its password is never read), or None."""
    found = flow.metadata.get("proxyauth")
    if isinstance(found, (tuple, list)) and found and isinstance(found[0], str) and found[0]:
        return printable(found[0])[:200]
    return None


class KimiSessions:
    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi
        self.tracker = SessionTracker()
        self._users: dict[str, SessionTracker] = {}  # on a proxy with proxyauth: each user's own sessions
        self._by_client: dict[str, str] = {}  # client connection id -> the session its proxy credentials name

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
            for tracker in (self.tracker, *self._users.values()):
                tracker.mode = ctx.options.kimi_session_mode
                tracker.idle_seconds = ctx.options.kimi_session_idle

    def running(self) -> None:
        if self.kimi.store is not None:
            for record in self.kimi.store.named_sessions:
                self.tracker.remember(Session(record.id, record.name, record.provider, 0.0, record.mode))

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """A tunnel opened with Kimi's proxy credentials: every call made through it is in their session."""
        name = proxy_session(flow.request.headers)
        if name is not None:
            self._by_client[flow.client_conn.id] = name

    def client_disconnected(self, client) -> None:
        self._by_client.pop(client.id, None)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Kimi's proxy credentials on a plain-HTTP request: read, and never sent on."""
        if "proxy-authorization" in flow.request.headers and (name := proxy_session(flow.request.headers)):
            self._by_client[flow.client_conn.id] = name
            del flow.request.headers["proxy-authorization"]

    def request(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None:
            return
        call.controls = strip_control_headers(flow.request.headers)
        pinned = call.controls.get(SESSION_HEADER.lower(), "").strip() or self._by_client.get(flow.client_conn.id, "")
        call.user = user_of(flow)
        session, is_new = self._tracker(call.user).assign(call.provider, time.time(), pinned or None)
        call.session = session
        if is_new:
            logger.info("kimi: session %r started (%s)", session.name, call.provider)

    def _tracker(self, user: str | None) -> SessionTracker:
        if user is None:
            return self.tracker
        tracker = self._users.get(user)
        if tracker is None:
            tracker = self._users[user] = SessionTracker(self.tracker.mode, self.tracker.idle_seconds)
            tracker.label = user
        return tracker

    @command.command("kimi.session.new")
    def session_new(self, *name: str) -> None:
        """Start a new session now; the next LLM call belongs to it. Optional: its name."""
        session = self.tracker.new(time.time(), name=" ".join(name) or None)
        logger.info("kimi: session %r started", session.name)
