"""Subscription, IDE and company-cloud endpoints through a real mitmdump with Kimi: Codex with a
ChatGPT login, GitHub Copilot, Gemini Code Assist (Gemini CLI with a Google login), Vertex AI
and AWS Bedrock (invoke, its event-stream, Converse). Official SDKs where there is one."""

import json
import uuid

import anthropic
import boto3
import openai
import pytest
from botocore.config import Config
from conftest import wait_rows
from test_e2e import http_client, trust
from test_e2e_guard import config_file, words

from kimi_core.testing.proxy import Mitmdump

pytestmark = pytest.mark.e2e

AWS = {"aws_access_key_id": "AKIAKIMITESTKEY00000", "aws_secret_access_key": "kimi-test-secret-not-a-real-one"}


@pytest.fixture(scope="module")
def proxy(fake, tmp_path_factory):
    options = {"kimi_config": str(config_file(tmp_path_factory)), "kimi_tool_budget": "1000"}
    with Mitmdump(tmp_path_factory.mktemp("hosts"), upstream_port=fake.port, options=options) as running:
        yield running


def tag(prefix="m"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def one_row(proxy, model):
    [row] = wait_rows(proxy.db, "model = ?", (model,))
    return row


def received(fake, marker):
    return [r for r in fake.seen if marker.encode() in r["body"] or marker in r["path"]]


# -- Codex with a ChatGPT login, GitHub Copilot: OpenAI's APIs on other hosts ---------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_codex_with_a_chatgpt_login(proxy, stream):
    model = tag("gpt-5.1-codex")
    client = openai.OpenAI(api_key="chatgpt-token-test", base_url="https://chatgpt.com/backend-api/codex",
                           max_retries=0, http_client=openai.DefaultHttpxClient(proxy=proxy.url, verify=trust(proxy)))
    result = client.responses.create(model=model, input="Say hello.", stream=stream)
    if stream:
        assert list(result)[-1].type == "response.completed"
    row = one_row(proxy, model)
    assert (row["provider"], row["dialect"], row["host"], row["path"], row["streamed"]) == \
        ("chatgpt", "openai-responses", "chatgpt.com", "/backend-api/codex/responses", int(stream))
    assert row["prompt_tokens"] > 0 and row["prompt_tokens_est"] > 0


def test_chatgpt_pages_other_than_codex_are_not_provider_traffic(proxy, fake):
    with http_client(proxy) as client:
        client.post("https://chatgpt.com/backend-api/conversation", json={"model": "gpt-5", "messages": []})
    assert not wait_rows(proxy.db, "host = 'chatgpt.com' AND path = '/backend-api/conversation'", timeout=1)


def test_what_kimi_decrypts_but_does_not_read_is_not_buffered(proxy):
    """chatgpt.com's web app streams its answers: they must flow as they come, as if Kimi were not there.
    The fake sends two events and then holds the stream for 30 s; buffered, nothing would arrive before."""
    with http_client(proxy) as client, client.stream(
            "POST", "https://chatgpt.com/backend-api/conversation/responses", timeout=10,
            json={"model": "gpt-5", "input": "hi", "stream": True}, headers={"X-Fake-Fault": "hang"}) as response:
        first = next(response.iter_lines())
    assert first.startswith("event: response.created")


def test_codex_with_a_chatgpt_login_over_its_websocket(proxy):
    model = tag("gpt-5.1-codex")
    client = openai.OpenAI(api_key="chatgpt-token-test", base_url="https://chatgpt.com/backend-api/codex",
                           max_retries=0)
    with client.responses.connect(websocket_connection_options={"proxy": proxy.url, "ssl": trust(proxy)}) as ws:
        ws.response.create(model=model, input="Say hello.")
        for event in ws:
            if event.type == "response.completed":
                break
    row = one_row(proxy, model)
    assert (row["provider"], row["transport"], row["path"]) == ("chatgpt", "websocket", "/backend-api/codex/responses")


@pytest.mark.parametrize("host", ["api.githubcopilot.com", "api.business.githubcopilot.com"])
def test_github_copilot_chat_completions(proxy, host):
    model = tag("gpt-4.1")
    client = openai.OpenAI(api_key="ghu_copilotTESTtoken", base_url=f"https://{host}", max_retries=0,
                           http_client=openai.DefaultHttpxClient(proxy=proxy.url, verify=trust(proxy)))
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say hello."}],
                                   extra_headers={"Copilot-Integration-Id": "vscode-chat"})
    row = one_row(proxy, model)
    assert (row["provider"], row["dialect"], row["path"]) == ("github-copilot", "openai-chat", "/chat/completions")


