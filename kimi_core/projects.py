"""Which project (working directory) a conversation is about, from what the agent tells its model.

Coding agents write their working directory into the prompt; these are the
forms seen in the bodies the real agents send (``tests/test_e2e_agents.py``
checks each):

- Claude Code, in its system prompt: `` - Primary working directory: /path``
  (older versions: ``Working directory: /path``);
- Codex, in a message: ``<environment_context>\\n  <cwd>/path</cwd>``;
- Gemini CLI, in its first message: ``- **Workspace Directories:**\\n  - /path``
  (older versions: ``I'm currently working in the directory: /path``).

Memories said in a conversation carry its project, so that what was said
about one repository is not brought back in another.
"""

from __future__ import annotations

import re

from kimi_core.dialects.base import LLMRequest

PATTERNS = [
    re.compile(r"Primary working directory: *([^\s<>\"']+)"),
    re.compile(r"(?m)^[ \t>*-]*Working directory: *([^\s<>\"']+)"),
    re.compile(r"<cwd>\s*([^<\n]+?)\s*</cwd>"),
    re.compile(r"\*\*Workspace Directories:\*\*\s*\n\s*-\s*([^\s<>\"']+)"),
    re.compile(r"currently working in the directory: *([^\s<>\"']+)"),
]
SCAN = 64 * 1024  # characters read of each text: agents say it near the start
MESSAGES = 4  # the first messages looked at (Codex and Gemini CLI say it in one of the first)


def find_project(text: str) -> str | None:
    head = text[:SCAN]
    for pattern in PATTERNS:
        m = pattern.search(head)
        if m:
            path = m.group(1).strip().rstrip("/.,;:") or "/"
            if path.startswith(("/", "~")) or re.match(r"[A-Za-z]:[\\/]", path):
                return path
    return None


def project_of(request: LLMRequest) -> str | None:
    """The working directory the agent told its model, or None."""
    if request.system and (found := find_project(request.system)):
        return found
    for message in request.messages[:MESSAGES]:
        if message.role in ("user", "system") and message.text and (found := find_project(message.text)):
            return found
    return None
