"""Prometheus metrics: what went through, what Kimi did, how the database and the memory keep up.

One registry per ``KimiContext`` (not prometheus_client's global one), so
that two proxies in one process, or tests, do not share counters. Request
metrics are taken from the same row the database gets (``observe``); the
database's figures are read when scraped (``StoreCollector``).

Label sets are bounded, since clients choose model names and sessions come
and go: the first ``MAX_MODELS`` model names get a label each, later ones
share ``other``; ``kimi_session_turns_left`` keeps the ``MAX_SESSIONS`` most
recent sessions.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kimi_core.redact import printable
from kimi_core.store import Store

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
TTFB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
MAX_MODELS = 200
MAX_SESSIONS = 100
MAX_LABEL = 120
OTHER = "other"


class StoreCollector(Collector):
    """The database writer's counters, read when scraped."""

    def __init__(self, store: Callable[[], Store | None]) -> None:
        self._store = store

    # (name, type, help): named here too for those who must know them before the database opens (OTLP).
    FAMILIES = (("kimi_db_write_failures", "counter", "Database write attempts that failed (retried)."),
                ("kimi_db_records_lost", "counter", "Records that could not be written at all."),
                ("kimi_db_records_written", "counter", "Records written to the database."),
                ("kimi_db_pending_records", "gauge", "Records waiting to be written."))

    def collect(self) -> Iterator[Metric]:
        store = self._store()
        if store is None:
            return
        values = (store.failures, store.lost, store.written, store.pending)
        for (name, kind, doc), value in zip(self.FAMILIES, values, strict=True):
            yield (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc, value=value)


class Metrics:
    def __init__(self, store: Callable[[], Store | None]) -> None:
        self._models: set[str] = set()
        self._sessions: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.registry = r = CollectorRegistry()
        self.requests = Counter("kimi_requests", "LLM calls.", ["provider", "model", "action"], registry=r)
        self.latency = Histogram("kimi_request_duration_seconds", "From the request to the end of the response.",
                                 ["provider"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttfb = Histogram("kimi_time_to_first_byte_seconds", "From the request to the response's first byte.",
                              ["provider"], buckets=TTFB_BUCKETS, registry=r)
        self.prompt_tokens = Counter("kimi_prompt_tokens", "Prompt tokens: local estimate or provider-reported.",
                                     ["provider", "model", "source"], registry=r)
        self.completion_tokens = Counter("kimi_completion_tokens", "Completion tokens the provider reported.",
                                         ["provider", "model"], registry=r)
        self.refusals = Counter("kimi_refusals", "Requests the context guard refused.", ["provider", "model"],
                                registry=r)
        self.compaction_saved = Counter("kimi_compaction_tokens_saved", "Prompt tokens saved by compaction.",
                                        ["provider"], registry=r)
        self.compacted_results = Counter("kimi_compacted_tool_results", "Tool results compacted.", ["provider"],
                                         registry=r)
        self.alerts = Counter("kimi_alerts", "Context-window alerts.", ["kind"], registry=r)
        self.turns_left = Gauge("kimi_session_turns_left", "Turns a session has left before the guard refuses, "
                                "at its recent growth per turn.", ["session", "provider"], registry=r)
        self.memory_extracted = Counter("memory_preferences_extracted", "Statements extracted from user messages.",
                                        ["type"], registry=r)
        self.memory_confidence = Histogram("memory_preferences_confidence", "Confidence of extracted statements.",
                                           buckets=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0), registry=r)
        self.memory_duration = Histogram("memory_preferences_extraction_duration_seconds",
                                         "Time to process one user message.",
                                         buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15), registry=r)
        self.memory_filtered = Counter("memory_preferences_lexical_filtered",
                                       "User messages the lexical filter discarded.", registry=r)
        self.memory_llm_calls = Counter("memory_preferences_llm_calls", "Calls to the language-model stage.",
                                        ["outcome"], registry=r)
        self.cost = Counter("kimi_cost_usd", "US dollars spent, priced from the usage providers report.",
                            ["provider", "model"], registry=r)
        self.memory_queue = Gauge("memory_queue_depth", "User messages waiting for extraction.", registry=r)
        self.otlp_spans = Counter("kimi_otlp_spans", "Spans for OTLP export, by outcome: created, exported, failed "
                                  "(the collector refused or was unreachable), dropped (too many waiting).",
                                  ["outcome"], registry=r)
        self.memory_dropped = Counter("memory_dropped", "User messages dropped: the queue was full, or the database writer behind.",
                                      registry=r)
        self.memory_abandoned = Counter("memory_abandoned", "User messages whose reading took over its budget.",
                                        registry=r)
        r.register(StoreCollector(store))

    def model_label(self, model: str) -> str:
        """A model as a label: the first MAX_MODELS names seen; later ones are "other" (clients name models)."""
        model = printable(model, newlines=False)[:MAX_LABEL]
        if model in self._models:
            return model
        if len(self._models) >= MAX_MODELS:
            return OTHER
        self._models.add(model)
        return model

    def session_turns(self, session: str, provider: str, turns: int) -> None:
        """The turns a session has left; only the most recent MAX_SESSIONS sessions are kept."""
        key = (printable(session, newlines=False)[:MAX_LABEL], provider)
        self._sessions[key] = None
        self._sessions.move_to_end(key)
        self.turns_left.labels(*key).set(turns)
        while len(self._sessions) > MAX_SESSIONS:
            old, _ = self._sessions.popitem(last=False)
            self.turns_left.remove(*old)

    def observe(self, row: dict[str, Any]) -> None:
        """One finished LLM call, from its ``requests`` row."""
        provider, model = row.get("provider") or "", self.model_label(row.get("model") or "")
        self.requests.labels(provider, model, row.get("action") or "").inc()
        if row.get("duration_ms") is not None:
            self.latency.labels(provider).observe(row["duration_ms"] / 1000)
        if row.get("ttfb_ms") is not None:
            self.ttfb.labels(provider).observe(row["ttfb_ms"] / 1000)
        for source, column in (("estimated", "prompt_tokens_est"), ("reported", "prompt_tokens")):
            if row.get(column):
                self.prompt_tokens.labels(provider, model, source).inc(row[column])
        if row.get("completion_tokens"):
            self.completion_tokens.labels(provider, model).inc(row["completion_tokens"])
        if row.get("action") == "rejected":
            self.refusals.labels(provider, model).inc()
        if row.get("compacted_results"):
            self.compacted_results.labels(provider).inc(row["compacted_results"])
            saved = (row.get("tokens_before") or 0) - (row.get("tokens_after") or 0)
            if saved > 0:
                self.compaction_saved.labels(provider).inc(saved)