def test_github_copilot_anthropic_messages(proxy):
    model = tag("claude-sonnet-4")
    client = anthropic.Anthropic(api_key="ghu_copilotTESTtoken", base_url="https://api.githubcopilot.com",
                                 max_retries=0, http_client=anthropic.DefaultHttpxClient(proxy=proxy.url,
                                                                                         verify=trust(proxy)))
    client.messages.create(model=model, max_tokens=50, messages=[{"role": "user", "content": "Say hello."}])
    row = one_row(proxy, model)
    assert (row["provider"], row["dialect"]) == ("github-copilot", "anthropic") and row["prompt_tokens"] > 0


# -- Gemini Code Assist: the Gemini request in an envelope -------------------------------------------

def code_assist(proxy, model, stream, text="Say hello.", extra=None):
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    envelope = {"model": model, "project": "kimi-test-project", "user_prompt_id": "p-1", "request": {
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "systemInstruction": {"role": "user", "parts": [{"text": "You are Gemini CLI."}]},
        "tools": [{"functionDeclarations": [{"name": "read_file", "description": "Read a file.",
                                             "parametersJsonSchema": {"type": "object", "properties": {
                                                 "path": {"type": "string"}}}}]}],
        "generationConfig": {"temperature": 0}, "session_id": "s-1", **(extra or {})}}
    with http_client(proxy) as client:
        return client.post(f"https://cloudcode-pa.googleapis.com/v1internal:{method}", json=envelope,
                           headers={"authorization": "Bearer ya29.code-assist-test"})


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_code_assist_envelope(proxy, fake, stream):
    model = tag("gemini-2.5-pro")
    response = code_assist(proxy, model, stream)
    assert response.status_code == 200
    row = one_row(proxy, model)
    assert (row["provider"], row["dialect"], row["streamed"], row["messages"]) == \
        ("gemini-code-assist", "gemini", int(stream), 1)
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == \
        (int(response.headers.get("x-fake-prompt-tokens") or row["prompt_tokens"]), 5, 3)
    assert row["prompt_tokens_est"] > 10  # the system text and the tool's schema count too


def test_gemini_code_assist_refusal_is_googles_error(proxy, fake):
    model = "small"  # a 2,000-token window
    response = code_assist(proxy, model, True, text=words(2500))
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"].startswith("The input token count (")
    assert not [r for r in received(fake, "lorem ipsum") if "v1internal" in r["path"]]


def test_gemini_code_assist_compaction_keeps_the_envelope(proxy, fake):
    model = tag("gemini-2.5-pro")
    listing = "\n".join(f"src/pkg_{i:05d}/mod_{i:05d}.py" for i in range(3000))
    extra = {"contents": [
        {"role": "user", "parts": [{"text": "Where is mod_01234?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "list", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "list", "response": {"output": listing}}}]}]}
    assert code_assist(proxy, model, False, extra=extra).status_code == 200
    [sent] = [json.loads(r["body"]) for r in received(fake, model)]
    assert sent["model"] == model and sent["project"] == "kimi-test-project"  # the envelope as it was
    output = sent["request"]["contents"][2]["parts"][0]["functionResponse"]["response"]["output"]
    assert len(output) < len(listing) // 5 and "kimi-proxy restore" in output
    assert one_row(proxy, model)["action"] == "compacted"


# -- Vertex AI ----------------------------------------------------------------------------------------

def vertex_client(proxy):
    return anthropic.AnthropicVertex(region="us-east5", project_id="kimi-test", access_token="ya29.vertex-test",
                                     max_retries=0, http_client=anthropic.DefaultHttpxClient(proxy=proxy.url,
                                                                                             verify=trust(proxy)))


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_on_vertex_ai(proxy, stream):
    model = tag("claude-sonnet-4-5") + "@20250929"
    kwargs = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "Say hello."}]}
    if stream:
        with vertex_client(proxy).messages.stream(**kwargs) as s:
            s.get_final_message()
    else:
        vertex_client(proxy).messages.create(**kwargs)
    row = one_row(proxy, model)
    assert (row["provider"], row["dialect"], row["streamed"], row["context_window"]) == \
        ("vertex-ai", "anthropic", int(stream), 200_000)  # the window of claude-sonnet-4-5
    assert row["path"].endswith(":streamRawPredict" if stream else ":rawPredict") and row["prompt_tokens"] > 0


def test_anthropic_on_vertex_ai_refusal(proxy, fake):
    with pytest.raises(anthropic.BadRequestError) as raised:
        vertex_client(proxy).messages.create(model="small@2026", max_tokens=50,
                                             messages=[{"role": "user", "content": words(2500)}])
    assert raised.value.body["error"]["message"].startswith("prompt is too long: ")


def test_gemini_on_vertex_ai(proxy):
    model = tag("gemini-2.5-pro")
    url = (f"https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google/"
           f"models/{model}:streamGenerateContent?alt=sse")
    with http_client(proxy) as client:
        assert client.post(url, json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}).status_code == 200
    row = one_row(proxy, model)
    assert (row["provider"], row["dialect"], row["streamed"], row["completion_tokens"]) == ("vertex-ai", "gemini", 1, 5)


# -- AWS Bedrock --------------------------------------------------------------------------------------

def bedrock_anthropic(proxy):
    return anthropic.AnthropicBedrock(aws_region="us-east-1", aws_access_key=AWS["aws_access_key_id"],
                                      aws_secret_key=AWS["aws_secret_access_key"], max_retries=0,
                                      http_client=anthropic.DefaultHttpxClient(proxy=proxy.url, verify=trust(proxy)))


@pytest.mark.parametrize("stream", [False, True])
def test_claude_on_bedrock_invoke(proxy, stream):
    model = f"us.anthropic.{tag('claude-sonnet-4-5')}-v1:0"
    kwargs = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "Say hello."}]}
    if stream:  # invoke-with-response-stream: AWS event-stream frames carrying base64 Anthropic events
        with bedrock_anthropic(proxy).messages.stream(**kwargs) as s:
            text = "".join(s.text_stream)
        assert text == "piece 0 piece 1 piece 2 piece 3 piece 4 "
    else:
        bedrock_anthropic(proxy).messages.create(**kwargs)
    row = one_row(proxy, model)
    assert (row["provider"], row["dialect"], row["streamed"], row["context_window"]) == \
        ("bedrock", "anthropic", int(stream), 200_000)
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] == 5 and row["error"] is None


