"""The context guard's decisions, as pure functions: calibrate, decide, answer.

- ``Calibration`` learns, per model, how the prompt tokens the provider
  reports relate to the local tiktoken estimate: a fixed overhead plus a
  factor, fitted robustly (``fit``), so one odd response does not swing it
  and small requests are not extrapolated onto large ones.
- ``decide`` refuses a request whose calibrated estimate reaches the reject
  threshold of the window, or whose estimate plus requested output exceeds
  the window where the provider refuses that; it also says which alert
  threshold the request reached.
- ``refusal`` builds the HTTP 400 body in the provider's own error format,
  worded as the provider words that case, so that the official SDKs raise
  their ``BadRequestError`` and every client's own recovery (compaction, a
  smaller ``max_tokens``, a fallback model) does what it does for the provider.
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass

from kimi_core.dialects.base import LLMRequest
from kimi_core.providers import ANTHROPIC, GEMINI, OPENAI_RESPONSES
from kimi_core.tokens import TokenCounter

SAMPLES = 25
FACTOR_BOUNDS = (0.5, 2.5)  # tokenizers differ by 5-45%; anything further out is not a tokenizer
# Two samples tell a slope only when their sizes differ enough: twice the size and this many tokens.
SLOPE_SPREAD = 200
LEGACY_SIZE = 10_000  # the prompt size assumed for a ratio stored before samples were kept


def parse_ratio(text: str) -> float:
    """``"0.95"``, ``"95%"`` or ``"95"`` as 0.95 (mitmproxy's ``--set`` has no float options)."""
    value = text.strip()
    percent = value.endswith("%")
    try:
        number = float(value.rstrip("%").strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a ratio (write 0.95 or 95%)") from None
    if percent or number > 1:
        number /= 100
    if not 0 < number <= 1:
        raise ValueError(f"{text!r} is not between 0 and 100%")
    return number


def parse_ratios(text: str) -> tuple[float, ...]:
    """``"0.75,0.85,95%"`` as (0.75, 0.85, 0.95); empty for ``""``."""
    return tuple(sorted(parse_ratio(part) for part in text.split(",") if part.strip()))


@dataclass(frozen=True, slots=True)
class Fit:
    """Provider-reported prompt tokens as ``overhead + factor x local estimate``.

    Providers add tokens of their own to every request (Anthropic's tool-use
    system prompt is about 350), and their tokenizer differs from tiktoken by a
    factor. A plain ratio learned from small requests would carry the overhead
    onto large ones: twenty requests of 10 local tokens billed 360 each would
    make a 6,000-token prompt look like 24,000.
    """

    factor: float = 1.0
    overhead: float = 0.0

    def apply(self, estimate: int) -> int:
        return max(0, round(self.overhead + self.factor * estimate))


def fit(samples: list[tuple[int, int]]) -> Fit:
    """The line through ``(estimate, reported)`` samples, robust to outliers (Theil-Sen).

    The factor is the median slope between samples of clearly different sizes;
    without such pairs, the samples say nothing about a slope: if they are
    small the factor stays 1 and the difference is overhead, if they are large
    (overhead negligible) the factor is their median ratio. The overhead is
    the median of what the factor leaves over.
    """
    samples = [(e, r) for e, r in samples if e > 0 and r > 0]
    if not samples:
        return Fit()
    low, high = FACTOR_BOUNDS
    slopes = [(r2 - r1) / (e2 - e1) for e1, r1 in samples for e2, r2 in samples
              if e2 >= 2 * e1 and e2 - e1 >= SLOPE_SPREAD]
    if slopes:
        factor = statistics.median(slopes)
    elif statistics.median(e for e, _ in samples) >= 5 * SLOPE_SPREAD:
        factor = statistics.median(r / e for e, r in samples)
    else:
        factor = 1.0
    factor = min(high, max(low, factor))
    overhead = statistics.median(r - factor * e for e, r in samples)
    return Fit(round(factor, 4), round(overhead, 1))


class Calibration:
    """Per model, how the provider's prompt count relates to the local estimate (see ``Fit``)."""

    def __init__(self, samples: int = SAMPLES) -> None:
        self._samples: dict[str, deque[tuple[int, int]]] = {}
        self._fits: dict[str, Fit] = {}
        self._size = samples
        self._lock = threading.Lock()

    def observe(self, model: str, estimate: int, reported: int) -> Fit:
        """Take one response's figures into account; returns the model's new fit."""
        if estimate <= 0 or reported <= 0:
            return self.fit(model)
        with self._lock:
            samples = self._samples.setdefault(model, deque(maxlen=self._size))
            samples.append((estimate, reported))
            found = self._fits[model] = fit(list(samples))
        return found

    def fit(self, model: str | None) -> Fit:
        return self._fits.get(model or "", Fit())

    def largest(self) -> Fit:
        """A bound on every model's fit: for requests whose model is not known yet."""
        fits = list(self._fits.values())
        return Fit(max((f.factor for f in fits), default=1.0), max((f.overhead for f in fits), default=0.0))

    def samples(self, model: str) -> list[tuple[int, int]]:
        with self._lock:
            return list(self._samples.get(model, ()))

    def load(self, model: str, samples: list[tuple[int, int]]) -> None:
        with self._lock:
            self._samples[model] = deque(samples[-self._size:], maxlen=self._size)
            if samples:
                self._fits[model] = fit(list(self._samples[model]))


def legacy_samples(ratios: list[float]) -> list[tuple[int, int]]:
    """Ratios stored before samples were: as samples of a size where overhead does not matter."""
    return [(LEGACY_SIZE, round(LEGACY_SIZE * r)) for r in ratios if r > 0]


@dataclass(frozen=True, slots=True)
class Decision:
    refuse: bool
    estimate: int  # calibrated prompt tokens
    window: int
    share: float  # estimate / window
    reason: str | None = None  # "threshold" or "output", when refused
    alert: float | None = None  # the highest alert threshold reached
    limit: int = 0  # the largest prompt the guard lets through: reject_at of the window


def limit_of(window: int, reject_at: float) -> int:
    """The largest calibrated prompt that is under ``reject_at`` of ``window``."""
    return max(0, math.ceil(reject_at * window) - 1)


def decide(estimate: int, calibration: Fit, window: int, max_output: int | None,
           reject_at: float, alert_at: tuple[float, ...] = (), output_counts: bool = True) -> Decision:
    """Whether a prompt of ``estimate`` local tokens may go to a model with ``window`` tokens.

    ``output_counts``: the provider refuses a prompt plus requested output
    over the window (OpenAI chat, Anthropic); Gemini and the Responses API
    cap the output instead, so there a large ``max_output`` is no reason.
    """
    calibrated = calibration.apply(estimate)
    share = calibrated / window if window > 0 else 0.0
    alert = max((a for a in alert_at if share >= a), default=None)
    limit = limit_of(window, reject_at)
    if window > 0 and calibrated > limit:
        return Decision(True, calibrated, window, share, "threshold", alert, limit)
    if window > 0 and output_counts and max_output and calibrated + max_output > window:
        return Decision(True, calibrated, window, share, "output", alert, limit)
    return Decision(False, calibrated, window, share, None, alert, limit)


_TEXT = {
    "en": {
        "threshold": "Kimi Proxy refused this request before it reached the provider: the prompt is about "
                     "{estimate} tokens, {share} of the {window}-token context window of {model} "
                     "(the limit is set at {reject}).",
        "output": "Kimi Proxy refused this request before it reached the provider: the prompt (about "
                  "{estimate} tokens) plus the requested output ({output} tokens) exceed the "
                  "{window}-token context window of {model}.",
        "largest": " Largest parts: {parts}.",
        "tools": " Compact or drop older tool results.",
        "less_output": " Ask for fewer output tokens, or compact the conversation.",
        "none": " Compact the conversation.",
    },
    "fr": {
        "threshold": "Kimi Proxy a refusé cette requête avant qu'elle n'atteigne le fournisseur : le prompt "
                     "fait environ {estimate} tokens, {share} de la fenêtre de contexte de {window} "
                     "tokens de {model} (la limite est fixée à {reject}).",
        "output": "Kimi Proxy a refusé cette requête avant qu'elle n'atteigne le fournisseur : le prompt "
                  "(environ {estimate} tokens) plus la sortie demandée ({output} tokens) dépassent la "
                  "fenêtre de contexte de {window} tokens de {model}.",
        "largest": " Plus gros éléments : {parts}.",
        "tools": " Compactez ou retirez les anciens résultats d'outils.",
        "less_output": " Demandez moins de tokens en sortie, ou compactez la conversation.",
        "none": " Compactez la conversation.",
    },
}
LANGUAGES = tuple(_TEXT)


DOMINANT = 0.10  # a part is worth naming in a refusal from this share of the prompt on


def largest_parts(request: LLMRequest, counter: TokenCounter, encoding: str, n: int = 3) -> list[tuple[str, int]]:
    """The ``n`` biggest things in a prompt, by tokens (tool results, messages, the system text),
    among those that weigh at least ``DOMINANT`` of it: a prompt of many small messages has none."""
    parts: list[tuple[str, int]] = []
    if request.system:
        parts.append(("the system prompt", counter.count_text(request.system, encoding)))
    for i, message in enumerate(request.messages):
        for result in message.tool_results:
            parts.append((f"tool result of {result.name or 'a tool'} (message {i + 1})",
                          counter.count_text(result.content, encoding)))
        if message.text:
            parts.append((f"message {i + 1} ({message.role})", counter.count_text(message.text, encoding)))
    total = sum(tokens for _, tokens in parts)
    return [p for p in sorted(parts, key=lambda p: -p[1])[:n] if p[1] >= DOMINANT * total]


def explain(decision: Decision, model: str, reject_at: float, max_output: int | None,
            largest: list[tuple[str, int]], lang: str = "en") -> str:
    """The human part of a refusal: the figures and what would help most."""
    text = _TEXT.get(lang, _TEXT["en"])

    def n(value: int) -> str:  # 262,144 in English, 262 144 in French
        return f"{value:,}".replace(",", "\u202f") if lang == "fr" else f"{value:,}"

    message = text[decision.reason or "threshold"].format(
        estimate=n(decision.estimate), share=f"{decision.share:.0%}", window=n(decision.window),
        model=model or "the model", reject=f"{reject_at:.0%}", output=n(max_output or 0))
    if largest:
        message += text["largest"].format(parts=", ".join(f"{label} ({n(tokens)} tokens)" for label, tokens in largest))
    # Advice that fits the request: tool results to compact only when it has some.
    if any(label.startswith("tool result") for label, _ in largest):
        return message + text["tools"]
    return message + text["less_output" if decision.reason == "output" else "none"]


def provider_wording(dialect: str | None, decision: Decision, max_output: int | None) -> str:
    """How the provider itself words this overflow, with figures that make it true.

    Clients act on these words: Claude Code compacts on "prompt is too long"
    and retries with a smaller ``max_tokens`` on "input length and
    `max_tokens` exceed context limit"; litellm raises its
    ``ContextWindowExceededError`` (and its fallbacks run) on OpenAI's
    "maximum context length is N tokens". A refusal at the threshold states
    the guard's limit as the maximum, since that is the maximum it applies.
    """
    estimate, limit, window, output = decision.estimate, decision.limit, decision.window, max_output or 0
    by_output = decision.reason == "output"
    if dialect == ANTHROPIC:
        if by_output:
            return (f"input length and `max_tokens` exceed context limit: {estimate} + {output} > {window}, "
                    f"decrease input length or `max_tokens` and try again")
        return f"prompt is too long: {estimate} tokens > {limit} maximum"
    if dialect == GEMINI:
        return f"The input token count ({estimate}) exceeds the maximum number of tokens allowed ({limit})."
    if dialect == OPENAI_RESPONSES:
        return "Your input exceeds the context window of this model. Please adjust your input and try again."
    if by_output:
        return (f"This model's maximum context length is {window} tokens. However, you requested "
                f"{estimate + output} tokens ({estimate} in the messages, {output} in the completion). "
                f"Please reduce the length of the messages or completion.")
    return (f"This model's maximum context length is {limit} tokens. However, your messages resulted in "
            f"{estimate} tokens. Please reduce the length of the messages.")


def bedrock_wording(dialect: str | None, decision: Decision, max_output: int | None, model: str | None) -> str:
    """Bedrock passes Claude's own words on (Converse after "The model returned the following errors:")."""
    claude = dialect == ANTHROPIC or "anthropic" in (model or "") or "claude" in (model or "")
    words = provider_wording(ANTHROPIC, decision, max_output) if claude else "Input is too long for requested model."
    return words if dialect == ANTHROPIC else f"The model returned the following errors: {words}"


def bedrock_refusal(dialect: str | None, decision: Decision, explanation: str, max_output: int | None,
                    model: str | None) -> tuple[bytes, dict[str, str]]:
    """A refusal as Bedrock sends a ValidationException: the body and its headers."""
    message = f"{bedrock_wording(dialect, decision, max_output, model)} {explanation}"
    return json.dumps({"message": message}, ensure_ascii=False).encode(), {
        "x-amzn-ErrorType": "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"}


def refusal_error(dialect: str | None, decision: Decision, explanation: str,
                  max_output: int | None = None) -> dict:
    """The error object of a refusal: the provider's wording first, Kimi's explanation after."""
    message = f"{provider_wording(dialect, decision, max_output)} {explanation}"
    if dialect == ANTHROPIC:
        return {"type": "invalid_request_error", "message": message}
    if dialect == GEMINI:
        return {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}
    return {"message": message, "type": "invalid_request_error",
            "param": "input" if dialect == OPENAI_RESPONSES else "messages", "code": "context_length_exceeded"}


def refusal(dialect: str | None, decision: Decision, explanation: str, max_output: int | None = None) -> bytes:
    """The HTTP 400 body in the provider's error format."""
    error = refusal_error(dialect, decision, explanation, max_output)
    body = {"type": "error", "error": error} if dialect == ANTHROPIC else {"error": error}
    return json.dumps(body, ensure_ascii=False).encode()


def failed_stream(decision: Decision, explanation: str, model: str | None, response_id: str) -> bytes:
    """A refusal as a streamed Responses API answer: ``response.created``, then ``response.failed``
    with ``context_length_exceeded``, as OpenAI ends a stream whose input does not fit. Codex reads
    it (over SSE or a WebSocket) as "ran out of room in the model's context window"."""
    error = refusal_error(OPENAI_RESPONSES, decision, explanation)
    return failed_events(error["code"], error["message"], model, response_id)


def failed_events(code: str, message: str, model: str | None, response_id: str) -> bytes:
    """``response.created`` then ``response.failed`` with this error: how a Responses stream ends in error."""
    response = {"id": response_id, "object": "response", "created_at": int(time.time()), "status": "in_progress",
                "model": model, "output": [], "error": None, "usage": None}
    events = [
        {"type": "response.created", "sequence_number": 0, "response": response},
        {"type": "response.failed", "sequence_number": 1, "response": {
            **response, "status": "failed", "error": {"code": code, "message": message}}},
    ]
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e, ensure_ascii=False)}\n\n".encode() for e in events)
