"""Which client sent a call, and the ids it carries: headers as the real agents send them."""

import json

import pytest

from kimi_core.agents import Client, identify, keys

CLAUDE_CODE = {  # claude-code 2.1.332, claude -p, API key
    "user-agent": "claude-cli/2.1.332 (external, sdk-cli)", "x-app": "cli",
    "x-claude-code-session-id": "516fcd55-2877-4568-a863-6b7e855b03e1", "x-stainless-lang": "js",
    "x-stainless-package-version": "0.128.0"}
CODEX = {  # codex 0.171.0, codex exec
    "user-agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64) xterm (codex_exec; 0.171.0)", "originator": "codex_exec",
    "session-id": "01a2343b-dbbf-7952", "thread-id": "01a2343b-dbbf-7952",
    "x-codex-turn-metadata": json.dumps({"session_id": "01a2343b-dbbf-7952", "thread_id": "01a2343b-dbbf-7952",
                                         "agent_name": "/root"})}
GEMINI_CLI = {  # gemini-cli 0.61.0, gemini -p, API key
    "user-agent": "GeminiCLI-tui/0.61.0/gemini-2.5-pro (linux; x64; terminal)",
    "x-goog-api-client": "google-genai-sdk/1.30.0 gl-node/v20.20.2"}


@pytest.mark.parametrize("headers,client", [
    (CLAUDE_CODE, Client("claude-code", "2.1.332")),
    (CODEX, Client("codex", "0.171.0")),
    (GEMINI_CLI, Client("gemini-cli", "0.61.0")),
    ({"user-agent": "GitHubCopilotChat/0.33.1", "copilot-integration-id": "vscode-chat"}, Client("copilot", "0.33.1")),
    ({"user-agent": "OpenAI/Python 1.109.1", "x-stainless-lang": "python"}, Client("openai-python", "1.109.1")),
    ({"user-agent": "Anthropic/Python 0.75.0"}, Client("anthropic-python", "0.75.0")),
    ({"user-agent": "OpenAI/JS 5.1.0"}, Client("openai-js", "5.1.0")),
    ({"x-goog-api-client": "google-genai-sdk/1.30.0 gl-python/3.13.0"}, Client("google-genai-python", "1.30.0")),
    ({"user-agent": "OpenAI/Python 1.2", "x-title": "Roo Code", "http-referer": "https://github.com/RooVetGit/Roo-Cline"},
     Client("roo-code")),
    ({"user-agent": "OpenAI/JS 4.0", "x-title": "Cline", "http-referer": "https://cline.bot"}, Client("cline")),
    ({"user-agent": "litellm/1.80.0", "http-referer": "https://aider.chat"}, Client("aider")),
    ({"user-agent": "litellm/1.80.0"}, Client("litellm", "1.80.0")),
    ({"user-agent": "opencode/0.15.2 ai-sdk/5"}, Client("opencode", "0.15.2")),
    ({"user-agent": "curl/8.5.0"}, Client("curl", "8.5.0")),
    ({}, Client("unknown")),
])
def test_the_client_is_named_from_its_headers(headers, client):
    assert identify(headers) == client


def test_names_a_client_chooses_are_bounded_and_printable():
    odd = identify({"x-title": "\x1b[31mEvil" + "x" * 500})
    assert "\x1b" not in odd.agent and len(odd.agent) <= 40
    assert len(identify({"user-agent": "A" * 300 + "/1"}).agent) <= 40


def test_the_ids_each_agent_sends():
    assert keys(CLAUDE_CODE, {}).session == "516fcd55-2877-4568-a863-6b7e855b03e1"
    user_id = json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": "73c4bc62"})
    assert keys({}, {"metadata": {"user_id": user_id}}).session == "73c4bc62"
    assert keys({}, {"metadata": {"user_id": "user_abc_account_x_session_9f1e"}}).session == "9f1e"
    codex = keys(CODEX, {"prompt_cache_key": "01a2343b-dbbf-7952"})
    assert (codex.session, codex.conversation) == ("01a2343b-dbbf-7952", "01a2343b-dbbf-7952")
    assert keys({}, {"prompt_cache_key": "thread-7"}).conversation == "thread-7"
    assert keys({}, {"previous_response_id": "resp_1"}).previous_response == "resp_1"
    assert keys({"vscode-sessionid": "v1"}, {}).session == "v1"
    assert keys(GEMINI_CLI, {"contents": [], "session_id": "g-7"}).session == "g-7"  # inside Code Assist's envelope
    assert keys(GEMINI_CLI, {"contents": []}) == keys({}, None)  # nothing to go by: the history decides
    assert keys({}, {"metadata": {"user_id": "{not json"}}).session is None
