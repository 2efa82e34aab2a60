"""The mitmproxy addons, one concern each, sharing one ``KimiContext``.

``addons/kimi.py`` builds them in this order, which is the order their hooks
run for each flow: recognise, tag the session, meter, find the agent and the
conversation, hold to the budgets, compact tool results,
guard the context window, read memories, count metrics, record. The
WebSocket addon runs the same chain for each call made on a socket.
"""

from kimi_core.proxy.budgets import KimiBudgets
from kimi_core.proxy.compactor import KimiCompactor
from kimi_core.proxy.context import KimiContext, LLMCall
from kimi_core.proxy.conversations import KimiConversations
from kimi_core.proxy.dashboard import KimiDashboard
from kimi_core.proxy.guard import KimiGuard
from kimi_core.proxy.hints import KimiHints
from kimi_core.proxy.memory import KimiMemory
from kimi_core.proxy.meter import KimiMeter
from kimi_core.proxy.metrics import KimiMetrics
from kimi_core.proxy.recorder import KimiRecorder
from kimi_core.proxy.sessions import KimiSessions
from kimi_core.proxy.telemetry import KimiTelemetry
from kimi_core.proxy.traffic import KimiTraffic
from kimi_core.proxy.view import KimiView
from kimi_core.proxy.websocket import KimiWebSocket

__all__ = ["KimiBudgets", "KimiCompactor", "KimiContext", "KimiConversations", "KimiDashboard", "KimiGuard", "KimiHints", "KimiMemory", "KimiMeter", "KimiMetrics", "KimiRecorder",
           "KimiSessions", "KimiTelemetry", "KimiTraffic", "KimiView", "KimiWebSocket", "LLMCall"]
