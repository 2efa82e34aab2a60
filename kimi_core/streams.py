"""Watching a streamed response on its way to the client.

mitmproxy calls ``StreamWatcher.__call__`` with each chunk and once more with
``b""`` at the end; the watcher returns every chunk unchanged (the client gets
exactly what the provider sent) and reads it on the side: SSE events go to the
dialect's reader, which keeps the usage and the text. A non-SSE stream (Gemini
without ``alt=sse`` streams a JSON array) is kept, up to a limit, and parsed
at the end. Nothing here may raise into mitmproxy: the first error is kept in
``self.error`` and the watcher stops reading, while the bytes keep flowing.
"""

from __future__ import annotations

import json
import time
import zlib

from kimi_core import decoding, dialects, eventstream
from kimi_core.dialects.base import Reply

MAX_BUFFERED = 16 * 1024 * 1024  # a non-SSE stream is parsed whole up to this size
MAX_EVENT = 16 * 1024 * 1024  # larger events are not read (the bytes still pass)
MAX_READ = 64 * 1024 * 1024  # a stream is read (inflated) up to this much; the rest only passes
MAX_PER_CHUNK = 4 * 1024 * 1024  # what one compressed chunk (64 KB at most from mitmproxy) may inflate to


class SSEParser:
    """Incremental Server-Sent Events parser: bytes in, ``(event, data)`` out.

    Linear in the bytes whatever their shape: a chunk without a newline is
    only appended (a stream without newlines once cost quadratic copying),
    and an event larger than ``MAX_EVENT`` raises ValueError.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._event: str | None = None
        self._data: list[str] = []
        self._size = 0  # bytes of the event being read

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        if b"\n" not in chunk:
            self._buf += chunk
            if len(self._buf) + self._size > MAX_EVENT:
                raise ValueError(f"an event of more than {MAX_EVENT // (1024 * 1024)} MB")
            return []
        lines = (bytes(self._buf) + chunk).split(b"\n")
        self._buf = bytearray(lines.pop())
        out: list[tuple[str | None, str]] = []
        for line in lines:
            self._size += len(line)
            if self._size > MAX_EVENT:
                raise ValueError(f"an event of more than {MAX_EVENT // (1024 * 1024)} MB")
            self._line(line.rstrip(b"\r").decode("utf-8", "replace"), out)
        return out

    def close(self) -> list[tuple[str | None, str]]:
        out: list[tuple[str | None, str]] = []
        if self._buf:
            self._line(bytes(self._buf).rstrip(b"\r").decode("utf-8", "replace"), out)
            self._buf = bytearray()
        self._line("", out)
        return out

    def _line(self, line: str, out: list[tuple[str | None, str]]) -> None:
        if not line:
            if self._data:
                out.append((self._event, "\n".join(self._data)))
            self._event, self._data, self._size = None, [], 0
        elif line.startswith(":"):
            return
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value


SSE = "sse"
JSON = "json"  # a JSON array, parsed at the end (Gemini without alt=sse)
EVENTSTREAM = "aws-eventstream"  # Bedrock


def framing_of(content_type: str) -> str | None:
    """How a streamed response frames its events, from its content type; None: not a stream."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return {"text/event-stream": SSE, "application/vnd.amazon.eventstream": EVENTSTREAM}.get(kind)


class StreamWatcher:
    def __init__(self, dialect: str, framing: str | bool, content_encoding: str = "", keep: int = 0,
                 envelope: str | None = None) -> None:
        self.dialect = dialect
        # The stream as it passed, up to ``keep`` bytes (mitmproxy keeps no body for streams;
        # mitmweb shows this one). None once it outgrew that.
        self.kept: bytearray | None = bytearray() if keep else None
        self._keep = keep
        self.framing = framing if isinstance(framing, str) else SSE if framing else JSON
        self.sse = self.framing != JSON  # events are read as they pass
        self.reader = dialects.stream_reader(dialect, envelope)
        self.parser = SSEParser()
        self.frames = eventstream.Decoder() if self.framing == EVENTSTREAM else None
        self.raw = bytearray()  # non-SSE streams only
        self.bytes = 0
        self.events = 0
        self.first_chunk_at: float | None = None
        self.finished = False
        self.error: str | None = None
        self.bad_event: str | None = None  # the first event that could not be read
        encoding = content_encoding.strip().lower()
        self._inflate = decoding.Inflater(MAX_READ, MAX_PER_CHUNK) if encoding in ("gzip", "deflate") else None
        if encoding and self._inflate is None and encoding != "identity":
            self.error = f"stream encoded with {encoding}: usage not read"
        self._read_bytes = 0  # what was read (inflated), against MAX_READ

    def __call__(self, chunk: bytes) -> bytes:
        if chunk and self.first_chunk_at is None:
            self.first_chunk_at = time.time()
        self.bytes += len(chunk)
        if self.kept is not None:
            if len(self.kept) + len(chunk) > self._keep:
                self.kept = None
            else:
                self.kept += chunk
        if self.error is None:
            try:
                self._read(chunk)
            except decoding.TooLarge:
                self.error = (f"stream inflating past {MAX_READ // 2**20} MB, or {MAX_PER_CHUNK // 2**20} MB from "
                              "one chunk: the rest is not read (it still reaches the client)")
            except (ValueError, zlib.error, UnicodeDecodeError) as e:
                self.error = f"unreadable stream: {e}"
        if not chunk:
            self.finished = True
        return chunk

    def _read(self, chunk: bytes) -> None:
        if self._inflate is not None:
            chunk = self._inflate(chunk)
        self._read_bytes += len(chunk)
        if self._read_bytes > MAX_READ:
            raise ValueError(f"stream over {MAX_READ // 2**20} MB: the rest is not read (it still reaches the client)")
        if not self.sse:
            if len(self.raw) + len(chunk) > MAX_BUFFERED:
                raise ValueError(f"stream larger than {MAX_BUFFERED} bytes")
            self.raw += chunk
            return
        if self.frames is not None:
            for message in self.frames.feed(chunk):
                self.events += 1
                try:
                    self.reader.feed_payload(*eventstream.event(message))
                except (ValueError, TypeError, AttributeError) as e:
                    if self.bad_event is None:
                        self.bad_event = f"unreadable stream event {self.events}: {str(e)[:120]}"
            return
        events = self.parser.feed(chunk) if chunk else self.parser.close()
        for event, data in events:
            self.event(event, data)

    def event(self, name: str | None, data: str) -> None:
        """One whole event: from the SSE parser, or a message of a transport that frames events itself."""
        if self.first_chunk_at is None:
            self.first_chunk_at = time.time()
        self.events += 1
        try:
            self.reader.feed(name, data)
        except (ValueError, TypeError, AttributeError) as e:  # one bad event: note it, read on
            if self.bad_event is None:
                self.bad_event = f"unreadable stream event {self.events}: {str(e)[:120]}"

    @property
    def answered(self) -> bool:
        """The event that ends the answer has passed."""
        return self.reader.finished

    def result(self) -> Reply:
        """What was read so far: complete after the end, partial after an error."""
        if not self.sse:
            try:
                return dialects.parse_response(self.dialect, json.loads(bytes(self.raw)), self.reader.envelope)
            except (ValueError, UnicodeDecodeError) as e:
                if self.error is None:
                    self.error = f"unreadable stream: {e}"
                return Reply()
        if self.bad_event is not None and self.error is None:
            self.error = self.bad_event
        return self.reader.finish()


def is_event_stream(content_type: str) -> bool:
    return framing_of(content_type) is not None
