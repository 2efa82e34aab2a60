"""The agents our users run, from the npm registry, through a real mitmdump with Kimi to the fake provider.

Claude Code (``claude -p``), Codex (``codex exec``, over its default WebSocket
and over HTTP) and Gemini CLI (``gemini -p``), each in a home of its own,
configured as a user would (proxy and CA variables, an API key). Each test
checks that the answer reaches the user, that the row says what happened,
and that a window too small for the request makes the agent do what it does
when the provider itself refuses. Also litellm, whose fallbacks depend on
how the overflow is worded.

Without npm (or the registry) these skip with one line saying why, except
where ``KIMI_REQUIRE_AGENTS=1`` (CI), where they fail.
"""

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import wait_rows

from kimi_core.testing import agents
from kimi_core.testing.fake_provider import FakeProvider
from kimi_core.testing.proxy import Mitmdump

pytestmark = pytest.mark.e2e

# Windows made to provoke each agent's recovery; the agents' own prompts are 10,000 to 20,000 tokens.
CONFIG = """
[models."claude-roomy"]
context_window = 40000    # prompt + max_tokens 32000 does not fit; a smaller max_tokens does

[models."claude-cramped"]
context_window = 8000     # the prompt alone does not fit

[models."codex-cramped"]
context_window = 4000

[models."gemini-cramped"]
context_window = 4000

[models."litellm-cramped"]
context_window = 4000
"""
AGENT_TIMEOUT = 180


@pytest.fixture(scope="session")
def agent_bin():
    try:
        return agents.install()
    except agents.AgentsUnavailable as e:
        if os.environ.get("KIMI_REQUIRE_AGENTS"):
            pytest.fail(f"the agents are required here (KIMI_REQUIRE_AGENTS) but: {e}")
        pytest.skip(f"agents not installed: {e}")


@pytest.fixture(scope="module")
def fake():
    """Reports as prompt what a provider bills (every key and string of the billed fields), not bytes / 4."""
    with FakeProvider(tls=True, usage="billed") as provider:
        yield provider


@pytest.fixture(scope="module")
def proxy(fake, tmp_path_factory):
    work = tmp_path_factory.mktemp("agents")
    (work / "config.toml").write_text(CONFIG)
    with Mitmdump(work, upstream_port=fake.port, options={"kimi_config": str(work / "config.toml")}) as running:
        bundle = work / "bundle.pem"  # what a user makes for Rust and Python clients: the system's CAs plus Kimi's
        system = Path("/etc/ssl/certs/ca-certificates.crt")
        bundle.write_bytes((system.read_bytes() if system.exists() else b"") + running.ca.read_bytes())
        running.bundle = bundle
        yield running


def run(agent_bin, proxy, tmp_path, argv, **env):
    """Run an agent to its end; its output (stdout and stderr) as text."""
    environment = agents.environment(tmp_path / f"home-{uuid.uuid4().hex[:6]}", proxy.url, proxy.ca, proxy.bundle,
                                     **env)
    done = subprocess.run([str(agent_bin / argv[0]), *argv[1:]], check=False, env=environment, cwd=tmp_path,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=AGENT_TIMEOUT)
    return done.returncode, done.stdout + done.stderr


def counted_as_billed(row):
    """Kimi's estimate against what the provider reports it billed, for a body a real agent sent.

    The reference counts keys and strings, Kimi counts text, so they differ a little; a billed
    field Kimi did not count (Gemini CLI's parametersJsonSchema was 16% of its prompt, Codex's
    namespace tools 28%) shows as a larger gap.
    """
    ratio = row["prompt_tokens_est"] / row["prompt_tokens"]
    assert 0.95 <= ratio <= 1.15, f"estimated {row['prompt_tokens_est']}, billed {row['prompt_tokens']}"
    return ratio


def calls(proxy, model, count=1):
    return wait_rows(proxy.db, "model = ? AND dialect IS NOT NULL", (model,), count=count)


def reached(fake, model):
    """What the provider received for ``model`` (bodies parsed)."""
    out = []
    for r in fake.seen:
        if model.encode() in r["body"] or model in r["path"]:
            try:
                out.append(json.loads(r["body"]))
            except ValueError:
                continue
    return out


# -- Codex -------------------------------------------------------------------------------------------

CODEX_KEY = {"OPENAI_API_KEY": "sk-test-codex-e2e", "CODEX_API_KEY": "sk-test-codex-e2e"}
CODEX_HTTP = ["-c", "model_provider=kimihttp", "-c",
              ('model_providers.kimihttp={name="OpenAI over HTTP", base_url="https://api.openai.com/v1", '
               'env_key="OPENAI_API_KEY", wire_api="responses", supports_websockets=false}')]


def codex(agent_bin, proxy, tmp_path, model, transport):
    argv = ["codex", "exec", "--skip-git-repo-check", "-m", model, *(CODEX_HTTP if transport == "http" else []),
            "Say hello"]
    return run(agent_bin, proxy, tmp_path, argv, **CODEX_KEY)


