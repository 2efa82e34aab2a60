import re

import pytest

from kimi_core.providers import (
    ANTHROPIC,
    GEMINI,
    OPENAI_CHAT,
    OPENAI_RESPONSES,
    Provider,
    Registry,
    dialect_for,
)


@pytest.mark.parametrize("host,port,expected", [
    ("api.openai.com", 443, "openai"),
    ("API.OpenAI.com", 443, "openai"),
    ("myres.openai.azure.com", 443, "azure-openai"),
    ("openai.azure.com", 443, None),  # the wildcard needs a subdomain
    ("api.anthropic.com", 443, "anthropic"),
    ("api.moonshot.ai", 443, "moonshot"),
    ("api.moonshot.cn", 443, "moonshot"),
    ("api.kimi.com", 443, "moonshot"),
    ("api.mistral.ai", 443, "mistral"),
    ("api.deepseek.com", 443, "deepseek"),
    ("integrate.api.nvidia.com", 443, "nvidia"),
    ("openrouter.ai", 443, "openrouter"),
    ("generativelanguage.googleapis.com", 443, "gemini"),
    ("api.groq.com", 443, "groq"),
    ("api.together.xyz", 443, "together"),
    ("api.x.ai", 443, "xai"),
    ("api.fireworks.ai", 443, "fireworks"),
    ("api.cerebras.ai", 443, "cerebras"),
    ("open.bigmodel.cn", 443, "zhipu"),
    ("api.z.ai", 443, "zhipu"),
    ("dashscope-intl.aliyuncs.com", 443, "dashscope"),
    ("example.com", 443, None),
    ("api.openai.com.evil.example", 443, None),
    ("evilapi.openai.com", 443, None),
])
def test_match(host, port, expected):
    provider = Registry().match(host, port)
    assert (provider.name if provider else None) == expected


def test_host_with_port_matches_only_that_port():
    registry = Registry([Provider("local", ("127.0.0.1:8080",))])
    assert registry.match("127.0.0.1", 8080).name == "local"
    assert registry.match("127.0.0.1", 8081) is None


def test_later_provider_wins_a_shared_host():
    registry = Registry()
    registry.add(Provider("mine", ("api.openai.com",), ANTHROPIC))
    assert registry.match("api.openai.com", 443).name == "mine"


def test_allow_patterns_select_provider_hosts_with_port():
    patterns = Registry().allow_patterns()
    def allowed(hostport):
        return any(re.search(p, hostport, re.IGNORECASE) for p in patterns)
    assert allowed("api.openai.com:443")
    assert allowed("westeurope.openai.azure.com:443")
    assert not allowed("github.com:443")
    assert not allowed("api.openai.com.example.org:443")


@pytest.mark.parametrize("method,path,expected", [
    ("POST", "/v1/chat/completions", OPENAI_CHAT),
    ("POST", "/openai/v1/chat/completions", OPENAI_CHAT),  # Groq
    ("POST", "/compatible-mode/v1/chat/completions", OPENAI_CHAT),  # DashScope
    ("POST", "/openai/deployments/gpt4/chat/completions?api-version=2024-10-21", OPENAI_CHAT),
    ("POST", "/v1/responses", OPENAI_RESPONSES),
    ("POST", "/v1/messages", ANTHROPIC),
    ("POST", "/coding/v1/messages", ANTHROPIC),
    ("POST", "/anthropic/v1/messages", ANTHROPIC),
    ("POST", "/v1beta/models/gemini-2.5-pro:generateContent", GEMINI),
    ("POST", "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", GEMINI),
    ("POST", "/v1/messages/count_tokens", None),
    ("POST", "/v1/embeddings", None),
    ("GET", "/v1/models", None),
    ("GET", "/v1/chat/completions", None),
])
def test_dialect_for(method, path, expected):
    assert dialect_for(path, method, Provider("p", ())) == expected
