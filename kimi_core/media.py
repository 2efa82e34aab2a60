"""Tokens that images and documents cost, by each provider's published formula.

An image's size is read from the first bytes of its data (PNG, JPEG, GIF,
WebP headers), not by decoding it. An image given by URL has no bytes here:
it is counted at the size agents typically send (a 1024x1024 screenshot).

- OpenAI (gpt-4o, gpt-4.1, gpt-5, o-series): ``detail: low`` is 85 tokens;
  otherwise the image is fitted in 2048x2048, its short side scaled to 768,
  and it costs 85 + 170 per 512-pixel tile.
- Anthropic: about width x height / 750, after fitting the long side in 1568
  pixels.
- Gemini: 258 tokens for an image up to 384x384; larger ones are cut in
  768x768 tiles of 258 tokens each.
- PDF documents: per page, Anthropic about 1,500 (text and the page's image),
  Gemini 258, OpenAI about 1,000; pages are counted in the file.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct

DEFAULT_SIZE = (1024, 1024)
HEAD = 262_144  # base64 characters decoded to find an image's size (a JPEG's frame header may follow EXIF data)
PAGE_TOKENS = {"openai": 1_000, "anthropic": 1_500, "gemini": 258}
_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the first bytes of a PNG, JPEG, GIF or WebP file."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if chunk == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None


def decode_head(b64: str) -> bytes:
    """The first bytes of base64 data (a ``data:`` URL's or a bare string)."""
    if b64.startswith("data:"):
        b64 = b64.partition(",")[2]
    head = b64[:HEAD]
    head = head[:len(head) - len(head) % 4]
    try:
        return base64.b64decode(head, validate=False)
    except (binascii.Error, ValueError):
        return b""


def size_of(b64: str | None) -> tuple[int, int]:
    found = image_size(decode_head(b64)) if b64 else None
    return found if found and found[0] > 0 and found[1] > 0 else DEFAULT_SIZE


def openai_image(size: tuple[int, int], detail: str | None = None) -> int:
    if detail == "low":
        return 85
    w, h = size
    scale = min(1.0, 2048 / max(w, h))
    w, h = w * scale, h * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def anthropic_image(size: tuple[int, int]) -> int:
    w, h = size
    scale = min(1.0, 1568 / max(w, h))
    return max(1, round(w * scale * h * scale / 750))


def gemini_image(size: tuple[int, int]) -> int:
    w, h = size
    if w <= 384 and h <= 384:
        return 258
    return 258 * math.ceil(w / 768) * math.ceil(h / 768)


def image_tokens(family: str, b64: str | None, detail: str | None = None) -> int:
    """Tokens of one image for a provider family ("openai", "anthropic", "gemini")."""
    size = size_of(b64)
    if family == "anthropic":
        return anthropic_image(size)
    if family == "gemini":
        return gemini_image(size)
    return openai_image(size, detail)


def pdf_pages(b64: str | None) -> int:
    """Pages of a base64 PDF (1 when they cannot be counted)."""
    if not b64:
        return 1
    data = b64.partition(",")[2] if b64.startswith("data:") else b64
    try:
        raw = base64.b64decode(data[:len(data) - len(data) % 4], validate=False)
    except (binascii.Error, ValueError):
        return 1
    return max(1, len(_PAGE.findall(raw)))


def document_tokens(family: str, b64: str | None) -> int:
    return PAGE_TOKENS.get(family, 1_000) * pdf_pages(b64)
