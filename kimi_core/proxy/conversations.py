"""The agent behind each call and the conversation it continues (see ``kimi_core.conversations``).

The client is read from the request's headers when it comes; the
conversation once the body is analysed (its history's digests are what
thread it), before its row is written. The answer then says whether the
agent was asked to run a tool, which is what lets a subagent started
meanwhile find its parent.
"""

from __future__ import annotations

import re
import time

from mitmproxy import http

from kimi_core import agents
from kimi_core.analysis import Analysis, digest
from kimi_core.conversations import Facts, Placed
from kimi_core.projects import project_of
from kimi_core.proxy.context import KimiContext, LLMCall
from kimi_core.redact import printable, redact_text
from kimi_core.store import ConversationRecord
from kimi_core.store.records import now_iso

CACHEABLE = 1024  # tokens: the least a provider caches (OpenAI, Anthropic); a smaller break costs nothing
TITLE = 80  # characters of the first user message kept as the conversation's title
PROJECT_CALLS = 3  # a conversation's first calls are read for the project its agent names
_WRAPPED = re.compile(r"\s*<([\w-]{1,40})>.*?</\1>", re.DOTALL)  # <system-reminder>...</system-reminder>


def title(text: str) -> str:
    """The user's first words: context blocks the agent prepends dropped, credentials out, one short line."""
    text = text[:4000]
    while (m := _WRAPPED.match(text)) is not None and m.end() < len(text):
        text = text[m.end():]
    words = " ".join(redact_text(text[:1000]).split())  # a title is 80 characters: no need to redact 4,000
    return printable(words, newlines=False)[:TITLE]


class KimiConversations:
    def __init__(self, kimi: KimiContext) -> None:
        self.kimi = kimi

    def request(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is None:
            return
        call.client = agents.identify(flow.request.headers)
        if call.analysis is not None:  # before the recorder's turn: the row names the conversation
            call.when_analysed(lambda: self._place(flow, call))

    def response(self, flow: http.HTTPFlow) -> None:
        call = self.kimi.call(flow)
        if call is not None and call.conversation is not None and call.reply is not None:
            reply, conversation = call.reply, call.conversation
            self.kimi.after_send(lambda: self.kimi.conversations.answered(conversation, reply.tool_calls, reply.id))

    def _place(self, flow: http.HTTPFlow, call: LLMCall) -> None:
        result = call.original or call.result()  # the history as the client sent it, before any compaction
        if result is None or result.request is None or result.error:
            return
        request = result.request
        first_user = next((i for i, m in enumerate(request.messages) if m.role == "user"), None)
        first = request.messages[first_user] if first_user is not None else None
        keys = agents.keys(flow.request.headers, result.body)
        client = call.client or agents.UNKNOWN
        facts = Facts(
            agent=client.agent,
            digests=result.contents,
            first_user=first_user,
            # On a shared proxy, one user's conversation never continues another's (same words or not).
            session_key=f"{call.user}\0{keys.session or ''}" if call.user else keys.session,
            conversation_key=keys.conversation,
            previous_response_id=keys.previous_response,
            prior_seq=result.prior_seq,
            seq=result.seq,
            system=digest(request.system) if request.system else None,
            tools=tuple((t.name, digest(f"{t.description}\0{t.parameters}")) for t in request.tools),
        )
        placed = self.kimi.conversations.place(facts, time.time())
        call.conversation = placed.conversation
        if not placed.new and (placed.head_changed or placed.changed_at is not None):
            self._cache_break(flow, call, result, placed)
        conversation = placed.conversation
        # Its project, from its first calls that name one (Codex may open a socket with an empty call).
        found = project_of(request) if conversation.project is None and conversation.calls <= PROJECT_CALLS \
            else None
        if found is not None:
            conversation.project = found
        if not placed.new and found is not None and self.kimi.store is not None:
            self.kimi.store.submit(ConversationRecord(
                conversation.id, call.session.id if call.session else None, client.agent, client.version,
                conversation.parent_id, now_iso(flow.request.timestamp_start), conversation.title, flow.id, found))
        if placed.new:
            placed.conversation.title = title(first.text) if first is not None else ""
            if self.kimi.store is not None:
                self.kimi.store.submit(ConversationRecord(
                    placed.conversation.id, call.session.id if call.session else None, client.agent, client.version,
                    placed.conversation.parent_id, now_iso(flow.request.timestamp_start), placed.conversation.title,
                    flow.id, placed.conversation.project))
        if call.reply is not None:  # the answer came before the body was parsed
            self.kimi.conversations.answered(placed.conversation, call.reply.tool_calls, call.reply.id)

    def _cache_break(self, flow: http.HTTPFlow, call: LLMCall, result: Analysis, placed: Placed) -> None:
        """An earlier part of the prompt changed: from there on the provider cannot serve it from its cache."""
        count = result.count
        if count is None or not count.per_message:
            return
        if placed.head_changed:
            kept, what = 0, placed.head_changed
        else:
            at = placed.changed_at or 0
            kept = count.head_tokens + sum(count.per_message[:at])
            role = result.request.messages[at].role if result.request and at < len(result.request.messages) else ""
            what = f"message {at + 1}{f' ({role})' if role else ''}"
        paid = count.tokens - kept
        if paid < CACHEABLE:
            return
        conversation = placed.conversation
        self.kimi.alert(flow, call, paid / max(1, count.tokens), "cache_break",
                        f"{conversation.agent} conversation {conversation.id[:8]}: {what} changed since its last "
                        f"call; about {paid:,} of {count.tokens:,} prompt tokens cannot come from the provider's "
                        "cache and are paid in full again")
