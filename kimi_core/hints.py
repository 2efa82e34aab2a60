"""Proactive memory hints: what the user said before, brought back into a new conversation.

At a conversation's first call, the remembered constraints and preferences
that bear on it (their words found in its user messages, or said in the same
project) and the intentions whose day has come are written as one marked
block at the end of its system prompt. The same block, byte for byte, goes
into every later call of the conversation, so the provider's prompt cache
keeps serving it. Nothing secret is ever added: a memory is stored with
credentials removed, and one that still carries a redaction mark is left out.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kimi_core.compaction import STOPWORDS
from kimi_core.providers import ANTHROPIC, BEDROCK_CONVERSE, GEMINI, OPENAI_CHAT, OPENAI_RESPONSES
from kimi_core.redact import redact_text

BEGIN = "<kimi-memory>"
END = "</kimi-memory>"
HEADER = ("What this user told you in earlier conversations (remembered by Kimi Proxy, "
          "their local proxy; follow it unless they say otherwise now):")
MAX_TOKENS = 300  # the block's size at most, roughly (4 characters a token)
SAME_PROJECT = 0.5  # what being said in the same project weighs, against the share of its words found
LEAST = 0.34  # a memory must reach this score to be brought back
_WORD = re.compile(r"[\w][\w.+#/-]*[\w+#]|\w", re.UNICODE)
# The words of the statements' own form, which say nothing of their subject.
_FORM = {"prefers", "prefer", "over", "never", "always", "plans", "plan", "avoid", "must", "should", "keep",
         "use", "using", "préfère", "jamais", "toujours", "prévoit", "faut", "pas", "éviter", "utiliser",
         "don't", "not", "make", "sure"}
_DAYS = {"monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6,
         "lundi": 0, "mardi": 1, "mercredi": 2, "jeudi": 3, "vendredi": 4, "samedi": 5, "dimanche": 6}
_TIMEFRAME = re.compile(r"\(([^()]+)\)\s*$")


@dataclass(frozen=True, slots=True)
class Remembered:
    id: int | None  # None until the store has written it
    kind: str
    content: str
    project: str  # "" when it was said with no project known
    created: datetime.date
    count: int = 1
    user: str = ""  # who said it, on a shared proxy (proxyauth); "" when no one was named

    def key(self) -> tuple[str, str, str, str]:
        return self.kind, self.content, self.project, self.user


def terms(text: str) -> set[str]:
    return {w for w in (m.group(0).lower() for m in _WORD.finditer(text))
            if len(w) >= 3 and w not in STOPWORDS and w not in _FORM}


def due(content: str, created: datetime.date) -> tuple[datetime.date, datetime.date] | None:
    """The days an intention's timeframe names, from the day it was said; None when it names none."""
    m = _TIMEFRAME.search(content)
    if m is None:
        return None
    when = m.group(1).strip().lower()
    if when in ("today", "tonight", "later today", "this afternoon", "this evening", "aujourd'hui", "ce soir",
                "cet après-midi"):
        return created, created
    if when in ("tomorrow", "demain", "by tomorrow", "d'ici demain"):
        day = created + datetime.timedelta(days=1)
        return day, day
    for name, weekday in _DAYS.items():
        if re.search(rf"\b{name}\b", when):
            ahead = (weekday - created.weekday()) % 7
            if ahead == 0 and ("next" in when or "prochain" in when):
                ahead = 7
            day = created + datetime.timedelta(days=ahead)
            return day, day
    monday = created - datetime.timedelta(days=created.weekday())
    if when in ("next week", "la semaine prochaine"):
        return monday + datetime.timedelta(days=7), monday + datetime.timedelta(days=13)
    if when in ("this week", "cette semaine", "by the end of the week", "the end of the week", "end of week",
                "by end of week", "d'ici la fin de la semaine"):
        return created, monday + datetime.timedelta(days=6)
    if when in ("next month", "le mois prochain"):
        first = (created.replace(day=1) + datetime.timedelta(days=32)).replace(day=1)
        last = (first + datetime.timedelta(days=32)).replace(day=1) - datetime.timedelta(days=1)
        return first, last
    if m2 := re.fullmatch(r"in (\d+|a|one|two|three) days?", when):
        n = {"a": 1, "one": 1, "two": 2, "three": 3}.get(m2.group(1)) or int(m2.group(1))
        day = created + datetime.timedelta(days=n)
        return day, day
    return None


def secret(content: str) -> bool:
    return "REDACTED" in content or redact_text(content) != content


