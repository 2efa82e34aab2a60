"""Context windows: a built-in table, the user's overrides, and windows learned from errors.

Models are matched by the longest prefix in the table, so dated variants
(``gpt-4o-2024-08-06``) find their family (``gpt-4o``); a provider prefix
(``openai/gpt-4o`` at OpenRouter) is ignored. A model the table does not know
gets its provider's default. When a provider's error states the model's
maximum, that number wins from then on (``learn``).

Where a window is uncertain the table takes the larger value: a window set
too small makes the guard refuse requests the provider would have served,
one set too large only lets the provider's own error through, which Kimi then
learns from.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

# Total tokens (prompt + output); see REFERENCE.md of the team for sources.
BUILTIN_WINDOWS: dict[str, int] = {
    # OpenAI
    "gpt-3.5-turbo": 16_385,
    "gpt-4": 8_192,
    "gpt-4-turbo": 128_000,
    "gpt-4o": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.5": 128_000,
    "gpt-5": 400_000,
    "gpt-5.4": 1_050_000,
    "gpt-5.5": 1_050_000,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "gpt-oss": 131_072,
    # Anthropic
    "claude-3": 200_000,
    "claude-sonnet-4": 200_000,
    "claude-opus-4": 200_000,
    "claude-haiku-4": 200_000,
    "claude-sonnet-4-6": 1_000_000,
    "claude-opus-4-6": 1_000_000,
    "claude-opus-4-7": 1_000_000,
    "claude-opus-4-8": 1_000_000,
    # Moonshot / Kimi
    "moonshot-v1-8k": 8_192,
    "moonshot-v1-32k": 32_768,
    "moonshot-v1-128k": 128_000,
    "kimi-k2": 262_144,
    "kimi-k2-0711": 131_072,
    "kimi-latest": 131_072,
    # DeepSeek (deepseek-chat is V4 since April 2026)
    "deepseek-chat": 1_000_000,
    "deepseek-v4": 1_000_000,
    "deepseek-reasoner": 128_000,
    # Mistral
    "mistral-large": 262_144,
    "mistral-large-2411": 131_072,
    "mistral-medium": 262_144,
    "devstral": 262_144,
    "codestral": 256_000,
    # Google
    "gemini-2.5": 1_048_576,
    "gemini-3": 1_048_576,
    # Served by several hosts (Groq, Together, Fireworks, Cerebras, NVIDIA, OpenRouter,
    # Zhipu, DashScope, xAI); values rounded up where versions differ.
    "grok-3": 131_072,
    "grok-4": 256_000,
    "grok-code-fast": 256_000,
    "glm-4.5": 131_072,
    "glm-4.6": 200_000,
    "qwen-max": 131_072,
    "qwen-plus": 1_000_000,
    "qwen3-coder": 1_000_000,
    "qwen3": 262_144,
    "llama-3.1": 131_072,
    "llama-3.3": 131_072,
    "llama-4": 1_048_576,
    "deepseek-v3": 131_072,
}

PROVIDER_DEFAULTS: dict[str, int] = {
    "openai": 128_000,
    "azure-openai": 128_000,
    "anthropic": 200_000,
    "moonshot": 131_072,
    "mistral": 131_072,
    "deepseek": 128_000,
    "nvidia": 131_072,
    "openrouter": 131_072,
    "gemini": 1_048_576,
    "groq": 131_072,
    "together": 131_072,
    "xai": 256_000,
    "fireworks": 131_072,
    "cerebras": 131_072,
    "zhipu": 128_000,
    "dashscope": 131_072,
    "chatgpt": 400_000,
    "github-copilot": 128_000,
    "gemini-code-assist": 1_048_576,
    "vertex-ai": 1_048_576,
    "bedrock": 200_000,
}
FALLBACK_WINDOW = 128_000

# How providers state a model's maximum in their overflow errors.
_STATED_MAXIMUM = [
    re.compile(r"maximum context length is (\d+) tokens", re.IGNORECASE),  # OpenAI, DeepSeek, NVIDIA, OpenRouter
    re.compile(r"exceeded model token limit:\s*(\d+)", re.IGNORECASE),  # Moonshot
    re.compile(r"max(?:imum)? length:\s*(\d+)", re.IGNORECASE),  # Moonshot, older
    re.compile(r"maximum number of tokens allowed \((\d+)\)", re.IGNORECASE),  # Gemini
    re.compile(r"(\d+) maximum context length", re.IGNORECASE),  # Mistral
    re.compile(r">\s*(\d+)(?:\s+maximum)?\b", re.IGNORECASE),  # Anthropic "... > 200000 maximum", "... + 20000 > 204648"
]


_OVERFLOW = re.compile(
    r"context_length_exceeded|maximum context length|prompt is too long|exceed context limit"
    r"|exceeded model token limit|max length exceeded|too large for model"
    r"|exceeds the maximum number of tokens|exceeds the context window|context window exceeded"
    r"|input is too long for requested model",
    re.IGNORECASE,
)


def is_overflow(message: str) -> bool:
    """Whether a provider error (its message, or its whole body) says the prompt is too long."""
    return bool(_OVERFLOW.search(message))


def stated_maximum(message: str) -> int | None:
    """The model's window as an overflow error message states it, or None."""
    for pattern in _STATED_MAXIMUM:
        if m := pattern.search(message):
            value = int(m.group(1))
            if 1_000 <= value <= 100_000_000:
                return value
    return None


