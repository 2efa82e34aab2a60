import pytest

from kimi_core.windows import Windows, is_overflow, stated_maximum


@pytest.mark.parametrize("model,provider,tokens,source", [
    ("gpt-4o-2024-08-06", "openai", 128_000, "builtin"),
    ("gpt-4o-mini", "openai", 128_000, "builtin"),
    ("gpt-4.1-mini", "openai", 1_047_576, "builtin"),
    ("gpt-4", "openai", 8_192, "builtin"),
    ("gpt-4-turbo-2024-04-09", "openai", 128_000, "builtin"),
    ("gpt-5.1-codex", "openai", 400_000, "builtin"),
    ("gpt-5.5", "openai", 1_050_000, "builtin"),
    ("openai/gpt-4o", "openrouter", 128_000, "builtin"),
    ("claude-sonnet-4-5-20250929", "anthropic", 200_000, "builtin"),
    ("claude-sonnet-4-6", "anthropic", 1_000_000, "builtin"),
    ("claude-opus-4-8", "anthropic", 1_000_000, "builtin"),
    ("kimi-k2-0711-preview", "moonshot", 131_072, "builtin"),
    ("kimi-k2-0905-preview", "moonshot", 262_144, "builtin"),
    ("kimi-k2-thinking", "moonshot", 262_144, "builtin"),
    ("moonshot-v1-8k", "moonshot", 8_192, "builtin"),
    ("deepseek-reasoner", "deepseek", 128_000, "builtin"),
    ("mistral-large-2411", "mistral", 131_072, "builtin"),
    ("mistral-large-2512", "mistral", 262_144, "builtin"),
    ("gemini-2.5-pro", "gemini", 1_048_576, "builtin"),
    ("some-new-model", "anthropic", 200_000, "provider default"),
    ("some-new-model", "elsewhere", 128_000, "fallback"),
    (None, "gemini", 1_048_576, "provider default"),
])
def test_builtin_windows(model, provider, tokens, source):
    window = Windows().window(model, provider)
    assert (window.tokens, window.source) == (tokens, source)


def test_config_overrides_builtin_and_learned_overrides_both():
    windows = Windows({"gpt-4o": 64_000})
    assert windows.window("gpt-4o-2024-08-06", "openai").tokens == 64_000
    assert windows.learn("gpt-4o-2024-08-06", "This model's maximum context length is 8192 tokens.") == 8192
    assert windows.window("gpt-4o-2024-08-06", "openai") .source == "learned"
    assert windows.learn("gpt-4o-2024-08-06", "maximum context length is 8192 tokens") is None  # known
    assert windows.window("gpt-4o", "openai").tokens == 64_000  # learned for that exact model only


@pytest.mark.parametrize("message,tokens", [
    ("This model's maximum context length is 8192 tokens. However, your messages resulted in 8227 tokens.", 8192),
    (("This model's maximum context length is 131072 tokens. However, you requested 131134 tokens "
     "(122942 in the messages, 8192 in the completion)."), 131072),
    ("prompt is too long: 200251 tokens > 200000 maximum", 200000),
    ("input length and `max_tokens` exceed context limit: 189136 + 20000 > 204648", 204648),
    ("Invalid request: Your request exceeded model token limit: 262144 (requested: 269030)", 262144),
    ("model max length exceeded, max length:8192", 8192),
    ("Prompt contains 66385 tokens, too large for model with 32768 maximum context length", 32768),
    ("The input token count (3475108) exceeds the maximum number of tokens allowed (1048576).", 1048576),
    ("This endpoint's maximum context length is 32768 tokens. However, you requested about 42832 tokens", 32768),
    ("Your input exceeds the context window of this model.", None),
    ("Rate limit reached: 10 > 5 requests", None),
])
def test_stated_maximum(message, tokens):
    assert stated_maximum(message) == tokens


@pytest.mark.parametrize("message,overflow", [
    ("This model's maximum context length is 8192 tokens. However, your messages resulted in 8227 tokens.", True),
    ("Your input exceeds the context window of this model. Please adjust your input and try again.", True),
    ("prompt is too long: 200251 tokens > 200000 maximum", True),
    ("input length and `max_tokens` exceed context limit: 189136 + 20000 > 204648", True),
    ("Invalid request: Your request exceeded model token limit: 262144 (requested: 269030)", True),
    ("Prompt contains 66385 tokens, too large for model with 32768 maximum context length", True),
    ("The input token count (3475108) exceeds the maximum number of tokens allowed (1048576).", True),
    ('{"error": {"code": "context_length_exceeded"}}', True),
    ("Rate limit reached for requests", False),
    ("Overloaded", False),
])
def test_is_overflow(message, overflow):
    assert is_overflow(message) is overflow


@pytest.mark.parametrize("model,provider,tokens", [
    ("llama-3.3-70b-versatile", "groq", 131_072),
    ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "together", 131_072),
    ("glm-4.6", "zhipu", 200_000),
    ("qwen3-coder-plus", "dashscope", 1_000_000),
    ("grok-4-0709", "xai", 256_000),
])
def test_models_of_the_other_hosts(model, provider, tokens):
    assert Windows().window(model, provider).tokens == tokens
