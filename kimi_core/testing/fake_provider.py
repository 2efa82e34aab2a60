"""A local fake LLM provider for tests and benchmarks: every dialect, streamed and not.

It answers on loopback, over TLS with a throw-away self-signed certificate or
in plain HTTP, whatever the Host header says, so a proxy can send
``api.openai.com`` or ``api.anthropic.com`` traffic to it. What it reports is
predictable, so tests can check what the proxy recorded:

- prompt tokens = request body bytes // 4 (times ``X-Fake-Usage-Factor``), or,
  for a provider made with ``usage="billed"``, the tokens of everything a
  provider bills (``kimi_core.testing.billing``); also sent back in the
  ``x-fake-prompt-tokens`` header;
- completion tokens = the number of streamed pieces (``X-Fake-Chunks``, default 5);
- cached tokens = 3;
- ``X-Fake-Prompt-Tokens`` reports exactly that many prompt tokens instead;
- ``X-Fake-Delay-Ms`` waits that long between streamed events;
- ``X-Fake-Status`` answers with that status and a provider-shaped error body
  (``X-Fake-Echo-Auth`` puts the ``Authorization`` header in its message);
- ``X-Fake-Overflow: N`` answers 400 with the dialect's context-overflow error
  stating a window of N tokens.

Besides each API as its maker serves it, the paths of Gemini Code Assist
(envelopes), Vertex AI (``:rawPredict``) and Bedrock (``invoke`` with AWS
event-stream framing, ``converse``) are answered as those hosts answer.

A WebSocket upgrade to a ``/responses`` path speaks the Responses API the way
Codex uses it: each ``response.create`` message gets the events of a streamed
answer as text messages (the ``X-Fake-*`` headers of the upgrade apply to
every one); other messages are only recorded.

Run it alone with ``python -m kimi_core.testing.fake_provider --port 8443``.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import re
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from wsproto import ConnectionType, WSConnection
from wsproto import events as wsevents
from wsproto.extensions import PerMessageDeflate

from kimi_core import eventstream
from kimi_core.testing.billing import billed_tokens

REPLY = "Hello from the fake provider."
HANG_SECONDS = 30
# Faults a request asks for with ``X-Fake-Fault``: "close" (the connection drops
# mid-stream), "hang" (a stream that never finishes), "malformed" (an event that
# is not JSON), "truncated" (the last event cut short), "gzip" (a gzip-encoded
# stream), "empty" (with X-Fake-Status: an error status with no body), "bomb" (a gzip body of about
# 1 MB inflating to 1 GB: JSON, or tiny SSE events when streamed).


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (cryptography is a mitmproxy dependency)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-provider")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fake-cert.pem", directory / "fake-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def dialect_of(path: str) -> str | None:
    p = path.split("?", 1)[0].rstrip("/")
    if p.endswith("/chat/completions"):
        return "openai-chat"
    if p.endswith("/responses"):
        return "openai-responses"
    if p.endswith("/messages"):
        return "anthropic"
    if ":generateContent" in p or ":streamGenerateContent" in p:
        return "gemini"
    return None


_BEDROCK = re.compile(r"/model/([^/]+)/(invoke|invoke-with-response-stream|converse|converse-stream)$")
_RAW_PREDICT = re.compile(r"/models/([^/:]+):(stream)?[rR]awPredict$")


def route_of(path: str) -> tuple[str | None, str, str | None, bool]:
    """(dialect, variant, model named by the path, streamed by the path) of a request path.

    Variants: "" (the API as its maker serves it), "code-assist" (Gemini CLI with a
    Google login: request and answers in envelopes), "vertex" (Anthropic on Vertex
    AI), "bedrock" (Bedrock's invoke: Anthropic's body, AWS event-stream framing)
    and "converse" (Bedrock's Converse API).
    """
    p = urllib.parse.unquote(path.split("?", 1)[0]).rstrip("/")
    if m := _BEDROCK.search(p):
        converse = m.group(2).startswith("converse")
        return ("bedrock-converse" if converse else "anthropic"), ("converse" if converse else "bedrock"), \
            m.group(1), m.group(2).endswith("stream")
    if m := _RAW_PREDICT.search(p):
        return "anthropic", "vertex", m.group(1), m.group(2) is not None
    if "/v1internal:" in p and dialect_of(p) == "gemini":
        return "gemini", "code-assist", None, ":streamGenerateContent" in p
    dialect = dialect_of(p)
    model = p.split("/models/")[-1].split(":")[0] if dialect == "gemini" else None
    return dialect, "", model, ":streamGenerateContent" in p


def converse_events(prompt: int, pieces: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """The events of Bedrock's ConverseStream, by name."""
    evs: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    evs += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}}) for p in pieces]
    evs += [("contentBlockStop", {"contentBlockIndex": 0}), ("messageStop", {"stopReason": "end_turn"}),
            ("metadata", {"usage": {"inputTokens": prompt - 3, "outputTokens": len(pieces), "cacheReadInputTokens": 3,
                                    "totalTokens": prompt + len(pieces)}, "metrics": {"latencyMs": 1}})]
    return evs


