"""Serve Prometheus metrics (``kimi_metrics_port``), and count every finished LLM call in them.

The endpoint listens on 127.0.0.1 unless ``kimi_metrics_host`` says
otherwise: the metrics name models and sessions' activity, which is nobody
else's business. A port that cannot be bound stops mitmdump at start-up.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from mitmproxy import ctx, exceptions, http
from prometheus_client import start_http_server

from kimi_core.proxy.context import KimiContext, LLMCall
from kimi_core.proxy.recorder import request_row

logger = logging.getLogger(__name__)


class KimiMetrics:
    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi
        self._server: tuple[WSGIServer, threading.Thread] | None = None

    def load(self, loader) -> None:
        loader.add_option("kimi_metrics_port", int, 0, "Serve Prometheus metrics on this port (0: off).")
        loader.add_option("kimi_metrics_host", str, "127.0.0.1", "Address the metrics endpoint listens on.")

    def configure(self, updated: set[str]) -> None:
        if not {"kimi_metrics_port", "kimi_metrics_host"} & updated:
            return
        self._stop()
        port = ctx.options.kimi_metrics_port
        if port == 0:
            return
        if not 0 < port < 65536:
            raise exceptions.OptionsError(f"kimi_metrics_port: {port} is not a port")
        try:
            self._server = start_http_server(port, ctx.options.kimi_metrics_host, registry=self.kimi.metrics.registry)
        except OSError as e:
            raise exceptions.OptionsError(
                f"kimi_metrics_port: cannot listen on {ctx.options.kimi_metrics_host}:{port}: {e}") from e
        logger.info("kimi: metrics on http://%s:%d/metrics", ctx.options.kimi_metrics_host, port)

    def _stop(self) -> None:
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._server = None

    def done(self) -> None:
        self._stop()

    def response(self, flow: http.HTTPFlow) -> None:
        self.kimi.after_send(lambda: self._count(flow))

    def error(self, flow: http.HTTPFlow) -> None:
        self._count(flow)

    def _count(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None or call.metered or call.dialect is None:
            return
        call.metered = True
        call.when_analysed(lambda: self._observe(flow, call))

    def _observe(self, flow: http.HTTPFlow, call: LLMCall) -> None:
        self.kimi.metrics.observe(request_row(flow, call))
