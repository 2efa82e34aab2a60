"""Kimi's addons together in mitmproxy's test context, with real flows and a real database."""

import asyncio
import gzip
import json
import logging
import re
import runpy
import sqlite3
from pathlib import Path

import pytest
from mitmproxy import eventsequence, exceptions, hooks, http
from mitmproxy.test import taddons, tflow

from kimi_core.proxy import KimiContext, KimiTraffic

ENTRY_SCRIPT = Path(__file__).resolve().parents[1] / "addons" / "kimi.py"


def kimi_addons():
    """The addons exactly as ``addons/kimi.py`` assembles them, with their shared context."""
    script = runpy.run_path(str(ENTRY_SCRIPT))
    return script["kimi"], script["addons"]


CHAT = {"model": "gpt-4", "messages": [{"role": "user", "content": "hello world"}]}
CHAT_REPLY = {"model": "gpt-4", "choices": [{"message": {"content": "hi"}}],
              "usage": {"prompt_tokens": 11, "completion_tokens": 1}}


def make_flow(url, body, headers=None, response=None, method="POST"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    host = url.split("/")[2].split(":")[0]
    req = http.Request.make(method, url, b"", {"host": host, "content-type": "application/json", **(headers or {})})
    req.raw_content = raw  # as sent, whatever content-encoding says
    resp = http.Response.make(200, json.dumps(response).encode(), {"content-type": "application/json"}) \
        if response is not None else False
    return tflow.tflow(req=req, resp=resp)


class Harness:
    def __init__(self, tctx, kimi, db):
        self.tctx, self.kimi, self.db = tctx, kimi, db

    async def run(self, flow):
        """Run the flow's hooks in order, with the response arriving after the request hooks."""
        response, flow.response = flow.response, None
        events = list(eventsequence.iterate(flow))
        for event in events:
            await self.tctx.master.addons.handle_lifecycle(event)
        if response is not None:
            flow.response = response
            for event in list(eventsequence.iterate(flow))[len(events):]:
                await self.tctx.master.addons.handle_lifecycle(event)
        call = self.kimi.call(flow)
        if call is not None and call.analysis is not None:
            await asyncio.wait([call.analysis])  # the row and comment follow the analysis
        for _ in range(3):  # and the bookkeeping done after the response is sent
            await asyncio.sleep(0)
        return flow

    def rows(self):
        self.kimi.store.close()
        db = sqlite3.connect(self.db)
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM requests ORDER BY ts")]


@pytest.fixture
def harness(tmp_path):
    async def make():
        kimi, addons = kimi_addons()
        tctx = taddons.context(*addons)
        tctx.options.update(kimi_db=str(tmp_path / "kimi.db"))
        return Harness(tctx, kimi, tmp_path / "kimi.db")
    return make


def test_an_llm_call_is_parsed_counted_commented_and_recorded(harness):
    async def main():
        h = await harness()
        flow = await h.run(make_flow("https://api.openai.com/v1/chat/completions", CHAT, response=CHAT_REPLY))
        assert flow.comment == "kimi: openai · gpt-4 · est 10 tok · 0% of 8,192 · prompt 11 · out 1"
        assert flow.metadata["kimi"] == {"provider": "openai", "dialect": "openai-chat"}
        [row] = h.rows()
        assert (row["provider"], row["dialect"], row["model"], row["prompt_tokens_est"], row["prompt_tokens"],
                row["completion_tokens"], row["action"], row["error"]) == \
            ("openai", "openai-chat", "gpt-4", 10, 11, 1, "passed", None)
    asyncio.run(main())


def test_other_traffic_is_untouched_and_unrecorded(harness):
    async def main():
        h = await harness()
        flow = make_flow("https://example.com/v1/chat/completions", CHAT, {"X-Kimi-Session": "x"}, CHAT_REPLY)
        before = flow.get_state()
        await h.run(flow)
        assert flow.get_state() == before
        assert h.rows() == []
    asyncio.run(main())


def test_session_header_pins_the_request_and_is_removed(harness):
    async def main():
        h = await harness()
        flow = await h.run(make_flow("https://api.anthropic.com/v1/messages",
                                     {"model": "claude-x", "max_tokens": 5, "messages": []},
                                     {"X-Kimi-Session": "refactor", "X-Kimi-Other": "1"}, {"content": []}))
        assert "x-kimi-session" not in flow.request.headers and "x-kimi-other" not in flow.request.headers
        [row] = h.rows()
        db = sqlite3.connect(h.db)
        assert db.execute("SELECT name, mode FROM sessions WHERE id = ?", (row["session_id"],)).fetchone() == \
            ("refactor", "named")
    asyncio.run(main())


@pytest.mark.parametrize("body,headers,error", [
    (b"{not json", {}, "request body is not JSON"),
    (b"\xff\xfe\x00garbage", {}, "request body is not JSON"),
    (b"", {}, "empty request body"),
    (b"[1, 2]", {}, "not a openai-chat request: expected a JSON object, got list"),
    (b"\x1f\x8b garbage", {"content-encoding": "gzip"}, "cannot decode a gzip-encoded body"),
    (b"[" * 100_000 + b"]" * 100_000, {}, "request body is not JSON"),
])
def test_bad_input_is_forwarded_byte_for_byte_with_the_error_recorded(harness, caplog, body, headers, error):
    async def main():
        h = await harness()
        flow = make_flow("https://api.openai.com/v1/chat/completions", body, headers, CHAT_REPLY)
        with caplog.at_level(logging.WARNING):
            await h.run(flow)
        assert flow.request.raw_content == body
        [row] = h.rows()
        assert row["error"].startswith(error) and row["prompt_tokens"] == 11
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "forwarded unchanged" in warnings[0].getMessage()
        assert "Traceback" not in caplog.text
    asyncio.run(main())


def test_gzip_encoded_request_bodies_are_read(harness):
    async def main():
        h = await harness()
        raw = gzip.compress(json.dumps(CHAT).encode())
        flow = await h.run(make_flow("https://api.openai.com/v1/chat/completions", raw,
                                     {"content-encoding": "gzip"}, CHAT_REPLY))
        assert flow.request.raw_content == raw
        [row] = h.rows()
        assert row["error"] is None and row["prompt_tokens_est"] == 10
    asyncio.run(main())


def test_unknown_paths_on_provider_hosts_are_recorded_and_warned_once(harness, caplog):
    async def main():
        h = await harness()
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                await h.run(make_flow("https://api.openai.com/v1/models", b"", method="GET", response={"data": []}))
        rows = h.rows()
        assert len(rows) == 3 and rows[0]["dialect"] is None
        assert rows[0]["error"] == "not a generation endpoint: GET /v1/models"
        assert len([r for r in caplog.records if "not a generation endpoint" in r.getMessage()]) == 1
    asyncio.run(main())


def test_gemini_key_in_query_is_not_recorded(harness):
    async def main():
        h = await harness()
        await h.run(make_flow(
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent?key=AIzaSECRET123",
            {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, response={"usageMetadata": {"promptTokenCount": 4}}))
        [row] = h.rows()
        assert row["path"] == "/v1beta/models/gemini-2.5-pro:generateContent?key=[REDACTED]"
        assert row["model"] == "gemini-2.5-pro" and row["prompt_tokens"] == 4
        assert b"AIzaSECRET123" not in h.db.read_bytes()
    asyncio.run(main())


def start(tctx, addon):
    """What mitmdump does at start-up: configure with every option."""
    tctx.master.addons.invoke_addon_sync(addon, hooks.ConfigureHook(set(tctx.options.keys())))


def test_allow_hosts_is_set_to_provider_hosts_unless_told_otherwise(tmp_path):
    traffic = KimiTraffic(KimiContext())
    with taddons.context(traffic) as tctx:
        start(tctx, traffic)
        assert r"^api\.openai\.com:[0-9]+$" in tctx.options.allow_hosts
        tctx.options.update(kimi_intercept_all=True)
        assert tctx.options.allow_hosts == []
        tctx.options.update(kimi_intercept_all=False)
        assert r"^api\.anthropic\.com:[0-9]+$" in tctx.options.allow_hosts
        tctx.options.update(allow_hosts=["^mine:443$"])
        assert tctx.options.allow_hosts == ["^mine:443$"]


def test_reverse_mode_target_is_allowed(tmp_path):
    traffic = KimiTraffic(KimiContext())
    with taddons.context(traffic) as tctx:
        start(tctx, traffic)
        tctx.options.update(mode=["reverse:https://api.moonshot.ai"])
        assert r"^api\.moonshot\.ai:443$" in tctx.options.allow_hosts


def test_a_bad_config_file_fails_at_start_up(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text('[providers.x]\ndialect = "soap"\n')
    kimi = KimiContext()
    with (taddons.context(KimiTraffic(kimi)) as tctx,
          pytest.raises(exceptions.OptionsError, match=r"config.toml: providers.x.dialect")):
        tctx.options.update(kimi_config=str(bad))


def test_session_new_command_starts_a_session(harness):
    async def main():
        h = await harness()
        await h.run(make_flow("https://api.openai.com/v1/chat/completions", CHAT, response=CHAT_REPLY))
        h.tctx.master.commands.call("kimi.session.new", "after", "lunch")
        await h.run(make_flow("https://api.openai.com/v1/chat/completions", CHAT, response=CHAT_REPLY))
        first, second = h.rows()
        assert first["session_id"] != second["session_id"]
        db = sqlite3.connect(h.db)
        assert db.execute("SELECT name FROM sessions WHERE id = ?", (second["session_id"],)).fetchone() == ("after lunch",)
    asyncio.run(main())


def test_websocket_upgrades_pass_and_are_noted(harness):
    async def main():
        h = await harness()
        flow = make_flow("https://api.openai.com/v1/realtime?model=gpt-realtime", b"",
                         {"upgrade": "websocket", "connection": "Upgrade"}, method="GET")
        flow.response = http.Response.make(101, b"", {"upgrade": "websocket"})
        await h.run(flow)
        assert flow.request.headers["upgrade"] == "websocket"
        [row] = h.rows()
        assert row["status_code"] == 101 and row["error"] == "websocket upgrade: messages are not metered"
    asyncio.run(main())


def test_shutdown_writes_rows_whose_analysis_is_still_running(harness):
    async def main():
        h = await harness()
        flow = make_flow("https://api.openai.com/v1/chat/completions",  # counted in the thread, unwaited
                         {"model": "gpt-4.1", "messages": [{"role": "user", "content": "word " * 40_000}]},
                         response=CHAT_REPLY)
        response, flow.response = flow.response, None
        events = list(eventsequence.iterate(flow))
        for event in events:
            await h.tctx.master.addons.handle_lifecycle(event)
        flow.response = response
        for event in list(eventsequence.iterate(flow))[len(events):]:
            await h.tctx.master.addons.handle_lifecycle(event)
        await h.tctx.master.addons.trigger_event(hooks.DoneHook())  # before the count can finish
        db = sqlite3.connect(h.db)
        [(prompt_tokens, error)] = db.execute("SELECT prompt_tokens, error FROM requests").fetchall()
        assert prompt_tokens == 11  # the row is there, with the provider's usage
        assert error is None or error == "proxy shut down before the request was counted"
    asyncio.run(main())


def test_a_request_body_streamed_by_mitmproxy_is_noted(harness):
    async def main():
        h = await harness()
        flow = make_flow("https://api.openai.com/v1/chat/completions", CHAT, response=CHAT_REPLY)
        flow.request.stream = True
        flow.request.raw_content = None  # what stream_large_bodies leaves to addons
        await h.run(flow)
        [row] = h.rows()
        assert row["error"] == "request body streamed by mitmproxy (stream_large_bodies): not counted"
        assert row["prompt_tokens"] == 11
    asyncio.run(main())


def tool_chat(output):
    return {"model": "gpt-4.1", "messages": [
        {"role": "user", "content": "which file holds the ledger checksum?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "grep", "arguments": '{"q": "checksum"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": output}]}


LOG = "\n".join(f"src/pkg_{i:05d}/module_{i}.py: ok" for i in range(3000))


def test_a_gzip_encoded_request_is_compacted_and_encoded_again(harness, caplog):
    async def main():
        h = await harness()
        h.tctx.options.update(kimi_tool_budget=1000)
        raw = gzip.compress(json.dumps(tool_chat(LOG)).encode())
        with caplog.at_level(logging.INFO):
            flow = await h.run(make_flow("https://api.openai.com/v1/chat/completions", raw,
                                         {"content-encoding": "gzip"}, CHAT_REPLY))
        assert flow.request.headers["content-encoding"] == "gzip"
        sent = json.loads(gzip.decompress(flow.request.raw_content))
        assert len(sent["messages"][2]["content"]) < len(LOG) // 10
        assert int(flow.request.headers["content-length"]) == len(flow.request.raw_content)
        assert "compacted 1 tool result:" in flow.comment and "→" in flow.comment
        assert "kimi: openai: compacted 1 tool result(s) (grep " in caplog.text
        [row] = h.rows()
        assert (row["action"], row["compacted_results"]) == ("compacted", 1)
        assert row["tokens_before"] > 30_000 and row["tokens_after"] < 1000
        assert h.kimi.calibration.samples("gpt-4.1")  # the usage of what was sent calibrates, as for any request
    asyncio.run(main())


def test_a_budget_of_zero_turns_compaction_off(harness):
    async def main():
        h = await harness()
        h.tctx.options.update(kimi_tool_budget=0)
        raw = json.dumps(tool_chat(LOG)).encode()
        flow = await h.run(make_flow("https://api.openai.com/v1/chat/completions", raw, {}, CHAT_REPLY))
        assert flow.request.raw_content == raw
        [row] = h.rows()
        assert row["action"] == "passed" and row["tokens_before"] is None
    asyncio.run(main())


def test_a_negative_budget_fails_at_start_up(harness):
    async def main():
        h = await harness()
        for bad in (-1, 50):  # 50: smaller than a marker
            with pytest.raises(exceptions.OptionsError, match="kimi_tool_budget"):
                h.tctx.options.update(kimi_tool_budget=bad)
    asyncio.run(main())


def test_a_full_memory_queue_drops_and_counts_and_shutdown_drains_the_rest(harness, monkeypatch):
    from mitmproxy import hooks

    from kimi_core.proxy import memory
    monkeypatch.setattr(memory, "QUEUE_SIZE", 2)

    async def main():
        h = await harness()
        await h.tctx.master.addons.trigger_event(hooks.RunningHook())
        said = [f"I prefer tool{i} over other{i}." for i in range(10)]
        body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": s} for s in said]}
        await h.run(make_flow("https://api.openai.com/v1/chat/completions", body, response=CHAT_REPLY))
        metrics = h.kimi.metrics
        assert metrics.memory_dropped._value.get() == 8
        await h.tctx.master.addons.trigger_event(hooks.DoneHook())  # drains, then the recorder closes
        db = sqlite3.connect(h.db)
        assert [c for (c,) in db.execute("SELECT content FROM memories ORDER BY id")] == \
            ["prefers tool0 over other0", "prefers tool1 over other1"]
        assert metrics.memory_queue._value.get() == 0
    asyncio.run(main())


def test_a_growing_session_gets_a_forecast_in_its_comment_and_metrics(harness):
    async def main():
        h = await harness()
        messages = [{"role": "user", "content": "start"}]
        for turn in range(3):
            messages = messages + [{"role": "assistant", "content": "ok"},
                                   {"role": "user", "content": "lorem ipsum dolor sit amet " * 200}]
            flow = await h.run(make_flow("https://api.openai.com/v1/chat/completions",
                                         {"model": "gpt-4", "messages": messages},
                                         {"X-Kimi-Session": "growing"}, CHAT_REPLY))
        # About 1,000 tokens a turn, calibrated (the fake reports 11 prompt tokens: factor 0.25).
        m = re.search(r"~(\d+) turns left \(\+(\d+)/turn\)", flow.comment)
        assert m and 240 < int(m.group(2)) < 270
        gauge = h.kimi.metrics.turns_left.labels("growing", "openai")._value.get()
        assert gauge == int(m.group(1)) > 0
    asyncio.run(main())


def words(n_bytes: int, seed: int = 0) -> str:
    vocabulary = ["context", "window", "agent", "tool", "result", "model", "token", "proxy", "the", "of", "42"]
    out, size, i = [], 0, seed
    while size < n_bytes:
        w = vocabulary[(i * 7919) % len(vocabulary)] + str(i % 13)
        out.append(w)
        size += len(w) + 1
        i += 1
    return " ".join(out)


def block(executor):
    """Keep ``executor``'s thread busy until the event returned is set."""
    release = asyncio.Event()
    loop = asyncio.get_running_loop()
    blocked = loop.run_in_executor(executor, lambda: asyncio.run_coroutine_threadsafe(
        release.wait(), loop).result())
    return release, blocked


def sender(h):
    """Runs a request's hooks in a task: (flow, task)."""
    async def send(n_bytes, tool_result=False):
        messages = [{"role": "user", "content": words(n_bytes)}]
        if tool_result:
            messages = [{"role": "user", "content": "list the files"},
                        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                            "name": "shell", "arguments": "{}"}}]},
                        {"role": "tool", "tool_call_id": "c1", "content": words(n_bytes)}]
        flow = make_flow("https://api.openai.com/v1/chat/completions", {"model": "gpt-4.1", "messages": messages})
        flow.response = None

        async def hooks_():
            for event in eventsequence.iterate(flow):
                await h.tctx.master.addons.handle_lifecycle(event)
        return flow, asyncio.ensure_future(hooks_())
    return send