# Cloud names of a model: Bedrock's "us.anthropic.claude-sonnet-4-5-20250929-v1:0" (a region and a
# vendor before, a version after), Vertex AI's "claude-sonnet-4-5@20250929".
_CLOUD_PREFIX = re.compile(r"^(?:(?:us|eu|apac|au|ca|jp|global|us-gov)\.)?"
                           r"(?:anthropic|meta|mistral|amazon|cohere|ai21|deepseek|openai|qwen|writer)\.")
_CLOUD_SUFFIX = re.compile(r"(?:-v\d+(?::\d+)?|@[\w.-]+)$")


def _base(model: str) -> str:
    """The model's own name: no provider prefix (``openai/gpt-4o``), no cloud decorations."""
    name = model.rsplit("/", 1)[-1].lower()
    return _CLOUD_SUFFIX.sub("", _CLOUD_PREFIX.sub("", name))


def lookup(table: dict[str, int], model: str) -> int | None:
    """The value of the longest key of ``table`` that ``model`` starts with."""
    best = None
    for key, value in table.items():
        if model.startswith(key) and (best is None or len(key) > len(best[0])):
            best = (key, value)
    return best[1] if best else None


@dataclass(frozen=True, slots=True)
class Window:
    tokens: int
    source: str  # "learned", "config", "builtin", "provider default", "fallback"


class Windows:
    """Windows by model; ``learn`` is safe from any thread."""

    def __init__(self, config: dict[str, int] | None = None) -> None:
        self.config: dict[str, int] = {}
        self.learned: dict[str, int] = {}
        self._lock = threading.Lock()
        self._cache: dict[tuple[str | None, str | None], Window] = {}  # cleared on every change
        self.configure(config or {})

    def configure(self, config: dict[str, int]) -> None:
        """The user's windows, by model name or prefix."""
        self.config = {_base(k): v for k, v in config.items()}
        self._cache = {}

    def remember(self, model: str, tokens: int) -> None:
        """A window learned earlier (from the database)."""
        with self._lock:
            self.learned[_base(model)] = tokens
            self._cache = {}

    def window(self, model: str | None, provider: str | None) -> Window:
        key = (model, provider)
        found = self._cache.get(key)
        if found is None:
            found = self._resolve(model, provider)
            if len(self._cache) < 10_000:
                self._cache[key] = found
        return found

    def _resolve(self, model: str | None, provider: str | None) -> Window:
        if model:
            base = _base(model)
            if (n := self.learned.get(base)) is not None:
                return Window(n, "learned")
            if (n := lookup(self.config, base)) is not None:
                return Window(n, "config")
            if (n := lookup(BUILTIN_WINDOWS, base)) is not None:
                return Window(n, "builtin")
        if provider in PROVIDER_DEFAULTS:
            return Window(PROVIDER_DEFAULTS[provider], "provider default")
        return Window(FALLBACK_WINDOW, "fallback")

    def learn(self, model: str, message: str) -> int | None:
        """Record the window an overflow error states for ``model``; returns it if new."""
        stated = stated_maximum(message)
        if stated is None or not model:
            return None
        base = _base(model)
        with self._lock:
            if self.learned.get(base) == stated:
                return None
            self.learned[base] = stated
            self._cache = {}
        return stated
