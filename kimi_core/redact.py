r"""Keep credentials out of everything Kimi stores, logs or prints.

One redaction for every text that leaves the proxy's memory: request paths
(``key=`` query parameters), bodies, errors (a provider's 401 may echo the
``Authorization`` header), memories (before any normalisation), flow comments
and log lines. It removes:

- values of fields whose name says secret, in any case and quoting: JSON
  (``"api_key": "..."``, ``"password": 123``, the name written with ``\u``
  escapes, or inside a JSON string pasted in a message), Python dicts
  (``'password': '...'``), assignments (``MISTRAL_API_KEY=...``, ``export
  OPENAI_API_KEY=...``, ``client_secret: ...``). A secret name ends in
  ``key`` after ``_`` or ``-`` (``API_KEY``, ``private-key``), or is or ends
  with ``secret``, ``token`` (not ``tokens``: ``max_tokens`` is a count),
  ``password``, ``passwd``, ``authorization``, ``credential(s)``;
- strings shaped like the keys providers issue (``sk-...``, ``sk-ant-...``,
  ``AIza...``, ``nvapi-``, ``gsk_``, ``xai-``, bearer tokens).

Headers are never stored, so the header list only tells what to drop when a
header value must be shown. ``printable`` makes a text safe for a terminal.
"""

from __future__ import annotations

import json
import re

REDACTED = "[REDACTED]"

SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key",
    "cookie", "set-cookie", "openai-organization", "openai-project",
})

_QUERY_SECRET = re.compile(r"(?i)([?&](?:key|api[_-]?key|access[_-]?token|token)=)[^&#]*")
_NAME = (r"[A-Za-z0-9_\-]{0,60}(?:[_\-]key|api[_-]?key|apikey|secret|token|password|passwd|authorization|credentials?)")
# "name": "value" (a JSON string, escapes and all), and "name": 123 / true / false.
_JSON_SECRET = re.compile(rf'(?i)("{_NAME}"\s*:\s*")(?:[^"\\]|\\.)*(")')
_JSON_SCALAR = re.compile(rf'(?i)("{_NAME}"\s*:\s*)(-?\d[\d.eE+\-]*|true|false)(?=\s*[,}}\]])')
# The same inside a JSON string (a config pasted in a message): {\"password\": \"...\"}
_ESCAPED_SECRET = re.compile(rf'(?i)(\\"{_NAME}\\"\s*:\s*\\")(?:(?!\\").){{0,500}}?(\\")')
_ESCAPED_SCALAR = re.compile(rf'(?i)(\\"{_NAME}\\"\s*:\s*)(-?\d[\d.eE+\-]*|true|false)')
# A name written with \u escapes: "\u0061pi_key" (decoded, then judged), found from the end of a key.
_KEY_END = re.compile(r'"\s*:\s*')
_VALUE = re.compile(r'"(?:[^"\\]|\\.)*"|[^,}\]\s]{1,512}')
_NESTED_VALUE = re.compile(r'\\"(?:(?!\\").){0,500}?\\"|[^,}\]\s\\]{1,512}')
_SECRET_NAME = re.compile(rf"(?i){_NAME}")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
# Where an assignment's name can end: found with str.find, far quicker than a regex trying every position.
_STEMS = ("key", "secret", "token", "password", "passwd", "authorization", "credential", "credentials")
_AFTER_NAME = frozenset("=:'\"")
# Python dicts: 'password': '...'
_PY_SECRET = re.compile(rf"(?i)('{_NAME}'\s*:\s*')[^'\\\n]*(')")
# Assignments in text, logs and shell: NAME=value, NAME: value (the value unquoted or quoted).
_ASSIGNED = re.compile(rf"(?i)({_NAME}\b\s*[=:]\s*)(['\"]?)(?!\[REDACTED\])"
                       rf"((?:(?:bearer|basic)\s+)?[^\s'\"\\&,;<>{{}}()\[\]]{{4,512}})")
# One pattern per key family, each starting with a literal so that ``re`` can
# skip ahead with its prefix search (an alternation or a leading ``\b`` makes it
# try every position: 48 ms instead of 2 ms on a 2 MB body).
_KEY_SHAPES = tuple(re.compile(p) for p in (
    r"sk-(?:ant-|proj-|or-v1-)?[A-Za-z0-9_\-]{16,}",
    r"AIza[0-9A-Za-z_\-]{30,}",
    r"nvapi-[A-Za-z0-9_\-]{20,}",
    r"gsk_[A-Za-z0-9]{20,}",
    r"xai-[A-Za-z0-9]{20,}",
    r"Bearer\s+[A-Za-z0-9._\-]{16,}",
))
_KEY_PREFIXES = ("sk-", "AIza", "nvapi-", "gsk_", "xai-", "Bearer")


