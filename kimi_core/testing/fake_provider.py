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
- ``X-Fake-Cache-Write: N`` (Anthropic, not streamed) reports N of the prompt's tokens as cache writes;
- ``X-Fake-Tool: NAME`` (not streamed) answers with a call of that tool, as an agent's model does;
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
import socket
import ssl
import tempfile
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from wsproto import ConnectionType, WSConnection
from wsproto import events as wsevents
from wsproto.extensions import PerMessageDeflate

from kimi_core import eventstream
from kimi_core.testing.answers import (
    REPLY,
    converse_events,
    error_body,
    events,
    gzip_bomb,
    overflow_body,
    route_of,
    whole,
)
from kimi_core.testing.billing import billed_tokens

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
            answer = whole(dialect, model, prompt, n, reply, self.headers.get("x-fake-tool"))
            if dialect == "anthropic" and self.headers.get("x-fake-cache-write"):  # part of the prompt cached anew
                written = int(self.headers["x-fake-cache-write"])
                answer["usage"].update(cache_creation_input_tokens=written,
                                       input_tokens=answer["usage"]["input_tokens"] - written)
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
