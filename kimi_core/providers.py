"""The providers Kimi recognises, how a host name maps to one, and how a path maps to an API.

A provider is a name, the hosts that serve it and the dialect its chat endpoint
speaks by default. Hosts are exact names or wildcards (``*`` stands for any
run of characters but ``:``: ``*.openai.azure.com``,
``bedrock-runtime.*.amazonaws.com``), optionally with ``:port`` (for a local
server in reverse mode). A provider may serve LLM calls under some paths
only (``chatgpt.com`` serves Codex under ``/backend-api/codex/`` and a web
app everywhere else): its other paths are not provider traffic at all.

The path of a request decides its ``Route``: which API it speaks (the
dialect, whose one parser reads it wherever it is served) and what is
around it: a model named by the path rather than the body (Gemini, Vertex AI,
Bedrock), an envelope (Gemini Code Assist puts the request under
``"request"`` and each answer under ``"response"``), an error format of the
host's own (Bedrock).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

OPENAI_CHAT = "openai-chat"
OPENAI_RESPONSES = "openai-responses"
ANTHROPIC = "anthropic"
GEMINI = "gemini"
BEDROCK_CONVERSE = "bedrock-converse"
DIALECTS = (OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC, GEMINI, BEDROCK_CONVERSE)
CODE_ASSIST = "code-assist"  # envelope: {"model", "project", "request": {...}} / {"response": {...}}
BEDROCK = "bedrock"  # error format: 400, x-amzn-ErrorType, {"message": "..."}


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    hosts: tuple[str, ...]
    dialect: str = OPENAI_CHAT
    paths: tuple[str, ...] = ()  # path prefixes of its LLM traffic; empty: every path

    def serves(self, path: str) -> bool:
        return not self.paths or path.startswith(self.paths)


@dataclass(frozen=True, slots=True)
class Route:
    """How one call speaks: its API and what wraps it."""

    dialect: str
    model: str | None = None  # named by the path, not the body
    envelope: str | None = None  # CODE_ASSIST
    errors: str | None = None  # BEDROCK; None: the dialect's own error format


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
    # Subscriptions, IDEs and company clouds.
    Provider("chatgpt", ("chatgpt.com",), OPENAI_RESPONSES, paths=("/backend-api/codex/",)),  # Codex, ChatGPT login
    Provider("github-copilot", ("api.githubcopilot.com", "api.individual.githubcopilot.com",
                                "api.business.githubcopilot.com", "api.enterprise.githubcopilot.com")),
    Provider("gemini-code-assist", ("cloudcode-pa.googleapis.com",), GEMINI),  # Gemini CLI, Google login
    Provider("vertex-ai", ("aiplatform.googleapis.com", "*-aiplatform.googleapis.com"), GEMINI),
    Provider("bedrock", ("bedrock-runtime.*.amazonaws.com", "bedrock-runtime-fips.*.amazonaws.com"), ANTHROPIC),
)


def _host_regex(host: str) -> str:
    """A regex for one host entry, matched against ``host:port`` strings."""
    name, _, port = host.lower().partition(":")
    name_re = "[^:]+".join(re.escape(part) for part in name.split("*"))
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


_BEDROCK = re.compile(r"/model/([^/]+)/(invoke|invoke-with-response-stream|converse|converse-stream)$")
_RAW_PREDICT = re.compile(r"/models/([^/:]+):(?:stream)?[rR]awPredict$")
_MODEL_IN_PATH = re.compile(r"/models/([^/:?]+):")


def route_for(path: str, method: str, provider: Provider) -> Route | None:
    """The API a request speaks, from its path; None when it is no generation call.

    Paths are matched on their end so that prefixes (``/openai/v1`` at Groq,
    ``/compatible-mode/v1`` at DashScope, ``/coding/v1`` at Kimi, Azure's
    deployments, Vertex AI's projects and locations) need no table.
    """
    if method != "POST":
        return None
    path = urllib.parse.unquote(path.split("?", 1)[0]).rstrip("/")
    if m := _BEDROCK.search(path):
        model, operation = m.groups()
        if operation.startswith("converse"):
            return Route(BEDROCK_CONVERSE, model, errors=BEDROCK)
        # invoke takes each model family's own body; Claude's is Anthropic's Messages API.
        return Route(ANTHROPIC, model, errors=BEDROCK) if "anthropic" in model or "claude" in model else None
    if m := _RAW_PREDICT.search(path):  # Anthropic on Vertex AI
        return Route(ANTHROPIC, m.group(1))
    if path.endswith("/chat/completions"):
        return Route(OPENAI_CHAT)
    if path.endswith("/responses"):
        return Route(OPENAI_RESPONSES)
    if path.endswith("/messages"):
        return Route(ANTHROPIC)
    if path.endswith((":generateContent", ":streamGenerateContent")):
        if path.endswith(("/v1internal:generateContent", "/v1internal:streamGenerateContent")):
            return Route(GEMINI, envelope=CODE_ASSIST)
        m = _MODEL_IN_PATH.search(path)
        return Route(GEMINI, m.group(1) if m else None)
    return None

