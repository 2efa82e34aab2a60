"""The conversation view, rendered for real flows of every dialect saved by a real mitmdump."""

import pytest
from mitmproxy import contentviews, io
from mitmproxy.test import taddons
from test_e2e import GEMINI_KEY, anthropic_client, http_client, openai_client

from kimi_core.proxy import KimiContext
from kimi_core.proxy.view import LLMView
from kimi_core.testing.proxy import Mitmdump

pytestmark = pytest.mark.e2e

TOOL_OUTPUT = "\n".join(f"src/pkg_{i}/module_{i}.py" for i in range(500))


@pytest.fixture(scope="module")
def flows(fake, tmp_path_factory):
    work = tmp_path_factory.mktemp("view")
    saved = work / "flows.mitm"
    with Mitmdump(work, upstream_port=fake.port, options={"save_stream_file": str(saved)}) as proxy:
        chat = openai_client(proxy)
        chat.chat.completions.create(model="gpt-4.1", messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "List the modules."},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
                "name": "list_files", "arguments": '{"path": "src"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": TOOL_OUTPUT}])
        list(chat.chat.completions.create(model="gpt-4.1-stream", stream=True, stream_options={"include_usage": True},
                                          messages=[{"role": "user", "content": "Stream please."}]))
        list(chat.responses.create(model="gpt-4.1-resp", input="Hello responses", stream=True))
        anthropic_client(proxy).messages.create(model="claude-opus-4-5", max_tokens=64, system="Be kind.", messages=[
            {"role": "user", "content": "Read the file."},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {"p": "a"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "file body"}]}])
        with http_client(proxy) as client:
            for method, query in (("generateContent", ""), ("streamGenerateContent", "&alt=sse")):
                client.post(f"https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:{method}"
                            f"?key={GEMINI_KEY}{query}", json={"contents": [{"role": "user", "parts": [
                                {"text": f"Hello Gemini {method}"}]}]})
    with open(saved, "rb") as f:
        read = list(io.FlowReader(f).stream())
    contentviews.add(LLMView(KimiContext()))
    return read


def prettify(message, flow):
    with taddons.context():  # content views read mitmproxy's options
        return contentviews.prettify_message(message, flow)


def render(message, flow):
    result = prettify(message, flow)
    assert result.view_name == "LLM conversation", result.description
    return result.text


def test_a_chat_request_reads_as_a_conversation(flows):
    [flow] = [f for f in flows if b'"gpt-4.1"' in f.request.content]
    text = render(flow.request, flow)
    assert text.startswith("LLM request · openai-chat · gpt-4.1\n")
    assert "of the 1,047,576-token window" in text and "tokens in the messages" in text
    assert "── system · " in text and "You are terse." in text
    assert '→ list_files({"path": "src"})' in text
    assert "⇐ result of list_files · " in text and "src/pkg_0/module_0.py" in text
    assert "more lines]" in text and "src/pkg_499/module_499.py" not in text  # shortened


def test_an_anthropic_request_and_its_response(flows):
    [flow] = [f for f in flows if f.request.host == "api.anthropic.com"]
    request = render(flow.request, flow)
    assert request.startswith("LLM request · anthropic · claude-opus-4-5")
    assert "── system · " in request and '→ read({"p":"a"})' in request and "⇐ result of read · " in request
    response = render(flow.response, flow)
    assert "Hello from the fake provider." in response and "usage: prompt " in response


@pytest.mark.parametrize("needle, dialect", [
    (b"gpt-4.1-stream", "openai-chat"), (b"gpt-4.1-resp", "openai-responses"), (b"streamGenerateContent", "gemini")])
def test_a_streamed_response_shows_the_assembled_text_and_usage(flows, needle, dialect):
    [flow] = [f for f in flows if needle in f.request.content or needle.decode() in f.request.path]
    assert flow.metadata["kimi"]["dialect"] == dialect
    text = render(flow.response, flow)
    assert "· streamed" in text and "piece 0 piece 1 piece 2 piece 3 piece 4" in text
    assert "usage: prompt " in text and "completion 5" in text


def test_a_gemini_request_and_a_whole_response(flows):
    [flow] = [f for f in flows if ":generateContent" in f.request.path]
    assert "Hello Gemini generateContent" in render(flow.request, flow)
    assert "Hello from the fake provider." in render(flow.response, flow)


def test_other_flows_keep_their_usual_view(flows):
    [flow] = [f for f in flows if b'"gpt-4.1"' in f.request.content]
    flow.metadata.pop("kimi")
    assert prettify(flow.request, flow).view_name != "LLM conversation"
