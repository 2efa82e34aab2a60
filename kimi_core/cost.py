"""What a call cost, in US dollars, from the usage the provider reported.

Prices come from ``genai-prices`` (pydantic's price database, released
monthly: input, cache reads, cache writes and output per provider and model,
with prices that change by date and by prompt size), or from the user's
config (``[models."name"]`` with ``input_per_mtok`` and the like), which wins.
A call is priced at the provider that served it; a model that provider's
table lacks is looked up by name alone, and the note says so. Subscriptions
(ChatGPT, GitHub Copilot, Gemini Code Assist) are priced at the API's rates:
what the same tokens would cost with a key. Where no price is known the cost
is None and ``note`` says why: a figure that looks exact but is not would be
worse than none.
"""

from __future__ import annotations

import datetime
import logging
import re
import threading
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Kimi's provider -> genai-prices' provider id.
PROVIDERS = {
    "openai": "openai", "azure-openai": "azure", "anthropic": "anthropic", "moonshot": "moonshotai",
    "mistral": "mistral", "deepseek": "deepseek", "openrouter": "openrouter", "gemini": "google",
    "groq": "groq", "together": "together", "xai": "x-ai", "fireworks": "fireworks", "cerebras": "cerebras",
    "zhipu": "zhipuai", "chatgpt": "openai", "github-copilot": "github-copilot", "gemini-code-assist": "google",
    "vertex-ai": "google", "bedrock": "aws",
}
SUBSCRIPTIONS = frozenset({"chatgpt", "github-copilot", "gemini-code-assist"})
_VERSION_AT = re.compile(r"@(\d{8})$")  # Vertex AI: claude-sonnet-4-5@20250929


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens as reported: ``prompt`` includes the cached parts; ``output`` includes reasoning."""

    prompt: int
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


@dataclass(frozen=True, slots=True)
class Price:
    usd: float | None
    note: str | None = None  # why there is no figure, or how it was found
    input_usd_per_token: float | None = None  # the model's uncached input price (what compaction saves)


@dataclass(frozen=True, slots=True)
class OwnPrice:
    """A price from the config, in dollars per million tokens."""

    input: float
    output: float = 0.0
    cache_read: float | None = None  # default: the input price
    cache_write: float | None = None  # default: the input price

    def cost(self, usage: Usage) -> float:
        uncached = max(0, usage.prompt - usage.cache_read - usage.cache_write)
        read = self.input if self.cache_read is None else self.cache_read
        write = self.input if self.cache_write is None else self.cache_write
        return (uncached * self.input + usage.cache_read * read + usage.cache_write * write
                + usage.output * self.output) / 1e6


def usd(value: float | None) -> str:
    """Dollars as the tables show them: cents of cents below a dollar."""
    if value is None:
        return ""
    if value == 0:
        return "$0"
    return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"


class Prices:
    """Thread-safe; lookups are remembered by (provider, model)."""

    def __init__(self, own: dict[str, OwnPrice] | None = None) -> None:
        self.own = dict(own or {})
        self._lock = threading.Lock()
        # (provider, model) -> the genai-prices provider id that priced it (None: not in any table; ... for
        # "any provider"), so that each pair is looked up once.
        self._found: dict[tuple[str, str], object] = {}

    def warm_up(self) -> None:
        """Load the price table (about 20 ms), so the first call does not pay for it."""
        self.price("openai", "gpt-4.1", Usage(1))

    def price(self, provider: str, model: str | None, usage: Usage, when: datetime.datetime | None = None,
              rate: bool = True) -> Price:
        """What ``usage`` of ``model`` cost; with ``rate``, its uncached input price per token too."""
        if not model:
            return Price(None, "no model named")
        own = self.own.get(model)
        if own is not None:
            return Price(round(own.cost(usage), 8), "price from the config", own.input / 1e6)
        import genai_prices  # about 20 ms the first time; warm_up does it off the event loop

        ref = _VERSION_AT.sub(r"-\1", model)
        key = (provider, ref)
        with self._lock:
            known = self._found.get(key, ...)
        if known is None:
            return Price(None, _unknown(model, provider))
        tries = [known] if known is not ... else [PROVIDERS.get(provider), None]
        gp_usage = genai_prices.Usage(input_tokens=usage.prompt, output_tokens=usage.output,
                                      cache_read_tokens=usage.cache_read or None,
                                      cache_write_tokens=usage.cache_write or None)
        for provider_id in dict.fromkeys(tries):  # the provider's own table, then any
            try:
                calc = genai_prices.calc_price(gp_usage, ref, provider_id=provider_id, genai_request_timestamp=when)
                per_token = genai_prices.calc_price(
                    genai_prices.Usage(input_tokens=max(1, usage.prompt)), ref, provider_id=provider_id,
                    genai_request_timestamp=when) if rate else None
            except (LookupError, ValueError) as e:
                logger.debug("kimi: no price for %s at %s: %s", ref, provider_id, e)
                continue
            with self._lock:
                self._found[key] = provider_id
            note = None
            if provider in SUBSCRIPTIONS:
                note = f"{provider} is a subscription: priced at {calc.provider.id}'s API rates"
            elif provider_id != PROVIDERS.get(provider):
                note = f"priced as {calc.provider.id} {calc.model.id}"
            return Price(float(calc.total_price), note,
                         float(per_token.input_price) / max(1, usage.prompt) if per_token is not None else None)
        with self._lock:
            self._found[key] = None
        return Price(None, _unknown(model, provider))


def _unknown(model: str, provider: str) -> str:
    return f"no price known for {model} ({provider}); add one under [models.\"{model}\"] in the config"
