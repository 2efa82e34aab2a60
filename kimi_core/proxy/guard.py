"""The context guard: refuse what would overflow the model's window, before it leaves the machine.

A request is held for its token count only when it could matter. Tokens are
never more than the body's bytes (plus what the images it names cost), so a
body whose bytes stay under the lowest line of its model's window (calibrated
as the most generous calibration of any model would) goes on at once; a
bigger one goes on once a quick sampled estimate (``tokens.estimate``, 3 ms
for any size) is clearly under it. Either is judged when its exact count is
done, for alerts and the row. Only a request near a line waits for its
count. Which model: every ``"model": "..."`` in the body (at its ends, for
a body over 384 KB) is a candidate (a tool result may hold some too) and the
smallest window among them counts; a body that names none waits for its
parse to say.
A refused request gets a 400 in its provider's error format and never reaches
the provider. Responses teach the guard: reported usage calibrates the local
estimate per model, and an overflow error that states a window is learned.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Coroutine

from mitmproxy import ctx, exceptions, http

from kimi_core.forecast import RECENT, forecast
from kimi_core.guard import (
    LANGUAGES,
    bedrock_refusal,
    decide,
    explain,
    failed_stream,
    largest_parts,
    parse_ratio,
    parse_ratios,
    refusal,
)
from kimi_core.providers import ANTHROPIC, BEDROCK, OPENAI_CHAT, OPENAI_RESPONSES, Route
from kimi_core.proxy.compactor import apply, rewrite
from kimi_core.proxy.context import WEBSOCKET, KimiContext, LLMCall
from kimi_core.store import CalibrationRecord, WindowRecord
from kimi_core.tokens import ESTIMATE_MARGIN, media_allowance
from kimi_core.windows import is_overflow

logger = logging.getLogger(__name__)

REFUSED_HEADER = "X-Kimi-Proxy"
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')
MAX_CANDIDATES = 64
HEAD, TAIL = 128 * 1024, 256 * 1024  # the ends of a body searched for its top-level keys
_MAX_OUTPUT = re.compile(rb'"max_(?:tokens|completion_tokens|output_tokens)"\s*:\s*(\d{1,12})')
# The dialects whose providers refuse a prompt plus requested output over the window;
# Gemini and the Responses API cap the output instead.
OUTPUT_COUNTS = (OPENAI_CHAT, ANTHROPIC)


def _ends(raw: bytes) -> list[bytes]:
    """Where a big body's top-level keys are: before and after its history (``HEAD`` and ``TAIL`` bytes)."""
    if len(raw) <= HEAD + TAIL:
        return [raw]
    return [raw[:HEAD], raw[-TAIL:]]


def requested_output(raw: bytes) -> int:
    """The most output tokens the body asks for (``max_tokens`` and its kin), read cheaply; 0 if none."""
    most = 0
    for part in _ends(raw):
        at = part.find(b'"max_')
        while at >= 0:
            m = _MAX_OUTPUT.match(part, at)
            if m is not None:
                most = max(most, int(m.group(1)))
            at = part.find(b'"max_', at + 5)
    return most


def candidate_models(raw: bytes, route: Route | None) -> list[str]:
    """The models a request may name, read cheaply before the body is parsed.

    A model in the path (Gemini, Vertex AI, Bedrock) is the one. Otherwise
    SDKs write ``model`` before or after the history: a big body is searched
    at both ends first (every agent puts it there; the history in between is
    most of a long conversation's bytes), then, if need be, whole. The
    top-level key is among the matches unless it is written with escapes.
    Empty when the body names none (or too many to be cheap).
    """
    if route is not None and route.model:
        return [route.model]
    for parts in (_ends(raw), [raw]):
        found = []
        for part in parts:
            for m in _MODEL.finditer(part):
                found.append(m.group(1).decode("utf-8", "replace"))
                if len(found) > MAX_CANDIDATES:
                    return []
        if found or len(parts) == 1:
            return found
    return []


