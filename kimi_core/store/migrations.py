"""The schema, as numbered migrations. Never edit an applied one: add one.

Public tables (users query them with sqlite-utils or Datasette; names and
columns are kept stable, columns are only ever added):

- ``sessions``: one row per session of work with an agent.
- ``requests``: one row per LLM call.
- ``blobs``: bodies, content-addressed (sha256 of the stored text) and
  lz4-compressed, so a message resent on every turn is stored once. A
  request's history is a blob too: the JSON list of its messages' hashes, or
  (a turn that resends the history before it) ``{"prior": <that history's
  blob>, "keep": n, "then": [<hashes of what follows>]}``.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("kimi")


@migrations(name="001_initial")
def m001_initial(db: Database) -> None:
    db["sessions"].create(
        {
            "id": str,  # opaque id
            "name": str,  # "2026-11-21 12:34:56 openai", or the X-Kimi-Session name
            "provider": str,  # provider of the session's first request
            "started_at": str,  # ISO 8601, UTC
            "mode": str,  # "auto", "manual" or "named"
        },
        pk="id",
    )
    db["blobs"].create(
        {
            "hash": str,  # sha256 hex of the stored (redacted) bytes
            "size": int,  # bytes before compression
            "data": bytes,  # lz4 frame
            "created_at": str,
            "last_used": str,  # last request that referenced it; retention drops the oldest
        },
        pk="hash",
    )
    db["requests"].create(
        {
            "id": str,  # mitmproxy's flow id
            "ts": str,  # when the request started, ISO 8601 UTC
            "session_id": str,
            "provider": str,
            "dialect": str,  # openai-chat, openai-responses, anthropic, gemini; NULL if unknown
            "host": str,
            "path": str,  # with credentials in the query redacted
            "method": str,
            "model": str,
            "status_code": int,  # NULL when no response came back
            "streamed": int,  # 1 when the response was an event stream
            "prompt_tokens_est": int,  # local tiktoken count
            "tokenizer": str,  # encoding used for the local count
            "tokens_approximate": int,  # 1 when the encoding is not the model's own
            "prompt_tokens": int,  # provider-reported, NULL when absent
            "completion_tokens": int,
            "cached_tokens": int,
            "ttfb_ms": float,  # request start to first response byte
            "duration_ms": float,  # request start to end of response
            "action": str,  # "passed" (later: "rejected", "compacted")
            "error": str,  # what went wrong reading or forwarding, NULL if nothing
            "messages": int,  # number of messages in the history
            "request_bytes": int,
            "response_bytes": int,
            "request_body": str,  # blob hash: the body without its history list (or the raw body)
            "history": str,  # blob hash: the history's message blob hashes (read.history_hashes)
            "response_body": str,  # blob hash
        },
        pk="id",
        foreign_keys=[("session_id", "sessions", "id")],
    )
    db["requests"].create_index(["session_id"])
    db["requests"].create_index(["ts"])
    db["blobs"].create_index(["last_used"])


@migrations(name="002_context_guard")
def m002_context_guard(db: Database) -> None:
    """The context guard: windows, calibrated estimates, alerts, what was learned."""
    requests = db["requests"]
    requests.add_column("context_window", int)  # the window the decision used
    requests.add_column("window_source", str)  # learned, config, builtin, provider default, fallback
    requests.add_column("calibration_factor", float)  # reported / estimated prompt tokens for the model
    requests.add_column("prompt_tokens_cal", int)  # prompt_tokens_est x calibration_factor
    requests.add_column("window_share", float)  # prompt_tokens_cal / context_window
    db["alerts"].create(
        {
            "id": int,
            "ts": str,
            "session_id": str,
            "request_id": str,
            "level": float,  # the threshold reached (0.75, 0.85, 0.95...); 1.0 for provider overflows
            "kind": str,  # "window_share", "rejected", "provider_overflow"
            "message": str,
        },
        pk="id",
    )
    db["alerts"].create_index(["request_id"])
    db["calibration"].create(
        {"model": str, "ratios": str, "factor": float, "updated_at": str},  # ratios: JSON list, newest last
        pk="model",
    )
    db["learned_windows"].create(
        {"model": str, "context_window": int, "learned_at": str, "message": str},
        pk="model",
    )


@migrations(name="003_archives")
def m003_archives(db: Database) -> None:
    """Originals of compacted tool results, so that nothing is lost."""
    db["archives"].create(
        {
            "sha256": str,  # hex digest of the original text encoded as UTF-8
            "original": bytes,  # the original UTF-8 bytes, as an LZ4 frame (lz4.frame)
            "original_tokens": int,
            "kept_tokens": int,  # tokens of what was sent instead
            "request_id": str,  # the first request it was compacted in
            "tool_name": str,
            "created_at": str,
        },
        pk="sha256",
    )


@migrations(name="004_compaction")
def m004_compaction(db: Database) -> None:
    """What compaction did to each request (``action`` is then 'compacted').

    Alerts of kind "rescued" appear from here on: a request the guard would
    have refused, sent after older tool results were compacted.
    """
    db["requests"].add_column("tokens_before", int)  # local estimate of the prompt as the client sent it
    db["requests"].add_column("tokens_after", int)  # and as Kimi sent it on, after compaction
    db["requests"].add_column("compacted_results", int)  # how many tool results were compacted


@migrations(name="005_memories")
def m005_memories(db: Database) -> None:
    """What users told their agents about themselves (see ``kimi_core.memory``)."""
    db["memories"].create(
        {
            "id": int,
            "created_at": str,
            "last_seen": str,  # when it was last said again
            "session_id": str,  # where it was first said
            "provider": str,
            "kind": str,  # "preference", "intention" or "constraint"
            "content": str,  # the canonical statement: "prefers pytest over unittest"
            "source_text": str,  # the sentence it was read from (credentials removed)
            "confidence": float,  # 0..1, the highest seen
            "count": int,  # how many times it was said
        },
        pk="id",
    )
    db["memories"].create_index(["kind", "content"], unique=True)


@migrations(name="006_calibration_overhead")
def m006_calibration_overhead(db: Database) -> None:
    """Calibration as overhead + factor (see ``kimi_core.guard.fit``); the transport of each call."""
    calibration = db["calibration"]
    calibration.add_column("samples", str)  # JSON list of [local estimate, reported prompt], newest last
    calibration.add_column("overhead", float)  # tokens the provider adds to every request
    requests = db["requests"]
    requests.add_column("calibration_overhead", float)  # prompt_tokens_cal = overhead + factor x estimate
    requests.add_column("transport", str)  # "http", or "websocket" for a call on a WebSocket


@migrations(name="007_conversations_and_agents")
def m007_conversations_and_agents(db: Database) -> None:
    """Which agent made each call and which conversation it continues (see ``kimi_core.conversations``)."""
    db["conversations"].create(
        {
            "id": str,  # opaque id
            "session_id": str,  # the session its first call fell in
            "agent": str,  # "claude-code", "codex", "gemini-cli", ..., an SDK ("openai-python"), or "unknown"
            "agent_version": str,
            "parent_id": str,  # the conversation whose tool call started it (a subagent), or NULL
            "started_at": str,  # ISO 8601, UTC
            "title": str,  # its first user message, shortened (credentials removed)
            "first_request_id": str,
        },
        pk="id",
    )
    db["conversations"].create_index(["session_id"])
    requests = db["requests"]
    requests.add_column("agent", str)
    requests.add_column("agent_version", str)
    requests.add_column("conversation_id", str)
    requests.add_column("cache_write_tokens", int)  # of prompt_tokens, written to the provider's cache
    requests.add_column("reasoning_tokens", int)  # of completion_tokens
    requests.create_index(["conversation_id"])


@migrations(name="008_cost")
def m008_cost(db: Database) -> None:
    """What each call cost (see ``kimi_core.cost``)."""
    requests = db["requests"]
    requests.add_column("cost_usd", float)  # US dollars; NULL when no price is known (cost_note says why)
    requests.add_column("cost_note", str)  # how it was priced, or why it was not
    requests.add_column("saved_usd", float)  # what compaction saved, at the model's input price


@migrations(name="009_conversation_timeline")
def m009_conversation_timeline(db: Database) -> None:
    """A conversation's calls in order, read from the index alone (the dashboard's timeline and gauges)."""
    db["requests"].create_index(["conversation_id", "ts"], index_name="idx_requests_conversation_ts",
                                if_not_exists=True)


@migrations(name="010_projects")
def m010_projects(db: Database) -> None:
    """The project (working directory) of each call, conversation and memory (``kimi_core.projects``);
    what memory hints were added to a call (``kimi_memory_hints``)."""
    db["requests"].add_column("project", str)
    db["requests"].add_column("hints", str)  # JSON list of the memories added to its system prompt
    db["conversations"].add_column("project", str)
    # '' rather than NULL for "no project": the unique index must hold across it.
    db.execute("ALTER TABLE memories ADD COLUMN project TEXT NOT NULL DEFAULT ''")
    db.execute("DROP INDEX IF EXISTS idx_memories_kind_content")
    db["memories"].create_index(["kind", "content", "project"], unique=True,
                                index_name="idx_memories_kind_content_project")


@migrations(name="011_users")
def m011_users(db: Database) -> None:
    """Who made each call on a shared proxy (mitmproxy's ``proxyauth``): its user, and each session's."""
    db["requests"].add_column("user", str)
    db["sessions"].add_column("user", str)
    db["requests"].create_index(["user", "ts"], index_name="idx_requests_user_ts", if_not_exists=True)


@migrations(name="012_memory_users")
def m012_memory_users(db: Database) -> None:
    """Each user's memories their own (a shared proxy): '' when no proxyauth named anyone."""
    db.execute("ALTER TABLE memories ADD COLUMN user TEXT NOT NULL DEFAULT ''")
    db.execute("DROP INDEX IF EXISTS idx_memories_kind_content_project")
    db["memories"].create_index(["kind", "content", "project", "user"], unique=True,
                                index_name="idx_memories_kind_content_project_user")
