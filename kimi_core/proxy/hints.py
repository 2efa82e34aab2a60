"""Add remembered constraints and preferences to a new conversation's system prompt (``kimi_memory_hints``).

Off by default. It runs before the meter, so the body Kimi counts, guards,
records and sends is the one with the block. What is added is chosen at the
conversation's first call (``kimi_core.hints.select``) and kept, keyed by the
conversation's start (its system prompt and first user message), so every
later call gets the same bytes; a conversation first seen in its middle (the
proxy started meanwhile) gets none rather than a system prompt that changes
under the provider's cache. ``X-Kimi-Hints: off`` on a request turns it off
for that request. The row's ``hints`` column lists what was added.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import logging
import sqlite3
from collections import OrderedDict
from pathlib import Path
from typing import Any

from mitmproxy import ctx, http

from kimi_core import hints
from kimi_core.dialects import parse_request
from kimi_core.projects import project_of
from kimi_core.providers import CODE_ASSIST
from kimi_core.proxy.context import KimiContext
from kimi_core.store import MemoryRecord

logger = logging.getLogger(__name__)

HEADER = "x-kimi-hints"  # "off" turns the hints off for the request
REFRESH = 5.0  # seconds between two readings of the memories from the database
MAX_BODY = 8 * 1024 * 1024  # larger bodies are not looked at (a first call is small)
CONVERSATIONS = 10_000  # conversations whose block is kept


def _first_call(request) -> bool:
    """No answer of the model in it yet: the conversation starts with this call."""
    return not any(m.role == "assistant" or m.tool_calls or m.tool_results for m in request.messages)


class KimiHints:
    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi
        self._blocks: OrderedDict[bytes, tuple[str, list[dict[str, Any]]]] = OrderedDict()
        self._refresher: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        kimi.written.append(self._written)

    def load(self, loader) -> None:
        loader.add_option("kimi_memory_hints", bool, False,
                          "Add the remembered constraints and preferences relevant to a new conversation "
                          "to its system prompt (the same block for all its calls).")
        loader.add_option("kimi_memory_hints_tokens", int, hints.MAX_TOKENS,
                          "Largest size of the block of memory hints, in tokens (roughly).")

    def running(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._refresher = self._loop.create_task(self._refresh())

    def _written(self, records: list) -> None:
        """In the store's thread: memories were written; read them back soon, with their ids."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and any(isinstance(r, MemoryRecord) for r in records):
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(wake.set)

    def done(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()

    async def _refresh(self) -> None:
        """Read the memories from the database now and every ``REFRESH`` seconds, off the request path."""
        loop = asyncio.get_running_loop()
        while True:
            store = self.kimi.store
            if store is not None and ctx.options.kimi_memory_hints:
                try:
                    self.kimi.book.replace(await loop.run_in_executor(None, _read, store.path))
                except (sqlite3.Error, OSError) as e:
                    logger.debug("kimi: memory hints: cannot read the memories: %s", e)
            assert self._wake is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), REFRESH)
            self._wake.clear()

    def request(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None or call.dialect is None or not ctx.options.kimi_memory_hints or flow.response is not None:
            return
        if call.controls.get(HEADER, "").strip().lower() in ("off", "0", "false", "no"):
            return
        raw = flow.request.raw_content or b""
        if not raw or len(raw) > MAX_BODY:
            return
        try:
            body = json.loads(flow.request.get_content(strict=False) or b"")
            wrapped = call.route is not None and call.route.envelope == CODE_ASSIST and isinstance(body, dict) \
                and isinstance(body.get("request"), dict)
            request = parse_request(call.dialect, body["request"] if wrapped else body, flow.request.path)
        except Exception:  # noqa: BLE001  (the meter says what is wrong with the body; it goes on as sent)
            return
        if not isinstance(body, dict) or request.warmup or hints.BEGIN in request.system:
            return
        first_user = next((m.text for m in request.messages if m.role == "user"), "")
        key = hashlib.blake2b(f"{call.user or ''}\0{call.dialect}\0{request.system}\0{first_user}".encode(
            "utf-8", "surrogatepass"), digest_size=16).digest()
        found = self._blocks.get(key)
        if found is None:
            found = ("", [])
            if _first_call(request):
                call.project = project_of(request)
                text = hints.conversation_text(m.text for m in request.messages if m.role == "user")
                chosen = hints.select(self.kimi.book, text, call.project, datetime.date.today(),
                                      ctx.options.kimi_memory_hints_tokens, call.user)
                if chosen:
                    found = (hints.block(chosen), [{"id": m.id, "kind": m.kind, "content": m.content}
                                                   for m in chosen])
            self._blocks[key] = found
            if len(self._blocks) > CONVERSATIONS:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(key)
        text, added = found
        if text and hints.inject(call.dialect, body, text):
            flow.request.content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            call.hints = added



def _read(path: Path) -> list[hints.Remembered]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
    with contextlib.closing(conn):
        return hints.read_book(conn)
