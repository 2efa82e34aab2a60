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
# "2.0" and "3.13" do not end sentences; ", and never ..." starts another statement.
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+|,\s+(?:and|but|also|et|mais)\s+(?=(?:never|always|don't|do not|"
                           r"please|i|we|jamais|toujours|ne|je|on)\b)", re.IGNORECASE)

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
_CUE_PHRASES = ("do not", "make sure", "on va", "at some point", "this week", "cette semaine", "'ll ",
                # said without the verbs above (issue 16): likes, habits, plans, limits, team rules
                "like", "love", "fan of", "favo", "default", "usually", "tend to", "go-to", "go with", "hate",
                "can't stand", "dislike", "used to", "partial to", "reach for", "give me", "person",
                "goal", "aiming", "thinking of", "thinking about", "hope", "eventually", "long term", "need to",
                "the plan", "quarter", "no ", "only ", "max", "keep ", "stick to", "have to", "has to", "need ",
                "needs ", "can't", "cannot", "allowed", "rule", "every ", "all ", "going forward",
                "aime", "adore", "préféré", "défaut", "habitude", "déteste", "horreur", "je suis plutôt",
                "l'idée", "objectif", "envisage", "terme", "prévu", "trimestre", "plus de", "aucun", "seulement",
                "uniquement", "chez nous", "interdiction", "sous aucun", "merci de", "désormais", "doivent",
                "doit ", "garde", "ne ", "n'", "on fait", "je choisis", "un de ces jours", "fan", "readable", "easier",
                "i find", "pas de", "pas d'")
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
    r"\b(?:i|we)(?:'m| am|'re| are)? ?(?:going to|planning to|planning on|plan to|intend to|aim to|aiming to|"
    r"'ll|will|shall|want to|would like to|'d like to|hope to|mean to|need to|have to|"
    r"thinking (?:of|about))\s+(?P<x>.+)|"
    r"\b(?:the plan is|my goal(?: for [\w ]{1,20})? is|our goal is|the idea is|the goal is)(?: to)?\s+(?P<y>.+)",
    re.IGNORECASE)
_PROGRESSIVE_EN = re.compile(r"\b(?:i|we)(?:'m| am|'re| are) (?P<x>\w+ing\b.*)", re.IGNORECASE)
_WILL_FR = re.compile(
    r"\b(?:je|on|nous)\s+(?:vais|va|allons|compte|comptons|prévois de|prévoit de|prévoyons de|"
    r"pense|pensons|veux|veut|voudrais|voulons|souhaite|souhaitons|ai l'intention de|avons l'intention de|"
    r"envisage de|envisageons de|dois|devons|doit)\s+"
    r"(?P<x>.+)|\bj'(?:ai l'intention de|envisage de|aimerais|ai prévu de|ai prévu d')\s*(?P<y>.+)|"
    r"\b(?:l'idée,? c'est de|mon objectif(?: [\w ]{1,20})? (?:est de|:)|notre objectif est de)\s*(?P<z>.+)",
    re.IGNORECASE)
_PRESENT_FR = re.compile(r"\b(?:je|on|nous)\s+(?P<x>(?!(?:suis|est|sommes|ai|a|avons)\b)\w+.*)", re.IGNORECASE)
_TRIVIAL = re.compile(
    r"^(?:take a look|have a look|look|check|try|see|let you know|get back|do that|do it|handle it|be back|"
    r"revisit|lunch|eat|grab|sleep|go home|sign off|manger|déjeuner|"
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
    rf"en fin de (?:semaine|mois|sprint|journée)|eventually|long term|one day|later this (?:week|month)|"
    rf"next quarter|in (?:january|february|march|april|may|june|july|august|september|october|november|december)|"
    rf"by (?:january|february|march|april|may|june|july|august|september|october|november|december|summer)|"
    rf"à terme|un de ces jours|le trimestre prochain|en (?:janvier|février|mars|avril|mai|juin|juillet|août|"
    rf"septembre|octobre|novembre|décembre)|d'ici (?:mars|juin|l'été)|cet été)\b",
    re.IGNORECASE,
)

# -- constraints
_RULE_START_EN = re.compile(
    r"^(?P<lead>never|always|don'?t(?: ever)?|do not|avoid|make sure(?: to| that| you)?|ensure(?: that)?|"
    r"you (?:must|should)(?: never| always| not)?|you mustn't|must|under no circumstances(?: should you| do you)?|"
    r"no more|it'?s forbidden to|it is forbidden to|you'?re not allowed to|you are not allowed to|you may not|"
    r"you can'?t|you cannot)\b\s*(?P<x>.+)",
    re.IGNORECASE)
