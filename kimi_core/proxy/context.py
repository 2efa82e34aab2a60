"""State shared by Kimi's addons: the per-flow calls and the long-lived resources.

Per flow, an ``LLMCall`` lives in a ``WeakKeyDictionary`` keyed by the flow
rather than in ``flow.metadata``: mitmproxy deep-copies metadata whenever a
flow's state is taken (saving flows, mitmweb), and it must hold only plain
values. ``flow.metadata["kimi"]`` gets a small plain summary instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http

from kimi_core import tokens
from kimi_core.agents import Client
from kimi_core.analysis import Analysis, Recent
from kimi_core.budgets import Budgets
from kimi_core.compaction import Compactor
from kimi_core.config import Config
from kimi_core.conversations import Conversation, ConversationTracker
from kimi_core.cost import Prices
from kimi_core.dialects.base import Reply
from kimi_core.forecast import Forecast
from kimi_core.guard import Calibration, Decision, Fit
from kimi_core.hints import Book
from kimi_core.metrics import Metrics
from kimi_core.providers import Route
from kimi_core.redact import redact_text
from kimi_core.sessions import Session
from kimi_core.store import AlertRecord, Store
from kimi_core.store.records import now_iso
from kimi_core.streams import StreamWatcher
from kimi_core.tokens import TokenCounter
from kimi_core.toolresults import Rewritten
from kimi_core.windows import Window, Windows

logger = logging.getLogger(__name__)

# flow.metadata[TRANSPORT] says how a call travels when not as an HTTP request of its own.
TRANSPORT = "kimi_transport"
HTTP = "http"
WEBSOCKET = "websocket"
REFUSALS = ("rejected", "over_budget")  # the actions of calls Kimi answered itself


@dataclass(eq=False)
class LLMCall:
    provider: str
    dialect: str | None  # None: a provider host, but not a generation endpoint
    host: str
    path: str  # credentials redacted
    session: Session | None = None
    client: Client | None = None  # the agent or SDK that sent it
    conversation: Conversation | None = None
    transport: str = HTTP  # or WEBSOCKET: one message of a socket
    route: Route | None = None  # the API and what wraps it; None when dialect is None
    analysis: asyncio.Future[Analysis] | None = None
    # The request is held for its analysis until ``deadline`` (time.monotonic()), ``budget_ms`` after it came.
    deadline: float | None = None
    budget_ms: int = 0
    # Resolved once the request is parsed, before it is counted; None if it did not parse.
    parsed: asyncio.Future[Analysis | None] | None = None
    estimate: asyncio.Future[int | None] | None = None  # see ``estimated``
    watcher: StreamWatcher | None = None
    reply: Reply | None = None
    response_body: bytes | None = None  # the response decoded, as the meter read it (None: not read)
    action: str = "passed"
    errors: list[str] = field(default_factory=list)
    recorded: bool = False
    metered: bool = False  # counted in the metrics
    decision: Decision | None = None  # the context guard's, once the request is counted
    window: Window | None = None
    fit: Fit = field(default_factory=Fit)  # the calibration the decision used
    forecast: Forecast | None = None  # the session's turns left, after this request
    # When Kimi compacted tool results: the analysis of the body as the client
    # sent it (``analysis`` is then that of the body sent on), and what was done.
    original: Analysis | None = None
    compaction: Rewritten | None = None
    controls: dict[str, str] = field(default_factory=dict)  # its X-Kimi-* headers (removed before sending)
    user: str | None = None  # who made it, on a proxy with proxyauth
    project: str | None = None  # the working directory its agent named, when read before its conversation
    hints: list[dict[str, Any]] | None = None  # the memories added to its system prompt (kimi_memory_hints)

    @property
    def refused(self) -> bool:
        """Kimi answered it itself (the context guard, or a budget): it never left the machine."""
        return self.action in REFUSALS

    def when_analysed(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once the request's analysis is over.

        Callbacks run in the order they were added, so the meter's bookkeeping
        (added when the analysis starts) comes before the recorder's row.
        """
        if self.analysis is None:
            fn()
        else:
            self.analysis.add_done_callback(lambda _: fn())

    async def settled(self, future: asyncio.Future | None) -> bool:
        """Wait for ``future`` (an analysis stage, or work on it) until the deadline; False if it passed first.

        Past the deadline the request goes on as sent: its row says it was not waited for.
        """
        if future is None or future.done():
            return True
        left = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        done, _ = await asyncio.wait([future], timeout=left)
        if done:
            return True
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # its failure, if any, is not news
        note = f"held {self.budget_ms:,} ms for its analysis (kimi_analysis_ms): sent on without waiting further"
        if note not in self.errors:
            self.errors.append(note)
            logger.warning("kimi: %s %s: %s", self.provider, self.path.split("?")[0], note)
        return False

    async def estimated(self, flow: http.HTTPFlow, enough: int | None = None) -> int | None:
        """A quick estimate of the request body's tokens (``tokens.estimate``), made once, in a
        thread; None for a body sent compressed. ``enough``: past this many, the media it names
        need not be looked for.

        What the guard decides with while a request is far from its lines: the
        exact count (the row's, the alerts') goes on meanwhile.
        """
        if self.estimate is None:
            raw = flow.request.raw_content or b""
            if "content-encoding" in flow.request.headers:
                self.estimate = asyncio.get_running_loop().create_future()
                self.estimate.set_result(None)
            else:
                self.estimate = asyncio.get_running_loop().run_in_executor(
                    None, functools.partial(tokens.estimate, raw, enough=enough))
        try:
            return await asyncio.shield(self.estimate)
        except Exception as e:  # noqa: BLE001 -- no estimate: the callers wait for the count instead
            logger.warning("kimi: could not estimate a request's tokens: %r", e)
            return None

    def release(self) -> None:
        """The row is written: let go of the bodies and their analyses.

        The call lives as long as its flow, and mitmproxy leaves each flow in
        reference cycles that only the garbage collector's rare full passes
        free: a 200,000-message body kept 150 MB until then.
        """
        self.analysis = self.parsed = self.estimate = None
        self.original = None
        self.compaction = None
        self.response_body = None
        self.watcher = None

    def replace_analysis(self, analysis: Analysis) -> None:
        """The body was rewritten: from now on, its analysis is ``analysis``.

        It counts as done once the analysis it replaces is (the original's count, which the row
        reports, may still be running: compaction does not wait for it).
        """
        future: asyncio.Future[Analysis] = asyncio.get_running_loop().create_future()
        before = self.analysis

        def settle(_: object = None) -> None:
            if not future.done():
                future.set_result(analysis)

        if before is None or before.done():
            settle()
        else:
            before.add_done_callback(settle)
        self.analysis = future

    def result(self) -> Analysis | None:
        """The analysis if it has finished, else None."""
        if self.analysis is None or not self.analysis.done() or self.analysis.cancelled():
            return None
        return self.analysis.result() if self.analysis.exception() is None else None


