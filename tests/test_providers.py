import re

import pytest

from kimi_core.providers import (
    ANTHROPIC,
    BEDROCK,
    BEDROCK_CONVERSE,
    CODE_ASSIST,
    GEMINI,
    OPENAI_CHAT,
    OPENAI_RESPONSES,
    Provider,
    Registry,
    Route,
    route_for,
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
def test_the_path_decides_the_api(method, path, expected):
    route = route_for(path, method, Provider("p", ()))
    assert (route.dialect if route else None) == expected


@pytest.mark.parametrize("host,expected", [
    ("chatgpt.com", "chatgpt"),
    ("api.githubcopilot.com", "github-copilot"),
    ("api.enterprise.githubcopilot.com", "github-copilot"),
    ("cloudcode-pa.googleapis.com", "gemini-code-assist"),
    ("aiplatform.googleapis.com", "vertex-ai"),
    ("europe-west4-aiplatform.googleapis.com", "vertex-ai"),
    ("bedrock-runtime.us-east-1.amazonaws.com", "bedrock"),
    ("bedrock-runtime-fips.us-gov-west-1.amazonaws.com", "bedrock"),
    ("bedrock.us-east-1.amazonaws.com", None),  # the control plane: no LLM calls
    ("s3.amazonaws.com", None),
])
def test_subscription_ide_and_cloud_hosts(host, expected):
    provider = Registry().match(host, 443)
    assert (provider.name if provider else None) == expected


def test_a_provider_may_serve_llm_calls_under_some_paths_only():
    chatgpt = Registry().get("chatgpt")
    assert chatgpt.serves("/backend-api/codex/responses") and not chatgpt.serves("/backend-api/conversation")
    assert Registry().get("openai").serves("/anything")


@pytest.mark.parametrize("path,route", [
    ("/v1/chat/completions", Route(OPENAI_CHAT)),
    ("/chat/completions", Route(OPENAI_CHAT)),  # Copilot
    ("/backend-api/codex/responses", Route(OPENAI_RESPONSES)),
    ("/v1/messages?beta=true", Route(ANTHROPIC)),
    ("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", Route(GEMINI, "gemini-2.5-pro")),
    ("/v1internal:streamGenerateContent?alt=sse", Route(GEMINI, envelope=CODE_ASSIST)),
    ("/v1internal:countTokens", None),
    ("/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict",
     Route(ANTHROPIC, "claude-sonnet-4-5@20250929")),
    ("/v1/projects/p/locations/l/publishers/google/models/gemini-2.5-flash:generateContent",
     Route(GEMINI, "gemini-2.5-flash")),
    ("/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream",
     Route(ANTHROPIC, "us.anthropic.claude-sonnet-4-5-20250929-v1:0", errors=BEDROCK)),
    ("/model/amazon.nova-pro-v1:0/converse-stream", Route(BEDROCK_CONVERSE, "amazon.nova-pro-v1:0", errors=BEDROCK)),
    ("/model/meta.llama3-70b-instruct-v1:0/invoke", None),  # Llama's own body: not read
    ("/v1/messages/count_tokens", None),
])
def test_routes(path, route):
    assert route_for(path, "POST", Registry().get("openai")) == route
