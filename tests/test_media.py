import base64
import struct
import zlib

import pytest

from kimi_core import media


def png(width, height):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def jpeg(width, height):
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def data_url(raw, mime="image/png"):
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


@pytest.mark.parametrize("raw,size", [
    (png(1024, 768), (1024, 768)),
    (jpeg(4000, 3000), (4000, 3000)),
    (b"GIF89a" + struct.pack("<HH", 320, 200) + b"\x00" * 8, (320, 200)),
    (b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\x00" * 8 + (1919).to_bytes(3, "little") + (1079).to_bytes(3, "little"),
     (1920, 1080)),
    (b"not an image", None),
])
def test_image_size_from_the_first_bytes(raw, size):
    assert media.image_size(raw) == size


@pytest.mark.parametrize("size,detail,tokens", [
    ((1024, 1024), "high", 765),   # OpenAI's own examples
    ((2048, 4096), "high", 1105),
    ((4096, 8192), "low", 85),
    ((512, 512), None, 255),
])
def test_openai_formula(size, detail, tokens):
    assert media.openai_image(size, detail) == tokens


@pytest.mark.parametrize("size,tokens", [((1000, 1000), 1333), ((200, 200), 53), ((3136, 3136), 3278)])
def test_anthropic_formula(size, tokens):
    assert media.anthropic_image(size) == tokens


@pytest.mark.parametrize("size,tokens", [((384, 384), 258), ((1024, 1024), 1032), ((768, 768), 258)])
def test_gemini_formula(size, tokens):
    assert media.gemini_image(size) == tokens


def test_image_tokens_read_the_size_from_a_data_url_and_assume_a_screenshot_for_a_link():
    assert media.image_tokens("openai", data_url(png(512, 512))) == 255
    assert media.image_tokens("anthropic", None) == media.anthropic_image(media.DEFAULT_SIZE)
    assert media.image_tokens("gemini", "data:image/png;base64,!!!not base64") == 1032


def test_pdf_pages_are_counted():
    pdf = b"%PDF-1.4\n" + b"".join(b"<< /Type /Page /Parent 2 0 R >>\n" for _ in range(3)) + \
        b"<< /Type /Pages /Count 3 >>"
    data = base64.b64encode(pdf).decode()
    assert media.pdf_pages(data) == 3
    assert media.document_tokens("gemini", data) == 3 * 258
    assert media.pdf_pages(None) == 1