def select(book: Iterable[Remembered], text: str, project: str | None, today: datetime.date,
           max_tokens: int = MAX_TOKENS, user: str | None = None) -> list[Remembered]:
    """The memories to bring back into a conversation whose user messages say ``text``: only what this
    ``user`` said (on a shared proxy, one person's memories never reach another's prompts)."""
    words = terms(text)
    scored: list[tuple[float, Remembered]] = []
    for m in book:
        if m.user != (user or ""):
            continue
        if m.project and m.project != (project or ""):
            continue  # said about another repository
        if secret(m.content):
            continue
        same = SAME_PROJECT if m.project and m.project == project else 0.0
        if m.kind == "intention":
            span = due(m.content, m.created)
            if span is None or not span[0] <= today <= span[1]:
                continue
            scored.append((2.0 + same, m))  # its day: always worth saying
            continue
        own = terms(m.content)
        found = len(own & words) / len(own) if own else 0.0
        score = found + same
        if score >= LEAST:
            scored.append((score, m))
    scored.sort(key=lambda s: (-s[0], -s[1].count, s[1].content))
    chosen, size = [], len(HEADER) // 4 + 8
    for _, m in scored:
        cost = len(m.content) // 4 + 4
        if size + cost > max_tokens:
            continue
        chosen.append(m)
        size += cost
    return chosen


LABELS = {"constraint": "rule", "preference": "preference", "intention": "planned for now"}


def block(chosen: list[Remembered]) -> str:
    """The text added to the system prompt: marked at both ends, one line a memory."""
    order = {"constraint": 0, "preference": 1, "intention": 2}
    lines = [f"- {LABELS.get(m.kind, m.kind)}: {m.content}"
             for m in sorted(chosen, key=lambda m: (order.get(m.kind, 3), m.content))]
    return "\n".join([BEGIN, HEADER, *lines, END])


def inject(dialect: str, body: dict[str, Any], text: str) -> bool:
    """Add ``text`` at the end of ``body``'s system prompt, in the dialect's own form; False if it
    has no place for one (the body is then left as it was)."""
    if dialect == GEMINI and isinstance(body.get("request"), dict) and "contents" in body["request"]:
        body = body["request"]  # Gemini Code Assist's envelope
    if dialect in (ANTHROPIC, BEDROCK_CONVERSE):
        system = body.get("system")
        block_ = {"type": "text", "text": text} if dialect == ANTHROPIC else {"text": text}
        if system is None or system == "" or system == []:
            body["system"] = text if dialect == ANTHROPIC else [block_]
        elif isinstance(system, str):
            body["system"] = f"{system}\n\n{text}"
        elif isinstance(system, list):
            system.append(block_)
        else:
            return False
        return True
    if dialect == OPENAI_RESPONSES:
        instructions = body.get("instructions")
        if instructions is None or isinstance(instructions, str):
            body["instructions"] = f"{instructions}\n\n{text}" if instructions else text
            return True
        return False
    if dialect == OPENAI_CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return False
        first = messages[0] if messages and isinstance(messages[0], dict) else None
        if first is not None and first.get("role") in ("system", "developer"):
            content = first.get("content")
            if isinstance(content, str):
                first["content"] = f"{content}\n\n{text}"
            elif isinstance(content, list):
                content.append({"type": "text", "text": text})
            else:
                return False
        else:
            messages.insert(0, {"role": "system", "content": text})
        return True
    if dialect == GEMINI:
        key = "systemInstruction" if "systemInstruction" in body or "system_instruction" not in body \
            else "system_instruction"
        system = body.get(key)
        if system is None:
            body[key] = {"parts": [{"text": text}]}
        elif isinstance(system, dict) and isinstance(system.get("parts", []), list):
            system.setdefault("parts", []).append({"text": text})
        else:
            return False
        return True
    return False


def conversation_text(user_texts: Iterable[str], limit: int = 16_000) -> str:
    out, size = [], 0
    for t in user_texts:
        out.append(t[:limit - size])
        size += len(out[-1])
        if size >= limit:
            break
    return "\n".join(out)


class Book:
    """What Kimi remembers, held in memory for the hints: a request never waits for the database.

    Loaded from the database at start and every few seconds (a memory forgotten
    with ``kimi-proxy memories forget`` leaves it then), added to as soon as a
    memory is read from a message, and told at once of a memory forgotten in
    the dashboard.
    """

    def __init__(self) -> None:
        self._items: dict[tuple[str, str, str, str], Remembered] = {}

    def replace(self, items: Iterable[Remembered]) -> None:
        self._items = {m.key(): m for m in items}

    def add(self, kind: str, content: str, project: str | None, user: str | None = None,
            today: datetime.date | None = None) -> None:
        m = Remembered(None, kind, redact_text(content), project or "", today or datetime.date.today(),
                       user=user or "")
        self._items.setdefault(m.key(), m)

    def forget(self, memory_id: int | None = None, key: tuple[str, str, str, str] | None = None) -> None:
        """Out of every block made from now on: by its id, or by what it says (a memory read from a
        message a moment ago has no id here until the next reading of the database)."""
        self._items = {k: m for k, m in self._items.items()
                       if not (memory_id is not None and m.id == memory_id) and k != key}

    def __iter__(self):
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)


def read_book(conn) -> list[Remembered]:
    """Every memory in the database, for ``Book.replace``."""
    out = []
    for memory_id, kind, content, project, created, count, user in conn.execute(
            "SELECT id, kind, content, project, created_at, count, user FROM memories"):
        try:
            day = datetime.date.fromisoformat((created or "")[:10])
        except ValueError:
            day = datetime.date.today()
        out.append(Remembered(memory_id, kind, content, project or "", day, count or 1, user or ""))
    return out
