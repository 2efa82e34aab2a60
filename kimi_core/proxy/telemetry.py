"""Export each LLM call to OpenTelemetry (``kimi_otlp_endpoint``): spans and metrics over OTLP/HTTP.

Off unless ``kimi_otlp_endpoint`` (or the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``
/ ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) names a collector. A span is made
from each row once the store has written it (the store's thread, never the
request's), with the alerts raised on the call before it as span events, and
goes into the SDK's bounded queue; the SDK's own thread sends batches. A
collector that is down or slow costs the traffic nothing: the queue holds
2,048 spans, what does not fit is dropped and counted
(``kimi_otlp_spans_total{outcome="dropped"}``), so are failed exports.
Prompt and completion text only with ``kimi_otlp_content=true``, the
conventions' opt-in.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from typing import Any

from mitmproxy import ctx, exceptions

from kimi_core import telemetry
from kimi_core.metrics import StoreCollector
from kimi_core.proxy.context import KimiContext
from kimi_core.redact import redact_text
from kimi_core.store.records import AlertRecord, RequestRecord

logger = logging.getLogger(__name__)

QUEUE = 2048  # spans held while the collector is slow or down; more are dropped and counted
BATCH = 512
DELAY_MS = 1000
TIMEOUT_S = 10.0
CONTENT_CHARS = 64_000  # of prompt and completion, when they are exported at all
ALERTS_KEPT = 10_000
OPTIONS = {"kimi_otlp_endpoint", "kimi_otlp_headers", "kimi_otlp_content", "kimi_otlp_metrics", "kimi_otlp_timeout"}
try:
    VERSION = importlib.metadata.version("kimi-proxy")
except importlib.metadata.PackageNotFoundError:  # a plain checkout, not installed
    VERSION = "0"


def parse_headers(text: str) -> dict[str, str]:
    """``k1=v1,k2=v2`` (the form of ``OTEL_EXPORTER_OTLP_HEADERS``)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{part!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


class Export:
    """The SDK's pipeline for one endpoint: a tracer provider with its batch processor, a meter provider."""

    def __init__(self, endpoint: str | None, headers: dict[str, str], metrics: bool, counts,
                 timeout: float = TIMEOUT_S, instance: str = "", registry=None) -> None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Counted(SpanExporter):
            """The OTLP exporter, counting what it sent and what it failed to send."""

            def __init__(self, inner: SpanExporter) -> None:
                self.inner = inner

            def export(self, spans):
                try:
                    result = self.inner.export(spans)
                except Exception:  # noqa: BLE001  (counted and said once by ``counts``)
                    result = SpanExportResult.FAILURE
                counts("exported" if result == SpanExportResult.SUCCESS else "failed", len(spans))
                return result

            def shutdown(self):
                self.inner.shutdown()

            def force_flush(self, timeout_millis: int = 30_000) -> bool:
                return self.inner.force_flush(timeout_millis)

        base = endpoint.rstrip("/") if endpoint else None
        named = {"service.name": "kimi-proxy", "service.version": VERSION}
        if instance and "service.instance.id" not in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
            named["service.instance.id"] = instance  # instances exporting to one collector, told apart
        resource = Resource.create(named)
        traces = OTLPSpanExporter(endpoint=f"{base}/v1/traces" if base else None, headers=headers or None,
                                  timeout=timeout)
        self.processor = BatchSpanProcessor(Counted(traces), max_queue_size=QUEUE, max_export_batch_size=BATCH,
                                            schedule_delay_millis=DELAY_MS)
        self.tracers = TracerProvider(resource=resource)
        self.tracers.add_span_processor(self.processor)
        self.tracer = self.tracers.get_tracer("kimi-proxy", VERSION)
        self.meters = None
        if metrics:
            reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=f"{base}/v1/metrics" if base else None, headers=headers or None,
                                   timeout=timeout))  # every minute, or OTEL_METRIC_EXPORT_INTERVAL
            self.meters = MeterProvider(resource=resource, metric_readers=[reader])
            meter = self.meters.get_meter("kimi-proxy", VERSION)
            self.tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}",
                                                 description="Tokens per LLM call, by type (input, output).")
            self.duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s",
                                                   description="Duration of each LLM call.")
            self.cost = meter.create_counter("kimi.cost", unit="USD", description="What LLM calls cost.")
            if registry is not None:
                bridge(meter, registry)

    def close(self, seconds: float = 2.0) -> None:
        """Stop, sending what is queued for ``seconds`` at most: a dead collector never holds the exit."""
        def stop() -> None:
            self.tracers.shutdown()
            if self.meters is not None:
                self.meters.shutdown(timeout_millis=int(seconds * 1000))
        thread = threading.Thread(target=stop, name="kimi-otlp-stop", daemon=True)
        thread.start()
        thread.join(seconds)


