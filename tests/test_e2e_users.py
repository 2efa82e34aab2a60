"""A shared proxy with users: mitmproxy's proxyauth (an htpasswd file) names who made each call."""

import json
import secrets
import sqlite3
import subprocess
import sys
import uuid

import bcrypt
import httpx
import openai
import pytest
from conftest import wait_rows
from test_e2e import trust

from kimi_core.testing.proxy import Mitmdump, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shared(fake, tmp_path_factory):
    work = tmp_path_factory.mktemp("users")
    passwords = {user: secrets.token_urlsafe(12) for user in ("alice", "bob", "carol", "dave")}  # never kept
    (work / "htpasswd").write_text("".join(
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}\n" for user, pw in passwords.items()))
    options = {"proxyauth": f"@{work / 'htpasswd'}", "kimi_budget_users": "carol=0.01,*=100",
               "kimi_memory_hints": "true", "kimi_web_port": str(free_port())}
    with Mitmdump(work, upstream_port=fake.port, options=options) as proxy:
        yield proxy, passwords


def client_of(proxy, user, password):
    url = proxy.url.replace("http://", f"http://{user}:{password}@")
    return openai.OpenAI(api_key="sk-test-users-e2e", max_retries=0,
                         http_client=openai.DefaultHttpxClient(proxy=url, verify=trust(proxy)))


def test_each_call_carries_its_user_and_each_user_has_sessions_of_their_own(shared):
    proxy, passwords = shared
    model = f"users-{uuid.uuid4().hex[:8]}"
    for user in ("alice", "bob", "alice"):
        client_of(proxy, user, passwords[user]).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hello, same words"}])
    rows = wait_rows(proxy.db, "model = ?", (model,), count=3)
    assert [r["user"] for r in rows] == ["alice", "bob", "alice"]
    conversations = {r["user"]: r["conversation_id"] for r in rows}
    assert conversations["alice"] != conversations["bob"]  # the same words, two people's conversations
    sessions = {r["user"]: r["session_id"] for r in rows}
    assert sessions["alice"] != sessions["bob"] and rows[0]["session_id"] == rows[2]["session_id"]
    db = sqlite3.connect(proxy.db)
    named = dict(db.execute("SELECT user, name FROM sessions WHERE user IS NOT NULL").fetchall())
    assert named["alice"].startswith("alice ") and named["bob"].startswith("bob ")
    # The passwords proxyauth checked are nowhere Kimi writes.
    stored = proxy.db.read_bytes() + b"".join(p.read_bytes() for p in proxy.db.parent.glob("kimi.db-*"))
    assert not any(pw.encode() in stored or pw in proxy.log() for pw in passwords.values())


def test_the_command_line_groups_and_filters_by_user(shared):
    proxy, passwords = shared
    model = f"users-{uuid.uuid4().hex[:8]}"
    for user in ("alice", "bob"):
        client_of(proxy, user, passwords[user]).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}])
    wait_rows(proxy.db, "model = ?", (model,), count=2)

    def kimi_proxy(*args):
        out = subprocess.run([sys.executable, "-m", "kimi_core.cli", "--db", str(proxy.db), *args],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    by_user = {r["group"]: r["calls"] for r in kimi_proxy("cost", "--by", "user", "--json")}
    assert by_user["alice"] >= 1 and by_user["bob"] >= 1
    assert {r["user"] for r in kimi_proxy("requests", "--user", "bob", "--limit", "100", "--json")} == {"bob"}


def test_without_credentials_the_proxy_asks_for_them(shared):
    proxy, _ = shared
    with httpx.Client(proxy=proxy.url, verify=trust(proxy), trust_env=False) as anonymous, \
            pytest.raises(httpx.ProxyError, match="407"):
        anonymous.post("https://api.openai.com/v1/chat/completions", json={"model": "x", "messages": []})


def test_each_user_has_a_budget_of_their_own(shared, fake):
    proxy, passwords = shared
    carol, dave = (client_of(proxy, u, passwords[u]) for u in ("carol", "dave"))
    carol.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "spend"}],
                                  extra_headers={"X-Fake-Prompt-Tokens": "10000"})  # about $0.02 of $0.01
    wait_rows(proxy.db, "user = 'carol' AND cost_usd > 0")
    seen = len(fake.seen)
    with pytest.raises(openai.RateLimitError) as raised:
        carol.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "more"}])
    assert raised.value.code == "insufficient_quota" and "carol's daily budget of $0.01 is spent" in \
        raised.value.message and "Ask whoever runs this proxy" in raised.value.message
    assert len(fake.seen) == seen  # never left the machine
    # Dave is under * (his own $100), untouched by what carol spent.
    dave.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "spend"}],
                                 extra_headers={"X-Fake-Prompt-Tokens": "10000"})
    refused = wait_rows(proxy.db, "action = 'over_budget'")
    assert [r["user"] for r in refused] == ["carol"]
    alerts = sqlite3.connect(proxy.db).execute("SELECT message FROM alerts WHERE kind = 'budget'").fetchall()
    assert alerts and all("carol's daily budget" in m for (m,) in alerts)