_RULE_INSIDE_EN = re.compile(
    r"\b(?:must(?: not| never| always)?|mustn't|should (?:never|always)|is (?:forbidden|not allowed)|"
    r"are (?:forbidden|not allowed)|is mandatory|are mandatory)\b", re.IGNORECASE)
# "It must be the cache": a guess, not a rule (a rule about all timestamps may say "must be UTC").
_SPECULATION = re.compile(r"\b(?:it|that|this|there|he|she|they|something|ça|cela|ce|il|elle)(?:'s)?\s+(?:\w+\s+)?"
                          r"(?:must|doit|doivent) (?:be|have been|être|avoir)\b|\bmust've\b", re.IGNORECASE)
_RULE_START_FR = re.compile(
    r"^(?:ne\s+\w+\s+(?:jamais|pas|plus|aucune?)|n'\w+\s+(?:jamais|pas|plus|aucune?)|jamais|toujours|il faut|"
    r"il ne faut|interdit|il est interdit|interdiction de|évite|évitez|éviter|surtout pas|surtout ne|on ne doit|"
    r"tu dois|vous devez|tu ne dois|vous ne devez|pas de|pas plus de|pas moins de|aucun|aucune|défense de|"
    r"sous aucun prétexte|seulement|uniquement|merci de|on n'\w+ (?:pas|jamais|plus)|on ne \w+ (?:pas|jamais|plus)|"
    r"nous n'\w+ (?:pas|jamais)|on (?:fait|utilise|écrit|met) toujours|garde[sz]? .+ (?:stable|sous|court))\b",
    re.IGNORECASE)
_RULE_SUBJECT_FR = re.compile(
    r"^(?:tous les|toutes les|les|chaque|la|le) ?(?:tests?|ci|builds?|pr|prs|commits?|migrations?|dates|fonctions|"
    r"fichiers|modules|classes|lignes|dépendances|api publique|api|code|messages de commit|requêtes|branches)\b.*"
    r"\b(?:doit|doivent|ne doit|ne doivent)\b", re.IGNORECASE)
_NEVER_EN = re.compile(r"^(?:don'?t(?: ever)?|do not|you (?:must|should) (?:never|not)|you mustn't|"
                       r"under no circumstances|never|it'?s forbidden to|it is forbidden to|you'?re not allowed to|"
                       r"you are not allowed to|you may not|you can'?t|you cannot)\b", re.IGNORECASE)
# Limits, team rules, what is and is not used here: standing rules said without "never" or "always".
_LIMIT_EN = re.compile(
    r"^(?:no (?!idea\b|problem\b|worries\b|thanks\b|need\b|way\b|one\b|clue\b|luck\b|[,.!])(?P<no>.+)|"
    r"max(?:imum)? (?P<max>.+ (?:is|of) \d.*)|"
    r"keep (?P<keep>(?!going\b|it\b|up\b|on\b).+ (?:under|below|above|over|at most|within|stable|small|short|"
    r"backwards compatible)\b.*)|"
    r"(?:only|stick to|stick with) (?P<only>(?!it\b|that\b|this\b|the (?:first|second|last)\b).+)|"
    r"(?:our |the )?(?:team|house) rule:?\s*(?P<team>.+)|"
    r"we (?:don't|do not|never) (?P<wedont>use .+)|"
    r"we always (?P<wealways>.+))$", re.IGNORECASE)
# The subject of a rule about how work is done (not a task about one thing: "the function must return").
_RULE_SUBJECT = re.compile(
    r"^(?:all |every |each |our |the )?(?:tests?|test suite|ci|builds?|prs?|pull requests?|commits?|merges?|"
    r"migrations?|timestamps|dates|functions|files|modules|classes|lines|endpoints|dependencies|public api|"
    r"apis?|code|changes|releases|deploys|docs|logs|secrets|images|the bundle|bundle|branches|user input)\b",
    re.IGNORECASE)
_RULE_VERB = re.compile(r"\b(?:must(?: not| never| always)?|mustn't|need|needs|have to|has to|can't|cannot|can not|"
                        r"should(?: never| always| not)?|take at most|are not allowed|is not allowed)\b", re.IGNORECASE)
