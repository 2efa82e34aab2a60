"""The providers Kimi recognises, and how a host name maps to one.

A provider is a name, the hosts that serve it and the dialect its chat endpoint
speaks by default. The path of a request decides the dialect when it is
recognisable (``/v1/messages`` is Anthropic's wherever it is served); the
provider's dialect is the fallback. Hosts are exact names or ``*.suffix``
wildcards, optionally with ``:port`` (for a local server in reverse mode).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

OPENAI_CHAT = "openai-chat"
OPENAI_RESPONSES = "openai-responses"
ANTHROPIC = "anthropic"
GEMINI = "gemini"
DIALECTS = (OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC, GEMINI)


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    hosts: tuple[str, ...]
    dialect: str = OPENAI_CHAT


BUILTIN_PROVIDERS: tuple[Provider, ...] = (
    Provider("openai", ("api.openai.com",)),
    Provider("azure-openai", ("*.openai.azure.com", "*.cognitiveservices.azure.com")),
    Provider("anthropic", ("api.anthropic.com",), ANTHROPIC),
    # api.kimi.com serves Kimi For Coding (/coding/v1, OpenAI and Anthropic dialects).
    Provider("moonshot", ("api.moonshot.ai", "api.moonshot.cn", "api.kimi.com")),
    Provider("mistral", ("api.mistral.ai", "codestral.mistral.ai")),
    Provider("deepseek", ("api.deepseek.com",)),
    Provider("nvidia", ("integrate.api.nvidia.com", "ai.api.nvidia.com")),
    Provider("openrouter", ("openrouter.ai",)),
    Provider("gemini", ("generativelanguage.googleapis.com",), GEMINI),
    Provider("groq", ("api.groq.com",)),
    Provider("together", ("api.together.xyz", "api.together.ai")),
    Provider("xai", ("api.x.ai",)),
    Provider("fireworks", ("api.fireworks.ai",)),
    Provider("cerebras", ("api.cerebras.ai",)),
    Provider("zhipu", ("open.bigmodel.cn", "api.z.ai")),
    Provider("dashscope", ("dashscope.aliyuncs.com", "dashscope-intl.aliyuncs.com")),
)


def _host_regex(host: str) -> str:
    """A regex for one host entry, matched against ``host:port`` strings."""
    name, _, port = host.lower().partition(":")
    if name.startswith("*."):
        name_re = r"[^:]*\." + re.escape(name[2:])
    else:
        name_re = re.escape(name)
    return f"^{name_re}:{re.escape(port) if port else r'[0-9]+'}$"


class Registry:
    """Providers by host; the last provider that claims a host wins."""

    def __init__(self, providers: Iterable[Provider] = BUILTIN_PROVIDERS) -> None:
        self.providers: dict[str, Provider] = {}
        for p in providers:
            self.add(p)

    def add(self, provider: Provider) -> None:
        self.providers[provider.name] = provider
        self._patterns = [
            (re.compile(_host_regex(h)), p)
            for p in reversed(self.providers.values())
            for h in p.hosts
        ]

    def get(self, name: str) -> Provider | None:
        return self.providers.get(name)

    def match(self, host: str, port: int) -> Provider | None:
        """The provider serving ``host:port``, or None for everything else."""
        hostport = f"{host.lower()}:{port}"
        for rex, provider in self._patterns:
            if rex.match(hostport):
                return provider
        return None

    def allow_patterns(self) -> list[str]:
        """Patterns for mitmproxy's ``allow_hosts``: decrypt provider hosts only."""
        return sorted({_host_regex(h) for p in self.providers.values() for h in p.hosts})


def dialect_for(path: str, method: str, provider: Provider) -> str | None:
    """The API a request speaks, from its path; None when it is no generation call.

    Paths are matched on their end so that prefixes (``/openai/v1`` at Groq,
    ``/compatible-mode/v1`` at DashScope, ``/coding/v1`` at Kimi, Azure's
    deployments) need no table.
    """
    if method != "POST":
        return None
    path = path.split("?", 1)[0].rstrip("/")
    if path.endswith("/chat/completions"):
        return OPENAI_CHAT
    if path.endswith("/responses"):
        return OPENAI_RESPONSES
    if path.endswith("/messages"):
        return ANTHROPIC
    if path.endswith((":generateContent", ":streamGenerateContent")):
        return GEMINI
    return None
