"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) while a real mitmdump
carries traffic from the official SDKs: calls and alerts appear without a reload, a call's treemap
shows the row's figures, a memory is forgotten from the page. Screenshots go to
``test-artifacts/dashboard/`` (or ``$KIMI_ARTIFACTS``)."""

import os
import sqlite3
import uuid
from pathlib import Path

import pytest
from conftest import CHROMIUM_ARGS, chromium, dashboard_proxy, wait_rows
from test_e2e import anthropic_client, openai_client

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(os.environ.get("KIMI_ARTIFACTS") or Path(__file__).resolve().parent.parent / "test-artifacts")
TIMEOUT = 20_000  # ms: how long the page may take to show what is awaited, on a loaded machine



@pytest.fixture(scope="module")
def served(fake, tmp_path_factory):
    with dashboard_proxy(fake, tmp_path_factory.mktemp("browser")) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    path = chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, served, request):
    url = served.url
    token = served.token
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{url}?token={token}")
    page.wait_for_selector("body[data-loaded=now]")
    page.wait_for_selector(".live.on")  # the WebSocket is open
    yield page
    context.close()
    assert not errors, errors


def shot(page, name):
    ARTIFACTS.joinpath("dashboard").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard" / f"{name}.png"), full_page=True)


def tag():
    return f"web-{uuid.uuid4().hex[:10]}"


def test_a_new_call_and_a_refusal_appear_without_a_reload(page, served):
    proxy = served.proxy
    page.evaluate("window.__sameDocument = true")
    model = tag()
    openai_client(proxy).chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello there"}])
    [row] = wait_rows(proxy.db, "model = ?", (model,))
    page.wait_for_selector(f'#calls tr[data-call="{row["id"]}"]')
    page.wait_for_selector(f'.card[data-conversation="{row["conversation_id"]}"]')
    assert page.locator("#unread").is_hidden()

    with pytest.raises(Exception):  # noqa: B017  (the SDK's BadRequestError: the guard refused it)
        openai_client(proxy).chat.completions.create(
            model="small", messages=[{"role": "user", "content": "lorem ipsum " * 2000}])
    toast = page.wait_for_selector(".toast:has-text('rejected')")
    assert "2,000" in toast.text_content()
    page.wait_for_function("document.getElementById('unread').textContent === '1'")
    assert page.locator("#unread").is_visible()
    [refused] = wait_rows(proxy.db, "model = 'small' AND action = 'rejected'")
    page.wait_for_selector(f'#calls tr[data-call="{refused["id"]}"] .pill.rejected')
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    shot(page, "now")

    page.click("nav a[data-view=alerts]")
    page.wait_for_selector("body[data-loaded=alerts]")
    page.wait_for_selector("table.alerts .pill.rejected")
    assert page.locator("#unread").is_hidden()  # read
    shot(page, "alerts")


def test_a_calls_treemap_shows_the_rows_figures(page, served):
    proxy = served.proxy
    model = tag()
    listing = "\n".join(f"-rw-r--r-- 1 dev dev {i * 37} Nov 30 src/pkg/module_{i}.py" for i in range(400))
    tools = [{"name": "bash", "description": "Run a shell command. " * 20,
              "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}]
    first = [{"role": "user", "content": "List the source files and tell me which is largest."}]
    then = first + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_ls", "name": "bash",
                                           "input": {"command": "ls -lR src"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_ls", "content": listing}]}]
    client = anthropic_client(proxy)
    for messages in (first, then):
        client.messages.create(model=model, max_tokens=200, system="You are a coding agent. " * 30,
                               tools=tools, messages=messages)
    rows = wait_rows(proxy.db, "model = ?", (model,), count=2)
    call_id = rows[1]["id"]

    page.click(f'.card[data-conversation="{rows[1]["conversation_id"]}"]')
    page.wait_for_selector("body[data-loaded=conversation]")
    assert page.locator("#timeline circle.turn").count() == 2
    shot(page, "conversation")

    page.click(f'#timeline circle.turn[data-call="{call_id}"]')
    page.wait_for_selector("body[data-loaded=call]")
    page.wait_for_selector("#treemap .cell")
    cells = page.eval_on_selector_all(
        "#treemap .cell", "cs => cs.map(c => [c.dataset.kind, c.dataset.label, +c.dataset.tokens])")
    assert sum(t for _, _, t in cells) == rows[1]["prompt_tokens_est"]
    biggest = max(cells, key=lambda c: c[2])
    assert biggest[:2] == ["tool_result", "bash"]
    # The table below the treemap says the same, and the page shows the row's count.
    shown = page.text_content("#local-tokens").replace(",", "")
    assert int(shown) == rows[1]["prompt_tokens_est"]
    area = page.eval_on_selector(
        '#treemap .cell[data-kind="tool_result"]', "c => c.offsetWidth * c.offsetHeight")
    box = page.eval_on_selector("#treemap", "t => t.clientWidth * t.clientHeight")
    assert abs(area / box - biggest[2] / rows[1]["prompt_tokens_est"]) < 0.05  # its area is its share
    shot(page, "call")


def test_a_memory_is_forgotten_from_the_page(page, served):
    proxy = served.proxy
    db = sqlite3.connect(proxy.db)
    content = f"prefers spaces {uuid.uuid4().hex[:6]}"
    db.execute("INSERT INTO memories (created_at, last_seen, kind, content, source_text, confidence, count) "
               "VALUES ('2026-12-01T10:00:00', '2026-12-01T10:00:00', 'preference', ?, 'I like spaces', 0.9, 2)",
               (content,))
    db.commit()
    [(memory_id,)] = db.execute("SELECT id FROM memories WHERE content = ?", (content,)).fetchall()
    page.click("nav a[data-view=memories]")
    page.wait_for_selector(f'#memories tr[data-memory="{memory_id}"]')
    page.fill("input[type=search]", "spaces")
    page.press("input[type=search]", "Enter")
    page.wait_for_selector(f'#memories tr[data-memory="{memory_id}"]')
    shot(page, "memories")
    page.click(f'#memories tr[data-memory="{memory_id}"] button.forget')
    page.wait_for_selector(f'#memories tr[data-memory="{memory_id}"]', state="detached")
    assert db.execute("SELECT count(*) FROM memories WHERE id = ?", (memory_id,)).fetchone()[0] == 0


def test_a_tool_never_called_is_a_finding(page, served):
    proxy = served.proxy
    model = tag()
    tools = [{"name": "deploy_to_production", "description": "Deploy the service. " * 40,
              "input_schema": {"type": "object", "properties": {}}}]
    client = anthropic_client(proxy)
    history = [{"role": "user", "content": "What does this repository do?"}]
    for _ in range(2):
        client.messages.create(model=model, max_tokens=100, tools=tools, messages=history)
        history = history + [{"role": "assistant", "content": "It is a proxy."},
                             {"role": "user", "content": "Tell me more."}]
    wait_rows(proxy.db, "model = ?", (model,), count=2)
    page.click("nav a[data-view=findings]")
    page.wait_for_selector("body[data-loaded=findings]")
    finding = page.wait_for_selector('#findings .finding[data-kind="unused_tools"]:has-text("deploy_to_production")')
    assert "never called" in finding.text_content()
    shot(page, "findings")


def test_without_the_token_the_page_says_how_to_get_in(browser, served):
    url = served.url
    context = browser.new_context()
    page = context.new_page()
    response = page.goto(url)
    assert response.status == 401
    assert "Token required" in page.text_content("h1")
    context.close()
