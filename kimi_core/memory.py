"""What users tell their agents about themselves: preferences, intentions, constraints.

Rule-based, English and French, offline. A user message goes through:

1. ``user_words``: only what the user wrote in their own voice: code blocks,
   inline code, quoted lines and quoted strings, tagged blocks that tools
   inject (``<system-reminder>``) and reported speech ("the README says: ...")
   are removed.
2. ``has_cue``: a cheap lexical filter (prefer, rather, always, never, must,
   don't, plan to, next week; préfère, plutôt, toujours, jamais, il faut,
   interdit, je vais, on va, la semaine prochaine, ...) that discards most
   messages at once.
3. ``classify``, sentence by sentence: questions, requests for code ("write a
   function that never ...") and things said of others ("Bob prefers vim")
   are not the user's own standing statements; the rest is matched against
   patterns for each kind.
4. A short canonical statement ("prefers pytest over unittest", "plans to
   migrate the database to postgres (next week)", "never touch the billing
   module"), lower-cased so that the same thing said twice is the same memory.

``llm_body`` / ``parse_llm_reply`` are the optional second stage: an
OpenAI-compatible chat model asked to classify and normalise the sentences the
filter passed; whatever it cannot answer falls back to the rules.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any

PREFERENCE, INTENTION, CONSTRAINT = "preference", "intention", "constraint"
KINDS = (PREFERENCE, INTENTION, CONSTRAINT)
MAX_STATEMENTS = 16  # per message: a pasted list of 1,200 "I prefer ..." lines is not the user's 1,200 statements
MAX_TEXT = 20_000  # characters of a message looked at; pasted logs beyond that are not the user's words

_FENCED = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_TAGGED = re.compile(r"<([a-zA-Z][\w-]*)(?:\s[^>]*)?>.*?</\1>", re.DOTALL)
_QUOTED = re.compile(r'"[^"\n]*"|“[^”\n]*”|«[^»\n]*»')
_QUOTE_LINE = re.compile(r"^\s*>.*$", re.MULTILINE)
_REPORTED = re.compile(r"\b(?:says|said|writes|wrote|a dit|dit|écrit)\s*:.*$", re.IGNORECASE | re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")  # "2.0" and "3.13" do not end sentences

# The lexical filter works on words, not with one big regex: ``re`` tries an
# alternation at every position (3 ms for 6 KB); a set of words and
# ``str.startswith`` with a tuple take a few hundred microseconds.
_WORDS = re.compile(r"[\w']+")
_CUE_STARTS = (
    "prefer", "rather", "better", "always", "never", "must", "don't", "dont", "avoid", "ensure", "plan",
    "intend", "going", "will", "forbidden", "allowed", "tomorrow", "next", "soon", "mandatory",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    "préf", "plutôt", "mieux", "toujours", "jamais", "faut", "interdit", "évit", "vais", "allons", "compte",
    "prévo", "prochain", "demain", "bientôt", "doi", "devez", "surtout",
    "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
)
_CUE_PHRASES = ("do not", "make sure", "on va", "at some point", "this week", "cette semaine", "'ll ")
_FILLER = re.compile(
    r"^(?:(?:please|pls|also|and|but|so|oh|ok|okay|by the way|btw|one more thing|important|note|"
    r"from now on|going forward|in general|généralement|à partir de maintenant|désormais|dorénavant|"
    r"s'il te plaît|s'il vous plaît|stp|svp|aussi|et|mais|donc|au fait|d'ailleurs|important|perso|"
    r"personnellement|personally)\b[\s,:!-]*)+",
    re.IGNORECASE,
)
_QUESTION_START = re.compile(
    r"^(?:do(?! not\b)|does|did|should|shall|can|could|would|will|is|are|what|why|how|which|where|when|who|"
    r"est-ce|pourquoi|comment|quel|quelle|quels|quelles|qu'est-ce|tu préfères|vous préférez|faut-il)\b",
    re.IGNORECASE,
)
_TASK_START = re.compile(
    r"^(?:write|create|add|implement|fix|generate|build|rename|update|change|remove|delete|run|"
    r"make (?:a|an|the|it|this|that)\b|refactor|show|explain|tell|give|find|list|"
    r"écris|écrivez|crée|créez|ajoute|ajoutez|implémente|corrige|corrigez|génère|fais|faites|renomme|"
    r"lance|lancez|supprime|modifie|montre|explique|donne|trouve)\b",
    re.IGNORECASE,
)
_OTHERS = re.compile(
    r"^(?:he|she|they|it|this|that|the|users?|people|my (?:colleague|boss|manager|team ?mate|friend)|"
    r"[A-Z][a-z]+ (?:prefers|likes|always|never|wants|plans)|il|elle|ils|elles|le|la|les|ce|ça|cela|mon|ma)\b",
)

# -- preferences
_PREFER_EN = re.compile(
    r"\b(?:i|we)(?:'d| would)?(?: (?:really|much|strongly|definitely|generally|usually|always|personally))? "
    r"(?:prefer|like)\b\s*(?P<x>.*)", re.IGNORECASE)
_RATHER_EN = re.compile(r"\b(?:i|we)(?:'d| would) rather\s+(?:use\s+|have\s+|go with\s+)?(?P<x>.*)", re.IGNORECASE)
_MY_PREFERENCE = re.compile(r"\bmy (?:personal )?preference (?:is|goes to)\s+(?P<x>.*)", re.IGNORECASE)
_PREFER_FR = re.compile(
    r"\b(?:je|j'|on|nous)\s*(?:préfère|préférons|préférerais|préférerions|aime mieux|aimerais mieux|"
    r"aimons mieux)\b\s*(?P<x>.*)", re.IGNORECASE)
_PLUTOT_FR = re.compile(r"^plutôt\s+(?P<x>.+)", re.IGNORECASE)
_THAN = re.compile(r"\s+(?:over|to|than|rather than|instead of|better than|more than)\s+", re.IGNORECASE)
_QUE = re.compile(r"\s+(?:à|aux|au|que|qu'|plutôt que)\s*", re.IGNORECASE)
_CUT_Y = re.compile(r"\s+(?:for|in|when|on|because|since|pour|dans|quand|car|parce)\b.*$", re.IGNORECASE)
_LEAD_EN = re.compile(r"^(?:to use|using|use|to|the|a|an|to have|having)\s+", re.IGNORECASE)


def _strip_lead(text: str, lead: re.Pattern[str]) -> str:
    while (stripped := lead.sub("", text, count=1)) != text:
        text = stripped
    return text
_LEAD_FR = re.compile(
    r"^(?:(?:qu'on utilise|que l'on utilise|que l'on|qu'on|utiliser|les|le|la|des|du|un|une|de)\s+|"
    r"l'|d'utiliser\s+|d')",
    re.IGNORECASE)

# -- intentions
_WILL_EN = re.compile(
    r"\b(?:i|we)(?:'m| am|'re| are)? ?(?:going to|planning to|planning on|plan to|intend to|aim to|"
    r"'ll|will|shall|want to|would like to|hope to|mean to)\s+(?P<x>.+)", re.IGNORECASE)
_PROGRESSIVE_EN = re.compile(r"\b(?:i|we)(?:'m| am|'re| are) (?P<x>\w+ing\b.*)", re.IGNORECASE)
_WILL_FR = re.compile(
    r"\b(?:je|on|nous)\s+(?:vais|va|allons|compte|comptons|prévois de|prévoit de|prévoyons de|"
    r"pense|pensons|veux|voudrais|voulons|souhaite|souhaitons|ai l'intention de|avons l'intention de)\s+"
    r"(?P<x>.+)|\bj'(?:ai l'intention de|envisage de)\s+(?P<y>.+)", re.IGNORECASE)
_PRESENT_FR = re.compile(r"\b(?:je|on|nous)\s+(?P<x>(?!suis|est|sommes|ai|a|avons)\w+.*)", re.IGNORECASE)
_TRIVIAL = re.compile(
    r"^(?:take a look|have a look|look|check|try|see|let you know|get back|do that|do it|handle it|be back|"
    r"think about it|regarder|voir|vérifier|essayer|tester ça|revenir|y réfléchir|m'en occuper|jeter un œil)\b",
    re.IGNORECASE)
_WEEKDAYS = r"monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_JOURS = r"lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche"
_WHEN = re.compile(
    rf"\b(?:tomorrow|tonight|later today|today|this (?:week|weekend|month|afternoon|evening|sprint|quarter|year)|"
    rf"next (?:week|month|year|sprint|quarter|release|{_WEEKDAYS})|on (?:{_WEEKDAYS})|"
    rf"by (?:{_WEEKDAYS}|tomorrow|the end of (?:the )?(?:day|week|month|year|sprint|quarter)|end of (?:day|week|month))|"
    rf"(?:at )?the end of (?:the )?(?:week|month|year|sprint|quarter)|"
    rf"in (?:\d+|a|one|two|three|a few|few) (?:days?|weeks?|months?)|at some point|soon|"
    rf"demain|ce soir|aujourd'hui|cette semaine|ce week-end|ce mois-ci|cet après-midi|"
    rf"la semaine prochaine|le mois prochain|l'année prochaine|le sprint prochain|au prochain sprint|"
    rf"(?:{_JOURS})(?: prochain)?|d'ici (?:la fin (?:de la semaine|du mois|de l'année|du sprint)|(?:{_JOURS})|demain)|"
    rf"dans (?:\d+|deux|trois|quelques) (?:jours|semaines|mois)|bientôt|"
    rf"en fin de (?:semaine|mois|sprint|journée))\b",
    re.IGNORECASE,
)

# -- constraints
_RULE_START_EN = re.compile(
    r"^(?P<lead>never|always|don'?t(?: ever)?|do not|avoid|make sure (?:to|that|you)|ensure(?: that)?|"
    r"you (?:must|should)(?: never| always| not)?|you mustn't|must|under no circumstances|no more)\b\s*(?P<x>.+)",
    re.IGNORECASE)
_RULE_INSIDE_EN = re.compile(
    r"\b(?:must(?: not| never| always)?|mustn't|should (?:never|always)|is (?:forbidden|not allowed)|"
    r"are (?:forbidden|not allowed)|is mandatory|are mandatory)\b", re.IGNORECASE)
_SPECULATION = re.compile(r"\b(?:must|doit|doivent) (?:be|have been|être|avoir)\b|\bmust've\b", re.IGNORECASE)
_RULE_START_FR = re.compile(
    r"^(?:ne\s+\w+\s+(?:jamais|pas|plus)|n'\w+\s+(?:jamais|pas|plus)|jamais|toujours|il faut|il ne faut|"
    r"interdit|il est interdit|évite|évitez|éviter|surtout pas|surtout ne|on ne doit|tu dois|vous devez|"
    r"tu ne dois|vous ne devez|pas de|aucun|aucune|défense de)\b",
    re.IGNORECASE)
_NEVER_EN = re.compile(r"^(?:don'?t(?: ever)?|do not|you (?:must|should) (?:never|not)|you mustn't|"
                       r"under no circumstances|never)\s+", re.IGNORECASE)
_ALWAYS_EN = re.compile(r"^(?:make sure (?:to|that|you)|ensure(?: that)?|you (?:must|should)(?: always)?|"
                        r"must|always)\s+", re.IGNORECASE)
# What ends a statement without being part of it: punctuation, and a "please" or "thanks" before it.
# (A single regex for this backtracked cubically: "Never do it" and 2,000 spaces took 200 s.)
_TAIL_PUNCT = " \t\n\r\f\v,;:.!"
_TAIL_WORD = re.compile(r"\b(?:ever|please|thanks|merci|stp|svp|ok)\Z", re.IGNORECASE)
_SECOND_PERSON_FR = re.compile(r"^(?:tu|vous)\s+(?:dois|devez)\s+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Memory:
    kind: str
    content: str  # the canonical statement
    confidence: float
    source_text: str  # the sentence it came from


def user_words(text: str) -> str:
    """What the user wrote in their own voice, without code, quotes or injected blocks."""
    text = text[:MAX_TEXT]
    text = _FENCED.sub("\n", text)
    text = _TAGGED.sub("\n", text)
    text = _INLINE_CODE.sub(" ", text)
    text = _QUOTE_LINE.sub("", text)
    text = _REPORTED.sub("", text)
    return _QUOTED.sub(" ", text)


_CUES = tuple(sorted({*_CUE_STARTS, *(p.strip() for p in _CUE_PHRASES)}))


def may_state(text: str) -> bool:
    """Whether ``text`` may hold a statement at all: a cheap test for the proxy's own process.

    Looks for the cues of ``has_cue`` anywhere in the text (plain substring
    searches, 0.1 ms for 20,000 characters), so it passes everything that
    ``read`` could find something in; a message without any goes nowhere.
    """
    lowered = text[:MAX_TEXT].lower()
    return any(cue in lowered for cue in _CUES)


def has_cue(text: str) -> bool:
    lowered = text.lower()
    if any(w.startswith(_CUE_STARTS) or w.endswith("'ll") for w in set(_WORDS.findall(lowered))):
        return True
    return any(phrase in lowered for phrase in _CUE_PHRASES)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if len(s.strip()) > 3]


def _words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def _strip_tail(text: str) -> str:
    text = text.rstrip(_TAIL_PUNCT)
    if m := _TAIL_WORD.search(text, max(0, len(text) - 8)):
        text = text[:m.start()].rstrip(_TAIL_PUNCT)
    return text


def _tidy(text: str) -> str:
    return re.sub(r"\s+", " ", _strip_tail(text)).strip(" ,;:-").lower()


def _objects(x: str, french: bool) -> tuple[str, str]:
    """``X`` and ``Y`` of "X over Y" / "X à Y"."""
    lead = _LEAD_FR if french else _LEAD_EN
    parts = (_QUE if french else _THAN).split(x, maxsplit=1)
    parts = [re.split(r"\s*[,;]|\s+\(|\s+-\s+", p, maxsplit=1)[0] for p in parts]  # "..., remember": an aside
    first = _strip_lead(_tidy(parts[0]), lead)
    second = _strip_lead(_tidy(_CUT_Y.sub("", parts[1])), lead) if len(parts) > 1 else ""
    return _words(first, 8), _words(second, 6)


def _preference(s: str) -> Memory | None:
    for pattern, french in ((_PREFER_EN, False), (_RATHER_EN, False), (_MY_PREFERENCE, False),
                            (_PREFER_FR, True), (_PLUTOT_FR, True)):
        m = pattern.search(s)
        if m is None:
            continue
        x = m.group("x")
        if pattern is _PREFER_EN and m.group(0).lower().split()[1:2] == ["like"] and \
                not re.search(r"\bbetter than\b|\bmore than\b", x, re.IGNORECASE):
            continue  # "I like it" is not a preference between things
        first, second = _objects(x, french)
        if not first:
            continue
        verb = "préfère" if french else "prefers"
        joint = " à " if french else " over "
        return Memory(PREFERENCE, f"{verb} {first}{joint + second if second else ''}", 0.9, s)
    return None


def _intention(s: str) -> Memory | None:
    when = _WHEN.search(s)
    timeframe = when.group(0).lower() if when else ""
    m = _WILL_EN.search(s)
    french = False
    if m is None:
        m = _WILL_FR.search(s)
        french = m is not None
    confidence = 0.85
    present = False
    if m is not None:
        cue = m.group(0)[:m.start("x") - m.start(0)] if m.group("x") else ""
        x = m.group("x") or m.group("y")
        if re.search(r"want to|would like to|hope to|veux|voudrais|voulons|souhaite|pense", cue, re.IGNORECASE):
            if not timeframe:
                return None  # a wish, or a request to the agent, unless it has a date
            confidence = 0.7
    else:
        m = _PROGRESSIVE_EN.search(s) or _PRESENT_FR.search(s)
        if m is None or not timeframe:
            return None
        french = m.re is _PRESENT_FR
        x, confidence, present = m.group("x"), 0.7, True
    action = _tidy(_WHEN.sub("", x))
    action = re.sub(r"\s+,", ",", action).strip(" ,")
    if not action or (_TRIVIAL.match(action) and not timeframe):
        return None
    action = _words(action, 12)
    suffix = f" ({timeframe})" if timeframe else ""
    if french:  # "je vais migrer": prévoit de migrer; "on déploie vendredi": prévoit : déploie
        return Memory(INTENTION, f"prévoit {': ' if present else 'de '}{action}{suffix}", confidence, s)
    if action.split()[0].endswith("ing"):
        return Memory(INTENTION, f"plans: {action}{suffix}", confidence, s)
    return Memory(INTENTION, f"plans to {action}{suffix}", confidence, s)


def _constraint(s: str) -> Memory | None:
    if _SPECULATION.search(s):
        return None
    m = _RULE_START_EN.match(s)
    if m is not None:
        x = _tidy(m.group("x"))
        if _NEVER_EN.match(s) or re.match(r"^you (?:must|should) not\b", s, re.IGNORECASE):
            return Memory(CONSTRAINT, f"never {x}", 0.9, s) if x else None
        if re.match(r"^avoid\b", s, re.IGNORECASE):
            return Memory(CONSTRAINT, f"avoid {x}", 0.85, s) if x else None
        if re.match(r"^no more\b", s, re.IGNORECASE):
            return Memory(CONSTRAINT, f"no more {x}", 0.8, s) if x else None
        if _ALWAYS_EN.match(s):
            return Memory(CONSTRAINT, f"always {x}", 0.85, s) if x else None
    if _RULE_START_FR.match(s):
        return Memory(CONSTRAINT, _tidy(_SECOND_PERSON_FR.sub("", s)), 0.85, s)
    if _RULE_INSIDE_EN.search(s) and not re.match(r"^(?:i|we)\b", s, re.IGNORECASE):
        return Memory(CONSTRAINT, _tidy(s), 0.75, s)
    return None


def classify(sentence: str) -> Memory | None:
    """The user's own standing statement in ``sentence``, if it is one."""
    s = _FILLER.sub("", sentence.strip()).strip()
    if not s or s.endswith("?") or _QUESTION_START.match(s) or _TASK_START.match(s):
        return None
    if not has_cue(s):
        return None
    if _OTHERS.match(s) and not re.search(r"\b(?:i|we|je|j'|on|nous)\b", s, re.IGNORECASE):
        return _constraint(s) if _RULE_INSIDE_EN.search(s) and re.match(r"^(?:the|all|every)\b", s, re.IGNORECASE) else None
    return _preference(s) or _intention(s) or _constraint(s)