def bridge(meter, registry) -> None:
    """Every metric Kimi serves to Prometheus, also over OTLP: read from the same registry at each export
    (counters as counters, gauges as gauges, a histogram as its count and sum), so the two never differ."""
    from opentelemetry.metrics import Observation

    snapshot: dict[str, Any] = {"at": -1.0, "samples": {}}

    def samples() -> dict[str, list]:
        """The registry read once per export, however many instruments ask."""
        now = time.monotonic()
        if now - snapshot["at"] > 1.0:
            found: dict[str, list] = {}
            for family in registry.collect():
                for sample in family.samples:
                    found.setdefault(sample.name, []).append(sample)
            snapshot["at"], snapshot["samples"] = now, found
        return snapshot["samples"]

    def reader(sample_name: str):
        def observe(_options):
            return [Observation(s.value, dict(s.labels)) for s in samples().get(sample_name, [])]
        return observe

    families = {f.name: (f.type, f.documentation) for f in registry.collect()}
    families |= {name: (kind, doc) for name, kind, doc in StoreCollector.FAMILIES}  # before the database opens
    for name, (kind, doc) in families.items():
        if kind == "counter":
            meter.create_observable_counter(name, callbacks=[reader(f"{name}_total")], description=doc)
        elif kind == "gauge":
            meter.create_observable_gauge(name, callbacks=[reader(name)], description=doc)
        elif kind == "histogram":
            meter.create_observable_counter(f"{name}_count", callbacks=[reader(f"{name}_count")], description=doc)
            meter.create_observable_counter(f"{name}_sum", callbacks=[reader(f"{name}_sum")], description=doc)


def instance_id(listen_port: int | None) -> str:
    """``host:port``, what tells one instance from another on one collector (``--listen-port 0``: the pid)."""
    port = 8080 if listen_port is None else listen_port  # mitmproxy's default
    return f"{socket.gethostname()}:{port or f'pid{os.getpid()}'}"