@pytest.mark.parametrize("transport", ["websocket", "http"])
def test_codex_exec(agent_bin, proxy, fake, tmp_path, transport):
    model = f"gpt-5.1-codex-{uuid.uuid4().hex[:6]}"
    code, out = codex(agent_bin, proxy, tmp_path, model, transport)
    assert code == 0 and "piece 0 piece 1 piece 2 piece 3 piece 4" in out, out[-2000:]
    rows = [r for r in calls(proxy, model) if r["messages"]]  # Codex may warm a socket up with an empty call
    assert rows and all(r["transport"] == transport and r["streamed"] == 1 for r in rows)
    row = rows[-1]
    assert (row["provider"], row["dialect"], row["status_code"], row["action"]) == \
        ("openai", "openai-responses", 200, "passed")
    assert row["prompt_tokens"] > 0 and row["prompt_tokens_est"] > 1000 and row["error"] is None
    counted_as_billed(row)
    assert row["project"] == str(tmp_path)  # the working directory Codex names in its prompt


@pytest.mark.parametrize("transport", ["websocket", "http"])
def test_codex_says_it_ran_out_of_room_when_kimi_refuses(agent_bin, proxy, fake, tmp_path, transport):
    code, out = codex(agent_bin, proxy, tmp_path, "codex-cramped", transport)
    assert code != 0 and "Codex ran out of room in the model's context window" in out, out[-2000:]
    rows = [r for r in calls(proxy, "codex-cramped") if r["transport"] == transport]
    assert rows and all(r["action"] == "rejected" for r in rows)
    assert not [b for b in reached(fake, "codex-cramped") if b.get("input")]


# -- Claude Code -------------------------------------------------------------------------------------

CLAUDE = {
    # an API key: api.anthropic.com, Anthropic's Messages API over SSE
    "anthropic": ({"ANTHROPIC_API_KEY": "sk-ant-test-claude-e2e"}, "{}"),
    # a company's AWS account: Bedrock's invoke-with-response-stream, AWS event-stream frames, SigV4
    "bedrock": ({"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "us-east-1",
                 "AWS_ACCESS_KEY_ID": "AKIAKIMITESTKEY00000", "AWS_SECRET_ACCESS_KEY": "kimi-test-secret-e2e"},
                "us.anthropic.{}-v1:0"),
}


def claude(agent_bin, proxy, tmp_path, backend, model):
    env, name = CLAUDE[backend]
    return run(agent_bin, proxy, tmp_path, ["claude", "-p", "Say hello", "--model", name.format(model)], **env)


@pytest.mark.parametrize("backend,path", [("anthropic", "/v1/messages?beta=true"),
                                          ("bedrock", "/model/us.anthropic.{}-v1:0/invoke-with-response-stream")])
def test_claude_code(agent_bin, proxy, fake, tmp_path, backend, path):
    model = f"claude-opus-4-5-{uuid.uuid4().hex[:6]}"
    code, out = claude(agent_bin, proxy, tmp_path, backend, model)
    assert code == 0 and "piece 0 piece 1 piece 2 piece 3 piece 4" in out, out[-2000:]
    [row] = calls(proxy, CLAUDE[backend][1].format(model))
    assert (row["provider"], row["dialect"], row["path"], row["streamed"], row["action"]) == \
        (backend, "anthropic", path.format(model), 1, "passed")
    assert row["prompt_tokens"] > 0 and row["prompt_tokens_est"] > 5000
    counted_as_billed(row)
    assert row["project"] == str(tmp_path)  # the working directory Claude Code names in its system prompt
    if backend == "anthropic":  # its settings, policy limits and the like are kept, apart from the LLM calls
        others = wait_rows(proxy.db, "dialect IS NULL AND session_id = ?", (row["session_id"],))
        assert others and all(r["prompt_tokens_est"] is None for r in others)


@pytest.mark.parametrize("backend", ["anthropic", "bedrock"])
def test_claude_code_retries_with_a_smaller_max_tokens_when_prompt_and_output_do_not_fit(
        agent_bin, proxy, fake, tmp_path, backend):
    model = CLAUDE[backend][1].format("claude-roomy")
    code, out = claude(agent_bin, proxy, tmp_path, backend, "claude-roomy")
    assert code == 0 and "piece 0 piece 1 piece 2 piece 3 piece 4" in out, out[-2000:]
    rows = calls(proxy, model, count=2)[-2:]
    assert [r["action"] for r in rows] == ["rejected", "passed"]
    [sent] = [b for b in reached(fake, model) if b.get("max_tokens")]  # only the retry reached the provider
    assert sent["max_tokens"] < 32_000 and rows[1]["prompt_tokens_cal"] + sent["max_tokens"] <= 40_000