def extract(text: str) -> list[Memory]:
    """Every preference, intention and constraint the user states in ``text``."""
    return read(text)[2]


def serve(read_fd: int, write_fd: int) -> None:
    """The reader process (``proxy.memory.Reader``): at a lower priority, answer ``(fn, arg)`` with
    ``(True, fn(arg))`` or ``(False, exception)`` until the pipe closes."""
    import multiprocessing.connection
    if hasattr(os, "nice"):
        os.nice(10)
    ask = multiprocessing.connection.Connection(read_fd, writable=False)
    answer = multiprocessing.connection.Connection(write_fd, readable=False)
    while True:
        try:
            fn, arg = ask.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        try:
            reply = (True, fn(arg))
        except Exception as e:  # noqa: BLE001 -- the proxy decides what a failure means
            reply = (False, e)
        answer.send(reply)


def read_all(texts: list[str]) -> list[tuple[str, bool, list[Memory], float]]:
    """``read`` for each text, with the seconds each took: one call for a batch, in another process."""
    out = []
    for text in texts:
        started = time.perf_counter()
        words, passed, found = read(text)
        out.append((words, passed, found, time.perf_counter() - started))
    return out


def read(text: str) -> tuple[str, bool, list[Memory]]:
    """The user's own words in ``text``, whether the lexical filter let them through, what they state."""
    words = user_words(text)
    if not has_cue(words):
        return words, False, []
    found: dict[tuple[str, str], Memory] = {}
    for sentence in sentences(words):
        memory = classify(sentence)
        if memory is not None:
            found.setdefault((memory.kind, memory.content), memory)
            if len(found) >= MAX_STATEMENTS:
                break
    return words, True, list(found.values())


