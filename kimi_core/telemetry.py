"""What an LLM call looks like to OpenTelemetry: a span with the GenAI semantic conventions' attributes.

The conventions (``gen_ai.*``, still "Development" status upstream) are what
Grafana, Jaeger, Honeycomb, Datadog, Langfuse and Phoenix read; Kimi's own
figures go under ``kimi.*``. Built from a recorded row, after the fact: the
span's times are the call's, its attributes the row's, credentials never
(rows and messages are stored with them removed).
"""

from __future__ import annotations

import datetime
from typing import Any

from kimi_core.providers import ANTHROPIC, BEDROCK_CONVERSE, GEMINI, OPENAI_CHAT, OPENAI_RESPONSES

# Kimi's provider names as the conventions' ``gen_ai.provider.name`` well-known values; others as they are.
PROVIDERS = {
    "openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini", "vertex_ai": "gcp.vertex_ai",
    "vertex": "gcp.vertex_ai", "bedrock": "aws.bedrock", "azure": "azure.ai.openai", "mistral": "mistral_ai",
    "deepseek": "deepseek", "xai": "x_ai", "groq": "groq", "perplexity": "perplexity", "cohere": "cohere",
}
OPERATIONS = {OPENAI_CHAT: "chat", OPENAI_RESPONSES: "chat", ANTHROPIC: "chat", BEDROCK_CONVERSE: "chat",
              GEMINI: "generate_content"}
# Row column -> attribute, when the column has a value.
GEN_AI = {
    "model": "gen_ai.request.model",
    "prompt_tokens": "gen_ai.usage.input_tokens",
    "completion_tokens": "gen_ai.usage.output_tokens",
    "cached_tokens": "gen_ai.usage.cache_read.input_tokens",
    "cache_write_tokens": "gen_ai.usage.cache_creation.input_tokens",
    "reasoning_tokens": "gen_ai.usage.reasoning.output_tokens",
    "conversation_id": "gen_ai.conversation.id",
    "host": "server.address",
    "user": "user.name",  # who, on a shared proxy (proxyauth)
}
KIMI = {
    "id": "kimi.request.id", "session_id": "kimi.session.id", "agent": "kimi.agent", "agent_version": "kimi.agent.version",
    "dialect": "kimi.dialect", "transport": "kimi.transport", "action": "kimi.action", "context_window": "kimi.window",
    "window_share": "kimi.window.share", "prompt_tokens_est": "kimi.prompt.estimate",
    "prompt_tokens_cal": "kimi.prompt.calibrated", "calibration_factor": "kimi.calibration.factor",
    "tokens_before": "kimi.compaction.tokens_before", "tokens_after": "kimi.compaction.tokens_after",
    "compacted_results": "kimi.compaction.results", "cost_usd": "kimi.cost.usd", "saved_usd": "kimi.compaction.saved_usd",
    "cost_note": "kimi.cost.note", "ttfb_ms": "kimi.ttfb_ms", "project": "kimi.project", "streamed": "kimi.streamed",
    "status_code": "http.response.status_code", "path": "url.path",
}
EVENTS = {"rejected": "kimi.refusal", "over_budget": "kimi.refusal", "rescued": "kimi.rescue",
          "cache_break": "kimi.cache_break", "budget": "kimi.budget", "window_share": "kimi.window_share",
          "provider_overflow": "kimi.provider_overflow"}


def nanos(ts: str | None) -> int | None:
    if not ts:
        return None
    moment = datetime.datetime.fromisoformat(ts)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1e9)


def operation(row: dict[str, Any]) -> str:
    return OPERATIONS.get(row.get("dialect") or "", "chat")


def span_name(row: dict[str, Any]) -> str:
    return f"{operation(row)} {row.get('model') or ''}".strip()


def attributes(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "gen_ai.operation.name": operation(row),
        "gen_ai.provider.name": PROVIDERS.get(row.get("provider") or "", row.get("provider") or "unknown"),
    }
    for mapping in (GEN_AI, KIMI):
        for column, name in mapping.items():
            value = row.get(column)
            if value is not None and value != "":
                out[name] = value if isinstance(value, (str, bool, int, float)) else str(value)
    if row.get("error"):
        out["error.type"] = "kimi.error"
        out["kimi.error"] = row["error"]
    elif (row.get("status_code") or 0) >= 400:
        out["error.type"] = str(row["status_code"])
    return out


def event(alert: Any) -> tuple[str, dict[str, Any], int | None]:
    """An alert as a span event: its name, attributes and time."""
    return (EVENTS.get(alert.kind, f"kimi.{alert.kind}"),
            {"kimi.alert.kind": alert.kind, "kimi.alert.level": alert.level, "kimi.alert.message": alert.message},
            nanos(alert.ts))
