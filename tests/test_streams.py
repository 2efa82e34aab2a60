import gzip
import json

import pytest

from kimi_core.streams import SSEParser, StreamWatcher

EVENTS = (b'event: message_start\r\ndata: {"type":"message_start","message":{"usage":{"input_tokens":12}}}\r\n\r\n'
          b': keep-alive comment\n\n'
          b'event: message_delta\ndata: {"type":"message_delta",\ndata: "usage":{"output_tokens":4}}\n\n')


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(EVENTS)])
def test_sse_parser_gives_the_same_events_whatever_the_chunking(size):
    parser = SSEParser()
    events = []
    for i in range(0, len(EVENTS), size):
        events += parser.feed(EVENTS[i:i + size])
    events += parser.close()
    assert [e for e, _ in events] == ["message_start", "message_delta"]
    assert json.loads(events[1][1]) == {"type": "message_delta", "usage": {"output_tokens": 4}}


def test_watcher_passes_every_chunk_unchanged_and_reads_usage():
    watcher = StreamWatcher("anthropic", framing="sse")
    chunks = [EVENTS[:10], EVENTS[10:50], EVENTS[50:], b""]
    assert [watcher(c) for c in chunks] == chunks
    reply = watcher.result()
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (12, 4)
    assert watcher.finished and watcher.bytes == len(EVENTS) and watcher.error is None


def test_watcher_reads_gzip_encoded_streams():
    packed = gzip.compress(EVENTS)
    watcher = StreamWatcher("anthropic", framing="sse", content_encoding="gzip")
    out = b"".join(watcher(packed[i:i + 5]) for i in range(0, len(packed), 5)) + watcher(b"")
    assert out == packed
    assert watcher.result().usage.completion_tokens == 4


def test_watcher_survives_garbage_and_keeps_passing_bytes():
    watcher = StreamWatcher("openai-chat", framing="sse")
    assert watcher(b"data: {not json\n\n") == b"data: {not json\n\n"
    assert watcher(b'data: {"usage":{"prompt_tokens":1}}\n\n') == b'data: {"usage":{"prompt_tokens":1}}\n\n'
    reply = watcher.result()
    assert watcher.error.startswith("unreadable stream event 1")
    assert reply.usage.prompt_tokens == 1  # the events after the bad one are still read


def test_watcher_of_an_unsupported_encoding_says_so():
    watcher = StreamWatcher("openai-chat", framing="sse", content_encoding="br")
    assert watcher(b"\x00\x01") == b"\x00\x01"
    assert watcher.error == "stream encoded with br: usage not read"


def test_watcher_buffers_gemini_json_arrays():
    body = json.dumps([{"candidates": []}, {"usageMetadata": {"promptTokenCount": 9}}]).encode()
    watcher = StreamWatcher("gemini", framing="json")
    for i in range(0, len(body), 4):
        watcher(body[i:i + 4])
    watcher(b"")
    assert watcher.result().usage.prompt_tokens == 9


def test_a_stream_without_newlines_costs_linear_time_and_stops_being_read_past_the_cap():
    import time

    from kimi_core.streams import MAX_EVENT
    watcher = StreamWatcher("openai-chat", framing="sse")
    chunk = b"x" * 65536
    started = time.perf_counter()
    for _ in range(MAX_EVENT // len(chunk) + 16):  # 17 MB without a newline
        assert watcher(chunk) is chunk  # the bytes keep flowing
    assert time.perf_counter() - started < 5  # linear: well under a second here; quadratic took 14 s for 16 MB
    assert watcher.error and "more than 16 MB" in watcher.error


def test_events_split_across_many_chunks_are_whole():
    parser = SSEParser()
    data = b"event: a\ndata: " + b"y" * 100_000 + b"\n\n"
    events = []
    for i in range(0, len(data), 7):
        events += parser.feed(data[i:i + 7])
    assert events == [("a", "y" * 100_000)]


def test_a_gzip_stream_bomb_is_read_no_further_and_passes_untouched():
    import zlib

    from kimi_core.streams import MAX_READ
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    event = b"data: " + json.dumps({"choices": []}).encode() + b"\n\n"
    bomb = z.compress(event * (2 * MAX_READ // len(event))) + z.flush()  # inflates to twice the cap
    watcher = StreamWatcher("openai-chat", framing="sse", content_encoding="gzip")
    chunks = [bomb[i:i + 65536] for i in range(0, len(bomb), 65536)]
    assert b"".join(watcher(c) for c in chunks) == bomb
    assert watcher.error and "the rest is not read" in watcher.error and watcher.events <= MAX_READ // len(event) + 1
