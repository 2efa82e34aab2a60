"""Memory hints end to end: a real mitmdump with Kimi, the fake provider, the official SDKs."""

import json
import sqlite3
import uuid

import httpx
import pytest
from conftest import wait_rows
from test_e2e import anthropic_client

from kimi_core import hints
from kimi_core.testing.proxy import Mitmdump, free_port

pytestmark = pytest.mark.e2e

SHOP = "/home/dev/src/shop"


def system(project):
    return f"You are a coding agent.\n - Primary working directory: {project}\n - Is a git repository: true"


@pytest.fixture(scope="module")
def hinting(fake, tmp_path_factory):
    options = {"kimi_memory_hints": "true", "kimi_web_port": str(free_port())}
    with Mitmdump(tmp_path_factory.mktemp("hints"), upstream_port=fake.port, options=options) as running:
        # Said once, in a conversation in the shop's repository: remembered with that project.
        anthropic_client(running).messages.create(
            model=f"say-{uuid.uuid4().hex[:6]}", max_tokens=50, system=system(SHOP),
            messages=[{"role": "user", "content": "Never touch the billing module."}])
        memory = wait_memory(running.db, "never touch the billing module")
        assert memory["project"] == SHOP
        yield running, memory


def wait_memory(db, content, timeout=20.0):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = sqlite3.connect(db)
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM memories WHERE content = ?", (content,)).fetchone()
            conn.close()
            if row is not None:
                return dict(row)
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no memory {content!r}")


def sent(fake, model):
    """The system prompts the provider received for ``model``, in order."""
    out = []
    for r in fake.seen:
        if model.encode() in r["body"]:
            body = json.loads(r["body"])
            s = body.get("system")
            out.append(s if isinstance(s, str) else "".join(b.get("text", "") for b in s or []))
    return out


def ask(proxy, model, messages, project=SHOP, **headers):
    return anthropic_client(proxy).messages.create(model=model, max_tokens=50, system=system(project),
                                                   messages=messages, extra_headers=headers or None)


def test_a_new_conversation_gets_the_hint_and_keeps_the_same_bytes(hinting, fake):
    proxy, memory = hinting
    model = f"hint-{uuid.uuid4().hex[:6]}"
    first = [{"role": "user", "content": "Fix the rounding bug in the billing module, please."}]
    ask(proxy, model, first)
    second = first + [{"role": "assistant", "content": "Which file?"},
                      {"role": "user", "content": "billing/rounding.py"}]
    ask(proxy, model, second)
    systems = sent(fake, model)
    assert len(systems) == 2
    added = systems[0][len(system(SHOP)):]
    assert added.startswith("\n\n" + hints.BEGIN) and added.endswith(hints.END)
    assert "never touch the billing module" in added
    assert systems[1] == systems[0]  # byte for byte: the provider's cache keeps hitting
    rows = wait_rows(proxy.db, "model = ?", (model,), count=2)
    for row in rows:
        [added] = json.loads(row["hints"])
        assert (added["kind"], added["content"]) == ("constraint", "never touch the billing module")
        assert added["id"] in (None, memory["id"])  # None: read from a message a moment ago, not read back yet
        assert row["project"] == SHOP
    # What Kimi counted and guarded is what it sent: the block included.
    assert rows[0]["prompt_tokens_est"] > 0


def test_no_hint_with_the_header_or_in_another_project(hinting, fake):
    proxy, _ = hinting
    off, other = f"off-{uuid.uuid4().hex[:6]}", f"blog-{uuid.uuid4().hex[:6]}"
    first = [{"role": "user", "content": "Fix the rounding bug in the billing module, please."}]
    ask(proxy, off, first, **{"X-Kimi-Hints": "off"})
    ask(proxy, other, first, project="/home/dev/src/blog")
    assert sent(fake, off) == [system(SHOP)]
    assert sent(fake, other) == [system("/home/dev/src/blog")]
    reached = [r for r in fake.seen if off.encode() in r["body"]]
    assert reached and not any(k.lower().startswith("x-kimi") for r in reached for k in r["headers"])
    for model in (off, other):
        [row] = wait_rows(proxy.db, "model = ?", (model,))
        assert row["hints"] is None


def test_a_conversation_met_in_its_middle_gets_none(hinting, fake):
    """The proxy started during it: a block now would change its system prompt under the provider's cache."""
    proxy, _ = hinting
    model = f"mid-{uuid.uuid4().hex[:6]}"
    ask(proxy, model, [{"role": "user", "content": "Look at the billing module."},
                       {"role": "assistant", "content": "Done."},
                       {"role": "user", "content": "Now the billing tests."}])
    assert sent(fake, model) == [system(SHOP)]


def test_a_forgotten_memory_is_hinted_no_more(hinting, fake):
    proxy, memory = hinting
    url, token = proxy.dashboard()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}", "X-Kimi-Change": "1"},
                      trust_env=False) as dashboard:
        assert dashboard.delete(f"/api/memories/{memory['id']}").status_code == 200
    model = f"gone-{uuid.uuid4().hex[:6]}"
    ask(proxy, model, [{"role": "user", "content": "Refactor the billing module's rounding."}])
    assert sent(fake, model) == [system(SHOP)]