def redact_path(path: str) -> str:
    """``/v1beta/models/x:generateContent?key=AIza...`` with the key removed."""
    if "?" not in path:
        return path
    return _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, path)


def _escaped_names(text: str) -> str:
    """Values of secret names written with ``\\u`` escapes (``"\\u0061pi_key": "..."``), also inside
    a JSON string (``\\"\\\\u0061pi_key\\": ...``)."""
    edits = []
    for m in _KEY_END.finditer(text):
        end = m.start()
        nested = end > 0 and text[end - 1] == "\\"  # \" : a key inside a JSON string
        if nested:
            start = text.rfind('\\"', max(0, end - 200), end - 1)
            raw = text[start + 2:end - 1] if start >= 0 else ""
        else:
            start = text.rfind('"', max(0, end - 200), end)
            while start > 0 and text[start - 1] == "\\":
                start = text.rfind('"', max(0, end - 200), start - 1)
            raw = text[start + 1:end] if start >= 0 else ""
        if "\\u" not in raw:
            continue
        try:
            name = json.loads(f'"{raw}"')
            if nested:
                name = json.loads(f'"{name}"')
        except ValueError:
            continue
        if not _SECRET_NAME.fullmatch(name):
            continue
        if value := (_NESTED_VALUE if nested else _VALUE).match(text, m.end()):
            edits.append((value.start(), value.end(), '\\"[REDACTED]\\"' if nested else f'"{REDACTED}"'))
    return _apply(text, edits)


def _assignments(text: str) -> str:
    """``NAME=value`` and ``NAME: value`` for secret names, found from where a name can end."""
    low = text.lower()
    starts = set()
    for stem in _STEMS:
        i = low.find(stem)
        while i != -1:
            after = i + len(stem)
            # A name ends with its stem: what follows is a quote, or spaces and the = / : itself.
            k = after
            while k < len(low) and k - after < 8 and low[k] == " ":
                k += 1
            if k < len(low) and low[k] in _AFTER_NAME:
                j = i
                while j > 0 and i - j < 60 and text[j - 1] in _NAME_CHARS:
                    j -= 1
                starts.add(j)
            i = low.find(stem, after)
    edits, at = [], 0
    for j in sorted(starts):
        if j >= at and (j == 0 or text[j - 1] not in _NAME_CHARS) and (m := _ASSIGNED.match(text, j)):
            edits.append((m.start(3), m.end(3), REDACTED))
            at = m.end()
    return _apply(text, edits)


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    if not edits:
        return text
    out, at = [], 0
    for start, end, new in sorted(edits):
        if start < at:
            continue
        out += [text[at:start], new]
        at = end
    out.append(text[at:])
    return "".join(out)


def redact_text(text: str) -> str:
    """A text (JSON or not) with secret-named values and key-shaped strings removed."""
    text = _JSON_SECRET.sub(lambda m: m.group(1) + REDACTED + m.group(2), text)
    text = _JSON_SCALAR.sub(lambda m: f'{m.group(1)}"{REDACTED}"', text)
    if "\\" in text:
        if '\\"' in text:
            text = _ESCAPED_SECRET.sub(lambda m: m.group(1) + REDACTED + m.group(2), text)
            text = _ESCAPED_SCALAR.sub(lambda m: f'{m.group(1)}\\"{REDACTED}\\"', text)
        if "\\u" in text:
            text = _escaped_names(text)
    if "'" in text:
        text = _PY_SECRET.sub(lambda m: m.group(1) + REDACTED + m.group(2), text)
    text = _assignments(text)
    for prefix, pattern in zip(_KEY_PREFIXES, _KEY_SHAPES):
        if prefix in text:
            text = pattern.sub(REDACTED, text)
    return text


# Row columns that hold what Kimi itself wrote (ids, stamps, numbers): never secrets.
_OWN_COLUMNS = frozenset({"id", "ts", "session_id", "provider", "dialect", "method", "action", "tokenizer",
                          "window_source", "transport", "request_body", "response_body", "history"})


def redact_row(row: dict) -> dict:
    """A row with every text a client or provider could have written redacted (errors, models, paths)."""
    return {k: redact_text(v) if isinstance(v, str) and k not in _OWN_COLUMNS else v for k, v in row.items()}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str, newlines: bool = True) -> str:
    """``text`` safe for a terminal: control characters (escape sequences) shown as ``\\x1b``."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)
    return text if newlines else text.replace("\n", "\\n").replace("\t", " ")