def test_a_request_far_from_its_lines_by_estimate_goes_on_before_its_count_ends(harness):
    """Over the lowest line in bytes, far under it by the sampled estimate: not held for the count.
    Near the line by the estimate: held until counted."""
    async def main():
        h = await harness()
        await h.tctx.master.addons.trigger_event(hooks.RunningHook())
        release, blocked = block(h.kimi.analyser)
        send = sender(h)
        try:
            # 1.2 MB: over the 785,682-token line of gpt-4.1's window in bytes, ~330,000 tokens by estimate.
            far, far_hooks = await send(1_200_000)
            await asyncio.wait([far_hooks], timeout=60)
            assert far_hooks.done() and not h.kimi.call(far).analysis.done()
            # 4 MB: ~1,100,000 tokens by estimate, over the line: it waits for its count.
            near, near_hooks = await send(4_000_000)
            while (call := h.kimi.call(near)) is None or call.estimate is None or not call.estimate.done():
                await asyncio.sleep(0.01)
            for _ in range(20):
                await asyncio.sleep(0)
            assert not near_hooks.done()
        finally:
            release.set()
        await blocked
        await asyncio.wait([near_hooks], timeout=120)
        assert near.response is not None and near.response.status_code == 400  # refused once counted
        await asyncio.wait([h.kimi.call(far).analysis], timeout=120)
        assert h.kimi.call(far).decision is not None and not h.kimi.call(far).decision.refuse
        await h.tctx.master.addons.trigger_event(hooks.DoneHook())
    asyncio.run(main())