def test_what_one_user_said_is_remembered_for_them_and_never_hinted_to_another(shared, fake):
    from test_e2e_hints import wait_memory

    proxy, passwords = shared
    alice, bob = (client_of(proxy, u, passwords[u]) for u in ("alice", "bob"))
    alice.chat.completions.create(model=f"say-{uuid.uuid4().hex[:6]}",
                                  messages=[{"role": "user", "content": "Never touch the payments module."}])
    assert wait_memory(proxy.db, "never touch the payments module")["user"] == "alice"
    model = f"hint-{uuid.uuid4().hex[:6]}"
    ask = [{"role": "system", "content": "You are a coding agent."},
           {"role": "user", "content": "Fix the rounding bug in the payments module, please."}]
    for client in (bob, alice):
        client.chat.completions.create(model=model, messages=ask)
    rows = wait_rows(proxy.db, "model = ?", (model,), count=2)
    assert [(r["user"], r["hints"] is not None) for r in rows] == [("bob", False), ("alice", True)]
    systems = [json.loads(r["body"])["messages"][0]["content"] for r in fake.seen if model.encode() in r["body"]]
    assert "payments" not in systems[0] and "never touch the payments module" in systems[1]


def test_the_dashboard_shows_one_user_or_everyone(shared):
    proxy, passwords = shared
    model = f"dash-{uuid.uuid4().hex[:6]}"
    for user in ("alice", "bob"):
        client_of(proxy, user, passwords[user]).chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"a question from {user}"}])
    wait_rows(proxy.db, "model = ?", (model,), count=2)
    url, token = proxy.dashboard()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, trust_env=False) as web:
        users = {u["user"]: u for u in web.get("/api/users").json()}
        assert {"alice", "bob"} <= set(users) and users["alice"]["calls_today"] >= 1
        mine = web.get("/api/now", params={"user": "bob"}).json()
        assert mine["conversations"] and {c["user"] for c in mine["conversations"]} == {"bob"}
        everyone = {c["user"] for c in web.get("/api/now").json()["conversations"]}
        assert {"alice", "bob"} <= everyone
        assert {r["user"] for r in web.get("/api/calls", params={"user": "alice", "limit": 200}).json()} == {"alice"}
        assert all(m["user"] == "bob" for m in web.get("/api/memories", params={"user": "bob"}).json())
        assert all(a["user"] == "carol" for a in web.get("/api/alerts", params={"user": "carol"}).json())


def test_in_the_browser_a_user_is_chosen_and_their_calls_come_live(shared):
    from conftest import CHROMIUM_ARGS, chromium
    from playwright.sync_api import sync_playwright

    proxy, passwords = shared
    client_of(proxy, "alice", passwords["alice"]).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "alice was here"}])
    url, token = proxy.dashboard()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(20_000)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}?token={token}")
        page.wait_for_selector("#users:not([hidden])")
        page.wait_for_selector(".live.on")
        page.select_option("#user", "bob")
        page.wait_for_selector("h1:has-text('Now bob:')")
        model = f"live-{uuid.uuid4().hex[:6]}"
        client_of(proxy, "bob", passwords["bob"]).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "bob, live"}])
        page.wait_for_selector(f".card .meta:has-text('{model}')")  # pushed, and shown under bob
        metas = page.locator(".card .meta").all_text_contents()
        assert metas and all(m.startswith("bob · ") for m in metas)
        page.select_option("#user", "")
        page.wait_for_selector(".card .meta:has-text('alice · ')")
        browser.close()
    assert not errors, errors
