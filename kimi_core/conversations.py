"""Which conversation a call continues, and which conversation started it.

An agent resends its whole history on every call; a conversation is the
chain of calls that extend one history. A call is placed, strongest signal
first:

1. a conversation id the client sends (Codex's ``prompt_cache_key`` and
   ``conversation_id``, the Responses API's ``previous_response_id``);
2. the history itself: a call whose history extends (or edits the end of) a
   conversation's last history continues it. Kimi already knows the analysis
   a body resumed from; otherwise histories are compared from their first
   user message on;
3. otherwise it starts a conversation. Started while another conversation of
   the same agent (and the same agent session, when the agent names one, as
   Claude Code does) waits for the result of a tool it asked for, it is that
   tool's work: a subagent, linked to its parent.

Two windows of an agent working at once stay apart: their histories differ
from the first user message on, and agents that name their sessions keep
them apart by name. Pure logic, on the event loop: the caller passes the
clock; every lookup is a dictionary access or a comparison of digests.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

MAX_CONVERSATIONS = 2000  # remembered, least recently seen dropped first
RECENT_EDITS = 50  # conversations looked at for an edited start
EDIT_WINDOW = 200  # messages compared with each
PARENT_SECONDS = 1800.0  # how long a conversation waiting for a tool may have a subagent start under it


@dataclass(frozen=True, slots=True)
class Facts:
    """What a call says about its conversation."""

    agent: str
    digests: tuple[bytes, ...]  # what each message says (``Analysis.contents``)
    first_user: int | None  # index of the first user message in ``digests``
    session_key: str | None = None  # an agent session (several conversations)
    conversation_key: str | None = None  # one conversation
    previous_response_id: str | None = None
    prior_seq: int | None = None  # the analysis this body resumed from
    seq: int = 0  # this body's analysis
    title: str = ""  # the first user message, shortened (credentials already out)
    system: bytes | None = None  # a digest of the system prompt
    tools: tuple[tuple[str, bytes], ...] = ()  # each tool definition: its name and a digest of it


@dataclass(slots=True, eq=False)
class Conversation:
    id: str
    agent: str
    session_key: str | None
    conversation_key: str | None
    root: bytes | None
    started: float
    title: str
    parent_id: str | None = None
    digests: tuple[bytes, ...] = ()
    system: bytes | None = None
    tools: tuple[tuple[str, bytes], ...] = ()
    last_seen: float = 0.0
    calls: int = 0
    waiting_tool: bool = False  # its last answer asked the agent to run a tool
    seqs: set[int] = field(default_factory=set)
    response_ids: list[str] = field(default_factory=list)
    project: str | None = None  # the working directory its agent named (kimi_core.projects)


@dataclass(frozen=True, slots=True)
class Placed:
    conversation: Conversation
    new: bool
    # For a call continuing a conversation: the first message that differs from the
    # conversation's last call (None: the history only grew), for cache-break alerts.
    changed_at: int | None = None
    # What changed before the messages: "the system prompt", "the tool definitions (...)".
    head_changed: str | None = None


def _head(before: Conversation, now: Facts) -> str | None:
    """What changed ahead of the messages since the conversation's last call, in words; None if nothing."""
    if before.system != now.system:
        return "the system prompt"
    if before.tools == now.tools:
        return None
    old, new = dict(before.tools), dict(now.tools)
    if old == new:
        return "the order of the tool definitions"
    added, removed = new.keys() - old.keys(), old.keys() - new.keys()
    edited = [name for name in new.keys() & old.keys() if new[name] != old[name]]
    parts = [f"{label} {', '.join(sorted(names)[:3])}{' ...' if len(names) > 3 else ''}"
             for label, names in (("added", added), ("removed", removed), ("changed", edited)) if names]
    return f"the tool definitions ({'; '.join(parts)})"


