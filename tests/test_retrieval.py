"""What a model can ask back of a compacted tool result: excerpts, and the MCP tool serving them."""

import asyncio
import hashlib
import sys

import pytest

from kimi_core.errors import KimiError
from kimi_core.retrieval import TOOL, excerpt
from kimi_core.store import ArchiveRecord, Store

ORIGINAL = "\n".join(f"line {i}: " + ("ERROR disk full" if i in (500, 1500) else f"module_{i}.py ok")
                     for i in range(1, 2001))


def test_a_line_range_comes_back_numbered():
    out = excerpt(ORIGINAL, lines="10-12")
    assert out.splitlines() == ["[lines 10-12, of 2,000 lines in the original]",
                                "10: line 10: module_10.py ok", "11: line 11: module_11.py ok",
                                "12: line 12: module_12.py ok"]


def test_a_pattern_returns_its_lines_with_context_and_gaps_marked():
    out = excerpt(ORIGINAL, pattern=r"ERROR \w+ full")
    assert "[2 line(s) matching" in out and "500: line 500: ERROR disk full" in out
    assert "498: line 498" in out and "502: line 502" in out and "1500: line 1500: ERROR" in out
    assert "...\n1498: line 1498" in out  # a gap between the two matches


def test_a_query_finds_the_lines_holding_its_words():
    out = excerpt(ORIGINAL, query="where is module_1234.py?")
    assert "1234: line 1234: module_1234.py ok" in out


def test_the_answer_is_bounded_and_says_how_to_ask_for_more():
    out = excerpt(ORIGINAL, max_chars=1000)
    assert len(out) < 1300
    assert out.rstrip().endswith("or narrow the pattern or query]") and "ask for lines=" in out


def test_bad_questions_are_answered_with_what_is_wrong():
    with pytest.raises(KimiError, match="is not a regular expression"):
        excerpt(ORIGINAL, pattern="(")
    with pytest.raises(KimiError, match="write 120-180"):
        excerpt(ORIGINAL, lines="the end")
    assert excerpt(ORIGINAL, pattern="no such thing").startswith("Nothing in the original (2,000 lines)")


def test_the_mcp_tool_reads_an_archived_original_through_the_official_client(tmp_path):
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    db = tmp_path / "kimi.db"
    store = Store(db)
    store.open()
    store.start()
    store.submit(ArchiveRecord(ORIGINAL, 30_000, 3_000, "request-1", "bash"))
    store.close()
    digest = hashlib.sha256(ORIGINAL.encode()).hexdigest()

    async def ask():
        server = StdioServerParameters(command=sys.executable, args=["-m", "kimi_core.cli", "--db", str(db), "mcp"])
        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            found = await session.call_tool(TOOL, {"sha": digest[:12], "pattern": "ERROR"})
            missing = await session.call_tool(TOOL, {"sha": "abcdef123456", "lines": "1-5"})
            return tools, found, missing

    tools, found, missing = asyncio.run(asyncio.wait_for(ask(), 60))
    assert [t.name for t in tools.tools] == [TOOL]
    text = found.content[0].text
    assert "500: line 500: ERROR disk full" in text and "1500: line 1500: ERROR disk full" in text
    assert missing.content[0].text == "error: no archived tool result matches abcdef123456"