def test_claude_on_bedrock_refusal_is_a_validation_exception(proxy, fake):
    with pytest.raises(anthropic.BadRequestError) as raised:
        bedrock_anthropic(proxy).messages.create(model="us.anthropic.small-v1:0", max_tokens=50,
                                                 messages=[{"role": "user", "content": words(2500)}])
    assert raised.value.response.headers["x-amzn-errortype"].startswith("ValidationException")
    assert raised.value.body["message"].startswith("prompt is too long: ")


def bedrock_runtime(proxy):
    return boto3.client("bedrock-runtime", region_name="us-east-1", verify=str(proxy.ca),
                        config=Config(proxies={"https": proxy.url}, retries={"max_attempts": 1}), **AWS)


@pytest.mark.parametrize("stream", [False, True])
def test_bedrock_converse(proxy, stream):
    model = f"amazon.{tag('nova-pro')}-v1:0"
    kwargs = {"modelId": model, "system": [{"text": "Be terse."}], "inferenceConfig": {"maxTokens": 50},
              "messages": [{"role": "user", "content": [{"text": "Say hello."}]}],
              "toolConfig": {"tools": [{"toolSpec": {"name": "read_file", "description": "Read a file.",
                                                     "inputSchema": {"json": {"type": "object"}}}}]}}
    client = bedrock_runtime(proxy)
    if stream:
        events = list(client.converse_stream(**kwargs)["stream"])
        text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
        usage = next(e["metadata"]["usage"] for e in events if "metadata" in e)
    else:
        reply = client.converse(**kwargs)
        text, usage = reply["output"]["message"]["content"][0]["text"], reply["usage"]
    assert text.startswith("piece 0" if stream else "Hello")
    row = one_row(proxy, model)
    assert (row["provider"], row["dialect"], row["streamed"]) == ("bedrock", "bedrock-converse", int(stream))
    assert row["prompt_tokens"] == usage["inputTokens"] + usage["cacheReadInputTokens"]
    assert row["completion_tokens"] == usage["outputTokens"] and row["prompt_tokens_est"] > 20


def test_bedrock_converse_refusal(proxy, fake):
    client = bedrock_runtime(proxy)
    with pytest.raises(client.exceptions.ValidationException) as raised:
        client.converse(modelId="us.anthropic.small-v1:0",
                        messages=[{"role": "user", "content": [{"text": words(2500)}]}])
    assert "The model returned the following errors: prompt is too long: " in str(raised.value)
