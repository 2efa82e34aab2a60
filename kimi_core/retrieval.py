"""What a model can ask back of a compacted tool result: the left-out part of its original.

Compaction keeps every original (the ``archives`` table) and its marker names
the original's sha256. ``excerpt`` returns part of one, bounded in size: a
line range, the lines matching a regular expression, or the lines that hold
a query's words, each with its line number and a little context, and says
how to ask for more. ``serve`` offers it as the MCP tool ``kimi_original``
(``kimi-proxy mcp``, stdio), so that an agent's model fetches what it needs
itself; a person has ``kimi-proxy restore``.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from kimi_core.errors import KimiError, StoreError
from kimi_core.store.read import load_archive

TOOL = "kimi_original"
DEFAULT_CHARS = 8000
MAX_CHARS = 40_000
CONTEXT = 2  # lines around each match
MATCH_LINE = 2000  # characters of a line a pattern is tried on: a pattern gone wrong stays bounded
_WORD = re.compile(r"[A-Za-z0-9_][\w.\-/]*")


def _span(text: str, total: int) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*(?:[-:]\s*(\d+)?)?\s*", text)
    if m is None:
        raise KimiError(f"lines {text!r}: write 120-180, 120- or 120")
    first = max(1, int(m.group(1)))
    last = int(m.group(2)) if m.group(2) else (total if "-" in text or ":" in text else first)
    if last < first:
        raise KimiError(f"lines {text!r}: the range ends before it starts")
    return first, min(last, total)


def _numbered(lines: list[str], wanted: list[int], limit: int) -> tuple[str, int]:
    """Lines ``wanted`` (0-based, sorted) as "N: text", "..." between gaps; what fitted, and up to where."""
    out, size, last, shown = [], 0, -2, -1
    for i in wanted:
        row = f"{i + 1}: {lines[i]}"
        if last >= 0 and i != last + 1:
            row = "...\n" + row
        if size + len(row) + 1 > limit:
            break
        out.append(row)
        size += len(row) + 1
        last = shown = i
    return "\n".join(out), shown


def excerpt(original: str, lines: str = "", pattern: str = "", query: str = "",
            max_chars: int = DEFAULT_CHARS) -> str:
    """Part of ``original``, at most ``max_chars`` characters, with line numbers."""
    limit = max(200, min(int(max_chars), MAX_CHARS))
    all_lines = original.splitlines()
    total = len(all_lines)
    if total == 0:
        return "(the original is empty)"
    if lines.strip():
        first, last = _span(lines, total)
        wanted = list(range(first - 1, last))
        how = f"lines {first}-{last}"
    elif pattern:
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise KimiError(f"pattern {pattern!r} is not a regular expression: {e}") from None
        hits = [i for i, line in enumerate(all_lines) if regex.search(line[:MATCH_LINE])]
        wanted = sorted({j for i in hits for j in range(max(0, i - CONTEXT), min(total, i + CONTEXT + 1))})
        how = f"{len(hits)} line(s) matching {pattern!r}"
    elif query.strip():
        terms = {w.lower() for w in _WORD.findall(query) if len(w) > 1}
        scored = [(sum(t in line.lower() for t in terms), i) for i, line in enumerate(all_lines)]
        hits = sorted(i for score, i in sorted(scored, reverse=True)[:200] if score)
        wanted = sorted({j for i in hits for j in range(max(0, i - CONTEXT), min(total, i + CONTEXT + 1))})
        how = f"{len(hits)} line(s) with words of {query!r}"
    else:
        wanted = list(range(total))
        how = "from the start"
    if not wanted:
        return f"Nothing in the original ({total:,} lines) for {how}. Ask with lines=1-200, pattern or query."
    body, shown = _numbered(all_lines, wanted, limit)
    more = [i for i in wanted if i > shown]
    tail = (f"\n[... {len(more):,} more line(s) of {how}: ask for lines={more[0] + 1}-{more[-1] + 1}, "
            f"or narrow the pattern or query]") if more else ""
    return f"[{how}, of {total:,} lines in the original]\n{body}{tail}"


def fetch(db: Path, sha: str, lines: str = "", pattern: str = "", query: str = "",
          max_chars: int = DEFAULT_CHARS) -> str:
    """``excerpt`` of the archived original ``sha`` (or a unique prefix of it) in the database ``db``."""
    path = Path(db).expanduser()
    if not path.exists():
        raise KimiError(f"no database at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        data = load_archive(conn, sha)
    except StoreError as e:
        raise KimiError(str(e)) from None
    finally:
        conn.close()
    return excerpt(data.decode("utf-8", "replace"), lines, pattern, query, max_chars)


def serve(db: Path) -> None:
    """The MCP server (stdio) with the tool ``kimi_original``."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("kimi-proxy", instructions=(
        "Kimi Proxy shortened some large tool results in this conversation; its markers name the sha256 of "
        "each original. Call kimi_original to read the part of an original you need."))

    @server.tool(name=TOOL, description=(
        "Read part of a tool result that Kimi Proxy shortened: give the sha from its marker ('[... Kimi Proxy "
        "left out ... sha 1a2b3c4d5e6f ...]') and one of: lines ('120-180'), pattern (a regular expression, "
        "matched per line, with 2 lines of context), or query (words to look for). Returns numbered lines, "
        "at most max_chars characters, and how to ask for more."))
    def kimi_original(sha: str, lines: str = "", pattern: str = "", query: str = "",
                      max_chars: int = DEFAULT_CHARS) -> str:
        try:
            return fetch(db, sha, lines, pattern, query, max_chars)
        except KimiError as e:
            return f"error: {e}"

    server.run("stdio")
