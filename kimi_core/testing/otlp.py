"""An OTLP/HTTP receiver on loopback for the tests: decodes what it is sent with opentelemetry-proto.

``with OTLPReceiver() as otlp: ... otlp.spans()`` gives every span received,
its attributes as a plain dict. ``delay`` makes it answer late (a slow
collector); a receiver never started is a collector that is down.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def attrs(kvs) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs}


class OTLPReceiver:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.requests += 1
                if receiver.delay:
                    time.sleep(receiver.delay)
                receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path == "/v1/traces":
                    message = ExportTraceServiceRequest()
                    message.ParseFromString(body)
                    receiver.traces.append(message)
                    reply = ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    message = ExportMetricsServiceRequest()
                    message.ParseFromString(body)
                    receiver.metrics.append(message)
                    reply = ExportMetricsServiceResponse().SerializeToString()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spans(self) -> list[dict[str, Any]]:
        """Every span received: name, kind, times, attributes, events, the resource's attributes."""
        out = []
        for request in list(self.traces):
            for resource_spans in request.resource_spans:
                resource = attrs(resource_spans.resource.attributes)
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        out.append({"name": span.name, "kind": span.kind, "start": span.start_time_unix_nano,
                                    "end": span.end_time_unix_nano, "attributes": attrs(span.attributes),
                                    "events": [(e.name, attrs(e.attributes)) for e in span.events],
                                    "status": span.status.code, "resource": resource})
        return out

    def points(self, name: str) -> list[dict[str, Any]]:
        """The latest export's data points of metric ``name`` (a sum or a gauge): value and attributes."""
        found: list[dict[str, Any]] = []
        for request in list(self.metrics):
            for rm in request.resource_metrics:
                for scope in rm.scope_metrics:
                    for m in scope.metrics:
                        if m.name == name:
                            data = m.sum if m.HasField("sum") else m.gauge
                            found = [{"value": p.as_double if p.HasField("as_double") else p.as_int,
                                      "attributes": attrs(p.attributes)} for p in data.data_points]
        return found

    def metric_names(self) -> set[str]:
        return {m.name for request in list(self.metrics) for rm in request.resource_metrics
                for scope in rm.scope_metrics for m in scope.metrics}

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever: forever if it never ran
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
