"""Measure LLM calls: parse and count the request, watch the response for usage.

The request is parsed and counted in a worker thread (tiktoken releases the
GIL), started in ``request`` and awaited only when the result is needed, so a
big body never blocks the event loop and the request is not held for it.
Event streams are passed to the client chunk by chunk as the provider sends
them (mitmproxy would buffer them whole), and read on the way through.
"""

from __future__ import annotations

import asyncio
import json
import logging

from mitmproxy import ctx, http

from kimi_core import dialects
from kimi_core.analysis import analyse
from kimi_core.dialects.base import Reply
from kimi_core.errors import BodyError
from kimi_core.providers import GEMINI
from kimi_core.proxy.context import KimiContext, LLMCall
from kimi_core.streams import StreamWatcher, is_event_stream

logger = logging.getLogger(__name__)

PARSE_INLINE_LIMIT = 256 * 1024  # larger response bodies are parsed in a thread


def summary(call: LLMCall) -> str:
    """The one-line comment mitmweb shows for the flow."""
    result = call.result()
    model = (call.reply and call.reply.model) or (result and result.request and result.request.model)
    parts = [f"kimi: {call.provider}", model or call.dialect or "not a generation endpoint"]
    if result and result.count:
        approx = "~" if result.count.approximate else ""
        parts.append(f"est {approx}{result.count.tokens:,} tok")
    usage = call.reply.usage if call.reply else None
    if usage and usage.prompt_tokens is not None:
        parts.append(f"prompt {usage.prompt_tokens:,}")
    if usage and usage.completion_tokens is not None:
        parts.append(f"out {usage.completion_tokens:,}")
    if usage and usage.cached_tokens:
        parts.append(f"cached {usage.cached_tokens:,}")
    if call.errors:
        parts.append(f"error: {call.errors[0]}")
    return " · ".join(parts)


def parse_reply(dialect: str, raw: bytes) -> Reply:
    try:
        return dialects.parse_response(dialect, json.loads(raw))
    except (ValueError, RecursionError, BodyError) as e:
        return Reply(error=f"response body is not {dialect} JSON: {str(e)[:120]}")


class KimiMeter:
    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi
        self._warned: set[tuple[str, str, str]] = set()

    def load(self, loader) -> None:
        loader.add_option(
            "kimi_max_body_mb", int, 32,
            "Request bodies larger than this are forwarded but not parsed or counted.",
        )

    def request(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None:
            return
        if flow.request.headers.get("upgrade", "").lower() == "websocket":
            self._note(call, "websocket upgrade: messages are not metered", flow)
            return
        if call.dialect is None:
            self._note(call, f"not a generation endpoint: {flow.request.method} {call.path.split('?')[0]}", flow)
            return
        call.analysis = asyncio.ensure_future(asyncio.to_thread(
            analyse,
            flow.request.raw_content or b"",
            flow.request.headers.get("content-encoding", ""),
            call.dialect,
            flow.request.path,
            self.kimi.counter,
            ctx.options.kimi_max_body_mb * 1024 * 1024,
        ))

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None or call.dialect is None or flow.response is None or flow.response.stream:
            return
        response = flow.response
        sse = is_event_stream(response.headers.get("content-type", ""))
        gemini_array = (call.dialect == GEMINI and ":streamGenerateContent" in call.path
                        and response.status_code == 200)
        if sse or gemini_array:
            call.watcher = StreamWatcher(call.dialect, sse, response.headers.get("content-encoding", ""))
            response.stream = call.watcher

    async def response(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None:
            return
        await self._settle(call)
        if call.dialect is not None:
            call.reply = await self._reply(call, flow.response)
            if call.reply.error:
                status = flow.response.status_code if flow.response else "-"
                call.errors.append(f"provider error ({status}): {call.reply.error[:300]}")
        flow.comment = summary(call)

    async def error(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None:
            return
        await self._settle(call)
        if call.watcher is not None:
            call.reply = call.watcher.result()
        call.errors.append(flow.error.msg if flow.error else "connection failed")
        flow.comment = summary(call)

    async def _settle(self, call: LLMCall) -> None:
        """Wait for the request's analysis; its failures become the call's errors."""
        if call.analysis is None:
            return
        try:
            result = await call.analysis
        except Exception as e:  # a bug in a parser must not lose the row
            logger.warning("kimi: could not analyse a %s request: %r", call.dialect, e)
            call.errors.append(f"internal error while analysing: {e!r}")
            return
        if result.error:
            call.errors.append(result.error)
            logger.warning("kimi: %s %s: %s (forwarded unchanged)", call.provider, call.path, result.error)

    async def _reply(self, call: LLMCall, response: http.Response | None) -> Reply:
        assert call.dialect is not None
        if response is None:
            return Reply()
        if call.watcher is not None:
            reply = call.watcher.result()
            if call.watcher.error:
                call.errors.append(call.watcher.error)
            return reply
        if response.raw_content is None:
            return Reply(error="response body streamed by mitmproxy (stream_large_bodies): usage not read")
        try:
            raw = response.get_content(strict=True) or b""
        except ValueError as e:
            return Reply(error=f"cannot decode the response body: {e}")
        if not raw:
            return Reply()
        if len(raw) > PARSE_INLINE_LIMIT:
            return await asyncio.to_thread(parse_reply, call.dialect, raw)
        return parse_reply(call.dialect, raw)

    def _note(self, call: LLMCall, message: str, flow: http.HTTPFlow) -> None:
        call.errors.append(message)
        key = (call.provider, flow.request.method, call.path.split("?")[0])
        if key not in self._warned and len(self._warned) < 1000:
            self._warned.add(key)
            logger.warning("kimi: %s %s: %s; forwarded unchanged", call.provider, call.host, message)