def common_prefix(a: tuple[bytes, ...], b: tuple[bytes, ...]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class ConversationTracker:
    def __init__(self, max_conversations: int = MAX_CONVERSATIONS) -> None:
        self._all: OrderedDict[str, Conversation] = OrderedDict()
        self._by_key: dict[tuple[str, str], Conversation] = {}
        self._by_root: dict[tuple[str, bytes], list[Conversation]] = {}
        self._by_seq: dict[int, Conversation] = {}
        self._by_response: dict[str, Conversation] = {}
        # Conversations whose last answer asked for a tool, by agent and session: a subagent's parent.
        self._waiting: dict[tuple[str, str | None], dict[str, Conversation]] = {}
        self._max = max_conversations

    def place(self, facts: Facts, now: float) -> Placed:
        found = self._find(facts)
        if found is None:
            conversation = self._start(facts, now)
            placed = Placed(conversation, True)
        else:
            changed = common_prefix(found.digests, facts.digests)
            placed = Placed(found, False, changed if changed < len(found.digests) else None, _head(found, facts))
            conversation = found
        self._update(conversation, facts, now)
        return placed

    def answered(self, conversation: Conversation, tool_calls: bool, response_id: str | None) -> None:
        """The call's answer came: whether it asked for a tool, and its id for ``previous_response_id``."""
        self._wait(conversation, tool_calls)
        if response_id:
            conversation.response_ids.append(response_id)
            self._by_response[response_id] = conversation
            while len(conversation.response_ids) > 8:
                self._by_response.pop(conversation.response_ids.pop(0), None)

    def get(self, conversation_id: str) -> Conversation | None:
        return self._all.get(conversation_id)

    # -- finding -------------------------------------------------------------------------------

    def _find(self, facts: Facts) -> Conversation | None:
        if facts.conversation_key is not None:
            found = self._by_key.get((facts.agent, facts.conversation_key))
            if found is not None:
                return found
        if facts.previous_response_id and (found := self._by_response.get(facts.previous_response_id)):
            return found
        if facts.conversation_key is not None:
            return None  # the client names a conversation Kimi has not seen: a new one
        if facts.prior_seq is not None and (found := self._by_seq.get(facts.prior_seq)) is not None \
                and found.agent == facts.agent and found.session_key == facts.session_key:
            return found
        root = self._root(facts)
        if root is None:
            return None
        best, best_len = None, 0
        for candidate in reversed(self._by_root.get((facts.agent, root), [])):  # most recent first
            if candidate.session_key != facts.session_key:
                continue
            n = common_prefix(candidate.digests, facts.digests)
            if n > best_len:
                best, best_len = candidate, n
        return best or self._edited(facts)

    def _edited(self, facts: Facts) -> Conversation | None:
        """A recent conversation whose history this one repeats but for an edit at its start.

        Most of its messages, two at least, are the same at the same places: the user
        edited the first message (or the agent rewrote it) rather than starting anew.
        """
        seen = 0
        for candidate in reversed(self._all.values()):
            seen += 1
            if seen > RECENT_EDITS:
                break
            if candidate.agent != facts.agent or candidate.session_key != facts.session_key:
                continue
            head = candidate.digests[:EDIT_WINDOW]  # enough to tell, and a bounded cost on the event loop
            same = sum(a == b for a, b in zip(head, facts.digests[:EDIT_WINDOW], strict=False))
            if same >= 2 and same * 2 >= len(head):
                return candidate
        return None

    @staticmethod
    def _root(facts: Facts) -> bytes | None:
        if facts.first_user is None or not 0 <= facts.first_user < len(facts.digests):
            return None
        return facts.digests[facts.first_user]

    # -- bookkeeping ---------------------------------------------------------------------------

    def _start(self, facts: Facts, now: float) -> Conversation:
        conversation = Conversation(uuid.uuid4().hex, facts.agent, facts.session_key, facts.conversation_key,
                                    self._root(facts), now, facts.title)
        parent = self._parent(facts, now)
        if parent is not None:
            conversation.parent_id = parent.id
        self._all[conversation.id] = conversation
        if facts.conversation_key is not None:
            self._by_key[(facts.agent, facts.conversation_key)] = conversation
        if conversation.root is not None:
            self._by_root.setdefault((facts.agent, conversation.root), []).append(conversation)
        while len(self._all) > self._max:
            self._forget(self._all.popitem(last=False)[1])
        return conversation

    def _parent(self, facts: Facts, now: float) -> Conversation | None:
        """The most recent conversation of this agent (and agent session) waiting for a tool's result."""
        waiting = self._waiting.get((facts.agent, facts.session_key))
        best = max(waiting.values(), key=lambda c: c.last_seen, default=None) if waiting else None
        return best if best is not None and now - best.last_seen <= PARENT_SECONDS else None

    def _wait(self, conversation: Conversation, waiting: bool) -> None:
        conversation.waiting_tool = waiting
        key = (conversation.agent, conversation.session_key)
        if waiting:
            self._waiting.setdefault(key, {})[conversation.id] = conversation
        elif (same := self._waiting.get(key)) is not None and same.pop(conversation.id, None) and not same:
            del self._waiting[key]

    def _update(self, conversation: Conversation, facts: Facts, now: float) -> None:
        conversation.digests = facts.digests
        conversation.system, conversation.tools = facts.system, facts.tools
        conversation.last_seen = now
        conversation.calls += 1
        self._wait(conversation, False)  # until its answer says otherwise
        self._all.move_to_end(conversation.id)
        if facts.seq:
            conversation.seqs.add(facts.seq)
            self._by_seq[facts.seq] = conversation
            for old in sorted(conversation.seqs)[:-4]:  # later bodies resume from recent ones only
                conversation.seqs.discard(old)
                if self._by_seq.get(old) is conversation:
                    del self._by_seq[old]

    def _forget(self, conversation: Conversation) -> None:
        self._wait(conversation, False)
        if conversation.conversation_key is not None:
            self._by_key.pop((conversation.agent, conversation.conversation_key), None)
        if conversation.root is not None:
            same = self._by_root.get((conversation.agent, conversation.root), [])
            if conversation in same:
                same.remove(conversation)
            if not same:
                self._by_root.pop((conversation.agent, conversation.root), None)
        for seq in conversation.seqs:
            if self._by_seq.get(seq) is conversation:
                del self._by_seq[seq]
        for response_id in conversation.response_ids:
            self._by_response.pop(response_id, None)