class KimiContext:
    """Owned by the assembly in ``addons/kimi.py``; every Kimi addon gets the same one."""

    def __init__(self) -> None:
        self.calls: weakref.WeakKeyDictionary[http.HTTPFlow, LLMCall] = weakref.WeakKeyDictionary()
        self.config = Config()
        self.registry = self.config.registry()
        self.counter = TokenCounter()
        self.recent = Recent()
        self.conversations = ConversationTracker()
        self.prices = Prices()
        self.budgets = Budgets()
        self.windows = Windows()
        self.calibration = Calibration()
        self.compactor = Compactor()
        # sha256 of originals sent to the archive, with the database's generation then (``Store.generation``).
        self.archived: OrderedDict[str, int] = OrderedDict()
        # Big bodies are parsed in one thread and counted (and compacted) in
        # another: a request that waits to be parsed never waits behind the
        # count of the one before, and a burst uses about a core, leaving the
        # other to mitmproxy (parsing holds the GIL, tiktoken releases it).
        self.parser = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="kimi-parse")
        self.analyser = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="kimi-analyse")
        self.store: Store | None = None
        self.book = Book()  # what is remembered, for the memory hints
        # Called in the store's thread with each batch of records once committed.
        self.written: list[Callable[[list[Any]], None]] = []
        self.metrics = Metrics(lambda: self.store)

    def alert(self, flow: http.HTTPFlow, call: LLMCall, level: float, kind: str, message: str) -> None:
        """An alert: one log line, the metric, the flow marked in mitmweb, a row in ``alerts``."""
        message = redact_text(message)  # it may quote a provider's error
        logger.warning("kimi: %s: %s", kind.replace("_", " "), message)
        self.metrics.alerts.labels(kind).inc()
        flow.marked = ":warning:"
        if self.store is not None:
            self.store.submit(AlertRecord(now_iso(), call.session.id if call.session else None, flow.id,
                                          round(level, 4), kind, message, call.user))

    @staticmethod
    def after_send(fn: Callable[[], None]) -> None:
        """Run ``fn`` once the hook that calls this has returned: in a response hook, after
        mitmproxy has sent the response on (bookkeeping is not worth a millisecond of the client's)."""
        asyncio.get_running_loop().call_soon(fn)

    def call(self, flow: Any) -> LLMCall | None:
        return self.calls.get(flow) if isinstance(flow, http.HTTPFlow) else None
