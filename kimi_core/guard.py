"""The context guard's decisions, as pure functions: calibrate, decide, answer.

- ``Calibration`` learns, per model, how far the local tiktoken estimate is
  from the prompt tokens the provider reports (the median of recent ratios,
  so one odd response does not swing it).
- ``decide`` refuses a request whose calibrated estimate reaches the reject
  threshold of the window, or whose estimate plus requested output exceeds
  the window; it also says which alert threshold the request reached.
- ``refusal`` builds the HTTP 400 body in the provider's own error format, so
  that the official SDKs raise their ``BadRequestError`` and agents that
  compact on overflow ("prompt is too long", ``context_length_exceeded``) do.
"""

from __future__ import annotations

import json
import statistics
import threading
from collections import deque
from dataclasses import dataclass

from kimi_core.dialects.base import LLMRequest
from kimi_core.providers import ANTHROPIC, GEMINI, OPENAI_RESPONSES
from kimi_core.tokens import TokenCounter

RATIO_SAMPLES = 25
RATIO_BOUNDS = (0.25, 4.0)


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


class Calibration:
    """Per-model correction factor: provider-reported prompt tokens / local estimate."""

    def __init__(self, samples: int = RATIO_SAMPLES) -> None:
        self._ratios: dict[str, deque[float]] = {}
        self._factors: dict[str, float] = {}  # the median of each model's ratios
        self._samples = samples
        self._lock = threading.Lock()

    def observe(self, model: str, estimate: int, reported: int) -> float:
        """Take one response's figures into account; returns the model's new factor."""
        if estimate <= 0 or reported <= 0:
            return self.factor(model)
        low, high = RATIO_BOUNDS
        ratio = min(high, max(low, reported / estimate))
        with self._lock:
            ratios = self._ratios.setdefault(model, deque(maxlen=self._samples))
            ratios.append(ratio)
            factor = self._factors[model] = statistics.median(ratios)
        return factor

    def factor(self, model: str | None) -> float:
        return self._factors.get(model or "", 1.0)

    def largest(self) -> float:
        """The largest factor of any model: a bound for requests not yet parsed."""
        return max(self._factors.values(), default=1.0)

    def ratios(self, model: str) -> list[float]:
        with self._lock:
            return list(self._ratios.get(model, ()))

    def load(self, model: str, ratios: list[float]) -> None:
        with self._lock:
            self._ratios[model] = deque(ratios[-self._samples:], maxlen=self._samples)
            if ratios:
                self._factors[model] = statistics.median(self._ratios[model])


@dataclass(frozen=True, slots=True)
class Decision:
    refuse: bool
    estimate: int  # calibrated prompt tokens
    window: int
    share: float  # estimate / window
    reason: str | None = None  # "threshold" or "output", when refused
    alert: float | None = None  # the highest alert threshold reached


def decide(estimate: int, factor: float, window: int, max_output: int | None,
           reject_at: float, alert_at: tuple[float, ...] = ()) -> Decision:
    """Whether a prompt of ``estimate`` local tokens may go to a model with ``window`` tokens."""
    calibrated = round(estimate * factor)
    share = calibrated / window if window > 0 else 0.0
    alert = max((a for a in alert_at if share >= a), default=None)
    if window > 0 and share >= reject_at:
        return Decision(True, calibrated, window, share, "threshold", alert)
    if window > 0 and max_output and calibrated + max_output > window:
        return Decision(True, calibrated, window, share, "output", alert)
    return Decision(False, calibrated, window, share, None, alert)


_TEXT = {
    "en": {
        "threshold": "Kimi Proxy refused this request before it reached the provider: the prompt is about "
                     "{estimate} tokens, {share} of the {window}-token context window of {model} "
                     "(the limit is set at {reject}).",
        "output": "Kimi Proxy refused this request before it reached the provider: the prompt (about "
                  "{estimate} tokens) plus the requested output ({output} tokens) exceed the "
                  "{window}-token context window of {model}.",
        "largest": " Largest parts: {parts}. Compact or drop older tool results.",
        "none": " Compact the conversation.",
    },
    "fr": {
        "threshold": "Kimi Proxy a refusé cette requête avant qu'elle n'atteigne le fournisseur : le prompt "
                     "fait environ {estimate} tokens, {share} de la fenêtre de contexte de {window} "
                     "tokens de {model} (la limite est fixée à {reject}).",
        "output": "Kimi Proxy a refusé cette requête avant qu'elle n'atteigne le fournisseur : le prompt "
                  "(environ {estimate} tokens) plus la sortie demandée ({output} tokens) dépassent la "
                  "fenêtre de contexte de {window} tokens de {model}.",
        "largest": " Plus gros éléments : {parts}. Compactez ou retirez les anciens résultats d'outils.",
        "none": " Compactez la conversation.",
    },
}
LANGUAGES = tuple(_TEXT)


def largest_parts(request: LLMRequest, counter: TokenCounter, encoding: str, n: int = 3) -> list[tuple[str, int]]:
    """The ``n`` biggest things in a prompt, by tokens: tool results, messages, the system text."""
    parts: list[tuple[str, int]] = []
    if request.system:
        parts.append(("the system prompt", counter.count_text(request.system, encoding)))
    for i, message in enumerate(request.messages):
        for result in message.tool_results:
            parts.append((f"tool result of {result.name or 'a tool'} (message {i + 1})",
                          counter.count_text(result.content, encoding)))
        if message.text:
            parts.append((f"message {i + 1} ({message.role})", counter.count_text(message.text, encoding)))
    return sorted(parts, key=lambda p: -p[1])[:n]


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
    else:
        message += text["none"]
    return message


def refusal(dialect: str | None, decision: Decision, explanation: str) -> bytes:
    """The 400 body in the provider's error format.

    The machine-read parts stay as the agents expect them whatever the
    language: Anthropic's message starts with "prompt is too long: N tokens >
    M maximum" (Claude Code compacts on it), OpenAI's code is
    ``context_length_exceeded`` (Codex, Cline, Roo).
    """
    if dialect == ANTHROPIC:
        body: dict = {"type": "error", "error": {
            "type": "invalid_request_error",
            "message": f"prompt is too long: {decision.estimate} tokens > {decision.window} maximum. {explanation}",
        }}
    elif dialect == GEMINI:
        body = {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": explanation}}
    else:
        body = {"error": {
            "message": explanation,
            "type": "invalid_request_error",
            "param": "input" if dialect == OPENAI_RESPONSES else "messages",
            "code": "context_length_exceeded",
        }}
    return json.dumps(body, ensure_ascii=False).encode()