@pytest.mark.parametrize("backend", ["anthropic", "bedrock"])
def test_claude_code_says_the_prompt_is_too_long_when_kimi_refuses(agent_bin, proxy, fake, tmp_path, backend):
    model = CLAUDE[backend][1].format("claude-cramped")
    _, out = claude(agent_bin, proxy, tmp_path, backend, "claude-cramped")
    assert "prompt is too long" in out.lower(), out[-2000:]
    rows = calls(proxy, model)
    assert rows and all(r["action"] == "rejected" for r in rows)
    assert not [b for b in reached(fake, model) if b.get("messages")]


# -- Gemini CLI --------------------------------------------------------------------------------------

GEMINI = {
    "gemini": {"GEMINI_API_KEY": "AIzaSyTEST-gemini-e2e-0000000000000000"},  # generativelanguage.googleapis.com
    "vertex-ai": {"GOOGLE_GENAI_USE_VERTEXAI": "true",  # Vertex AI, express mode (an API key, no project)
                  "GOOGLE_API_KEY": "AIzaSyTEST-vertex-e2e-00000000000000000"},
}


def gemini(agent_bin, proxy, tmp_path, model, backend="gemini"):
    return run(agent_bin, proxy, tmp_path, ["gemini", "-p", "Say hello", "-m", model], **GEMINI[backend])


@pytest.mark.parametrize("backend", ["gemini", "vertex-ai"])
def test_gemini_cli(agent_bin, proxy, fake, tmp_path, backend):
    model = f"gemini-2.5-pro-{uuid.uuid4().hex[:6]}"
    code, out = gemini(agent_bin, proxy, tmp_path, model, backend)
    assert code == 0 and "piece 0 piece 1 piece 2 piece 3 piece 4" in out, out[-2000:]
    [row] = calls(proxy, model)
    assert (row["provider"], row["dialect"], row["streamed"], row["action"]) == (backend, "gemini", 1, "passed")
    assert row["prompt_tokens"] > 0 and row["prompt_tokens_est"] > 3000
    counted_as_billed(row)
    assert row["project"] == str(tmp_path)  # the workspace Gemini CLI names in its first message


def test_gemini_cli_shows_the_providers_own_overflow_error(agent_bin, proxy, fake, tmp_path):
    code, out = gemini(agent_bin, proxy, tmp_path, "gemini-cramped")
    assert code != 0 and "exceeds the maximum number of tokens allowed" in out, out[-2000:]
    rows = calls(proxy, "gemini-cramped")
    assert rows and all(r["action"] == "rejected" for r in rows)
    assert not reached(fake, "gemini-cramped")


# -- litellm -----------------------------------------------------------------------------------------

def test_litellm_raises_its_context_window_error_on_a_refusal(proxy, fake, monkeypatch):
    import litellm
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(proxy.bundle))
    with pytest.raises(litellm.ContextWindowExceededError) as raised:  # not a plain BadRequestError
        litellm.completion(model="openai/litellm-cramped", api_key="sk-test-litellm-e2e", num_retries=0,
                           messages=[{"role": "user", "content": "lorem ipsum dolor sit amet " * 1000}])
    assert "maximum context length is 3799 tokens" in str(raised.value)
    assert not reached(fake, "litellm-cramped")


@pytest.mark.parametrize("transport", ["websocket", "http"])
def test_codex_stops_at_a_spent_budget_without_retrying(agent_bin, fake, tmp_path, transport):
    import openai
    work = tmp_path / "proxy"
    with Mitmdump(work, upstream_port=fake.port, options={"kimi_budget_daily_usd": "1"}) as proxy:
        bundle = work / "bundle.pem"
        system = Path("/etc/ssl/certs/ca-certificates.crt")
        bundle.write_bytes((system.read_bytes() if system.exists() else b"") + proxy.ca.read_bytes())
        proxy.bundle = bundle
        spender = openai.OpenAI(api_key="sk-test-spend", max_retries=0, http_client=openai.DefaultHttpxClient(
            proxy=proxy.url, verify=str(bundle)))
        spender.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "spend"}],
                                        extra_headers={"X-Fake-Prompt-Tokens": "1000000"})  # $2 of a $1 budget
        wait_rows(proxy.db, "cost_usd > 1")
        code, out = codex(agent_bin, proxy, tmp_path, "gpt-4.1", transport)
        # Codex's own words for money run out, and no retry loop: the call came once.
        assert code != 0 and "Quota exceeded. Check your plan and billing details." in out, proxy.log()[-3000:]
        refused = wait_rows(proxy.db, "action = 'over_budget' AND transport = ?", (transport,))
        asked = [(r["messages"], r["request_bytes"]) for r in refused]
        # Over a WebSocket Codex warms the socket up with its first message, then sends the turn: each once.
        assert asked and len(set(asked)) == len(asked) <= 2, asked
