"""The live dashboard end to end: a real mitmdump with Kimi serving it, the fake provider, the official
SDKs for traffic; its API and its security over plain HTTP and WebSocket clients."""

import json
import socket
import sqlite3
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from conftest import dashboard_proxy, wait_rows
from test_e2e import anthropic_client, openai_client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kimi_core.testing.proxy import Mitmdump, free_port

pytestmark = pytest.mark.e2e



@pytest.fixture(scope="module")
def served(fake, tmp_path_factory):
    with dashboard_proxy(fake, tmp_path_factory.mktemp("dashboard")) as running:
        yield running


def web(url, token=None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, trust_env=False, timeout=10, **kw)


def wait_for(fn, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def tag():
    return f"dash-{uuid.uuid4().hex[:10]}"


def test_every_request_needs_the_token(served):
    url = served.url
    token = served.token
    with web(url) as anonymous:
        for path in ("/", "/api/now", "/api/calls", "/static/app.js", "/api/memories", "/nowhere"):
            r = anonymous.get(path)
            assert r.status_code == 401, path
            assert token not in r.text
        assert anonymous.get("/api/now", headers={"Authorization": "Bearer not-the-token"}).status_code == 401
    port = url.rsplit(":", 1)[1].strip("/")
    with web(url, cookies={f"kimi_dashboard_{port}": "not-the-token"}) as forged:
        assert forged.get("/api/now").status_code == 401
    with web(url, token) as client:
        assert client.get("/api/now").status_code == 200
        assert client.get("/nowhere").status_code == 404


def test_the_token_in_the_address_becomes_a_cookie_and_leaves_the_address(served):
    url = served.url
    token = served.token
    with web(url) as browser:
        r = browser.get("/", params={"token": token})
        assert r.status_code == 302 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        page = browser.get("/")  # the cookie, now
        assert page.status_code == 200 and "<title>Kimi Proxy</title>" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"


def test_a_foreign_host_name_is_refused_even_with_the_token(served):
    """DNS rebinding: a page of evil.example whose name now points at 127.0.0.1 sends its own Host."""
    url = served.url
    token = served.token
    port = url.rsplit(":", 1)[1].strip("/")
    with web(url, token) as client:
        assert client.get("/api/now", headers={"Host": f"evil.example:{port}"}).status_code == 403
        assert client.get("/api/now", headers={"Host": f"localhost:{port}"}).status_code == 200


def test_the_websocket_needs_the_token_and_the_dashboards_own_origin(served):
    url = served.url
    token = served.token
    ws_url = url.replace("http://", "ws://") + "ws"
    origin = url.rstrip("/")
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url, origin=origin, open_timeout=10).close()
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as foreign:
        connect(ws_url, origin="http://evil.example", additional_headers={"Authorization": f"Bearer {token}"},
                open_timeout=10).close()
    assert foreign.value.response.status_code == 403
    with connect(ws_url, origin=origin, additional_headers={"Authorization": f"Bearer {token}"},
                 open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"


def test_calls_and_alerts_are_pushed_as_they_are_recorded(served):
    proxy = served.proxy
    url = served.url
    token = served.token
    ws_url = url.replace("http://", "ws://") + "ws"
    with connect(ws_url, origin=url.rstrip("/"), additional_headers={"Authorization": f"Bearer {token}"},
                 open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        model = tag()
        openai_client(proxy).chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        [row] = wait_rows(proxy.db, "model = ?", (model,))
        event = next(e for e in (json.loads(ws.recv(timeout=10)) for _ in range(20)) if e.get("model") == model)
        assert event["type"] == "call" and event["id"] == row["id"]
        assert event["prompt_tokens_est"] == row["prompt_tokens_est"]
        assert set(event) <= {"type", "id", "ts", "session_id", "conversation_id", "agent", "provider", "model",
                              "status_code", "action", "prompt_tokens_est", "prompt_tokens_cal", "prompt_tokens",
                              "completion_tokens", "cached_tokens", "context_window", "window_share", "cost_usd",
                              "duration_ms", "transport", "user"}  # figures and names: never a body
        with pytest.raises(Exception):  # noqa: B017  (the SDK's BadRequestError)
            openai_client(proxy).chat.completions.create(
                model="small", messages=[{"role": "user", "content": "lorem ipsum " * 2000}])
        alert = next(e for e in (json.loads(ws.recv(timeout=10)) for _ in range(20)) if e["type"] == "alert")
        assert alert["kind"] == "rejected" and "2,000" in alert["message"]


def test_the_api_answers_with_the_rows_figures(served):
    proxy = served.proxy
    url = served.url
    token = served.token
    model = tag()
    system = "You are a careful coding agent. " * 40
    tools = [{"name": "read_file", "description": "Read a file from the repository. " * 10,
              "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}},
             {"name": "never_used", "description": "A tool nobody calls. " * 30,
              "input_schema": {"type": "object", "properties": {}}}]
    listing = "\n".join(f"src/module_{i}.py: def function_{i}(x): return x * {i}" for i in range(300))
    first = [{"role": "user", "content": "Read src/app.py and explain it."}]
    then = first + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "read_file",
                                           "input": {"path": "src/app.py"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": listing}]}]
    client = anthropic_client(proxy)
    for messages in (first, then):
        client.messages.create(model=model, max_tokens=100, system=system, tools=tools, messages=messages)
    rows = wait_rows(proxy.db, "model = ?", (model,), count=2)
    assert len(rows) == 2
    cid = rows[1]["conversation_id"]
    assert cid and rows[0]["conversation_id"] == cid
    with web(url, token) as api:
        now = api.get("/api/now").json()
        mine = next(c for c in now["conversations"] if c["id"] == cid)
        assert mine["calls"] == 2 and mine["model"] == model and mine["last_call"] == rows[1]["id"]
        assert mine["context_window"] == rows[1]["context_window"]
        assert now["lines"] == {"alerts": [0.75, 0.85, 0.95], "reject_at": 0.95}

        timeline = api.get(f"/api/conversations/{cid}").json()
        assert [t["id"] for t in timeline["turns"]] == [r["id"] for r in rows]

        call = api.get(f"/api/calls/{rows[1]['id']}").json()
        comp = call["composition"]
        # The parts add up to the row's local count, and are what the request holds.
        assert comp["tokens"] == rows[1]["prompt_tokens_est"] == sum(p["tokens"] for p in comp["parts"])
        kinds = {(g["kind"], g["label"]) for g in comp["groups"]}
        assert {("system", "system prompt"), ("tool_definition", "read_file"), ("tool_definition", "never_used"),
                ("tool_result", "read_file"), ("tool_call", "read_file")} <= kinds
        result = next(g for g in comp["groups"] if g["kind"] == "tool_result")
        assert result["tokens"] > 0.5 * comp["tokens"]  # the listing dominates
        growth = call["growth"]
        assert growth["previous_call"] == rows[0]["id"]
        assert growth["tokens"] == rows[1]["prompt_tokens_est"] - rows[0]["prompt_tokens_est"]
        assert {g["kind"] for g in growth["new_parts"]} >= {"tool_result", "tool_call"}

        findings = api.get("/api/findings").json()
        unused = [f for f in findings if f["kind"] == "unused_tools" and f["conversation_id"] == cid]
        assert unused and unused[0]["tools"] == ["never_used"]

        assert api.get("/api/calls/no-such-call").status_code == 404
        assert api.get("/api/calls", params={"limit": "x"}).status_code == 400


def test_a_memory_is_forgotten_only_with_the_change_header(served):
    proxy = served.proxy
    url = served.url
    token = served.token
    db = sqlite3.connect(proxy.db)
    db.execute("INSERT INTO memories (created_at, last_seen, kind, content, source_text, confidence, count) "
               "VALUES ('2026-12-01', '2026-12-01', 'preference', 'prefers tabs', 'I prefer tabs', 0.9, 1)")
    db.commit()
    [(memory_id,)] = db.execute("SELECT id FROM memories WHERE content = 'prefers tabs'").fetchall()
    with web(url, token) as api:
        assert any(m["id"] == memory_id for m in api.get("/api/memories", params={"q": "tabs"}).json())
        assert api.delete(f"/api/memories/{memory_id}").status_code == 403  # a cross-site form cannot add it
        assert db.execute("SELECT count(*) FROM memories WHERE id = ?", (memory_id,)).fetchone()[0] == 1
        r = api.delete(f"/api/memories/{memory_id}", headers={"X-Kimi-Change": "1"})
        assert r.status_code == 200 and r.json() == {"forgotten": memory_id}
        assert db.execute("SELECT count(*) FROM memories WHERE id = ?", (memory_id,)).fetchone()[0] == 0
        assert api.delete(f"/api/memories/{memory_id}", headers={"X-Kimi-Change": "1"}).status_code == 404


def test_a_taken_port_costs_the_dashboard_not_the_traffic(fake, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with Mitmdump(tmp_path, upstream_port=fake.port, options={"kimi_web_port": str(port)}) as proxy:
            model = tag()
            openai_client(proxy).chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
            assert wait_rows(proxy.db, "model = ?", (model,))
            assert wait_for(lambda: "dashboard off: cannot listen" in proxy.log())
            assert "dashboard on" not in proxy.log()



def test_a_compacted_call_links_to_its_original(served):
    proxy, url, token = served.proxy, served.url, served.token
    model = tag()
    listing = "\n".join(f"-rw-r--r-- 1 dev dev {i * 7919 % 100000:>6} Nov 30 12:00 lib/pkg_{i}/module_{i}.py"
                        for i in range(12_000))  # about 250,000 tokens: over the 50,000-token budget
    messages = [
        {"role": "user", "content": "Which module is the largest?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash",
                                           "input": {"command": "ls -lR lib"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": listing}]}]
    anthropic_client(proxy).messages.create(model=model, max_tokens=100, messages=messages)
    [row] = wait_rows(proxy.db, "model = ?", (model,))
    assert row["action"] == "compacted"
    with web(url, token) as api:
        call = api.get(f"/api/calls/{row['id']}").json()
        [archive] = call["archives"]
        assert archive["tool_name"] == "Bash" and archive["kept_tokens"] < archive["original_tokens"]
        original = api.get(f"/api/archives/{archive['sha256']}")
        assert original.status_code == 200 and original.headers["content-type"].startswith("text/plain")
        assert original.text == listing
        assert api.get(f"/api/archives/{archive['sha256'][:12]}").text == listing
        assert api.get("/api/archives/0000000000").status_code == 404
    with web(url) as anonymous:
        assert anonymous.get(f"/api/archives/{archive['sha256']}").status_code == 401


def kimi_proxy(db, *args):
    return subprocess.run([sys.executable, "-m", "kimi_core.cli", "--db", str(db), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_kimi_proxy_dashboard_prints_the_address_while_the_proxy_runs(fake, tmp_path):
    with Mitmdump(tmp_path, upstream_port=fake.port, options={"kimi_web_port": str(free_port())}) as proxy:
        url, token = proxy.dashboard()
        out = kimi_proxy(proxy.db, "dashboard")
        assert out.returncode == 0 and out.stdout.strip() == f"{url}?token={token}"
        assert oct((proxy.db.parent / "dashboard.json").stat().st_mode & 0o777) == "0o600"
    out = kimi_proxy(proxy.db, "dashboard")
    assert out.returncode == 1 and "no running proxy serves a dashboard" in out.stderr
    assert not (proxy.db.parent / "dashboard.json").exists()


def test_findings_name_repeats_overflows_and_cache_breaks(served):
    proxy, url, token = served.proxy, served.url, served.token
    model = tag()
    output = "\n".join(f"FAILED tests/test_{i}.py::test_case - AssertionError: expected {i}" for i in range(40))
    messages = [{"role": "user", "content": "Run the tests twice."}]
    for n in (1, 2):
        messages += [
            {"role": "assistant", "content": [{"type": "tool_use", "id": f"t{n}", "name": "Bash",
                                               "input": {"command": "pytest"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{n}", "content": output}]}]
    anthropic_client(proxy).messages.create(model=model, max_tokens=100, messages=messages)
    [repeated] = wait_rows(proxy.db, "model = ?", (model,))
    # A conversation past the first alert line of its window (75% of "small"'s 2,000 tokens).
    openai_client(proxy).chat.completions.create(
        model="small", messages=[{"role": "user", "content": "lorem ipsum dolor sit amet " * 300}])
    [near] = wait_rows(proxy.db, "model = 'small' AND action = 'passed'")
    assert near["window_share"] >= 0.75
    db = sqlite3.connect(proxy.db)
    db.execute("INSERT INTO alerts (ts, session_id, request_id, level, kind, message) VALUES "
               "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), NULL, ?, 0.9, 'cache_break', 'the system prompt changed')",
               (repeated["id"],))
    db.commit()
    with web(url, token) as api:
        found = api.get("/api/findings").json()
    kinds = {(f["kind"], f.get("conversation_id")) for f in found}
    assert ("repeated_tool_results", repeated["conversation_id"]) in kinds
    assert next(f for f in found if f["kind"] == "repeated_tool_results"
                and f["conversation_id"] == repeated["conversation_id"])["count"] == 2
    assert ("overflow", near["conversation_id"]) in kinds
    assert any(f["kind"] == "cache_breaks" for f in found)
    assert [f["severity"] for f in found] == sorted((f["severity"] for f in found), reverse=True)
