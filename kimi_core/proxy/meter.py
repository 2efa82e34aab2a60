"""Measure LLM calls: parse and count the request, watch the response for usage.

A big request body is parsed in one worker thread and counted in another
(tiktoken releases the GIL), started in ``request``; a small one on the loop
once the request is sent. ``call.parsed`` settles after parsing,
``call.analysis`` after counting. Nothing here waits for either (the row is
written when the count is done); the compactor and the guard wait only for
requests where it could matter.
Event streams are passed to the client chunk by chunk as the provider sends
them (mitmproxy would buffer them whole), and read on the way through.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine

from mitmproxy import ctx, exceptions, http

from kimi_core import analysis, decoding, dialects, tokens
from kimi_core.analysis import Analysis
from kimi_core.dialects.base import Reply
from kimi_core.errors import BodyError
from kimi_core.providers import GEMINI
from kimi_core.proxy.context import KimiContext, LLMCall
from kimi_core.redact import redact_text
from kimi_core.streams import JSON, StreamWatcher, framing_of

logger = logging.getLogger(__name__)

# Smaller bodies are parsed and counted on the event loop: a thread hand-off
# costs more than the work (well under a millisecond for 16 KB).
ANALYSE_INLINE_LIMIT = 16 * 1024
PARSE_INLINE_LIMIT = 256 * 1024  # larger response bodies are parsed in a thread
STREAM_KEPT = 4 * 1024 * 1024  # bytes of a stream kept as the flow's body, for mitmweb; bigger ones are not


def summary(call: LLMCall) -> str:
    """The one-line comment mitmweb shows for the flow."""
    result = call.result()
    model = (call.reply and call.reply.model) or (result and result.request and result.request.model)
    parts = [f"kimi: {call.provider}", model or call.dialect or "not a generation endpoint"]
    if call.refused:
        parts.append("REFUSED by Kimi" + (" (budget)" if call.action == "over_budget" else ""))
    if call.compaction is not None and call.original is not None and call.original.count and result and result.count:
        n = len(call.compaction.done)
        parts.append(f"compacted {n} tool result{'s' if n > 1 else ''}: "
                     f"{call.original.count.tokens:,} → {result.count.tokens:,} tok")
    if result and result.count:
        approx = "~" if result.count.approximate else ""
        parts.append(f"est {approx}{result.count.tokens:,} tok")
    if call.decision is not None:
        warn = "⚠ " if call.decision.alert is not None else ""
        parts.append(f"{warn}{call.decision.share:.0%} of {call.decision.window:,}")
    if call.forecast is not None and call.forecast.turns_left is not None:
        parts.append(f"~{call.forecast.turns_left} turns left (+{call.forecast.growth:,}/turn)")
    usage = call.reply.usage if call.reply else None
    if usage and usage.prompt_tokens is not None:
        parts.append(f"prompt {usage.prompt_tokens:,}")
    if usage and usage.completion_tokens is not None:
        parts.append(f"out {usage.completion_tokens:,}")
    if usage and usage.cached_tokens:
        parts.append(f"cached {usage.cached_tokens:,}")
    if call.errors:
        parts.append(f"error: {call.errors[0]}")
    return redact_text(" · ".join(parts))


def is_responses_socket(path: str) -> bool:
    """A WebSocket that carries Responses API calls (``KimiWebSocket`` reads them)."""
    return path.split("?", 1)[0].rstrip("/").endswith("/responses")


def _resolve(future: asyncio.Future | None, value: Analysis | None) -> None:
    if future is not None and not future.done():
        future.set_result(value)


def _copy(source: asyncio.Future, target: asyncio.Future | None) -> None:
    """Settle ``target`` as ``source`` settled."""
    if target is None or target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (e := source.exception()) is not None:
        target.set_exception(e)
    else:
        target.set_result(source.result())


def envelope(call: LLMCall) -> str | None:
    return call.route.envelope if call.route is not None else None


def read_reply(dialect: str, raw: bytes, encoded: str, limit: int, wrapped: str | None) -> tuple[bytes | None, Reply]:
    """A response body decoded (never past ``limit``) and parsed; the decoded bytes, for the record."""
    try:
        data = decoding.decode(raw, encoded, limit) if encoded else raw
    except decoding.TooLarge:
        return None, Reply(error=f"{encoded}-encoded response inflating past {limit // 2**20} MB: usage not read")
    except ValueError as e:
        return None, Reply(error=f"cannot decode the response body: {e}")
    return data, parse_reply(dialect, data, wrapped)


def parse_reply(dialect: str, raw: bytes, wrapped: str | None = None) -> Reply:
    if not raw:
        return Reply()
    try:
        return dialects.parse_response(dialect, json.loads(raw), wrapped)
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
        loader.add_option(
            "kimi_analysis_ms", int, 10_000,
            "Longest a request is held for its analysis (parse, count, compaction): past it, the request "
            "goes on as sent, unjudged, and its row says so.",
        )

    def configure(self, updated: set[str]) -> None:
        if "kimi_max_body_mb" in updated and ctx.options.kimi_max_body_mb <= 0:
            raise exceptions.OptionsError("kimi_max_body_mb must be a positive number of megabytes")
        if "kimi_analysis_ms" in updated and ctx.options.kimi_analysis_ms <= 0:
            raise exceptions.OptionsError("kimi_analysis_ms must be a positive number of milliseconds")

    def running(self) -> None:
        # Load tiktoken's vocabularies and the price table now, in a thread, rather than on the first request.
        loop = asyncio.get_running_loop()
        loop.run_in_executor(self.kimi.analyser, tokens.warm_up)
        loop.run_in_executor(self.kimi.analyser, self.kimi.prices.warm_up)

    def done(self) -> None:
        self.kimi.parser.shutdown(wait=False, cancel_futures=True)
        self.kimi.analyser.shutdown(wait=False, cancel_futures=True)

    def request(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None:
            return
        if flow.request.headers.get("upgrade", "").lower() == "websocket":
            if is_responses_socket(flow.request.path):
                call.errors.append("WebSocket opened: each response.create on it is a call of its own")
            else:
                self._note(call, "websocket upgrade: messages are not metered", flow)
            return
        if call.dialect is None:
            self._note(call, f"not a generation endpoint: {flow.request.method} {call.path.split('?')[0]}", flow)
            return
        if flow.request.raw_content is None:
            self._note(call, "request body streamed by mitmproxy (stream_large_bodies): not counted", flow)
            return
        raw = flow.request.raw_content
        loop = asyncio.get_running_loop()
        call.budget_ms = ctx.options.kimi_analysis_ms
        call.deadline = time.monotonic() + call.budget_ms / 1000
        call.parsed = loop.create_future()
        # The request's own analysis: a compaction may give the call another one meanwhile
        # (``LLMCall.replace_analysis``), so the stages settle this future, not the call's latest.
        future = call.analysis = loop.create_future()
        args = (raw, flow.request.headers.get("content-encoding", ""), call.route, flow.request.path,
                ctx.options.kimi_max_body_mb * 1024 * 1024, self.kimi.recent)
        if len(raw) > ANALYSE_INLINE_LIMIT or "content-encoding" in flow.request.headers:
            stage = loop.run_in_executor(self.kimi.parser, analysis.parse, *args)
            stage.add_done_callback(lambda _: self._parsed(call, stage, future))
        else:
            # On the loop, but once mitmproxy has sent the request on: the work
            # overlaps the provider's answer instead of delaying the request.
            loop.call_soon(self._analyse_inline, call, args, future)
        future.add_done_callback(lambda _: _resolve(call.parsed, None))  # did not parse: no more waiting
        future.add_done_callback(lambda _: self._analysed(flow, call, future))

    def _parsed(self, call: LLMCall, stage: asyncio.Future, future: asyncio.Future) -> None:
        """Parsed in the parse thread: tell who waits for it, count in the count thread."""
        assert call.parsed is not None
        if stage.cancelled():
            future.cancel()
            return
        if (e := stage.exception()) is not None:
            future.set_exception(e)
            return
        result, prior = stage.result()
        if result.request is None or result.error:
            future.set_result(result)
            return
        _resolve(call.parsed, result)
        counting = asyncio.get_running_loop().run_in_executor(
            self.kimi.analyser, analysis.count, result, prior, self.kimi.counter, self.kimi.recent,
            call.deadline, call.budget_ms)
        counting.add_done_callback(lambda _: _copy(counting, future))

    def _analyse_inline(self, call: LLMCall, args: tuple, future: asyncio.Future) -> None:
        assert call.parsed is not None
        try:
            result, prior = analysis.parse(*args)
            _resolve(call.parsed, result if result.request is not None and not result.error else None)
            future.set_result(analysis.count(result, prior, self.kimi.counter, self.kimi.recent,
                                             call.deadline, call.budget_ms))
        except Exception as e:  # noqa: BLE001 -- reported by _analysed, like a failure in a thread
            future.set_exception(e)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None or call.dialect is None or flow.response is None or flow.response.stream \
                or call.refused:
            return
        response = flow.response
        framing = framing_of(response.headers.get("content-type", ""))
        if framing is None and call.dialect == GEMINI and ":streamGenerateContent" in call.path \
                and response.status_code == 200:
            framing = JSON  # Gemini without alt=sse streams one JSON array
        if framing is not None:
            call.watcher = StreamWatcher(call.dialect, framing, response.headers.get("content-encoding", ""),
                                         STREAM_KEPT, envelope(call))
            response.stream = call.watcher

    def response(self, flow: http.HTTPFlow) -> Coroutine[None, None, None] | None:
        """Read the usage; a big body is parsed in a thread (mitmproxy awaits what this returns)."""
        call = self.kimi.call(flow)
        if call is None:
            return None
        response = flow.response
        if call.dialect is None or call.refused or response is None:
            if call.refused and response is not None:
                call.response_body = response.raw_content  # Kimi's own answer
            flow.comment = summary(call)
            return None
        raw, encoded = response.raw_content, response.headers.get("content-encoding", "")
        if call.watcher is None and raw is not None and (encoded or len(raw) > PARSE_INLINE_LIMIT):
            return self._read_big(flow, call, raw, encoded)
        self._replied(flow, call, self._reply(call, response))
        return None

    async def _read_big(self, flow: http.HTTPFlow, call: LLMCall, raw: bytes, encoded: str) -> None:
        """Decode (bounded) and parse in a thread: a body the provider controls never stalls the loop."""
        assert call.dialect is not None
        limit = ctx.options.kimi_max_body_mb * 1024 * 1024
        call.response_body, reply = await asyncio.to_thread(read_reply, call.dialect, raw, encoded, limit,
                                                            envelope(call))
        self._replied(flow, call, reply)

    def _replied(self, flow: http.HTTPFlow, call: LLMCall, reply: Reply) -> None:
        call.reply = reply
        if call.watcher is not None and call.watcher.kept is not None and flow.response is not None:
            # mitmproxy keeps no body for a stream: give the flow the one that passed, for
            # mitmweb and saved flows (the client has it already; nothing is sent again).
            flow.response.raw_content = bytes(call.watcher.kept)
        if reply.error:
            status = flow.response.status_code if flow.response else "-"
            call.errors.append(f"provider error ({status}): {reply.error[:300]}")
        flow.comment = summary(call)

    def error(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None:
            return
        if call.watcher is not None:
            call.reply = call.watcher.result()
        call.errors.append(flow.error.msg if flow.error else "connection failed")
        flow.comment = summary(call)

    def _analysed(self, flow: http.HTTPFlow, call: LLMCall, future: asyncio.Future) -> None:
        """The request's analysis is over: note its failure, refresh the comment."""
        if future.cancelled():
            call.errors.append("analysis cancelled")
        elif (e := future.exception()) is not None:  # a parser bug must not lose the row
            logger.warning("kimi: could not analyse a %s request: %r (forwarded unchanged)", call.dialect, e)
            call.errors.append(f"internal error while analysing: {e!r}")
        elif (result := future.result()).error:
            call.errors.append(result.error)
            logger.warning("kimi: %s %s: %s (forwarded unchanged)", call.provider, call.path, redact_text(result.error))
        if call.reply is not None or flow.error is not None:
            flow.comment = summary(call)

    def _reply(self, call: LLMCall, response: http.Response) -> Reply:
        assert call.dialect is not None
        if call.watcher is not None:
            reply = call.watcher.result()
            if call.watcher.error:
                call.errors.append(call.watcher.error)
            return reply
        if response.raw_content is None:
            return Reply(error="response body streamed by mitmproxy (stream_large_bodies): usage not read")
        call.response_body = response.raw_content  # not encoded: the meter decodes encoded ones in a thread
        return parse_reply(call.dialect, response.raw_content, envelope(call))

    def _note(self, call: LLMCall, message: str, flow: http.HTTPFlow) -> None:
        call.errors.append(message)
        key = (call.provider, flow.request.method, call.path.split("?")[0])
        if key not in self._warned and len(self._warned) < 1000:
            self._warned.add(key)
            logger.warning("kimi: %s %s: %s; forwarded unchanged", call.provider, call.host, message)
