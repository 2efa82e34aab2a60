"""The dashboard's web server: tornado (mitmproxy's own, as mitmweb uses it), on mitmproxy's event loop.

It shows prompts' make-up, titles and memories, so:

- it listens on loopback unless told otherwise;
- it answers only to the Host names it listens as (a DNS-rebinding page
  cannot reach it through a name of its own);
- every request, WebSocket included, carries the token printed at start-up:
  in the ``?token=`` of the first visit (swapped at once for a cookie and
  dropped from the address), the cookie, or ``Authorization: Bearer``;
- a change (forgetting a memory) also needs a header a cross-site form cannot
  send, and a WebSocket only opens from the dashboard's own origin.

Database reads run in one thread of their own with a read-only connection:
a slow query or a broken database never holds the proxy's event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tornado.httpserver
import tornado.web
import tornado.websocket

from kimi_core.dashboard import api
from kimi_core.errors import KimiError, StoreError
from kimi_core.store.read import load_archive
from kimi_core.tokens import TokenCounter

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
CHANGE_HEADER = "X-Kimi-Change"  # what a change must carry besides the token (no cross-site form sends it)
MAX_CLIENTS = 32
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return None
    raise TypeError(type(value).__name__)


class Reader:
    """Database reads in a thread of their own, each with a read-only connection of that thread."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="kimi-dashboard")
        self._local = threading.local()
        self.counter = TokenCounter(memo_size=20_000)  # the web thread's own: no lock shared with the proxy

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not self.db.exists():
                raise KimiError(f"no database at {self.db} yet: it appears with the first call")
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=2)
            self._local.conn = conn
        return conn

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        def job() -> Any:
            try:
                return fn(self._conn(), *args)
            except sqlite3.DatabaseError:
                # The file may have been replaced (deleted, made anew by the store): reconnect next time.
                conn = getattr(self._local, "conn", None)
                self._local.conn = None
                if conn is not None:
                    conn.close()
                raise
        return await asyncio.get_running_loop().run_in_executor(self._pool, job)

    async def write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        def job() -> Any:
            conn = sqlite3.connect(self.db, timeout=5)
            try:
                with conn:
                    return fn(conn)
            finally:
                conn.close()
        return await asyncio.get_running_loop().run_in_executor(self._pool, job)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Dashboard:
    """The server and what its pages read. ``publish`` pushes an event to every open page."""

    def __init__(self, db: Path, token: str, host: str, port: int, lines: Callable[[], api.Lines],
                 forgotten: Callable[[int, tuple[str, str, str]], None] = lambda memory_id, key: None) -> None:
        self.forgotten = forgotten  # told of a memory forgotten here (the hints leave it out at once)
        self.token = token
        self.host = host
        self.port = port
        self.lines = lines
        self.reader = Reader(db)
        self.clients: set[Socket] = set()
        self.server: tornado.httpserver.HTTPServer | None = None
        self.published = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def allowed_hosts(self) -> set[str]:
        names = {self.host, "localhost", "127.0.0.1", "[::1]"} if self.host in ("127.0.0.1", "::1", "localhost") \
            else {self.host if ":" not in self.host else f"[{self.host}]"}
        return {f"{n}:{self.port}" for n in names} | ({"localhost", "127.0.0.1"} if self.port == 80 else set())

    def app(self) -> tornado.web.Application:
        args = {"dashboard": self}
        return tornado.web.Application([
            (r"/", Page, args),
            (r"/static/(.*)", Static, {"path": str(STATIC), **args}),
            (r"/api/status", Status, args),
            (r"/api/now", Now, args),
            (r"/api/calls", Calls, args),
            (r"/api/calls/([A-Za-z0-9_.:-]+)", Call, args),
            (r"/api/conversations/([A-Za-z0-9_.:-]+)", Conversation, args),
            (r"/api/alerts", Alerts, args),
            (r"/api/findings", Findings, args),
            (r"/api/users", Users, args),
            (r"/api/archives/([0-9a-fA-F]{4,64})", Archive, args),
            (r"/api/memories", Memories, args),
            (r"/api/memories/(\d+)", Memory, args),
            (r"/ws", Socket, args),
        ], default_handler_class=NotFound, default_handler_args=args, xheaders=False, compress_response=True)

    def start(self) -> None:
        """Listen (on the running event loop); raises OSError when the port is taken."""
        self.server = tornado.httpserver.HTTPServer(self.app())
        self.server.listen(self.port, self.host)
        if self.port == 0:  # tests: the port the system gave
            self.port = next(iter(self.server._sockets.values())).getsockname()[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        for client in list(self.clients):
            client.close()
        self.reader.close()

    def publish(self, event: dict[str, Any]) -> None:
        """Send ``event`` to every open page (on the event loop's thread)."""
        if not self.clients:
            return
        message = json.dumps(event, default=_json_default)
        self.published += 1
        for client in list(self.clients):
            try:
                client.write_message(message)
            except tornado.websocket.WebSocketClosedError:
                self.clients.discard(client)


class Authenticated(tornado.web.RequestHandler):
    dashboard: Dashboard

    def initialize(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Cache-Control", "no-store")

    @property
    def cookie_name(self) -> str:
        return f"kimi_dashboard_{self.dashboard.port}"

    def _token_ok(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.dashboard.token.encode())

    def prepare(self) -> None:
        if self.request.host not in self.dashboard.allowed_hosts():
            raise tornado.web.HTTPError(403, reason="Host not allowed")
        auth = self.request.headers.get("Authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        given = self.get_query_argument("token", None)
        if self._token_ok(bearer) or self._token_ok(self.get_cookie(self.cookie_name)):
            if given is not None and self.request.method == "GET" and not isinstance(self, Socket):
                self.redirect(self.request.path)  # the token leaves the address bar and the history
            return
        if self._token_ok(given):
            self.set_cookie(self.cookie_name, self.dashboard.token, httponly=True, samesite="Strict", path="/")
            if self.request.method == "GET" and not isinstance(self, Socket):
                self.redirect(self.request.path)
            return
        raise tornado.web.HTTPError(401, reason="Token required")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason
        if status_code == 401 and not self.request.path.startswith("/api/"):
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish("<!doctype html><title>Kimi Proxy</title><h1>Token required</h1>"
                        "<p>Open the address that mitmdump printed at start-up "
                        "(<code>kimi: dashboard on http://...?token=...</code>).</p>")
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": reason, "status": status_code}))

    def send(self, value: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value, default=_json_default))

    async def read(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self.send(await self.dashboard.reader.run(fn, *args))
        except KimiError as e:
            self.set_status(404 if str(e).startswith("no ") else 503)
            self.send({"error": str(e)})
        except sqlite3.DatabaseError as e:
            logger.warning("kimi: dashboard: cannot read the database: %s", e)
            self.set_status(503)
            self.send({"error": f"cannot read the database: {e}"})

    @property
    def user(self) -> str | None:
        """``?user=alice``: the view of one user of a shared proxy."""
        return self.get_query_argument("user", None) or None

    def int_arg(self, name: str, default: int | None) -> int | None:
        value = self.get_query_argument(name, None)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise tornado.web.HTTPError(400, reason=f"{name} must be an integer") from None


class NotFound(Authenticated):
    def get(self, *args: Any) -> None:
        raise tornado.web.HTTPError(404, reason="Not found")


class Page(Authenticated):
    def get(self) -> None:
        if self._finished:
            return
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish((STATIC / "index.html").read_bytes())


class Static(Authenticated, tornado.web.StaticFileHandler):
    def initialize(self, dashboard: Dashboard, path: str) -> None:  # type: ignore[override]
        Authenticated.initialize(self, dashboard)
        tornado.web.StaticFileHandler.initialize(self, path)


class Status(Authenticated):
    def get(self) -> None:
        d = self.dashboard
        self.send({"database": str(d.reader.db), "lines": d.lines().as_dict(), "clients": len(d.clients)})


class Now(Authenticated):
    async def get(self) -> None:
        minutes = self.int_arg("minutes", api.ACTIVE_MINUTES)
        await self.read(api.now, self.dashboard.lines(), minutes, 50, self.user)


class Calls(Authenticated):
    async def get(self) -> None:
        await self.read(api.calls, self.int_arg("limit", 50), self.get_query_argument("conversation", None),
                        self.get_query_argument("before", None), self.user)


class Call(Authenticated):
    async def get(self, request_id: str) -> None:
        await self.read(api.call, request_id, self.dashboard.reader.counter, self.dashboard.lines())


class Conversation(Authenticated):
    async def get(self, cid: str) -> None:
        await self.read(api.conversation, cid, self.dashboard.lines())


class Alerts(Authenticated):
    async def get(self) -> None:
        await self.read(api.alerts, self.int_arg("limit", 100), self.int_arg("after", None), self.user)


class Findings(Authenticated):
    async def get(self) -> None:
        hours = self.int_arg("hours", 24)
        await self.read(api.findings, self.dashboard.reader.counter, self.dashboard.lines(), hours * 60, 20,
                        self.user)


class Users(Authenticated):
    async def get(self) -> None:
        await self.read(api.users)


class Archive(Authenticated):
    """The original of a compacted tool result (as stored: credentials removed), as plain text."""

    async def get(self, digest: str) -> None:
        try:
            data = await self.dashboard.reader.run(load_archive, digest)
        except StoreError as e:
            raise tornado.web.HTTPError(404, reason=str(e)) from None
        except sqlite3.DatabaseError as e:
            raise tornado.web.HTTPError(503, reason=f"cannot read the database: {e}") from None
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Content-Disposition", f'inline; filename="{digest[:12]}.txt"')
        self.finish(data)


class Memories(Authenticated):
    async def get(self) -> None:
        await self.read(api.memories, self.get_query_argument("q", None) or None, 200, self.user)


class Memory(Authenticated):
    async def delete(self, memory_id: str) -> None:
        if not self.request.headers.get(CHANGE_HEADER):
            raise tornado.web.HTTPError(403, reason=f"a change needs the {CHANGE_HEADER} header")

        def forget(conn: sqlite3.Connection) -> tuple[str, str, str, str] | None:
            row = conn.execute("SELECT kind, content, project, user FROM memories WHERE id = ?",
                               (int(memory_id),)).fetchone()
            conn.execute("DELETE FROM memories WHERE id = ?", (int(memory_id),))
            return (row[0], row[1], row[2] or "", row[3] or "") if row else None

        try:
            gone = await self.dashboard.reader.write(forget)
        except sqlite3.DatabaseError as e:
            self.set_status(503)
            self.send({"error": f"cannot write to the database: {e}"})
            return
        if not gone:
            raise tornado.web.HTTPError(404, reason="No such memory")
        self.dashboard.forgotten(int(memory_id), gone)
        logger.info("kimi: memory %s forgotten (dashboard)", memory_id)
        self.send({"forgotten": int(memory_id)})


class Socket(Authenticated, tornado.websocket.WebSocketHandler):
    """Pushes ``{"type": "call" | "alert", ...}`` as the proxy records them."""

    def set_default_headers(self) -> None:
        pass

    def check_origin(self, origin: str) -> bool:
        return urlsplit(origin).netloc in self.dashboard.allowed_hosts()

    def open(self, *args: Any) -> None:
        if len(self.dashboard.clients) >= MAX_CLIENTS:
            self.close(1013, "too many dashboard pages open")
            return
        self.dashboard.clients.add(self)
        self.write_message(json.dumps({"type": "hello", "lines": self.dashboard.lines().as_dict()}))

    def on_message(self, message: str | bytes) -> None:
        pass  # nothing is read from pages

    def on_close(self) -> None:
        self.dashboard.clients.discard(self)
