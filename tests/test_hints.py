"""Memory hints and projects: what is brought back, when, where it is written."""

import datetime
import json

import pytest

from kimi_core import hints
from kimi_core.dialects import parse_request
from kimi_core.hints import Remembered, block, due, inject, select
from kimi_core.projects import find_project

DAY = datetime.date(2026, 12, 2)  # a Wednesday


def m(kind, content, project="", created=DAY, memory_id=1):
    return Remembered(memory_id, kind, content, project, created)


@pytest.mark.parametrize("text,expected", [
    # As the real agents write it (tests/test_e2e_agents.py checks them against each agent's own body).
    (" - Primary working directory: /home/ana/src/shop\n - Is a git repository: true", "/home/ana/src/shop"),
    ("<env>\nWorking directory: /home/ana/src/shop\nIs directory a git repo: Yes\n</env>", "/home/ana/src/shop"),
    ("<environment_context>\n  <cwd>/home/ana/src/shop</cwd>\n  <shell>bash</shell>", "/home/ana/src/shop"),
    ("- **Workspace Directories:**\n  - /home/ana/src/shop\n- **Directory Structure:**", "/home/ana/src/shop"),
    ("I'm currently working in the directory: /home/ana/src/shop\n", "/home/ana/src/shop"),
    ("<cwd>C:\\Users\\ana\\shop</cwd>", "C:\\Users\\ana\\shop"),
    ("The working directory is where you are.", None),
    ("Working directory: relative/path", None),
])
def test_the_project_is_the_working_directory_the_agent_names(text, expected):
    assert find_project(text) == expected


def test_on_a_shared_proxy_only_what_this_user_said_comes_back():
    book = [Remembered(1, "constraint", "never touch the billing module", "", DAY, user="alice"),
            Remembered(2, "constraint", "never rename the billing tables", "", DAY, user="bob"),
            Remembered(3, "constraint", "never delete the billing logs", "", DAY)]  # said with no proxyauth
    text = "Please fix the rounding bug in the billing module and the billing tables and logs."
    assert [x.id for x in select(book, text, None, DAY, user="alice")] == [1]
    assert [x.id for x in select(book, text, None, DAY, user="bob")] == [2]
    assert [x.id for x in select(book, text, None, DAY)] == [3]


def test_a_constraint_comes_back_when_its_subject_is_in_the_conversation():
    book = [m("constraint", "never touch the billing module"), m("preference", "prefers pytest over unittest"),
            m("constraint", "never deploy on fridays")]
    chosen = select(book, "Please fix the rounding bug in the billing module.", None, DAY)
    assert [x.content for x in chosen] == ["never touch the billing module"]
    chosen = select(book, "Add tests with pytest for the parser.", None, DAY)
    assert [x.content for x in chosen] == ["prefers pytest over unittest"]
    assert select(book, "What is the capital of France?", None, DAY) == []


def test_a_memory_of_one_project_never_goes_to_another():
    book = [m("constraint", "never push directly to main", project="/src/shop"),
            m("preference", "prefers httpx over requests")]
    here = select(book, "Write the release notes.", "/src/shop", DAY)
    assert [x.content for x in here] == ["never push directly to main"]  # said in this repository
    assert select(book, "Push the fix to main.", "/src/blog", DAY) == []
    assert select(book, "Push the fix to main.", None, DAY) == []
    assert [x.content for x in select(book, "Call the API with httpx.", "/src/blog", DAY)] == \
        ["prefers httpx over requests"]  # said with no project: anywhere it bears


def test_an_intention_is_offered_on_its_day():
    friday = m("intention", "plans: moving the ci to github actions (on friday)")
    assert due(friday.content, DAY) == (DAY + datetime.timedelta(days=2),) * 2
    assert select([friday], "hello", None, DAY) == []
    assert select([friday], "hello", None, DAY + datetime.timedelta(days=2)) == [friday]
    assert due("plans to ship the refactor (next week)", DAY) == (datetime.date(2026, 12, 7),
                                                                  datetime.date(2026, 12, 13))
    assert due("prévoit de migrer la base (demain)", DAY) == (DAY + datetime.timedelta(days=1),) * 2
    assert due("plans to rewrite the cli in rust (at some point)", DAY) is None
    assert due("plans to release (next friday)", datetime.date(2026, 12, 4)) == (datetime.date(2026, 12, 11),) * 2


def test_nothing_secret_and_no_more_than_the_budget():
    book = [m("constraint", f"never change the module number {i} of the billing code", memory_id=i)
            for i in range(60)]
    book.append(m("constraint", "never share the billing token [REDACTED]"))
    chosen = select(book, "the billing code modules", None, DAY, max_tokens=120)
    assert chosen and all("REDACTED" not in x.content for x in chosen)
    assert len(block(chosen)) // 4 <= 120 + 10


def test_the_block_is_marked_and_the_same_for_the_same_memories():
    chosen = [m("preference", "prefers pytest over unittest"), m("constraint", "never touch the billing module")]
    text = block(chosen)
    assert text.startswith(hints.BEGIN) and text.endswith(hints.END)
    assert text == block(list(reversed(chosen)))
    assert text.index("never touch") < text.index("prefers pytest")  # rules first


@pytest.mark.parametrize("dialect,body,path", [
    ("anthropic", {"model": "claude", "system": "You are Claude Code.", "messages": [{"role": "user", "content": "hi"}]}, ""),
    ("anthropic", {"model": "claude", "system": [{"type": "text", "text": "You are Claude Code.",
                                                   "cache_control": {"type": "ephemeral"}}],
                   "messages": [{"role": "user", "content": "hi"}]}, ""),
    ("anthropic", {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}, ""),
    ("openai-chat", {"model": "gpt-4.1", "messages": [{"role": "system", "content": "Be brief."},
                                                      {"role": "user", "content": "hi"}]}, ""),
    ("openai-chat", {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}, ""),
    ("openai-responses", {"model": "gpt-5", "instructions": "You are Codex.", "input": "hi"}, ""),
    ("gemini", {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "systemInstruction": {"parts": [{"text": "You are Gemini CLI."}]}},
     "/v1beta/models/gemini-2.5-pro:generateContent"),
    ("gemini", {"model": "gemini-2.5-pro", "request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}},
     "/v1internal:generateContent"),
    ("bedrock-converse", {"system": [{"text": "Be brief."}], "messages": [{"role": "user", "content": [{"text": "hi"}]}]},
     "/model/x/converse"),
])
def test_the_block_lands_in_each_dialects_system_prompt(dialect, body, path):
    text = block([m("constraint", "never touch the billing module")])

    def inner(b):  # Gemini Code Assist's envelope: the API's request inside
        return b.get("request", b)

    before = parse_request(dialect, inner(json.loads(json.dumps(body))), path)
    assert inject(dialect, body, text)
    after = parse_request(dialect, inner(body), path)
    assert after.system.endswith(text) or any(msg.role == "system" and text in msg.text for msg in after.messages)
    assert before.system in after.system
    assert [msg.text for msg in after.messages if msg.role == "user"] == \
        [msg.text for msg in before.messages if msg.role == "user"]