def error_body(dialect: str | None, status: int, message: str) -> dict[str, Any]:
    if dialect == "anthropic":
        return {"type": "error", "error": {"type": "api_error", "message": message}}
    if dialect == "gemini":
        return {"error": {"code": status, "message": message, "status": "UNAVAILABLE"}}
    return {"error": {"message": message, "type": "server_error", "code": None}}


def overflow_body(dialect: str | None, window: int, prompt: int) -> dict[str, Any]:
    """A context-overflow error as each provider words it (see REFERENCE.md)."""
    if dialect == "anthropic":
        return {"type": "error", "error": {"type": "invalid_request_error",
                                           "message": f"prompt is too long: {prompt} tokens > {window} maximum"}}
    if dialect == "gemini":
        return {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                          f"The input token count ({prompt}) exceeds the maximum number of tokens allowed ({window})."}}
    return {"error": {"message": f"This model's maximum context length is {window} tokens. However, your messages "
                                 f"resulted in {prompt} tokens. Please reduce the length of the messages.",
                      "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}


def whole(dialect: str, model: str, prompt: int, out: int, reply: str = REPLY) -> dict[str, Any]:
    """A non-streamed answer in ``dialect``."""
    if dialect == "openai-chat":
        return {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out,
                      "prompt_tokens_details": {"cached_tokens": 3}},
        }
    if dialect == "openai-responses":
        return {
            "id": "resp_fake", "object": "response", "created_at": 0, "model": model, "status": "completed",
            "output": [{"type": "message", "id": "msg_fake", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": reply, "annotations": []}]}],
            "usage": {"input_tokens": prompt, "output_tokens": out, "total_tokens": prompt + out,
                      "input_tokens_details": {"cached_tokens": 3},
                      "output_tokens_details": {"reasoning_tokens": 0}},
        }
    if dialect == "anthropic":
        return {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": reply}], "stop_reason": "end_turn",
            "usage": {"input_tokens": prompt - 3, "cache_read_input_tokens": 3,
                      "cache_creation_input_tokens": 0, "output_tokens": out},
        }
    if dialect == "bedrock-converse":
        return {"output": {"message": {"role": "assistant", "content": [{"text": reply}]}}, "stopReason": "end_turn",
                "usage": {"inputTokens": prompt - 3, "cacheReadInputTokens": 3, "outputTokens": out,
                          "totalTokens": prompt + out}, "metrics": {"latencyMs": 1}}
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": reply}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": out,
                          "totalTokenCount": prompt + out, "cachedContentTokenCount": 3},
        "modelVersion": model,
    }


def events(dialect: str, model: str, prompt: int, pieces: list[str]) -> list[tuple[str | None, dict | str]]:
    """The SSE events of a streamed answer in ``dialect``: (event name, data)."""
    out = len(pieces)
    if dialect == "openai-chat":
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model}
        evs: list[tuple[str | None, dict | str]] = [
            (None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": p},
                                         "finish_reason": None}]}) for p in pieces]
        evs.append((None, {**base, "choices": [], "usage": {
            "prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out,
            "prompt_tokens_details": {"cached_tokens": 3}}}))
        evs.append((None, "[DONE]"))
        return evs
    if dialect == "openai-responses":
        final = whole(dialect, model, prompt, out)
        final["output"][0]["content"][0]["text"] = "".join(pieces)
        created = {**final, "status": "in_progress", "output": [], "usage": None}
        evs = [("response.created", {"type": "response.created", "sequence_number": 0, "response": created}),
               ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                               "sequence_number": 0, "item": {**final["output"][0], "content": [],
                                                                              "status": "in_progress"}})]
        evs += [("response.output_text.delta", {"type": "response.output_text.delta", "item_id": "msg_fake",
                                                "output_index": 0, "content_index": 0, "delta": p,
                                                "sequence_number": i + 1, "logprobs": []})
                for i, p in enumerate(pieces)]
        # Codex builds its answer from the finished items, not from the deltas.
        evs.append(("response.output_item.done", {"type": "response.output_item.done", "output_index": 0,
                                                   "sequence_number": out + 1, "item": final["output"][0]}))
        evs.append(("response.completed", {"type": "response.completed", "sequence_number": out + 2,
                                           "response": final}))
        return evs
    if dialect == "anthropic":
        start = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [],
                 "stop_reason": None, "usage": {"input_tokens": prompt - 3, "cache_read_input_tokens": 3,
                                                "cache_creation_input_tokens": 0, "output_tokens": 1}}
        evs = [("message_start", {"type": "message_start", "message": start}),
               ("content_block_start", {"type": "content_block_start", "index": 0,
                                        "content_block": {"type": "text", "text": ""}})]
        evs += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "text_delta", "text": p}}) for p in pieces]
        evs += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                   "usage": {"output_tokens": out}}),
                ("message_stop", {"type": "message_stop"})]
        return evs
    evs = []
    for i, p in enumerate(pieces):
        chunk: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": [{"text": p}]}}],
                                 "modelVersion": model}
        chunk["usageMetadata"] = {"promptTokenCount": prompt, "candidatesTokenCount": i + 1,
                                  "totalTokenCount": prompt + i + 1, "cachedContentTokenCount": 3}
        if i == len(pieces) - 1:
            chunk["candidates"][0]["finishReason"] = "STOP"  # Gemini CLI retries a stream without one
        evs.append((None, chunk))
    return evs