_HAPPENS = re.compile(r"\b(?:fails?|failed|works|worked|passes|passed|breaks|broke|crash(?:es|ed)?|happens|"
                      r"matters|changed|returns|returned)\b", re.IGNORECASE)
_STANDING_LEAD = re.compile(r"^(?:from now on|going forward|in the future|désormais|dorénavant|"
                            r"à partir de maintenant|à l'avenir|chez nous|ici)\b[\s,:-]*", re.IGNORECASE)
_POLITE_RULE = re.compile(r"^(?:could|can|would|will) you (?:please )?(?P<lead>always|never|not)\s+(?P<x>.+?)\??$",
                          re.IGNORECASE)
_ONE_THING = re.compile(r"^(?:the|this|that|a|an|my|your)\s+[\w-]+(?<!s)\s", re.IGNORECASE)  # "the function must"
_GIVE_ME = re.compile(r"^give me .+ (?:over .+|any day)", re.IGNORECASE)
_REPORTED_LEAD = re.compile(r"^(?:according to|as per|per the|d'après|selon)\b", re.IGNORECASE)
_DEICTIC = re.compile(r"\b(?:this|that) (?:file|function|one|test|class|method|module|line|endpoint)\b|"
                      r"\b(?:ce|cette) (?:fichier|fonction|test|classe|méthode|module|ligne)\b", re.IGNORECASE)