class KimiGuard:
    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi
        self.reject_at = 0.95
        self.alert_at: tuple[float, ...] = (0.75, 0.85, 0.95)
        self._prompts: OrderedDict[str, deque[int]] = OrderedDict()  # recent calibrated prompts, by session

    def load(self, loader) -> None:
        loader.add_option("kimi_guard", bool, True, "Refuse requests that would overflow the model's context window.")
        loader.add_option(
            "kimi_reject_at", str, "0.95",
            "Refuse a request whose calibrated prompt reaches this share of the window (0.95 or 95%).",
        )
        loader.add_option(
            "kimi_alert_at", str, "0.75,0.85,0.95",
            "Alert when a request's prompt reaches these shares of the window (comma-separated).",
        )
        loader.add_option("kimi_lang", str, "en", "Language of refusal messages.", choices=LANGUAGES)

    def configure(self, updated: set[str]) -> None:
        try:
            if "kimi_reject_at" in updated:
                self.reject_at = parse_ratio(ctx.options.kimi_reject_at)
            if "kimi_alert_at" in updated:
                self.alert_at = parse_ratios(ctx.options.kimi_alert_at)
        except ValueError as e:
            raise exceptions.OptionsError(f"kimi_reject_at / kimi_alert_at: {e}") from e
        if "kimi_config" in updated:
            self.kimi.windows.configure(
                {name: m.context_window for name, m in self.kimi.config.models.items() if m.context_window})

    def running(self) -> None:
        store = self.kimi.store
        if store is not None:
            for model, samples in store.calibration.items():
                self.kimi.calibration.load(model, samples)
            for model, tokens in store.learned_windows.items():
                self.kimi.windows.remember(model, tokens)

    # -- requests ---------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> Coroutine[None, None, None] | None:
        """Judge the request once counted; hold it for its count only if it could matter.

        mitmproxy awaits what a hook returns: the coroutine is made only for a
        request that must wait, so the rest pay nothing for it.
        """
        call = self.kimi.call(flow)
        if call is None or call.analysis is None or flow.response is not None:
            return None
        if not ctx.options.kimi_guard:
            call.when_analysed(lambda: self._judge(flow, call, sent=True))
            return None
        raw = flow.request.raw_content or b""
        models = candidate_models(raw, call.route)
        output = requested_output(raw) if call.dialect in OUTPUT_COUNTS else 0
        if models and not self._may_matter(len(raw), output, models, call.provider) \
                and not self._may_matter(len(raw) + media_allowance(raw), output, models, call.provider):
            call.when_analysed(lambda: self._judge(flow, call, sent=True))
            return None
        return self._hold(flow, call, models, output)

    async def _hold(self, flow: http.HTTPFlow, call: LLMCall, models: list[str | None], output: int) -> None:
        assert call.analysis is not None
        if not models and call.parsed is not None:
            # The body names no model we could read: its parse says which (quick).
            parsed = call.parsed.result() if await call.settled(call.parsed) else None
            models = [parsed.request.model if parsed is not None and parsed.request is not None else None]
        # Far under the lines by a bound known before the count: sent on now, judged once counted.
        if await self._far(flow, call, models, output):
            call.when_analysed(lambda: self._judge(flow, call, sent=True))
            return
        # Its failure is the meter's to report: then no judgement. Past the deadline the
        # request goes on unjudged; the figures come into its row when the count ends.
        if not await call.settled(call.analysis):
            call.when_analysed(lambda: self._judge(flow, call, sent=True))
            return
        self._judge(flow, call)
        decision = call.decision
        if decision is not None and decision.refuse and not await self._rescue(flow, call):
            result = call.result()
            assert result is not None and result.request is not None
            # What would help most: counted in the analysis thread (a 20 MB message took 1.5 s on the loop).
            largest = await asyncio.get_running_loop().run_in_executor(
                self.kimi.analyser, largest_parts, result.request, self.kimi.counter,
                result.count.encoding if result.count else "")
            self._refuse(flow, call, largest)

    async def _rescue(self, flow: http.HTTPFlow, call: LLMCall) -> bool:
        """Compact older tool results, oldest first, until the prompt is under the lowest
        alert threshold (or at least under the refusal); False if that is not enough."""
        result, decision, window = call.result(), call.decision, call.window
        if result is None or result.count is None or result.request is None or decision is None or window is None:
            return False
        max_output = result.request.max_output_tokens
        lowest = min((self.reject_at, *self.alert_at))
        allowed = lowest * window.tokens
        if call.dialect in OUTPUT_COUNTS:
            allowed = min(allowed, window.tokens - (max_output or 0))
        target = (allowed - call.fit.overhead) / call.fit.factor  # in local tokens
        done = await rewrite(self.kimi, flow, call, need=result.count.tokens - int(target))
        if done is None or done[0].count is None:
            return False
        new, rewritten = done
        rescued = decide(new.count.tokens, call.fit, window.tokens, max_output, self.reject_at, self.alert_at,
                         call.dialect in OUTPUT_COUNTS)
        if rescued.refuse:
            return False
        apply(self.kimi, flow, call, new, rewritten)
        call.decision = rescued
        message = (f"{call.provider} {result.request.model}: the prompt would have taken {decision.share:.0%} "
                   f"of the {window.tokens:,}-token window; compacting older tool results brought it to "
                   f"{rescued.share:.0%} ({decision.estimate:,} → {rescued.estimate:,} tokens)")
        self.kimi.alert(flow, call, rescued.alert or rescued.share, "rescued", message)
        return True

    async def _far(self, flow: http.HTTPFlow, call: LLMCall, models: list[str | None], output: int) -> bool:
        """Is the body far under every line? Whichever answers first: a quick estimate
        (``tokens.estimate``), or its parse, when it resumes a body already counted (then what it
        repeats is known, and the rest is bounded by its bytes)."""
        # Most likely the next turn of a conversation: its parse is quick and says, no estimate needed.
        if call.parsed is not None and self.kimi.recent.likely(flow.request.raw_content or b"") \
                and await call.settled(call.parsed):
            parsed = call.parsed.result()
            bound = parsed.resumed_bound() if parsed is not None else None
            if bound is not None:
                return not self._may_matter(bound, output, models, call.provider)
        estimate = asyncio.ensure_future(call.estimated(flow, enough=self._line(models, call.provider)))
        pending: set[asyncio.Future] = {estimate}
        if call.parsed is not None and not call.parsed.done():
            pending.add(call.parsed)
        while pending:
            left = None if call.deadline is None else max(0.0, call.deadline - time.monotonic())
            done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                break
            for future in done:
                if future.cancelled() or future.exception() is not None:
                    continue
                if future is estimate:
                    found = future.result()
                    bound = int(found * ESTIMATE_MARGIN) if found is not None else None
                else:
                    parsed = future.result()
                    bound = parsed.resumed_bound() if parsed is not None else None
                if bound is not None and not self._may_matter(bound, output, models, call.provider):
                    return True
        return False

    def _line(self, models: list[str | None], provider: str) -> int:
        """Local tokens past which a body matters for one of ``models`` whatever else it holds."""
        window = min(self.kimi.windows.window(model, provider).tokens for model in models)
        bound = self.kimi.calibration.largest()
        return int(min((self.reject_at, *self.alert_at)) * window / max(1.0, bound.factor) / ESTIMATE_MARGIN)

    def _may_matter(self, tokens: int, output: int, models: list[str | None], provider: str) -> bool:
        """Could a body of at most ``tokens`` local tokens, asking for ``output`` tokens (where the
        provider counts them in the window), reach a line for one of ``models``?"""
        window = min(self.kimi.windows.window(model, provider).tokens for model in models)
        lowest = min((self.reject_at, *self.alert_at))
        bound = self.kimi.calibration.largest()
        prompt = max(1.0, bound.factor) * tokens + max(0.0, bound.overhead)
        return prompt >= lowest * window or (output > 0 and prompt + output > window)

    def _judge(self, flow: http.HTTPFlow, call: LLMCall, sent: bool = False) -> None:
        """Decide once the request is counted: the row's figures and the alerts.

        ``sent``: the request went on before its count (far from the lines by its
        estimate, or past its analysis budget); a refusal is then only an alert.
        """
        result = call.result()
        if call.decision is not None or result is None or result.count is None or result.request is None:
            return
        model = result.request.model
        call.window = self.kimi.windows.window(model, call.provider)
        call.fit = self.kimi.calibration.fit(model)
        call.decision = decide(result.count.tokens, call.fit, call.window.tokens, result.request.max_output_tokens,
                               self.reject_at, self.alert_at, call.dialect in OUTPUT_COUNTS)
        if not call.decision.refuse or sent:
            self._forecast(call)
        level = call.decision.alert if not call.decision.refuse else call.decision.share if sent else None
        if level is not None:
            late = " (sent on before its count ended: not refused)" if call.decision.refuse else ""
            self.kimi.alert(flow, call, level, "window_share",
                            f"{call.provider} {model}: prompt at {call.decision.share:.0%} of the "
                            f"{call.window.tokens:,}-token window ({call.decision.estimate:,} tokens){late}")

    def _forecast(self, call: LLMCall) -> None:
        """The session's prompt growth per turn, and the turns left before a refusal."""
        if call.session is None or call.decision is None or call.window is None:
            return
        prompts = self._prompts.setdefault(call.session.id, deque(maxlen=RECENT + 1))
        self._prompts.move_to_end(call.session.id)
        if len(self._prompts) > 1000:
            self._prompts.popitem(last=False)
        prompts.append(call.decision.estimate)
        call.forecast = forecast(list(prompts), call.window.tokens, self.reject_at)
        if call.forecast is not None and call.forecast.turns_left is not None:
            self.kimi.metrics.session_turns(call.session.name, call.provider, call.forecast.turns_left)

    def _refuse(self, flow: http.HTTPFlow, call: LLMCall, largest: list[tuple[str, int]]) -> None:
        result = call.result()
        assert call.decision is not None and result is not None and result.request is not None
        text = explain(call.decision, result.request.model or "", self.reject_at,
                       result.request.max_output_tokens, largest, ctx.options.kimi_lang)
        headers = {REFUSED_HEADER: "refused: context window", "x-should-retry": "false"}
        if call.dialect == OPENAI_RESPONSES and (result.request.stream or call.transport == WEBSOCKET):
            # A streamed Responses call learns of an overflow from its stream (Codex reads nothing else).
            body = failed_stream(call.decision, text, result.request.model, f"resp_kimi_{flow.id}")
            flow.response = http.Response.make(200, body, {"content-type": "text/event-stream", **headers})
        elif call.route is not None and call.route.errors == BEDROCK:
            body, more = bedrock_refusal(call.dialect, call.decision, text, result.request.max_output_tokens,
                                         result.request.model)
            flow.response = http.Response.make(400, body, {"content-type": "application/json", **more, **headers})
        else:
            body = refusal(call.dialect, call.decision, text, result.request.max_output_tokens)
            flow.response = http.Response.make(400, body, {"content-type": "application/json", **headers})
        call.action = "rejected"
        self.kimi.alert(flow, call, call.decision.share, "rejected", text)

    # -- responses ----------------------------------------------------------------------

    def response(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None or call.refused or call.reply is None:
            return
        reply = call.reply
        if reply.error and is_overflow(reply.error):
            self._overflow(flow, call, reply.error)
        elif reply.usage.prompt_tokens:
            self.kimi.after_send(lambda: call.when_analysed(lambda: self._calibrate(call, reply.usage.prompt_tokens)))

    def _calibrate(self, call: LLMCall, reported: int) -> None:
        result = call.result()
        if result is None or result.count is None or result.request is None or not result.request.model \
                or result.request.warmup:  # what a warm-up reports says little about prompts
            return
        model = result.request.model
        found = self.kimi.calibration.observe(model, result.count.tokens, reported)
        if self.kimi.store is not None:
            self.kimi.store.submit(CalibrationRecord(model, self.kimi.calibration.samples(model), found))

    def _overflow(self, flow: http.HTTPFlow, call: LLMCall, message: str) -> None:
        result = call.result()
        model = (result.request.model if result and result.request else None) or (call.reply and call.reply.model)
        learned = self.kimi.windows.learn(model, message) if model else None
        if learned is not None and self.kimi.store is not None:
            self.kimi.store.submit(WindowRecord(model, learned, message[:500]))
        self.kimi.alert(flow, call, 1.0, "provider_overflow",
                    f"{call.provider} {model or ''}: the provider refused an overflowing prompt"
                    + (f"; window learned: {learned:,} tokens" if learned else "") + f" ({message[:200]})")


