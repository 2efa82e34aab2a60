"""Kimi Proxy for mitmproxy: ``mitmdump -s addons/kimi.py``.

Recognises, measures and logs every call to an LLM provider; everything else
passes untouched. The addons live in ``kimi_core``; this script only puts
them together.
"""

import sys
from pathlib import Path

try:
    import kimi_core  # noqa: F401  (installed, e.g. by scripts/run)
except ImportError:  # loaded by path from a plain checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kimi_core.proxy import (
    KimiBudgets,
    KimiCompactor,
    KimiContext,
    KimiConversations,
    KimiDashboard,
    KimiGuard,
    KimiHints,
    KimiMemory,
    KimiMeter,
    KimiMetrics,
    KimiRecorder,
    KimiSessions,
    KimiTelemetry,
    KimiTraffic,
    KimiView,
    KimiWebSocket,
)

kimi = KimiContext()
recorder = KimiRecorder(kimi)
# What every LLM call goes through, in this order.
calls = [
    KimiTraffic(kimi),
    KimiSessions(kimi),
    KimiHints(kimi),  # before the meter: what is counted and sent has the hints
    KimiMeter(kimi),
    KimiConversations(kimi),
    KimiBudgets(kimi),
    KimiCompactor(kimi),
    KimiGuard(kimi),
    KimiMemory(kimi),
    KimiMetrics(kimi),
    recorder,
]

addons = [
    *calls[:-1],
    KimiWebSocket(kimi, calls),  # calls made on a WebSocket go through the same chain
    recorder,
    KimiView(kimi),
    KimiDashboard(kimi),  # the live dashboard (kimi_web_port)
    KimiTelemetry(kimi),  # OTLP export (kimi_otlp_endpoint)
]
