"""LLM calls on a WebSocket: the Responses API as Codex speaks it (``wss://.../v1/responses``).

Each ``response.create`` message the client sends is one LLM call. Kimi's
addons see it as an HTTP exchange: a flow made for it (``POST`` to the
socket's path, the message as its body) goes through the same hooks as a
call over HTTP, so it is parsed, counted, compacted, guarded and recorded the
same way. The server's messages for it are read as the events of a stream
until the one that ends the answer (``response.completed``,
``response.failed``, ``response.incomplete`` or ``error``).

What the hooks decide comes back to the socket: a compacted body replaces
the message; a refusal drops the message and answers on the socket as the
provider does for an overflow (``response.failed`` with
``context_length_exceeded``, on which Codex says it ran out of room).
Everything else on the socket passes untouched.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from mitmproxy import ctx, flow, http, websocket

from kimi_core.proxy.context import TRANSPORT, WEBSOCKET, KimiContext
from kimi_core.proxy.meter import is_responses_socket
from kimi_core.proxy.sessions import SESSION_HEADER
from kimi_core.sessions import NAMED
from kimi_core.streams import SSEParser

logger = logging.getLogger(__name__)

_CREATE = re.compile(rb'"type"\s*:\s*"response\.create"')
# Request headers that belong to the upgrade, not to the calls made on the socket.
_UPGRADE_HEADERS = {"upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
                    "sec-websocket-extensions", "sec-websocket-protocol", "content-length"}
KEEP_MESSAGES = 64  # mitmproxy keeps every message of a socket; older ones are let go


def is_create(content: bytes) -> bool:
    """Whether a client message is a ``response.create`` (its type comes first, as clients write it)."""
    return _CREATE.search(content, 0, 4096) is not None or (
        len(content) > 4096 and _CREATE.search(content) is not None)


def exchange_for(socket: http.HTTPFlow, content: bytes, pinned: str | None) -> http.HTTPFlow:
    """The HTTP exchange that stands for one call on ``socket``: a POST of ``content`` to its path."""
    upgrade = socket.request
    headers = http.Headers([(k, v) for k, v in upgrade.headers.fields
                            if k.decode("latin-1").lower() not in _UPGRADE_HEADERS])
    headers["content-type"] = "application/json"
    if pinned:
        headers[SESSION_HEADER] = pinned
    request = http.Request(upgrade.host, upgrade.port, b"POST", upgrade.scheme.encode(), upgrade.authority.encode(),
                           upgrade.path.encode(), b"HTTP/1.1", headers, content, None, time.time(), None)
    exchange = http.HTTPFlow(socket.client_conn, socket.server_conn, live=False)
    exchange.request = request
    exchange.metadata[TRANSPORT] = WEBSOCKET
    return exchange


@dataclass(eq=False)
class Socket:
    pinned: str | None  # the session the upgrade was pinned to, if any
    calls: int = 0
    pending: http.HTTPFlow | None = None  # the call whose answer is being read


class KimiWebSocket:
    def __init__(self, kimi: KimiContext, pipeline: Sequence[object]) -> None:
        self.kimi = kimi
        self.pipeline = list(pipeline)  # Kimi's HTTP addons, in their order
        self._sockets: weakref.WeakKeyDictionary[http.HTTPFlow, Socket] = weakref.WeakKeyDictionary()

    async def _hook(self, name: str, exchange: http.HTTPFlow) -> None:
        for addon in self.pipeline:
            hook = getattr(addon, name, None)
            if hook is None:
                continue
            result = hook(exchange)
            if inspect.isawaitable(result):
                await result

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None or not is_responses_socket(flow.request.path):
            return
        pinned = call.session.name if call.session is not None and call.session.mode == NAMED else None
        self._sockets[flow] = Socket(pinned)

    async def websocket_message(self, flow: http.HTTPFlow) -> None:
        socket = self._sockets.get(flow)
        if socket is None or flow.websocket is None or not flow.websocket.messages:
            return
        message = flow.websocket.messages[-1]
        if message.injected:
            return
        if message.from_client:
            if message.is_text and is_create(message.content):
                await self._create(flow, socket, message)
        elif socket.pending is not None:
            await self._event(flow, socket, message)
        self._forget_old(flow)

    async def _create(self, flow: http.HTTPFlow, socket: Socket, message: websocket.WebSocketMessage) -> None:
        if socket.pending is not None:  # the client asked again before the answer ended
            await self._end(socket, "a new response.create came before this answer ended")
        socket.calls += 1
        exchange = exchange_for(flow, message.content, socket.pinned)
        await self._hook("request", exchange)
        if exchange.response is not None:  # refused: answered on the socket, the server never sees it
            message.drop()
            self._answer(flow, exchange.response)
            await self._hook("responseheaders", exchange)
            await self._hook("response", exchange)
            self._show(flow, socket, exchange)
            return
        if exchange.request.raw_content != message.content:  # compacted
            message.content = exchange.request.raw_content or b""
        exchange.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
        exchange.response.timestamp_start = None
        await self._hook("responseheaders", exchange)
        socket.pending = exchange

    def _answer(self, flow: http.HTTPFlow, response: http.Response) -> None:
        """Send an answer made for the client (a refusal) as the socket's events."""
        parser = SSEParser()
        events = parser.feed(response.content or b"") + parser.close()
        texts = [data for _, data in events] if events else [response.get_text(strict=False) or ""]
        for text in texts:
            ctx.master.commands.call("inject.websocket", flow, True, text.encode(), True)

    @staticmethod
    def _show(flow: http.HTTPFlow, socket: Socket, exchange: http.HTTPFlow) -> None:
        """mitmweb shows the socket, not its calls: its comment says the last one."""
        flow.comment = f"{socket.calls} call{'s' if socket.calls > 1 else ''} on this socket; last: {exchange.comment}"
        if exchange.marked:
            flow.marked = exchange.marked

    async def _event(self, flow: http.HTTPFlow, socket: Socket, message: websocket.WebSocketMessage) -> None:
        exchange = socket.pending
        assert exchange is not None and exchange.response is not None
        call = self.kimi.call(exchange)
        watcher = call.watcher if call is not None else None
        if exchange.response.timestamp_start is None:
            exchange.response.timestamp_start = message.timestamp
        if watcher is None:
            return
        watcher.bytes += len(message.content)
        if message.is_text:
            watcher.event(None, message.content.decode("utf-8", "replace"))
        if watcher.answered:
            socket.pending = None
            watcher.finished = True
            exchange.response.timestamp_end = time.time()
            await self._hook("response", exchange)
            self._show(flow, socket, exchange)

    async def _end(self, socket: Socket, why: str) -> None:
        exchange, socket.pending = socket.pending, None
        if exchange is None:
            return
        exchange.error = flow.Error(why)
        await self._hook("error", exchange)

    async def websocket_end(self, flow: http.HTTPFlow) -> None:
        socket = self._sockets.pop(flow, None)
        if socket is not None and socket.pending is not None:
            ws = flow.websocket
            code = f" (close code {ws.close_code})" if ws is not None and ws.close_code else ""
            await self._end(socket, f"WebSocket closed before the answer ended{code}")

    def _forget_old(self, flow: http.HTTPFlow) -> None:
        """mitmproxy keeps every message of a socket; Codex resends its whole history on every turn."""
        ws = flow.websocket
        if ws is not None and len(ws.messages) > 2 * KEEP_MESSAGES:
            del ws.messages[:-KEEP_MESSAGES]

    def done(self) -> None:
        """Shutting down: the answers still being read are recorded as cut (before the recorder closes)."""
        for socket in list(self._sockets.values()):
            exchange, socket.pending = socket.pending, None
            if exchange is not None:
                exchange.error = flow.Error("proxy shut down before the answer ended")
                for addon in self.pipeline:
                    if (hook := getattr(addon, "error", None)) is not None:
                        hook(exchange)