BOMB_SIZE = 1024 ** 3
_bombs: dict[str, bytes] = {}
_bombs_lock = threading.Lock()


def gzip_bomb(kind: str) -> bytes:
    """About a megabyte of gzip that inflates to BOMB_SIZE: one JSON string, or tiny SSE events."""
    with _bombs_lock:
        if kind not in _bombs:
            z = zlib.compressobj(9, zlib.DEFLATED, 31)
            unit = b"data: {}\n\n" * 4096 if kind == "sse" else b"x" * 65536
            head = b"" if kind == "sse" else b'{"choices": [{"message": {"content": "'
            parts = [z.compress(head)]
            block = z.compress(unit * (16 * 1024 * 1024 // len(unit)))
            parts += [block] + [z.compress(unit * (16 * 1024 * 1024 // len(unit))) for _ in range(BOMB_SIZE // 2**24 - 1)]
            parts.append(z.compress(b"" if kind == "sse" else b'"}}]}') + z.flush())
            _bombs[kind] = b"".join(parts)
        return _bombs[kind]


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else delayed ACKs add ~40 ms per request

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.headers.get("upgrade", "").lower() == "websocket":
            self._websocket()
            return
        self._send_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    def _websocket(self) -> None:
        """The Responses API over a WebSocket, as Codex uses it: one ``response.create`` after another."""
        ws = WSConnection(ConnectionType.SERVER)
        head = f"GET {self.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        ws.receive_data((head + "\r\n").encode())
        for event in ws.events():
            if isinstance(event, wsevents.Request):
                self._ws_send(ws, wsevents.AcceptConnection(extensions=[PerMessageDeflate()]))
        self.close_connection = True
        text: list[str] = []
        while True:
            data = self.rfile.read1(65536)
            ws.receive_data(data or None)
            for event in ws.events():
                if isinstance(event, wsevents.TextMessage):
                    text.append(event.data)
                    if event.message_finished:
                        self._ws_message(ws, "".join(text))
                        text = []
                elif isinstance(event, wsevents.Ping):
                    self._ws_send(ws, event.response())
                elif isinstance(event, wsevents.CloseConnection):
                    self._ws_send(ws, event.response())
                    return
            if not data:
                return

    def _ws_send(self, ws: WSConnection, event: wsevents.Event) -> None:
        self.wfile.write(ws.send(event))
        self.wfile.flush()

    def _ws_message(self, ws: WSConnection, text: str) -> None:
        body = text.encode()
        self.server.seen.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                 "transport": "websocket"})
        try:
            data = json.loads(text)
        except ValueError:
            data = {}
        if not isinstance(data, dict) or data.get("type") != "response.create":
            return
        prompt = int(self.headers.get("x-fake-prompt-tokens") or self._prompt("openai-responses", data, body))
        model = str(data.get("model") or "fake-model")
        if self.headers.get("x-fake-overflow"):
            window = int(self.headers["x-fake-overflow"])
            error = overflow_body("openai-responses", window, prompt)["error"]
            evs: list[tuple[str | None, dict | str]] = [("response.failed", {"type": "response.failed", "response": {
                "id": "resp_fake", "object": "response", "status": "failed", "model": model, "output": [],
                "error": {"code": error["code"], "message": error["message"]}}})]
        else:
            n = int(self.headers.get("x-fake-chunks") or 5)
            evs = events("openai-responses", model, prompt, [f"piece {i} " for i in range(n)])
        for _, payload in evs:
            self._ws_send(ws, wsevents.TextMessage(data=json.dumps(payload)))

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.path.split("?", 1)[0].endswith("/messages/count_tokens"):  # Anthropic's token counting
            self._send_json(200, {"input_tokens": max(1, len(body) // 4)})
            return
        dialect, variant, path_model, path_streams = route_of(self.path)
        status = int(self.headers.get("x-fake-status") or 200)
        fault = self.headers.get("x-fake-fault", "")
        if dialect is None or status != 200:
            if fault == "empty":  # an error status with no body at all
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            message = "fake failure"
            if self.headers.get("x-fake-echo-auth"):  # a careless server: the credential in its error
                message = f"Incorrect API key provided: {self.headers.get('authorization')}"
            self._send_json(status if dialect else 404, error_body(dialect, status, message))
            return
        try:
            data = json.loads(body)
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        factor = float(self.headers.get("x-fake-usage-factor") or 1)
        prompt = int(self.headers.get("x-fake-prompt-tokens") or self._prompt(dialect, data, body, factor,
                                                                              variant == "code-assist"))
        if self.headers.get("x-fake-overflow"):
            error = overflow_body("anthropic" if variant in ("bedrock", "converse") else dialect,
                                  int(self.headers["x-fake-overflow"]), prompt)
            if variant in ("bedrock", "converse"):  # a ValidationException, Claude's words passed on
                words = error["error"]["message"]
                prefix = "The model returned the following errors: " if variant == "converse" else ""
                self._send_json(400, {"message": prefix + words}, {"x-amzn-ErrorType": "ValidationException"})
            else:
                self._send_json(400, error)
            return
        model = str(data.get("model") or path_model or (data.get("request") and "code-assist-model") or "fake-model")
        if variant == "code-assist":
            model = str(data.get("model") or model)
        n = int(self.headers.get("x-fake-chunks") or 5)
        delay = float(self.headers.get("x-fake-delay-ms") or 0) / 1000
        streamed = data.get("stream") is True or path_streams
        if fault == "bomb":  # a gzip body inflating to BOMB_SIZE: JSON, or an event stream of tiny events
            self.send_response(200)
            self.send_header("content-type", "text/event-stream" if streamed else "application/json")
            self.send_header("content-encoding", "gzip")
            data = gzip_bomb("sse" if streamed else "json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if not streamed:
            reply = self.server.replies.get(model, REPLY)  # type: ignore[attr-defined]
            answer = whole(dialect, model, prompt, n, reply)
            self._send_json(200, {"response": answer} if variant == "code-assist" else answer,
                            {"x-fake-prompt-tokens": str(prompt)})
            return
        pieces = [f"piece {i} " for i in range(n)]
        if variant in ("bedrock", "converse"):
            self._eventstream(dialect, model, prompt, pieces, variant)
            return
        sse = dialect != "gemini" or "alt=sse" in self.path
        self.send_response(200)
        self.send_header("content-type", "text/event-stream" if sse else "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-fake-prompt-tokens", str(prompt))
        gz = zlib.compressobj(wbits=31) if fault == "gzip" else None
        if gz is not None:
            self.send_header("content-encoding", "gzip")
        self.end_headers()
        evs = events(dialect, model, prompt, pieces)
        for i, (name, payload) in enumerate(evs):
            if i and delay:
                time.sleep(delay)
            if fault == "close" and i == len(evs) // 2:  # the connection drops mid-stream
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if fault == "hang" and i == 2:  # never finishes
                time.sleep(HANG_SECONDS)
                return
            if variant == "code-assist" and isinstance(payload, dict):
                payload = {"response": payload}
            text = payload if isinstance(payload, str) else json.dumps(payload)
            if fault == "malformed" and i == 1:
                text = "{this is not json"
            if sse:
                chunk = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
            else:
                chunk = ("[" if i == 0 else ",\r\n") + text + ("]" if i == len(evs) - 1 else "")
            if fault == "truncated" and i == len(evs) - 1:
                chunk = chunk[:len(chunk) // 2]  # the last event cut short, then the end
            data = chunk.encode()
            self._chunk(gz.compress(data) + gz.flush(zlib.Z_SYNC_FLUSH) if gz is not None else data)
        if gz is not None:
            self._chunk(gz.flush())
        self._chunk(b"")

    def _eventstream(self, dialect: str, model: str, prompt: int, pieces: list[str], variant: str) -> None:
        """Bedrock's streams: AWS event-stream messages; invoke wraps each Anthropic event in base64."""
        self.send_response(200)
        self.send_header("content-type", "application/vnd.amazon.eventstream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        if variant == "converse":
            frames = [eventstream.encode({":event-type": name, ":content-type": "application/json",
                                          ":message-type": "event"}, json.dumps(payload).encode())
                      for name, payload in converse_events(prompt, pieces)]
        else:
            frames = [eventstream.encode({":event-type": "chunk", ":content-type": "application/json",
                                          ":message-type": "event"},
                                         json.dumps({"bytes": base64.b64encode(json.dumps(payload).encode())
                                                     .decode()}).encode())
                      for _, payload in events(dialect, model, prompt, pieces)]
        for frame in frames:
            self._chunk(frame)
        self._chunk(b"")

    def _prompt(self, dialect: str, data: dict[str, Any], body: bytes, factor: float = 1.0,
                enveloped: bool = False) -> int:
        """The prompt tokens reported: body bytes / 4, or what ``billing`` counts when the server bills."""
        if self.server.usage == "billed":  # type: ignore[attr-defined]
            inner = data.get("request") if enveloped and isinstance(data.get("request"), dict) else data
            return max(3, billed_tokens(dialect, inner))
        return max(3, int(len(body) // 4 * factor))

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


class FakeProvider:
    """``with FakeProvider(tls=True) as fake: fake.port``; ``fake.seen`` lists the requests."""

    def __init__(self, tls: bool = True, port: int = 0, usage: str = "bytes") -> None:
        self.server = Server(("127.0.0.1", port), Handler)
        self.server.usage = usage  # type: ignore[attr-defined]  # "bytes" (body // 4) or "billed" (billing.py)
        self.server.seen = []  # type: ignore[attr-defined]
        self.server.replies = {}  # type: ignore[attr-defined]
        self._tmp = tempfile.TemporaryDirectory()
        if tls:
            cert, key = make_certificate(Path(self._tmp.name))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.tls = tls
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def seen(self) -> list[dict[str, Any]]:
        return self.server.seen  # type: ignore[attr-defined]

    @property
    def replies(self) -> dict[str, str]:
        """What non-streamed answers say, by model (else a fixed greeting)."""
        return self.server.replies  # type: ignore[attr-defined]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--plain", action="store_true", help="plain HTTP instead of TLS")
    args = parser.parse_args()
    with FakeProvider(tls=not args.plain, port=args.port) as fake:
        print(f"fake provider on {'http' if args.plain else 'https'}://127.0.0.1:{fake.port}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
