"""Decompress bodies without ever holding more than a limit: a 16 KB ``br`` body can inflate to 10 GB.

Only the content codings HTTP defines are decoded (``gzip``, ``deflate``,
``br``, ``zstd``, and lists of them); anything else (Python's ``codecs``
would happily run ``bz2``) is refused. Every decoder writes at most
``limit + 1`` bytes, so a bomb costs the time and memory of ``limit`` bytes
and raises ``TooLarge``. Callers run this off the event loop. ``Inflater``
does the same for a stream, chunk by chunk.
"""

from __future__ import annotations

import zlib

import brotli

try:  # Python 3.14's compression.zstd, or its backport that mitmproxy depends on
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    from backports import zstd  # type: ignore[import-not-found,no-redef]

CODINGS = ("gzip", "x-gzip", "deflate", "br", "zstd")


class TooLarge(ValueError):
    """The decoded body would be larger than the limit."""


def codings(content_encoding: str) -> list[str]:
    """The codings of a ``Content-Encoding`` header, in the order they were applied."""
    found = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    found = [c for c in found if c != "identity"]
    for coding in found:
        if coding not in CODINGS:
            raise ValueError(f"{coding!r} is not an HTTP content coding Kimi decodes")
    return found


def decode(data: bytes, content_encoding: str, limit: int) -> bytes:
    """``data`` decoded, at most ``limit`` bytes of it; raises TooLarge above, ValueError if it is damaged."""
    for coding in reversed(codings(content_encoding)):
        data = _decode_one(data, coding, limit)
    return data


def _decode_one(data: bytes, coding: str, limit: int) -> bytes:
    if coding in ("gzip", "x-gzip"):
        return _zlib(zlib.decompressobj(47), data, limit)  # gzip or zlib header
    if coding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send it
        try:
            return _zlib(zlib.decompressobj(15), data, limit)
        except zlib.error:
            return _zlib(zlib.decompressobj(-15), data, limit)
    if coding == "br":
        d = brotli.Decompressor()
        try:
            out = d.process(data, output_buffer_limit=limit + 1)
        except brotli.error as e:
            raise ValueError(f"damaged br data: {e}") from e
        if len(out) > limit:
            raise TooLarge(f"br data inflating past {limit:,} bytes")
        if not d.is_finished():
            raise ValueError("br data cut short")
        return out
    if coding == "zstd":
        out = bytearray()
        while data:
            d = zstd.ZstdDecompressor()
            try:
                out += d.decompress(data, max_length=limit + 1 - len(out))
            except zstd.ZstdError as e:
                raise ValueError(f"damaged zstd data: {e}") from e
            if len(out) > limit or (not d.eof and not d.needs_input):
                raise TooLarge(f"zstd data inflating past {limit:,} bytes")
            if not d.eof:
                raise ValueError("zstd data cut short")
            data = d.unused_data  # another frame
        return bytes(out)
    raise ValueError(f"{coding!r} is not an HTTP content coding Kimi decodes")  # pragma: no cover


def _zlib(d: zlib._Decompress, data: bytes, limit: int) -> bytes:
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise ValueError(f"damaged data: {e}") from e
    if len(out) > limit or d.unconsumed_tail:
        raise TooLarge(f"data inflating past {limit:,} bytes")
    if not d.eof:
        raise ValueError("compressed data cut short")
    return out


class Inflater:
    """A gzip or deflate stream, inflated chunk by chunk, never more than ``limit`` bytes in all
    nor ``per_chunk`` bytes from one chunk (what comes out of one chunk is read on the event loop)."""

    def __init__(self, limit: int, per_chunk: int) -> None:
        self._d = zlib.decompressobj(47)
        self._left = limit
        self._per_chunk = per_chunk

    def __call__(self, chunk: bytes) -> bytes:
        if not chunk:
            return self._d.flush(self._left)
        out = self._d.decompress(chunk, min(self._per_chunk, self._left) + 1)
        self._left -= len(out)
        if self._d.unconsumed_tail or self._left < 0:
            raise TooLarge("the stream inflates past what Kimi reads")
        return out
