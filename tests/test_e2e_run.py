"""``kimi-proxy run -- COMMAND``: a command's LLM calls through Kimi with no other set-up.

The command inherits nothing about the proxy from the test: no proxy or CA
variables, only what ``kimi-proxy run`` gives it. With a proxy running, its
calls go there; with none, one is started for the command and stopped after.
"""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import wait_rows

from kimi_core.testing import agents
from kimi_core.testing.proxy import REDIRECT_SCRIPT

pytestmark = pytest.mark.e2e

SCRIPT = """
import sys, openai
client = openai.OpenAI(api_key="sk-test-run-script", max_retries=0)
reply = client.chat.completions.create(model=sys.argv[1], messages=[{"role": "user", "content": "hello from a script"}])
print("answer:", reply.choices[0].message.content)
sys.exit(3)
"""


def clean_env(**extra):
    """The environment of a new terminal: no proxy, no CA bundle."""
    drop = ("proxy", "ssl_cert", "ca_bundle", "node_extra_ca", "codex_ca")
    return {**{k: v for k, v in os.environ.items() if not any(d in k.lower() for d in drop)}, **extra}


def kimi_run(db, *args, env=None, confdir=None):
    argv = [sys.executable, "-m", "kimi_core.cli", "--db", str(db), "run", *args]
    if confdir is not None:
        argv[6:6] = ["--confdir", str(confdir)]
    return subprocess.run(argv, capture_output=True, text=True, env=env or clean_env(), timeout=180, check=False)


def test_a_script_run_through_the_running_proxy_lands_in_its_session_and_keeps_its_status(proxy, tmp_path):
    script = tmp_path / "my_agent.py"
    script.write_text(SCRIPT)
    model, session = f"gpt-4.1-run-{uuid.uuid4().hex[:6]}", f"run {uuid.uuid4().hex[:6]}"
    done = kimi_run(proxy.db, "--session", session, "--", sys.executable, str(script), model)
    assert done.returncode == 3, done.stderr  # the command's own status
    assert "answer: " in done.stdout and f"session '{session}'" in done.stderr
    [row] = wait_rows(proxy.db, "model = ?", (model,))
    assert row["agent"] == "openai-python" and row["status_code"] == 200
    import sqlite3
    name = sqlite3.connect(proxy.db).execute("SELECT name FROM sessions WHERE id = ?", (row["session_id"],)).fetchone()
    assert name == (session,)
    state = json.loads((Path(proxy.db).parent / "proxy.json").read_text())
    assert state["pid"] == proxy.proc.pid and state["port"] == proxy.port


def test_with_no_proxy_running_one_is_started_for_the_command_and_stopped_after(fake, tmp_path):
    script = tmp_path / "my_agent.py"
    script.write_text(SCRIPT)
    db, model = tmp_path / "kimi" / "kimi.db", f"gpt-4.1-run-{uuid.uuid4().hex[:6]}"
    done = kimi_run(db, "--session", "solo", "--proxy-arg=-s", f"--proxy-arg={REDIRECT_SCRIPT}",
                    "--proxy-arg=--set", f"--proxy-arg=kimi_fake_upstream=127.0.0.1:{fake.port}",
                    "--proxy-arg=--set", "--proxy-arg=connection_strategy=lazy",
                    "--proxy-arg=--set", "--proxy-arg=ssl_insecure=true",
                    "--", sys.executable, str(script), model, confdir=tmp_path / "mitmproxy")
    assert done.returncode == 3, done.stderr
    assert "started a proxy on 127.0.0.1:" in done.stderr
    [row] = wait_rows(db, "model = ?", (model,))
    assert row["status_code"] == 200
    assert not (db.parent / "proxy.json").exists()  # the proxy stopped with the command
    assert (db.parent / "ca-bundle.pem").read_bytes().endswith((tmp_path / "mitmproxy" / "mitmproxy-ca-cert.pem")
                                                               .read_bytes())


AGENTS = {  # argv (the model goes in {model}), the key a user has, the agent Kimi names
    "claude": (["claude", "-p", "Say hello", "--model", "{model}"], {"ANTHROPIC_API_KEY": "sk-ant-test-run"},
               "claude-opus-4-5", "claude-code"),
    "codex": (["codex", "exec", "--skip-git-repo-check", "-m", "{model}", "Say hello"],
              {"OPENAI_API_KEY": "sk-test-run", "CODEX_API_KEY": "sk-test-run"}, "gpt-5.1-codex", "codex"),
    "gemini": (["gemini", "-p", "Say hello", "-m", "{model}"],
               {"GEMINI_API_KEY": "AIzaSyRunTestRunTestRunTestRunTest000", "GEMINI_CLI_TRUST_WORKSPACE": "true"},
               "gemini-2.5-pro", "gemini-cli"),
}


@pytest.mark.parametrize("agent", list(AGENTS))
def test_each_agent_run_as_typed_lands_in_its_session(proxy, tmp_path, agent):
    try:
        bin_dir = agents.install()
    except agents.AgentsUnavailable as e:
        if os.environ.get("KIMI_REQUIRE_AGENTS"):
            pytest.fail(f"the agents are required here (KIMI_REQUIRE_AGENTS) but: {e}")
        pytest.skip(f"agents not installed: {e}")
    argv, keys, family, name = AGENTS[agent]
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), DISABLE_AUTOUPDATER="1",
                    PATH=f"{bin_dir}:{os.environ['PATH']}", **keys)
    model, session = f"{family}-{uuid.uuid4().hex[:6]}", f"{agent} run {uuid.uuid4().hex[:4]}"
    done = kimi_run(proxy.db, "--session", session, "--", *(a.format(model=model) for a in argv), env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "piece 0 piece 1" in out, out[-3000:]
    rows = [r for r in wait_rows(proxy.db, "model = ?", (model,)) if r["messages"]]
    assert rows and {r["agent"] for r in rows} == {name}
    import sqlite3
    db = sqlite3.connect(proxy.db)
    names = {db.execute("SELECT name FROM sessions WHERE id = ?", (r["session_id"],)).fetchone()[0] for r in rows}
    assert names == {session}