class KimiTelemetry:
    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi
        self.export: Export | None = None
        self._alerts: OrderedDict[str, list[AlertRecord]] = OrderedDict()
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._failing = False
        kimi.written.append(self._written)

    def load(self, loader) -> None:
        loader.add_option("kimi_otlp_endpoint", str, "",
                          "OTLP/HTTP endpoint to export LLM calls to (http://collector:4318); empty: "
                          "OTEL_EXPORTER_OTLP_ENDPOINT if set, else off.")
        loader.add_option("kimi_otlp_headers", str, "",
                          "Headers for the OTLP endpoint, k=v,k2=v2 (or OTEL_EXPORTER_OTLP_HEADERS).")
        loader.add_option("kimi_otlp_content", bool, False,
                          "Export prompts and completions too (gen_ai.input.messages / gen_ai.output.messages).")
        loader.add_option("kimi_otlp_metrics", bool, True, "Export metrics over OTLP too, with the spans.")
        loader.add_option("kimi_otlp_timeout", int, int(TIMEOUT_S), "Seconds an export may take before it fails.")

    def configure(self, updated: set[str]) -> None:
        if not OPTIONS & updated:
            return
        try:
            headers = parse_headers(ctx.options.kimi_otlp_headers)
        except ValueError as e:
            raise exceptions.OptionsError(f"kimi_otlp_headers: {e}") from e
        endpoint = ctx.options.kimi_otlp_endpoint.strip() or None
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise exceptions.OptionsError(f"kimi_otlp_endpoint: {endpoint!r} is not an http(s) URL")
        env = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        old, self.export = self.export, None
        if old is not None:
            old.close()
        if endpoint is None and not env:
            return
        # The SDK would log each failed batch and each dropped span: Kimi counts them and says it once.
        logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
        self.export = Export(endpoint, headers, ctx.options.kimi_otlp_metrics, self._count,
                             max(1, ctx.options.kimi_otlp_timeout),
                             instance_id(ctx.options.listen_port), self.kimi.metrics.registry)
        logger.info("kimi: exporting LLM calls over OTLP to %s", endpoint or env)

    def done(self) -> None:
        if self.export is not None:
            self.export.close()
            self.export = None

    def _count(self, outcome: str, n: int) -> None:
        with self._lock:
            self._counts[outcome] = self._counts.get(outcome, 0) + n
            failing, self._failing = self._failing, outcome == "failed" or (self._failing and outcome != "exported")
        self.kimi.metrics.otlp_spans.labels(outcome).inc(n)
        if outcome == "failed" and not failing:
            logger.warning("kimi: the OTLP collector does not take spans (%d lost so far); the traffic goes on",
                           self._counts["failed"])
        elif outcome == "exported" and failing:
            logger.warning("kimi: the OTLP collector takes spans again")

    def _room(self) -> bool:
        """Whether a span may join the queue: spans waiting are bounded here (the SDK would log each drop)."""
        with self._lock:
            c = self._counts
            waiting = c.get("created", 0) - c.get("exported", 0) - c.get("failed", 0)
        return waiting < QUEUE - BATCH

    def _written(self, records: list[Any]) -> None:
        """In the store's thread: each LLM call written becomes a span, its alerts its events."""
        export = self.export
        if export is None:
            return
        for r in records:
            if isinstance(r, AlertRecord) and r.request_id:
                with self._lock:
                    self._alerts.setdefault(r.request_id, []).append(r)
                    while len(self._alerts) > ALERTS_KEPT:
                        self._alerts.popitem(last=False)
        for r in records:
            if isinstance(r, RequestRecord) and r.row.get("dialect") is not None:
                with self._lock:
                    alerts = self._alerts.pop(r.row["id"], [])
                self._span(export, r, alerts)

    def _span(self, export: Export, record: RequestRecord, alerts: list[AlertRecord]) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        if not self._room():
            self._count("dropped", 1)
            return
        row = record.row
        start = telemetry.nanos(row.get("ts"))
        end = start + int((row.get("duration_ms") or 0) * 1e6) if start is not None else None
        attributes = telemetry.attributes(row)
        if ctx.options.kimi_otlp_content:
            attributes |= content(record)
        span = export.tracer.start_span(telemetry.span_name(row), kind=SpanKind.CLIENT, attributes=attributes,
                                        start_time=start)
        for alert in alerts:
            name, attrs, at = telemetry.event(alert)
            span.add_event(name, attrs, timestamp=at)
        if "error.type" in attributes:
            span.set_status(Status(StatusCode.ERROR, str(row.get("error") or row.get("status_code"))))
        span.end(end_time=end)
        self._count("created", 1)
        if export.meters is not None:
            base = {"gen_ai.operation.name": attributes["gen_ai.operation.name"],
                    "gen_ai.provider.name": attributes["gen_ai.provider.name"],
                    "gen_ai.request.model": row.get("model") or ""}
            if row.get("prompt_tokens") is not None:
                export.tokens.record(row["prompt_tokens"], base | {"gen_ai.token.type": "input"})
            if row.get("completion_tokens") is not None:
                export.tokens.record(row["completion_tokens"], base | {"gen_ai.token.type": "output"})
            if row.get("duration_ms") is not None:
                export.duration.record(row["duration_ms"] / 1000, base)
            if row.get("cost_usd"):
                export.cost.add(row["cost_usd"], base)


def content(record: RequestRecord) -> dict[str, str]:
    """The prompt and the completion, credentials removed, bounded (``kimi_otlp_content``)."""
    out = {}
    if record.request_body is not None:
        body = record.request_body if isinstance(record.request_body, (str, bytes)) else json.dumps(
            record.request_body, ensure_ascii=False)
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        out["gen_ai.input.messages"] = redact_text(text[:CONTENT_CHARS])
    response = record.response_body
    if isinstance(response, dict) and "text" in response:
        out["gen_ai.output.messages"] = redact_text(str(response.get("text") or "")[:CONTENT_CHARS])
    elif isinstance(response, (bytes, str)):
        text = response.decode("utf-8", "replace") if isinstance(response, bytes) else response
        out["gen_ai.output.messages"] = redact_text(text[:CONTENT_CHARS])
    return out
