"""A mitmweb content view that shows an LLM call as a person reads it.

For a request: the model, the token count against the window, then each
message with its role and tokens, tool calls with their arguments, tool
results shortened with their token counts. For a response: the text
(assembled from the events for a stream, which the meter keeps as the flow's
body since mitmproxy keeps none) and the usage. mitmweb's "auto" view picks it for
every flow Kimi recognised as an LLM call; other flows never see it.
"""

from __future__ import annotations

import json

from mitmproxy import contentviews, http
from mitmproxy.contentviews import Metadata

from kimi_core import dialects
from kimi_core.dialects.base import LLMRequest, Message
from kimi_core.proxy.context import KimiContext
from kimi_core.streams import StreamWatcher, is_event_stream
from kimi_core.tokens import message_text, wanted_encoding

SHOW_CHARS = 1200  # of each message or tool result
SHOW_LINES = 20


def shorten(text: str) -> str:
    lines = text.split("\n")
    shown = "\n".join(lines[:SHOW_LINES])[:SHOW_CHARS]
    rest = len(text) - len(shown)
    if rest <= 0:
        return shown
    more_lines = text[len(shown):].count("\n")
    return f"{shown}\n[… {rest:,} more characters, {more_lines:,} more lines]"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.split("\n"))


class LLMView:
    name = "LLM conversation"
    syntax_highlight = "none"

    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        flow = metadata.flow
        if isinstance(flow, http.HTTPFlow) and (flow.metadata.get("kimi") or {}).get("dialect"):
            return 2.0  # above the JSON view (1)
        return -1

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        flow = metadata.flow
        assert isinstance(flow, http.HTTPFlow)
        info = flow.metadata["kimi"]
        dialect = info["dialect"]
        if metadata.http_message is flow.request:
            request = dialects.parse_request(dialect, json.loads(data), flow.request.path)
            return self.request(request, info.get("provider"))
        return self.response(dialect, data, flow)

    def request(self, request: LLMRequest, provider: str | None) -> str:
        counter = self.kimi.counter
        encoding, _ = wanted_encoding(request.model)

        def tokens(m: Message) -> int:
            return counter.count_text(message_text(m), encoding)

        counts = [tokens(m) for m in request.messages]
        system = counter.count_text(request.system, encoding) if request.system else 0
        total = sum(counts) + system
        window = self.kimi.windows.window(request.model, provider).tokens
        fit = self.kimi.calibration.fit(request.model)
        calibrated = f", calibrated {fit.apply(total):,}: {fit.apply(total) / window:.0%}"
        head = [f"LLM request · {request.dialect} · {request.model or '?'}" + (" · streamed" if request.stream else ""),
                f"{total:,} tokens in the messages (local count)"
                + (calibrated if fit.apply(total) != total else f": {total / window:.0%}")
                + f" of the {window:,}-token window"]
        if request.max_output_tokens:
            head.append(f"output up to {request.max_output_tokens:,} tokens")
        if request.tools:
            head.append("tools: " + ", ".join(t.name for t in request.tools))
        out = ["\n".join(head)]
        if request.system:
            out.append(f"── system · {system:,} tok ──\n{_indent(shorten(request.system))}")
        for m, n in zip(request.messages, counts, strict=True):
            parts = []
            if m.text:
                parts.append(_indent(shorten(m.text)))
            for call in m.tool_calls:
                parts.append(_indent(f"→ {call.name}({shorten(call.arguments)})"))
            for result in m.tool_results:
                r_tokens = self.kimi.counter.count_text(result.content, encoding)
                parts.append(_indent(f"⇐ result of {result.name or 'a tool'} · {r_tokens:,} tok"
                                     + (" · error" if result.is_error else "") + "\n" + _indent(shorten(result.content))))
            if m.images:
                parts.append(_indent(f"[{m.images} image(s)]"))
            out.append(f"── {m.role} · {n:,} tok ──\n" + "\n".join(parts))
        return "\n\n".join(out) + "\n"

    def response(self, dialect: str, data: bytes, flow: http.HTTPFlow) -> str:
        response = flow.response
        assert response is not None
        sse = is_event_stream(response.headers.get("content-type", ""))
        if sse or data.lstrip().startswith(b"["):  # a stream, kept as it passed
            watcher = StreamWatcher(dialect, sse)
            watcher(data)
            watcher(b"")
            reply, kind = watcher.result(), "streamed"
        else:
            reply, kind = dialects.parse_response(dialect, json.loads(data)), "whole"
        usage = {"prompt": reply.usage.prompt_tokens, "completion": reply.usage.completion_tokens,
                 "cached": reply.usage.cached_tokens}
        head = f"LLM response · {reply.model or '?'} · {kind}"
        shown = " · ".join(f"{k} {v:,}" for k, v in usage.items() if v is not None)
        out = [head, f"usage: {shown}" if shown else "usage: not reported"]
        if reply.error:
            out.append(f"error: {reply.error}")
        out.append(f"── assistant ──\n{_indent(reply.text) if reply.text else '  (no text)'}")
        return "\n\n".join(out) + "\n"


class KimiView:
    """Registers the content view; its priority keeps it to Kimi's flows."""

    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi

    def load(self, loader) -> None:
        contentviews.add(LLMView(self.kimi))