# -- the optional language-model stage -------------------------------------------------------------

LLM_PROMPT = (
    "You extract what a software developer states about themselves in a message to their coding agent. "
    "Kinds: preference (what they prefer), intention (what they plan to do, with its timeframe if stated), "
    "constraint (a standing rule the agent must follow). Ignore questions, requests for code, and what "
    "others said. Answer only JSON: {\"memories\": [{\"kind\": ..., \"content\": short canonical "
    "statement such as \"prefers pytest over unittest\", \"plans to migrate the database to postgres "
    "(next week)\", \"never touch the billing module\"; in the message's language, lower case, "
    "\"confidence\": 0..1}]}, or {\"memories\": []}."
)


def llm_body(model: str, text: str) -> dict[str, Any]:
    return {"model": model, "temperature": 0, "response_format": {"type": "json_object"},
            "messages": [{"role": "system", "content": LLM_PROMPT}, {"role": "user", "content": text}]}


_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def _json_in(content: str) -> Any:
    """The JSON a model answered, as local models write it: after their thinking (``<think>``,
    Qwen 3, DeepSeek R1), inside a code fence, or with words around it."""
    content = _THINK.sub("", content).strip()
    fenced = _FENCE.search(content)
    if fenced:
        content = fenced.group(1).strip()
    try:
        return json.loads(content)
    except ValueError:
        starts = [i for i in (content.find("{"), content.find("[")) if i >= 0]
        if not starts:
            raise
        return json.JSONDecoder().raw_decode(content[min(starts):])[0]


def parse_llm_reply(reply: Any, source: str) -> list[Memory] | None:
    """The memories in a chat completion; None if the reply is not what was asked for.

    Local models (Ollama, llama.cpp) do not always answer in the exact form asked:
    a bare list, ``Preference`` capitalised, ``statement`` for ``content``,
    ``"0.9"`` as a string are taken as meant.
    """
    try:
        data = _json_in(reply["choices"][0]["message"]["content"])
        items = data["memories"] if isinstance(data, dict) else data
        if not isinstance(items, list):
            return None
        out = []
        for item in items:
            kind = str(item["kind"]).strip().lower()
            statement = next((item[k] for k in ("content", "statement", "text") if isinstance(item.get(k), str)), None)
            confidence = float(item.get("confidence", 0.8))
            if kind not in KINDS or statement is None or not statement.strip():
                return None
            out.append(Memory(kind, _words(statement.strip().lower(), 24), min(1.0, max(0.0, confidence)), source))
        return out
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None
