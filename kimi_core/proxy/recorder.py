"""Record every LLM call in the SQLite store, off the request path.

Rows are handed to the store's writer thread when a flow ends (``response`` or
``error``); ``done`` (SIGINT / SIGTERM) writes what is still queued. A broken
database never fails or delays a request: see ``kimi_core.store``.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
from typing import Any

from mitmproxy import ctx, exceptions, http

from kimi_core.cost import Prices, Usage
from kimi_core.errors import StoreError
from kimi_core.proxy.context import KimiContext, LLMCall
from kimi_core.proxy.meter import summary
from kimi_core.store import RequestRecord, SessionRecord, Store
from kimi_core.store.records import now_iso

logger = logging.getLogger(__name__)

DEFAULT_DB = "~/.kimi-proxy/kimi.db"


def request_row(flow: http.HTTPFlow, call: LLMCall) -> dict[str, Any]:
    """The ``requests`` row for a finished call (see the migrations for each column)."""
    result = call.result()
    request = result.request if result else None
    count = result.count if result else None
    reply = call.reply
    usage = reply.usage if reply else None
    response = flow.response
    start = flow.request.timestamp_start
    first = None
    if call.watcher is not None and call.watcher.first_chunk_at is not None:
        first = call.watcher.first_chunk_at
    elif response is not None:
        first = response.timestamp_start
    end = (response.timestamp_end if response is not None else None) or time.time()
    return {
        "id": flow.id,
        "ts": now_iso(start),
        "session_id": call.session.id if call.session else None,
        "provider": call.provider,
        "dialect": call.dialect,
        "host": call.host,
        "path": call.path,
        "method": flow.request.method,
        "model": (request.model if request else None) or (reply.model if reply else None),
        "status_code": response.status_code if response is not None else None,
        "streamed": int(call.watcher is not None),
        "prompt_tokens_est": count.tokens if count else None,
        "tokenizer": count.encoding if count else None,
        "tokens_approximate": int(count.approximate) if count else None,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "cached_tokens": usage.cached_tokens if usage else None,
        "ttfb_ms": round((first - start) * 1000, 2) if first and start else None,
        "duration_ms": round((end - start) * 1000, 2) if start else None,
        "action": call.action,
        "error": "; ".join(call.errors) or None,
        "messages": len(request.messages) if request else None,
        "context_window": call.window.tokens if call.window else None,
        "window_source": call.window.source if call.window else None,
        "calibration_factor": call.fit.factor if call.decision else None,
        "calibration_overhead": call.fit.overhead if call.decision else None,
        "prompt_tokens_cal": call.decision.estimate if call.decision else None,
        "window_share": round(call.decision.share, 4) if call.decision else None,
        "tokens_before": call.original.count.tokens if call.original and call.original.count else None,
        "tokens_after": count.tokens if count and call.compaction else None,
        "compacted_results": len(call.compaction.done) if call.compaction else None,
        "transport": call.transport,
        "agent": call.client.agent if call.client else None,
        "agent_version": call.client.version if call.client else None,
        "conversation_id": call.conversation.id if call.conversation else None,
        "project": (call.conversation.project if call.conversation else None) or call.project,
        "user": call.user,
        "hints": json.dumps(call.hints, ensure_ascii=False) if call.hints else None,
        "cache_write_tokens": usage.cache_write_tokens if usage else None,
        "reasoning_tokens": usage.reasoning_tokens if usage else None,
        "request_bytes": len(flow.request.raw_content or b""),
        "response_bytes": (call.watcher.bytes if call.watcher is not None
                           else len(response.raw_content or b"") if response is not None else None),
    }


def price(prices: Prices, call: LLMCall, row: dict[str, Any], started: float | None) -> None:
    """The row's cost: from the usage the provider reported; a refused call cost nothing."""
    if call.dialect is None:
        return
    if call.refused:
        row.update(cost_usd=0.0, cost_note="refused by Kimi: never sent")
        return
    model, prompt = row["model"], row["prompt_tokens"]
    note = None
    if prompt is None:
        status = row["status_code"]
        if status is None or status >= 400:
            row.update(cost_usd=0.0 if status else None, cost_note=f"no usage reported (status {status})")
            return
        # Answered without usage (a stream that did not ask for it): Kimi's own count instead.
        prompt = row["prompt_tokens_cal"] or row["prompt_tokens_est"]
        if prompt is None:
            row.update(cost_note="no usage reported, and the prompt was not counted")
            return
        note = "estimated: the provider reported no usage"
    text = call.reply.text if call.reply else ""
    usage = Usage(int(prompt), row["completion_tokens"] or (len(text) // 4 if note else 0),
                  row["cached_tokens"] or 0, row["cache_write_tokens"] or 0)
    when = datetime.datetime.fromtimestamp(started, datetime.UTC) if started else None
    before, after = row["tokens_before"], row["tokens_after"]
    saved = bool(before and after is not None and before > after)
    found = prices.price(call.provider, model, usage, when, rate=saved)
    row["cost_usd"] = round(found.usd, 8) if found.usd is not None else None
    row["cost_note"] = "; ".join(n for n in (note, found.note) if n) or None
    if found.input_usd_per_token is not None and saved:
        row["saved_usd"] = round((before - after) * (row["calibration_factor"] or 1.0) * found.input_usd_per_token, 8)


SHUTDOWN_GRACE = 5.0  # seconds calls in flight at shutdown get to finish


class KimiRecorder:
    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi
        self._sessions_written: set[str] = set()
        # Finished flows whose request analysis is still running, by flow id.
        self._awaiting: dict[str, tuple[http.HTTPFlow, LLMCall]] = {}
        self._unanswered: dict[str, None] = {}  # LLM calls not answered yet, by flow id

    def load(self, loader) -> None:
        loader.add_option("kimi_db", str, DEFAULT_DB, "Kimi Proxy's SQLite database.")
        loader.add_option(
            "kimi_retention_mb", int, 1024,
            "Stored bodies are kept up to this size (compressed); the least recently used go first. "
            "Request rows are always kept.",
        )
        loader.add_option("kimi_store_bodies", bool, True, "Store request and response bodies.")

    def configure(self, updated: set[str]) -> None:
        if "kimi_retention_mb" in updated and ctx.options.kimi_retention_mb < 0:
            raise exceptions.OptionsError("kimi_retention_mb must be 0 or more")
        if "kimi_db" in updated:
            self._open(ctx.options.kimi_db)
        store = self.kimi.store
        if store is not None:
            store.retention_bytes = ctx.options.kimi_retention_mb * 1024 * 1024
            store.store_bodies = ctx.options.kimi_store_bodies

    def _open(self, path: str) -> None:
        store = Store(path)
        try:
            named = store.open()
        except StoreError as e:
            raise exceptions.OptionsError(f"kimi_db: {e}") from e
        if self.kimi.store is not None:
            self.kimi.store.close()
        self._sessions_written = {s.id for s in named}
        self.kimi.store = store
        store.on_written = self._written
        store.start()
        logger.info("kimi: recording LLM calls to %s", store.path)

    def _written(self, records: list) -> None:
        for listener in self.kimi.written:
            listener(records)

    def response(self, flow: http.HTTPFlow) -> None:
        self.kimi.after_send(lambda: self._record(flow))

    def request(self, flow: http.HTTPFlow) -> None:
        if self.kimi.call(flow) is not None:
            self._unanswered[flow.id] = None

    def error(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def _record(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None or self.kimi.store is None or call.recorded:
            return
        call.recorded = True
        self._unanswered.pop(flow.id, None)
        self._awaiting[flow.id] = (flow, call)
        call.when_analysed(lambda: self._submit(flow, call))

    def _submit(self, flow: http.HTTPFlow, call: LLMCall) -> None:
        store = self.kimi.store
        if store is None or self._awaiting.pop(flow.id, None) is None:
            return
        session = call.session
        if session is not None and session.id not in self._sessions_written:
            self._sessions_written.add(session.id)
            store.submit(SessionRecord(session.id, session.name, session.provider,
                                       now_iso(session.started_at), session.mode, call.user))
        result = call.result()
        if call.watcher is not None and call.reply is not None:
            response_body: Any = {"stream": True, "text": call.reply.text, "error": call.reply.error}
        else:  # as the meter decoded it (never decoded again here, never past the limit)
            response_body = call.response_body
        row = request_row(flow, call)
        price(self.kimi.prices, call, row, flow.request.timestamp_start)
        if row.get("cost_usd"):
            self.kimi.metrics.cost.labels(call.provider, self.kimi.metrics.model_label(row["model"] or "")).inc(
                row["cost_usd"])
            for budget, share in self.kimi.budgets.add(row["session_id"], row["agent"], row["cost_usd"],
                                                          user=row["user"]):
                self.kimi.alert(flow, call, share, "budget",
                                f"{budget.name}: ${budget.spent:,.2f} of ${budget.limit:,.2f} spent ({share:.0%})")
        store.submit(RequestRecord(
            row=row,
            request_body=(result.body if result.body is not None else result.raw) if result else None,
            history_key=result.request.history_key if result and result.request else None,
            response_body=response_body,
            text=result.text if result else None,
            history=result.history if result else None,
            items=result.items if result else None,
            digests=result.digests if result else None,
            seq=result.seq if result else 0,
            prior_seq=result.prior_seq if result else None,
            reused=result.reused if result else 0,
        ))
        if call.reply is not None or flow.error is not None:
            flow.comment = summary(call)  # with what was judged since the response (a request not held)
        call.release()

    async def done(self) -> None:
        # Calls still answering when the proxy is told to stop: a few seconds to finish (mitmproxy
        # goes on relaying their bytes meanwhile), so that a stream the client saw end has its row.
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while self._unanswered and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for flow, call in list(self._awaiting.values()):
            if call.result() is None:
                call.errors.append("proxy shut down before the request was counted")
            self._submit(flow, call)
        if self.kimi.store is not None:
            self.kimi.store.close()
            if self.kimi.store.lost:
                logger.error("kimi: %d record(s) could not be written to %s",
                             self.kimi.store.lost, self.kimi.store.path)
            self.kimi.store = None