_ALWAYS_EN = re.compile(r"^(?:make sure(?: to| that| you)?|ensure(?: that)?|you (?:must|should)(?: always)?|"
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


# What ``may_state`` looks for anywhere: the verbs and phrases of statements...
_STRONG = ("prefer", "rather", "better", "always", "never", "must", "don't", "dont", "avoid", "ensure", "plan",
           "intend", "going to", "will ", "'ll ", "forbidden", "allowed", "tomorrow", "next ", "soon", "mandatory",
           "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "do not", "make sure",
           "at some point", "this week", "i like", "i love", "i really like", "we like", "we love", "fan of",
           "favorite", "favourite", "by default", "i usually", "we usually", "i generally", "i tend", "we tend",
           "go-to", "go with", "i hate", "i dislike", "can't stand", "i don't like", "not a fan", "used to",
           "partial to", "i find", "give me", "person", "goal", "the plan", "aiming", "thinking of",
           "thinking about", "hope to", "eventually", "long term", "need to", "quarter", "team rule", "house rule",
           "we don't use", "we always", "going forward", "from now on", "readable", "easier",
           "préf", "plutôt", "mieux", "toujours", "jamais", "faut", "interdi", "évit", "vais", "allons", "compte",
           "prévo", "prévu", "prochain", "demain", "bientôt", "doi", "devez", "surtout", "on va", "cette semaine",
           "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche", "j'aime", "j'adore", "préféré",
           "habitude", "je suis plutôt", "je suis fan", "je déteste", "horreur", "je n'aime", "l'idée",
           "objectif", "envisage", "à terme", "trimestre", "sous aucun", "merci de", "désormais", "chez nous",
           "on n'", "on fait toujours", "je choisis", "un de ces jours", "pas plus de", "default",
           "circumstances", "pas fan", "please keep", "please only", "please no ")
# ...and what says a rule only at a sentence's start ("No new dependencies.", "Only Python 3.12.").
_AT_START = ("no ", "only ", "max", "keep ", "stick ", "every ", "all ", "each ", "ne ", "n'", "pas de",
             "pas d'", "seulement", "uniquement", "aucun", "garde", "tests ", "prs ", "pull requests", "migrations ",
             "functions ", "commits ", "the ci", "la ci", "les tests", "toutes les", "tous les", "chaque",
             "could you", "can you", "would you", "tu peux toujours")
_STARTS = re.compile(r"(?:^|[.!?;:\n]\s*)(\S.{0,23})")


def may_state(text: str) -> bool:
    """Whether ``text`` may hold a statement at all: a cheap test for the proxy's own process.

    Looks for the cues of ``has_cue`` anywhere in the text (plain substring
    searches, 0.1 ms for 20,000 characters), so it passes everything that
    ``read`` could find something in; a message without any goes nowhere.
    """
    lowered = text[:MAX_TEXT].lower()
    if any(cue in lowered for cue in _STRONG):
        return True
    return any(start.startswith(_AT_START) for start in _STARTS.findall(lowered))


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


_LIKE_EN = [  # "likes X": things chosen, habits, favourites
    re.compile(r"\bmy (?:favou?rite|go-to|default|preferred) [\w\s-]{1,30}?(?: for [\w\s-]{1,30})?"
               r"(?: is|'s| are|,? it's)\s+(?P<x>.+)", re.IGNORECASE),
    re.compile(r"\b(?:i|we) (?:usually|generally|normally|typically|always) (?:go with|pick|use|choose|reach for|"
               r"write)\s+(?P<x>.+)", re.IGNORECASE),
    re.compile(r"\bby default,? (?:i|we) (?:use|write|go with|pick|put|choose)\s+(?P<x>.+)", re.IGNORECASE),
    re.compile(r"\b(?:i|we) tend to (?:use|prefer|write|go with|pick)\s+(?P<x>.+)", re.IGNORECASE),
    re.compile(r"\bi'd go with\s+(?P<x>.+)", re.IGNORECASE),
    re.compile(r"\bgive me\s+(?P<x>.+?)\s+(?:over\s+.+|any day)", re.IGNORECASE),
    re.compile(r"\b(?:i'm|i am) more of an? (?P<x>[\w.+#-]+(?: [\w.+#-]+)?) (?:person|guy|type)"
               r"(?P<than> than an? [\w.+#-]+)?", re.IGNORECASE),
    re.compile(r"\bi find (?P<x>.+?) (?:much |far |way )?(?:more readable|easier|nicer|better|clearer)"
               r"(?P<than> than .+)?$", re.IGNORECASE),
    re.compile(r"\b(?:i'm|i am|we're|we are) (?:used to|partial to)\s+(?P<x>.+)", re.IGNORECASE),
    re.compile(r"\b(?:(?:i'm|i am|we're|we are) (?:a )?)?(?:big |huge |really )?(?:a )?fan of\s+(?P<x>.+)",
               re.IGNORECASE),
    re.compile(r"\b(?:i|we) (?:really |also |just )?(?:like|love|enjoy|adore)\s+(?P<x>.+)", re.IGNORECASE),
]
_DISLIKE_EN = re.compile(
    r"\b(?:(?:i|we) (?:really )?(?:don't|do not) (?:like|love|enjoy|want)|(?:i|we) (?:hate|dislike|detest|"
    r"can't stand|cannot stand)|(?:(?:i'm|i am|we're|we are) )?(?:really )?not (?:a |really a )?(?:big )?fan of)"
    r"\s+(?P<x>.+)", re.IGNORECASE)
_LIKE_FR = [
    re.compile(r"\b(?:mon|ma|mes) [\w\s-]{1,25}? préférée?s?,? c'est\s+(?P<x>.+)", re.IGNORECASE),
    re.compile(r"\bpar défaut,? (?:j'utilise|je mets|j'écris|je prends|on utilise|on met)\s+(?P<x>.+)",
               re.IGNORECASE),
    re.compile(r"\bj'ai l'habitude d(?:e |')(?:utiliser |écrire |mettre )?(?P<x>.+)", re.IGNORECASE),
    re.compile(r"\bje suis (?:plutôt|fan de?s?|fan d'|team)\s*(?P<x>.+)", re.IGNORECASE),
    re.compile(r"\bje choisis (?:toujours |souvent )?(?P<x>.+)", re.IGNORECASE),
    re.compile(r"\bj'(?:aime|adore) (?:bien |beaucoup |vraiment )?(?P<x>.+)", re.IGNORECASE),
]
_DISLIKE_FR = re.compile(
    r"\b(?:je n'aime pas|je déteste|je ne suis pas fan de?s?|je ne suis pas fan d'|j'ai horreur de?s?|"
    r"j'ai horreur d')\s*(?P<x>.+)", re.IGNORECASE)
_NOT_A_THING = re.compile(
    r"^(?:it|this|that|these|those|them|the idea|your|you|how|what|when|to (?:know|see|help|ask|check)|"
    r"ça|cela|ce|cette|le fait|quand|comment|beaucoup|bien)\b", re.IGNORECASE)


def _liking(s: str) -> Memory | None:
    """A preference said without "prefer": likes, favourites, habits, defaults; and dislikes."""
    for pattern, french, verb in ((_DISLIKE_EN, False, "dislikes"), (_DISLIKE_FR, True, "n'aime pas")):
        m = pattern.search(s)
        if m:
            first, _ = _objects(m.group("x"), french)
            if first and not _NOT_A_THING.match(first):
                return Memory(PREFERENCE, f"{verb} {first}", 0.8, s)
    for patterns, french in ((_LIKE_EN, False), (_LIKE_FR, True)):
        for pattern in patterns:
            m = pattern.search(s)
            if m is None:
                continue
            x = m.group("x") + (m.group("than") or "" if "than" in pattern.groupindex else "")
            first, second = _objects(x, french)
            if not first or _NOT_A_THING.match(first):
                continue
            if french:
                return Memory(PREFERENCE, f"préfère {first}{' à ' + second if second else ''}", 0.8, s)
            return Memory(PREFERENCE, f"prefers {first}{' over ' + second if second else ''}", 0.8, s)
    return None


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
    return _liking(s)


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
        group = next(g for g in ("x", "y", "z") if g in m.re.groupindex and m.group(g))
        cue = m.group(0)[:m.start(group) - m.start(0)]
        x = m.group(group)
        if re.search(r"want to|would like to|'d like to|hope to|need to|have to|veux|veut|voudrais|"
                     r"voulons|souhaite|pense|aimerais|dois|devons|doit", cue, re.IGNORECASE):
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
    if _SPECULATION.search(s) or _REPORTED_LEAD.match(s):
        return None
    m = _LIMIT_EN.match(s)
    if m is not None and not (_HAPPENS.search(s) and m.group("only")):
        lead = {"no": "no ", "only": "only ", "wedont": "never ", "wealways": "always "}
        group = next(g for g, v in m.groupdict().items() if v)
        x = _tidy(m.group(group))
        if x:
            text = f"{lead.get(group, '')}{x}" if group in lead else _tidy(s) if group in ("max", "keep") else x
            return Memory(CONSTRAINT, text, 0.8, s)
    if _RULE_SUBJECT.match(s) and _RULE_VERB.search(s) and not _DEICTIC.search(s):
        return Memory(CONSTRAINT, _tidy(s), 0.75, s)
    if _RULE_SUBJECT_FR.match(s) and not _DEICTIC.search(s):
        return Memory(CONSTRAINT, _tidy(s), 0.75, s)
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
    if _RULE_INSIDE_EN.search(s) and not re.match(r"^(?:i|we)\b", s, re.IGNORECASE) \
            and not (_ONE_THING.match(s) and not _RULE_SUBJECT.match(s)):
        return Memory(CONSTRAINT, _tidy(s), 0.75, s)
    return None


def classify(sentence: str) -> Memory | None:
    """The user's own standing statement in ``sentence``, if it is one."""
    standing = _STANDING_LEAD.match(sentence.strip())
    s = _FILLER.sub("", sentence.strip()).strip()
    if standing and not s.endswith("?"):
        rest = _FILLER.sub("", sentence.strip()[standing.end():]).strip()
        found = _constraint(rest) if rest else None
        if rest and found is None and not _QUESTION_START.match(rest):
            return Memory(CONSTRAINT, _tidy(rest), 0.75, sentence.strip())
        if found is not None:
            return found
    if _GIVE_ME.match(s):  # "give me X over Y": a preference, not a request
        return _liking(s)
    polite = _POLITE_RULE.match(s)
    if polite and not _DEICTIC.search(s):
        lead = "never" if polite.group("lead").lower() in ("never", "not") else "always"
        x = _tidy(polite.group("x"))
        return Memory(CONSTRAINT, f"{lead} {x}", 0.75, sentence.strip()) if x else None
    if not s or s.endswith("?") or _QUESTION_START.match(s) or _TASK_START.match(s):
        return None
    if not has_cue(s):
        return None
    if _OTHERS.match(s) and not re.search(r"\b(?:i|we|je|j'|on|nous)\b", s, re.IGNORECASE):
        # "All SQL must ...", "The CI must ...": a rule; "The function must return a list": a task's detail.
        rule = re.match(r"^(?:all|every)\b", s, re.IGNORECASE) or _RULE_SUBJECT.match(s) or _RULE_SUBJECT_FR.match(s)
        return _constraint(s) if rule and (_RULE_INSIDE_EN.search(s) or _RULE_VERB.search(s) or
                                           _RULE_SUBJECT_FR.match(s)) else None
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