def test_a_request_the_estimate_let_through_but_the_count_would_refuse_is_alerted(harness, monkeypatch, caplog):
    """The estimate erring low (dense text between its samples) costs the guard its refusal, not the alert."""
    from kimi_core import tokens
    monkeypatch.setattr(tokens, "estimate", lambda raw, encoding_name="", enough=None: 1000)

    async def main():
        h = await harness()
        body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": words(4_000_000)}]}
        flow = await h.run(make_flow("https://api.openai.com/v1/chat/completions", body, response=CHAT_REPLY))
        assert flow.response.status_code == 200
        [row] = h.rows()
        assert row["action"] == "passed" and row["prompt_tokens_est"] > 785_682
    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
    assert "(sent on before its count ended: not refused)" in caplog.text


def test_a_tool_result_under_budget_by_estimate_is_not_held_and_one_far_over_is_compacted_beside_the_count(harness):
    """Over ``kimi_tool_budget`` in bytes, well under it by the sampled estimate: sent on at once. Far over
    it: compacted while the body's count is still running (the row waits for that count)."""
    async def main():
        h = await harness()
        h.tctx.options.update(kimi_tool_budget=100_000)
        await h.tctx.master.addons.trigger_event(hooks.RunningHook())
        release, blocked = block(h.kimi.analyser)
        send = sender(h)
        try:
            flow, task = await send(250_000, tool_result=True)  # ~65,000 tokens
            await asyncio.wait([task], timeout=60)
            assert task.done() and not h.kimi.call(flow).analysis.done()
            big, big_task = await send(1_200_000, tool_result=True)  # ~300,000 tokens
            await asyncio.wait([big_task], timeout=60)
            call = h.kimi.call(big)
            assert big_task.done() and call.action == "compacted" and not call.analysis.done()
            assert len(big.request.content) < 800_000
        finally:
            release.set()
        await blocked
        await asyncio.wait([h.kimi.call(big).analysis], timeout=120)
        call = h.kimi.call(big)
        assert call.original.count.tokens > 250_000  # counted all the same, for the row
        assert call.result().count.tokens < 100_000  # and the call's analysis is still the compacted body's
        await asyncio.wait([h.kimi.call(flow).analysis], timeout=120)
        assert h.kimi.call(flow).action == "passed"
        await h.tctx.master.addons.trigger_event(hooks.DoneHook())
    asyncio.run(main())


