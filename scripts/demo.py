"""Fill a database through a real proxy, to try the kimi-proxy command on (no provider or key needed).

Starts the local fake provider and mitmdump with Kimi, then plays two agent
sessions through the official SDKs: a conversation that grows towards a
small model's window until the guard refuses it, and one with an oversized
tool result that gets compacted. Prints the database's path; the flows are
saved too, to open in mitmweb.

    scripts/run python scripts/demo.py [--db /tmp/kimi-demo.db] [--flows /tmp/kimi-demo.mitm]
    scripts/run kimi-proxy --db /tmp/kimi-demo.db sessions
    scripts/run mitmweb -s addons/kimi.py -r /tmp/kimi-demo.mitm
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import ssl
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import anthropic
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kimi_core.testing.fake_provider import FakeProvider
from kimi_core.testing.proxy import Mitmdump, free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="/tmp/kimi-demo.db")
    parser.add_argument("--flows", default="/tmp/kimi-demo.mitm", help="the flows, for mitmweb -r")
    parser.add_argument("--screenshots", metavar="DIR", help="save a screenshot of each dashboard view here "
                                                             "(headless Chromium, with Playwright)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kimi-demo-"))
    config = work / "config.toml"
    config.write_text('[models."kimi-k2-demo"]\nprovider = "moonshot"\ncontext_window = 6000\n'
                      'input_per_mtok = 0.60\noutput_per_mtok = 2.50\ncache_read_per_mtok = 0.15\n')
    options = {"kimi_config": str(config), "save_stream_file": args.flows}
    if args.screenshots:
        options["kimi_web_port"] = str(free_port())
    with FakeProvider(tls=True) as fake, Mitmdump(work, fake.port, options=options) as proxy:
        trust = ssl.create_default_context(cafile=str(proxy.ca))
        chat = openai.OpenAI(api_key="sk-demo", base_url="https://api.moonshot.ai/v1", max_retries=0,
                             http_client=openai.DefaultHttpxClient(proxy=proxy.url, verify=trust))
        history = [{"role": "user", "content": "I prefer pytest over unittest. We're going to ship the "
                                               "refactor next week. Never touch the billing module."}]
        try:
            for turn in range(40):
                chat.chat.completions.create(model="kimi-k2-demo", messages=history,
                                             extra_headers={"X-Kimi-Session": "refactor"})
                history += [{"role": "assistant", "content": f"Step {turn} done: " + "patched code " * 40},
                            {"role": "user", "content": f"Next step {turn}, please. " + "context " * 60}]
        except openai.BadRequestError as e:
            print(f"refused, as expected: {str(e)[:100]}...", file=sys.stderr)
        listing = subprocess.run(["ls", "-lR", sysconfig.get_paths()["purelib"]], capture_output=True, text=True,
                                 check=True).stdout
        # Claude Code's headers: the agent and its session are read from them.
        claude = anthropic.Anthropic(api_key="sk-ant-demo", max_retries=0, http_client=anthropic.DefaultHttpxClient(
            proxy=proxy.url, verify=trust), default_headers={
            "User-Agent": "claude-cli/2.1.332 (external, cli)", "X-Claude-Code-Session-Id": "demo-session-1"})
        # What a coding agent sends besides the conversation: a long system prompt and its tools.
        system = ("You are an interactive CLI tool that helps users with software engineering tasks. "
                  "Use the tools available to you. Keep answers short. Never guess a file's content. " * 25)
        tools = [{"name": name, "description": f"{purpose} " * 12,
                  "input_schema": {"type": "object", "properties": {k: {"type": "string"} for k in params}}}
                 for name, purpose, params in (
                     ("Bash", "Runs a shell command in a persistent session and returns its output.", ["command"]),
                     ("Read", "Reads a file from the local filesystem, with line numbers.", ["file_path"]),
                     ("Edit", "Replaces exact strings in a file; the old string must be unique.", ["file_path"]),
                     ("Grep", "Searches file contents with a regular expression (ripgrep).", ["pattern", "path"]),
                     ("Glob", "Finds files by name pattern, sorted by modification time.", ["pattern"]),
                     ("WebFetch", "Fetches a URL and answers a question about its content.", ["url", "prompt"]),
                     ("Task", "Launches a subagent for a multi-step task, with its own context.", ["prompt"]))]
        messages = [
            {"role": "user", "content": "Where does tiktoken keep its encodings? Je préfère des réponses courtes."},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash",
                                               "input": {"command": "ls -lR site-packages"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": listing}]}]
        for turn in range(3):
            # The model hands the last turn's work to a subagent (a tool call), which runs meanwhile.
            tool = {"X-Fake-Tool": "Task"} if turn == 2 else {}
            claude.messages.create(model="claude-sonnet-4-5", max_tokens=200, messages=messages, system=system,
                                   tools=tools, extra_headers={"X-Kimi-Session": "explore", **tool})
            messages = messages + [{"role": "assistant", "content": f"Answer {turn}."},
                                   {"role": "user", "content": f"And the tests, turn {turn}?"}]
        task = [{"role": "user", "content": "Find every test that touches the tokenizer and list them."}]
        for step in range(2):
            claude.messages.create(model="claude-haiku-4-5", max_tokens=200, messages=task,
                                   extra_headers={"X-Kimi-Session": "explore"})
            task = task + [{"role": "assistant", "content": f"Searched {step}."},
                           {"role": "user", "content": f"grep output {step}: tests/test_tokens.py"}]
        time.sleep(1.5)  # the memory workers wait for a pause in the traffic
        if args.screenshots:
            screenshots(proxy, Path(args.screenshots))
    Path(args.db).unlink(missing_ok=True)
    with sqlite3.connect(proxy.db) as source, sqlite3.connect(args.db) as target:
        source.backup(target)  # the database and its write-ahead log, as one file
    Path(args.db).chmod(0o600)
    print(f"database: {args.db}\nflows: {args.flows} (mitmweb -r)\nmitmproxy's confdir: {proxy.confdir}")


def screenshots(proxy: Mitmdump, out: Path) -> None:
    """Each view of the dashboard, as the README shows them."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    url, token = proxy.dashboard()
    out.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(proxy.db)
    refused = db.execute("SELECT conversation_id FROM requests WHERE action = 'rejected' LIMIT 1").fetchone()[0]
    compacted = db.execute("SELECT id FROM requests WHERE action = 'compacted' ORDER BY ts DESC LIMIT 1").fetchone()[0]
    views = {"now": "", "conversation": f"conversation/{refused}", "call": f"call/{compacted}",
             "findings": "findings", "alerts": "alerts", "memories": "memories"}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{url}?token={token}")
        page.wait_for_selector("body[data-loaded=now]")
        for name, route in views.items():
            page.goto(f"{url}#/{route}")
            page.wait_for_selector(f"body[data-loaded={name}]")
            if name == "call":
                page.wait_for_selector("#treemap .cell")
            page.screenshot(path=str(out / f"{name}.png"))
        browser.close()
    for png in out.glob("*.png"):  # 256 colours: a third of the size, the same to the eye
        Image.open(png).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)
    print(f"screenshots: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
