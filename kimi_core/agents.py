"""Which client made a call: the agent (Claude Code, Codex, ...) or the SDK, with its version.

Read from the headers the clients send, most specific first: an agent's own
header or User-Agent, then the application name an OpenAI-compatible client
gives a router (``X-Title``, as Cline, Roo Code, aider and opencode do for
OpenRouter), then the official SDKs (their ``X-Stainless-*`` headers and
User-Agent), then the User-Agent's first product. Pure logic: headers in,
a ``Client`` out. Names are bounded and printable; they are labels and
columns, never anything a client could use to flood a terminal or a metric.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kimi_core.redact import printable

MAX_NAME = 40


@dataclass(frozen=True, slots=True)
class Client:
    agent: str  # "claude-code", "codex", "gemini-cli", ..., or an SDK ("openai-python"), or "unknown"
    version: str | None = None

    @property
    def label(self) -> str:
        return f"{self.agent} {self.version}" if self.version else self.agent


UNKNOWN = Client("unknown")

# (agent, header, pattern on its value; group 1 is the version when there is one), first match wins.
_RULES: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple((agent, header, re.compile(pattern, re.IGNORECASE)) for
                                                             agent, header, pattern in (
    ("claude-code", "user-agent", r"^claude-cli/([\w.+-]+)"),
    ("claude-code", "user-agent", r"^claude-code/([\w.+-]+)"),
    ("codex", "user-agent", r"^codex[_-](?:cli_rs|exec|tui|vscode|sdk)\w*/([\w.+-]+)"),
    ("codex", "originator", r"^codex"),
    ("gemini-cli", "user-agent", r"^GeminiCLI(?:-\w+)?/([\w.+-]+)"),  # GeminiCLI-tui/0.61.0/gemini-2.5-pro
    ("copilot", "user-agent", r"^GitHubCopilot\w*/([\w.+-]+)"),
    ("copilot", "copilot-integration-id", r"."),
    ("copilot", "editor-plugin-version", r"^copilot\w*/([\w.+-]+)"),
    ("cursor", "user-agent", r"\bCursor/([\w.+-]+)"),
    ("cursor", "x-cursor-client-version", r"^([\w.+-]+)"),
    ("opencode", "user-agent", r"^opencode/([\w.+-]+)"),
    ("aider", "user-agent", r"^aider/([\w.+-]+)"),
    ("continue", "user-agent", r"^Continue/([\w.+-]+)"),
    ("kilo-code", "user-agent", r"^Kilo-?Code/([\w.+-]+)"),
    ("roo-code", "user-agent", r"^Roo-?Code/([\w.+-]+)"),
    ("cline", "user-agent", r"^Cline/([\w.+-]+)"),
))

# The name an app gives OpenRouter (``X-Title``) or its site (``HTTP-Referer``), for the known agents.
_TITLES = {"cline": "cline", "roo code": "roo-code", "roo-code": "roo-code", "kilo code": "kilo-code",
           "aider": "aider", "opencode": "opencode", "continue": "continue", "zed": "zed", "goose": "goose"}
_REFERERS = (("cline.bot", "cline"), ("roo-cline", "roo-code"), ("roocode.com", "roo-code"), ("kilocode", "kilo-code"),
             ("aider.chat", "aider"), ("opencode.ai", "opencode"), ("continue.dev", "continue"))

# The SDKs: User-Agent product -> name; X-Stainless-Lang completes the OpenAI and Anthropic ones.
_SDKS = (
    (re.compile(r"^OpenAI/(Python|JS)\s+([\w.+-]+)", re.IGNORECASE), "openai"),
    (re.compile(r"^Anthropic/(Python|JS)\s+([\w.+-]+)", re.IGNORECASE), "anthropic"),
    (re.compile(r"^AsyncOpenAI/(Python)\s+([\w.+-]+)", re.IGNORECASE), "openai"),
    (re.compile(r"^AsyncAnthropic/(Python)\s+([\w.+-]+)", re.IGNORECASE), "anthropic"),
)
_GOOGLE = re.compile(r"\bgoogle-genai-sdk/([\w.+-]+)(?:.*?\bgl-(python|node))?", re.IGNORECASE)
_LITELLM = re.compile(r"\blitellm/([\w.+-]+)", re.IGNORECASE)
_PRODUCT = re.compile(r"^([A-Za-z][\w.-]{0,39})(?:/([\w.+-]{1,40}))?")


def _name(value: str) -> str:
    return printable(value.strip().lower().replace(" ", "-"), newlines=False)[:MAX_NAME] or "unknown"


def _version(value: str | None) -> str | None:
    return printable(value, newlines=False)[:MAX_NAME] if value else None


def identify(headers: Mapping[str, str]) -> Client:
    """The client that sent a request with these headers (lower-case names or a case-insensitive mapping)."""
    values = []
    for name in _HEADERS:
        value = headers.get(name)
        values.append(value if isinstance(value, str) else "")
    return _identify(tuple(values))


@functools.lru_cache(maxsize=1024)  # an agent sends the same headers on every call
def _identify(values: tuple[str, ...]) -> Client:
    headers = dict(zip(_HEADERS, values, strict=True))

    def get(name: str) -> str:
        return headers[name]

    for agent, header, pattern in _RULES:
        value = get(header)
        if value and (m := pattern.search(value)):
            return Client(agent, _version(m.group(1)) if m.groups() else None)
    title = get("x-title").strip().lower()
    if title:
        return Client(_TITLES.get(title, _name(title)))
    referer = get("http-referer").lower() or get("referer").lower()
    for part, agent in _REFERERS:
        if part in referer:
            return Client(agent)
    agent_header = get("user-agent")
    for pattern, vendor in _SDKS:
        if m := pattern.search(agent_header):
            return Client(f"{vendor}-{m.group(1).lower()}", _version(m.group(2)))
    goog = get("x-goog-api-client") + " " + agent_header
    if m := _GOOGLE.search(goog):
        return Client(f"google-genai-{(m.group(2) or 'sdk').lower()}", _version(m.group(1)))
    if m := _LITELLM.search(agent_header):
        return Client("litellm", _version(m.group(1)))
    lang, package = get("x-stainless-lang"), get("x-stainless-package-version")
    if lang and package:  # an SDK from Stainless whose User-Agent was replaced
        return Client(f"sdk-{_name(lang)}", _version(package))
    if m := _PRODUCT.match(agent_header.strip()):
        return Client(_name(m.group(1)), _version(m.group(2)))
    return UNKNOWN


# Every header ``identify`` reads.
_HEADERS = tuple(dict.fromkeys([header for _, header, _ in _RULES] + [
    "x-title", "http-referer", "referer", "user-agent", "x-goog-api-client", "x-stainless-lang",
    "x-stainless-package-version"]))


@dataclass(frozen=True, slots=True)
class Keys:
    """The ids a call carries: its agent session (several conversations) and its conversation."""

    session: str | None = None
    conversation: str | None = None
    previous_response: str | None = None


MAX_KEY = 200


def _key(value: Any) -> str | None:
    return value[:MAX_KEY] if isinstance(value, str) and value.strip() else None


def keys(headers: Mapping[str, str], body: Any) -> Keys:
    """What the agents send, as seen in their traffic.

    Claude Code: ``X-Claude-Code-Session-Id`` (also in ``metadata.user_id``, a JSON string with
    ``session_id``); its subagents share it. Codex: ``thread-id`` / ``session-id`` headers and
    ``prompt_cache_key`` (the thread: one conversation), ``x-codex-turn-metadata`` naming the
    session. Gemini CLI on Code Assist: ``session_id`` in the request it wraps. GitHub Copilot:
    ``vscode-sessionid``. The Responses API: ``previous_response_id``.
    """
    body = body if isinstance(body, dict) else {}
    session = _key(headers.get("x-claude-code-session-id")) or _key(headers.get("vscode-sessionid"))
    if session is None:
        metadata = body.get("metadata")
        user = metadata.get("user_id") if isinstance(metadata, dict) else None
        if isinstance(user, str) and user.startswith("{") and len(user) < 4096:
            try:
                session = _key(json.loads(user).get("session_id"))
            except (ValueError, AttributeError):
                session = None
        elif isinstance(user, str) and "_session_" in user:  # user_<hash>_account_<uuid>_session_<uuid>
            session = _key(user.rsplit("_session_", 1)[1])
    conversation = _key(headers.get("thread-id")) or _key(body.get("prompt_cache_key"))
    turn = headers.get("x-codex-turn-metadata")
    if isinstance(turn, str) and turn.startswith("{") and len(turn) < 16384:
        try:
            meta = json.loads(turn)
        except ValueError:
            meta = None
        if isinstance(meta, dict):
            session = session or _key(meta.get("session_id"))
            conversation = conversation or _key(meta.get("thread_id"))
    # Gemini CLI with a Google login: the request inside Code Assist's envelope names its session.
    session = session or _key(headers.get("session-id")) or _key(body.get("session_id"))
    return Keys(session, conversation, _key(body.get("previous_response_id")))
