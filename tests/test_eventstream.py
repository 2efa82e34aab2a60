import base64
import json

import pytest

from kimi_core import eventstream
from kimi_core.streams import EVENTSTREAM, StreamWatcher


def chunk(event):
    payload = json.dumps({"bytes": base64.b64encode(json.dumps(event).encode()).decode()}).encode()
    return eventstream.encode({":event-type": "chunk", ":message-type": "event"}, payload)


ANTHROPIC_EVENTS = [
    {"type": "message_start", "message": {"model": "claude", "usage": {"input_tokens": 40, "output_tokens": 1}}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
    {"type": "message_delta", "usage": {"output_tokens": 2}},
    {"type": "message_stop"},
]


def test_frames_split_anywhere_are_read_whole():
    data = b"".join(chunk(e) for e in ANTHROPIC_EVENTS)
    decoder, messages = eventstream.Decoder(), []
    for i in range(0, len(data), 7):  # seven bytes at a time
        messages += decoder.feed(data[i:i + 7])
    assert [eventstream.event(m)[0] for m in messages] == [e["type"] for e in ANTHROPIC_EVENTS]


def test_a_bedrock_invoke_stream_is_read_as_anthropic_events_and_passes_unchanged():
    watcher = StreamWatcher("anthropic", EVENTSTREAM)
    frames = [chunk(e) for e in ANTHROPIC_EVENTS]
    assert [watcher(f) for f in frames] == frames
    watcher(b"")
    reply = watcher.result()
    assert (reply.text, reply.usage.prompt_tokens, reply.usage.completion_tokens) == ("Hello", 40, 2)
    assert watcher.answered and watcher.error is None


def test_converse_stream_events_by_their_header_name():
    watcher = StreamWatcher("bedrock-converse", EVENTSTREAM)
    for name, payload in [("messageStart", {"role": "assistant"}),
                          ("contentBlockDelta", {"delta": {"text": "Hi"}}),
                          ("metadata", {"usage": {"inputTokens": 9, "outputTokens": 1, "cacheReadInputTokens": 3}})]:
        watcher(eventstream.encode({":event-type": name, ":message-type": "event"}, json.dumps(payload).encode()))
    reply = watcher.result()
    assert (reply.text, reply.usage.prompt_tokens, reply.usage.cached_tokens) == ("Hi", 12, 3)


def test_an_exception_frame_is_the_replys_error():
    watcher = StreamWatcher("anthropic", EVENTSTREAM)
    watcher(eventstream.encode({":message-type": "exception", ":exception-type": "throttlingException"},
                               b'{"message": "Too many requests"}'))
    assert watcher.result().error == "Too many requests"


@pytest.mark.parametrize("damage", [lambda f: f[:8] + b"\x00\x00\x00\x00" + f[12:],  # prelude checksum
                                    lambda f: f[:-1] + bytes([f[-1] ^ 1])])  # message checksum
def test_a_damaged_frame_stops_the_reading_not_the_stream(damage):
    watcher = StreamWatcher("anthropic", EVENTSTREAM)
    bad = damage(chunk(ANTHROPIC_EVENTS[0]))
    assert watcher(bad) == bad
    assert watcher.error and "checksum" in watcher.error