def test_a_tool_result_near_the_budget_waits_for_the_count_and_one_known_from_a_turn_before_does_not():
    from kimi_core.analysis import analyse
    from kimi_core.compaction import Compactor
    from kimi_core.proxy.compactor import NEAR, OVER, oversized
    from kimi_core.tokens import TokenCounter
    from kimi_core.toolresults import result_key

    def request(n_bytes):
        body = {"model": "gpt-4.1", "messages": [
            {"role": "user", "content": "list the files"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                "name": "shell", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": words(n_bytes)}]}
        return analyse(json.dumps(body).encode(), "", "openai-chat", "/v1/chat/completions", TokenCounter(), 1 << 26)

    compactor = Compactor()
    near, far, under = request(400_000), request(1_200_000), request(100_000)
    assert oversized(near, 100_000, compactor) == NEAR  # ~100,000 tokens: the count decides
    assert oversized(far, 100_000, compactor) == OVER
    assert oversized(under, 100_000, compactor) == 0
    exact = TokenCounter().count_text(near.request.messages[2].tool_results[0].content)
    compactor.remember(result_key(near.digests, 2, near.request.messages[2].tool_results[0], "cl100k_base"), exact)
    assert oversized(near, 100_000, compactor) == (OVER if exact > 100_000 else 0)  # known: no estimate


def test_a_result_resent_every_turn_is_archived_once_and_again_in_a_database_made_anew(harness):
    from kimi_core.store import ArchiveRecord

    async def main():
        h = await harness()
        h.tctx.options.update(kimi_tool_budget=5000)
        await h.tctx.master.addons.trigger_event(hooks.RunningHook())
        archived = []
        submit = h.kimi.store.submit
        h.kimi.store.submit = lambda record: (archived.append(record) if isinstance(record, ArchiveRecord)
                                              else None, submit(record))
        listing = words(120_000)
        messages = [{"role": "user", "content": "list the files"},
                    {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                        "name": "shell", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": listing}]

        async def turn(n):
            nonlocal messages
            messages = messages + [{"role": "user", "content": f"and turn {n}?"}]
            flow = await h.run(make_flow("https://api.openai.com/v1/chat/completions",
                                         {"model": "gpt-4.1", "messages": messages}, response=CHAT_REPLY))
            assert h.kimi.call(flow).action == "compacted"
            messages.append({"role": "assistant", "content": f"answer {n}"})

        for n in range(3):
            await turn(n)
        assert len(archived) == 1
        await asyncio.to_thread(lambda: wait_until(lambda: h.kimi.store.pending == 0))
        h.db.unlink()  # deleted while the proxy runs: the next write makes a new one
        await turn(3)
        await asyncio.to_thread(lambda: wait_until(lambda: h.kimi.store.generation == 1))
        await turn(4)
        assert len(archived) == 2
        await h.tctx.master.addons.trigger_event(hooks.DoneHook())
        db = sqlite3.connect(h.db)
        assert db.execute("SELECT count(*) FROM archives").fetchone()[0] == 1  # in the new file
    asyncio.run(main())


def wait_until(condition, timeout=60.0):
    import time
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
