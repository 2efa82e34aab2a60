"""AWS event-stream framing (``application/vnd.amazon.eventstream``), as Bedrock streams answers.

Each message is binary: a 12-byte prelude (total length, headers length, CRC of
the two), headers (name, type, value), a payload, and a CRC of the whole.
Bedrock's ``invoke-with-response-stream`` sends ``chunk`` events whose JSON
payload is ``{"bytes": base64(<an Anthropic stream event>)}``; ``converse-stream``
sends the Converse events themselves (``contentBlockDelta``, ``metadata``...);
either sends an ``exception`` message when something goes wrong. Only what
is read is decoded; the bytes themselves pass to the client untouched.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

PRELUDE = 12
MAX_MESSAGE = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Message:
    headers: dict[str, Any]
    payload: bytes

    @property
    def event_type(self) -> str | None:
        kind = self.headers.get(":message-type")
        if kind == "exception":
            return "exception"
        return self.headers.get(":event-type")


def _headers(data: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    i = 0
    while i < len(data):
        n = data[i]
        name = data[i + 1:i + 1 + n].decode("utf-8", "replace")
        i += 1 + n
        kind = data[i]
        i += 1
        if kind in (0, 1):  # true, false
            value: Any = kind == 0
        elif kind == 2:
            value, i = data[i], i + 1
        elif kind == 3:
            value, i = struct.unpack_from(">h", data, i)[0], i + 2
        elif kind == 4:
            value, i = struct.unpack_from(">i", data, i)[0], i + 4
        elif kind in (5, 8):  # long, timestamp
            value, i = struct.unpack_from(">q", data, i)[0], i + 8
        elif kind in (6, 7):  # bytes, string
            length = struct.unpack_from(">H", data, i)[0]
            raw = data[i + 2:i + 2 + length]
            value, i = (raw.decode("utf-8", "replace") if kind == 7 else raw), i + 2 + length
        elif kind == 9:  # uuid
            value, i = data[i:i + 16].hex(), i + 16
        else:
            raise ValueError(f"unknown event-stream header type {kind}")
        headers[name] = value
    return headers


class Decoder:
    """Bytes in, whole messages out; raises ValueError on a damaged frame."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[Message]:
        self._buf += chunk
        out = []
        while len(self._buf) >= PRELUDE:
            total, header_length, prelude_crc = struct.unpack_from(">III", self._buf, 0)
            if zlib.crc32(self._buf[:8]) != prelude_crc:
                raise ValueError("event-stream prelude checksum mismatch")
            if not PRELUDE + 4 <= total <= MAX_MESSAGE or header_length > total - PRELUDE - 4:
                raise ValueError(f"event-stream message of {total} bytes")
            if len(self._buf) < total:
                break
            frame = bytes(self._buf[:total])
            del self._buf[:total]
            if zlib.crc32(frame[:-4]) != struct.unpack(">I", frame[-4:])[0]:
                raise ValueError("event-stream message checksum mismatch")
            headers = _headers(frame[PRELUDE:PRELUDE + header_length])
            out.append(Message(headers, frame[PRELUDE + header_length:-4]))
        return out


def event(message: Message) -> tuple[str | None, Any]:
    """A message as (event name, parsed payload), Bedrock's ``chunk`` wrapping undone."""
    payload = json.loads(message.payload) if message.payload else {}
    name = message.event_type
    if name == "chunk" and isinstance(payload, dict) and isinstance(payload.get("bytes"), str):
        try:
            payload = json.loads(base64.b64decode(payload["bytes"]))
        except binascii.Error as e:
            raise ValueError(f"chunk is not base64: {e}") from e
        name = payload.get("type") if isinstance(payload, dict) else None
    return name, payload


def encode(headers: dict[str, str], payload: bytes) -> bytes:
    """One message with string headers (the fake provider and tests speak it this way)."""
    head = b"".join(bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v.encode())) + v.encode()
                    for k, v in headers.items())
    total = PRELUDE + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack(">I", zlib.crc32(body))
