"""Serve the live dashboard (``kimi_web_port``) and push to it what the store records.

On by default, on 127.0.0.1:8765; ``--set kimi_web_port=0`` turns it off. A
port that is taken costs one log line, not the proxy: the traffic matters more
than the page. The address to open, token included, is logged at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions

from kimi_core.dashboard import api
from kimi_core.dashboard.server import Dashboard
from kimi_core.guard import parse_ratio, parse_ratios
from kimi_core.proxy.context import KimiContext
from kimi_core.run import DASHBOARD, announce, withdraw
from kimi_core.store.records import AlertRecord, RequestRecord

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8765
# What a pushed call says of itself: figures and names, never a body.
PUSHED = ("id", "ts", "session_id", "conversation_id", "agent", "provider", "model", "status_code", "action",
          "prompt_tokens_est", "prompt_tokens_cal", "prompt_tokens", "completion_tokens", "cached_tokens",
          "context_window", "window_share", "cost_usd", "duration_ms", "transport", "user")
OPTIONS = {"kimi_web_port", "kimi_web_host", "kimi_web_token", "kimi_db"}


def events(records: list[Any]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        if isinstance(r, RequestRecord) and r.row.get("dialect") is not None:
            out.append({"type": "call", **{k: r.row.get(k) for k in PUSHED}})
        elif isinstance(r, AlertRecord):
            out.append({"type": "alert", "ts": r.ts, "session_id": r.session_id, "request_id": r.request_id,
                        "level": r.level, "kind": r.kind, "message": r.message, "user": r.user})
    return out


class KimiDashboard:
    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi
        self.dashboard: Dashboard | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._db: Path | None = None
        kimi.written.append(self._written)

    def load(self, loader) -> None:
        loader.add_option("kimi_web_port", int, DEFAULT_PORT,
                          "Serve the live dashboard on this port (0: off).")
        loader.add_option("kimi_web_host", str, "127.0.0.1",
                          "Address the dashboard listens on. It shows prompts' make-up: keep it on loopback.")
        loader.add_option("kimi_web_token", str, "",
                          "Token the dashboard asks of every request (empty: a new random one at each start).")

    def configure(self, updated: set[str]) -> None:
        if "kimi_web_port" in updated and not 0 <= ctx.options.kimi_web_port < 65536:
            raise exceptions.OptionsError(f"kimi_web_port: {ctx.options.kimi_web_port} is not a port")
        if self._running and OPTIONS & updated:
            self._stop()
            self._start()

    def running(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._start()

    def done(self) -> None:
        self._running = False
        self._stop()

    def _lines(self) -> api.Lines:
        try:
            return api.Lines(parse_ratios(ctx.options.kimi_alert_at), parse_ratio(ctx.options.kimi_reject_at))
        except (ValueError, AttributeError):
            return api.Lines()

    def _start(self) -> None:
        port = ctx.options.kimi_web_port
        if port == 0:
            return
        token = ctx.options.kimi_web_token or secrets.token_urlsafe(24)
        dashboard = Dashboard(Path(ctx.options.kimi_db).expanduser(), token, ctx.options.kimi_web_host, port,
                              self._lines, lambda memory_id, key: self.kimi.book.forget(memory_id, key))
        try:
            dashboard.start()
        except OSError as e:
            logger.warning("kimi: dashboard off: cannot listen on %s:%d (%s); set kimi_web_port to another port",
                           ctx.options.kimi_web_host, port, e.strerror or e)
            dashboard.stop()
            return
        self.dashboard = dashboard
        logger.info("kimi: dashboard on %s?token=%s", dashboard.url, token)
        self._db = Path(ctx.options.kimi_db).expanduser()
        try:  # for kimi-proxy dashboard and kimi-proxy run, which print the address
            announce(self._db, dashboard.port, Path(ctx.options.confdir).expanduser(), DASHBOARD,
                     url=dashboard.url, token=token)
        except OSError as e:
            logger.warning("kimi: cannot write the dashboard's address next to the database: %s", e)

    def _stop(self) -> None:
        if self.dashboard is not None:
            self.dashboard.stop()
            self.dashboard = None
            if self._db is not None:
                withdraw(self._db, DASHBOARD)

    def _written(self, records: list[Any]) -> None:
        """In the store's thread: hand what was written to the event loop, which pushes it."""
        dashboard, loop = self.dashboard, self._loop
        if dashboard is None or loop is None or not dashboard.clients:
            return
        found = events(records)
        if found:
            try:
                loop.call_soon_threadsafe(lambda: [dashboard.publish(e) for e in found])
            except RuntimeError:  # the loop has closed: the proxy is stopping
                pass
