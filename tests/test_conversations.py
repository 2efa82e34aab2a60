"""Conversations found from what calls carry: ids, then histories; subagents linked to their parents."""

import hashlib

from kimi_core.conversations import MAX_CONVERSATIONS, ConversationTracker, Facts


def d(text):
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def history(*items):
    return tuple(d(i) for i in items)


def facts(*items, agent="claude-code", session=None, key=None, first_user=0, **kw):
    return Facts(agent, history(*items), first_user, session_key=session, conversation_key=key, **kw)


def test_a_growing_history_is_one_conversation():
    tracker = ConversationTracker()
    first = tracker.place(facts("u1"), 0)
    second = tracker.place(facts("u1", "a1", "u2"), 1)
    third = tracker.place(facts("u1", "a1", "u2", "a2", "u3"), 2)
    assert first.new and not second.new and not third.new
    assert first.conversation is second.conversation is third.conversation
    assert third.conversation.calls == 3 and third.changed_at is None


def test_two_windows_interleaved_stay_apart():
    tracker = ConversationTracker()
    a = [tracker.place(facts(*["fix the parser", "a", "b", "c"][:n]), n) for n in (1, 2, 3)]
    b = [tracker.place(facts(*["write the docs", "x", "y", "z"][:n]), 10 + n) for n in (1, 2, 3)]
    interleaved = [tracker.place(facts(*["fix the parser", "a", "b", "c"][:4]), 20),
                   tracker.place(facts(*["write the docs", "x", "y", "z"][:4]), 21)]
    assert len({p.conversation.id for p in a}) == 1 and len({p.conversation.id for p in b}) == 1
    assert interleaved[0].conversation is a[0].conversation and interleaved[1].conversation is b[0].conversation
    assert a[0].conversation is not b[0].conversation


def test_the_same_first_message_in_two_agent_sessions_is_two_conversations():
    tracker = ConversationTracker()
    one = tracker.place(facts("hello", session="s1"), 0)
    two = tracker.place(facts("hello", session="s2"), 1)
    assert one.conversation is not two.conversation and two.new


def test_a_subagent_started_while_its_parent_waits_for_a_tool_is_linked():
    tracker = ConversationTracker()
    main = tracker.place(facts("build it", session="s"), 0).conversation
    tracker.answered(main, tool_calls=True, response_id=None)  # "Task: explore the code"
    sub = tracker.place(facts("explore the code", session="s"), 1)
    assert sub.new and sub.conversation.parent_id == main.id
    tracker.answered(sub.conversation, tool_calls=True, response_id=None)
    again = tracker.place(facts("explore the code", "calls grep", "grep output", session="s"), 2)
    assert again.conversation is sub.conversation  # the subagent's own turns continue it
    tracker.answered(sub.conversation, tool_calls=False, response_id=None)
    back = tracker.place(facts("build it", "task", "the subagent's report", session="s"), 3)
    assert back.conversation is main


def test_a_new_conversation_with_nobody_waiting_has_no_parent():
    tracker = ConversationTracker()
    main = tracker.place(facts("build it"), 0).conversation
    tracker.answered(main, tool_calls=False, response_id=None)
    other = tracker.place(facts("something else"), 1)
    assert other.new and other.conversation.parent_id is None


def test_a_parent_from_another_agent_or_long_ago_is_not_taken():
    tracker = ConversationTracker()
    codex = tracker.place(facts("task", agent="codex"), 0).conversation
    tracker.answered(codex, tool_calls=True, response_id=None)
    assert tracker.place(facts("fresh"), 1).conversation.parent_id is None
    claude = tracker.place(facts("old", agent="gemini-cli"), 2).conversation
    tracker.answered(claude, tool_calls=True, response_id=None)
    assert tracker.place(facts("late", agent="gemini-cli"), 2 + 3600).conversation.parent_id is None


def test_an_edited_earlier_message_continues_the_conversation_and_says_where():
    tracker = ConversationTracker()
    first = tracker.place(facts("u1", "a1", "u2"), 0).conversation
    edited = tracker.place(facts("u1", "a1 (edited)", "u2", "a2", "u3"), 1)
    assert edited.conversation is first and edited.changed_at == 1


def test_a_conversation_id_wins_over_the_history():
    tracker = ConversationTracker()
    one = tracker.place(facts("same start", agent="codex", key="c1"), 0).conversation
    two = tracker.place(facts("same start", agent="codex", key="c2"), 1).conversation
    assert one is not two
    assert tracker.place(facts("compacted summary", agent="codex", key="c1"), 2).conversation is one


def test_previous_response_id_continues_the_conversation_it_names():
    tracker = ConversationTracker()
    one = tracker.place(facts("u1", agent="openai-python"), 0).conversation
    tracker.answered(one, tool_calls=False, response_id="resp_1")
    # Only the new message is sent: the history lives at the provider.
    follow = tracker.place(facts("u2", agent="openai-python", previous_response_id="resp_1"), 1)
    assert follow.conversation is one and not follow.new


def test_the_analysis_a_body_resumed_from_places_it_at_once():
    tracker = ConversationTracker()
    one = tracker.place(facts("u1", seq=7), 0).conversation
    assert tracker.place(facts("u1", "a1", "u2", seq=8, prior_seq=7), 1).conversation is one


def test_a_history_without_a_user_message_is_its_own_conversation():
    tracker = ConversationTracker()
    a = tracker.place(facts("system only", first_user=None), 0)
    b = tracker.place(facts("system only", first_user=None), 1)
    assert a.new and b.new and a.conversation is not b.conversation


def test_memory_is_bounded():
    tracker = ConversationTracker()
    for i in range(MAX_CONVERSATIONS + 50):
        tracker.place(facts(f"conversation {i}", key=f"k{i}", seq=i + 1), i)
    assert len(tracker._all) == MAX_CONVERSATIONS
    assert len(tracker._by_key) == MAX_CONVERSATIONS and len(tracker._by_seq) == MAX_CONVERSATIONS
    assert sum(len(v) for v in tracker._by_root.values()) == MAX_CONVERSATIONS


def test_an_edited_first_message_continues_the_conversation():
    tracker = ConversationTracker()
    first = tracker.place(facts("u1", "a1", "u2", "a2", "u3"), 0).conversation
    edited = tracker.place(facts("u1 (edited)", "a1", "u2", "a2", "u3", "a3", "u4"), 1)
    assert edited.conversation is first and edited.changed_at == 0
    fresh = tracker.place(facts("other", "x", "y"), 2)
    assert fresh.new


def test_what_changed_ahead_of_the_messages_is_named():
    tracker = ConversationTracker()
    tools = (("Read", d("read v1")), ("Grep", d("grep v1")))
    tracker.place(facts("u1", system=d("sys at 10:00"), tools=tools), 0)
    assert tracker.place(facts("u1", "a", "u2", system=d("sys at 10:00"), tools=tools), 1).head_changed is None
    assert tracker.place(facts("u1", "a", "u2", system=d("sys at 10:05"), tools=tools), 2).head_changed == \
        "the system prompt"
    reordered = tools[::-1]
    assert tracker.place(facts("u1", "a", "u2", system=d("sys at 10:05"), tools=reordered), 3).head_changed == \
        "the order of the tool definitions"
    changed = (("Read", d("read v2")), ("Grep", d("grep v1")), ("Edit", d("edit")))
    assert tracker.place(facts("u1", "a", "u2", system=d("sys at 10:05"), tools=changed), 4).head_changed == \
        "the tool definitions (added Edit; changed Read)"
