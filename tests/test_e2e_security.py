"""No credential reaches the database, the log, flow comments, the CLI's output or the metrics."""

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time

import httpx
import lz4.frame
import pytest
from conftest import wait_rows
from mitmproxy import io
from test_e2e import trust

from kimi_core.testing.proxy import Mitmdump

pytestmark = pytest.mark.e2e

SECRETS = {
    "authorization": "Bearer sk-proj-HEADERsecretHEADERsecret0001",
    "x-api-key": "sk-ant-api03-HEADERsecretHEADERsecret0002",
    "x-goog-api-key": "AIzaSyHEADER-secret-HEADER-secret-00003",
    "api-key": "azureHEADERsecretHEADERsecret0004",
    "cookie": "session=COOKIEsecretCOOKIEsecret0005",
}
IN_BODY = ["sk-proj-BODYsecretBODYsecretBODY0006", "AIzaSyBODY-secret-BODY-secret-BODY00007",
           "hunter2-BODY-password-0008"]
IN_QUERY = "AIzaSyQUERY-secret-QUERY-secret-QUERY009"
ALL = [*SECRETS.values(), *IN_BODY, IN_QUERY]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def everything_stored(db):
    """Every value in the database, with lz4-compressed blobs and archives decompressed."""
    conn = sqlite3.connect(db)
    out = []
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in conn.execute(f"SELECT * FROM [{table}]"):
            for value in row:
                if isinstance(value, bytes):
                    try:
                        value = lz4.frame.decompress(value)
                    except RuntimeError:
                        pass
                    out.append(value.decode("utf-8", "replace"))
                elif value is not None:
                    out.append(str(value))
    return "\n".join(out)


def test_credentials_are_kept_out_of_everything_kimi_writes(fake, tmp_path):
    port = free_port()
    flows = tmp_path / "flows.mitm"
    options = {"kimi_metrics_port": str(port), "kimi_tool_budget": "500", "save_stream_file": str(flows)}
    with Mitmdump(tmp_path, upstream_port=fake.port, options=options) as proxy:
        leaky = (f"I prefer using {IN_BODY[0]} for tests. " + f'config: {{"api_key": "{IN_BODY[1]}", '
                 f'"password": "{IN_BODY[2]}"}}')
        listing = "\n".join(f"line {i}: export OPENAI_API_KEY={IN_BODY[0]}" for i in range(400))
        body = {"model": "gpt-4.1", "api_key": IN_BODY[1], "messages": [
            {"role": "user", "content": leaky},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "env", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": listing}]}
        with httpx.Client(proxy=proxy.url, verify=trust(proxy)) as client:
            r = client.post(f"https://api.openai.com/v1/chat/completions?key={IN_QUERY}", json=body,
                            headers=SECRETS)
            assert r.status_code == 200
            r = client.post(f"https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent"
                            f"?key={IN_QUERY}", json={"contents": [{"role": "user", "parts": [{"text": leaky}]}]},
                            headers=SECRETS)
            assert r.status_code == 200
        wait_rows(proxy.db, count=2)
        time.sleep(1.5)  # memories are read after a pause in the traffic
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        log = proxy.log()
    assert "kimi-proxy restore" in fake.seen[-2]["body"].decode()  # the tool result was compacted (and archived)
    stored = everything_stored(proxy.db)
    assert "prefers using [redacted]" in stored.lower() or "[REDACTED]" in stored
    cli = "\n".join(subprocess.run([sys.executable, "-m", "kimi_core.cli", "--db", str(proxy.db), *cmd],
                                   capture_output=True, text=True, check=False).stdout
                    for cmd in (["sessions", "--json"], ["requests", "--json"], ["stats", "--json"],
                                ["alerts", "--json"], ["memories", "--json"],
                                ["show", wait_rows(proxy.db, count=2)[0]["id"]]))
    with open(flows, "rb") as f:
        comments = "\n".join(flow.comment for flow in io.FlowReader(f).stream())
    assert "kimi:" in comments and "prefers" in cli
    for secret in ALL:
        for where, text in (("database", stored), ("log", log), ("CLI", cli), ("metrics", metrics),
                            ("comments", comments)):
            assert secret not in text, f"{secret} found in the {where}"
    # The provider still got the request exactly as the client sent it, credentials included.
    assert fake.seen[-1]["headers"].get("x-goog-api-key") == SECRETS["x-goog-api-key"]
    assert json.loads(fake.seen[-2]["body"])["api_key"] == IN_BODY[1]


def test_the_database_and_its_directory_are_created_private(fake, tmp_path):
    db = tmp_path / "new" / "kimi.db"  # Kimi creates the directory (an existing one is left as it is)
    with Mitmdump(tmp_path / "proxy", upstream_port=fake.port, options={"kimi_db": str(db)}):
        pass
    assert db.stat().st_mode & 0o777 == 0o600
    assert db.parent.stat().st_mode & 0o777 == 0o700


def listening_addresses(pid):
    """The local (address, port) of the TCP sockets process ``pid`` listens on (Linux's /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed meanwhile
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                address, hexport = fields[1].split(":")
                if fields[3] == "0A" and fields[9] in inodes:  # LISTEN, this process's
                    found.append((address, int(hexport, 16)))
    return found


@pytest.mark.parametrize("listen_host,expected", [
    (None, {"0100007F"}),  # mitmproxy's default is every interface: Kimi makes it 127.0.0.1
    ("0.0.0.0", {"00000000"}),  # said by the user: left alone
])
def test_the_proxy_listens_on_loopback_unless_told_otherwise(tmp_path, listen_host, expected):
    with Mitmdump(tmp_path, listen_host=listen_host) as proxy:
        addresses = listening_addresses(proxy.proc.pid)
        assert {a for a, _ in addresses} == expected and {p for _, p in addresses} == {proxy.port}
        with httpx.Client(proxy=proxy.url) as client:  # and it still proxies
            assert client.get("http://127.0.0.1:9/").status_code == 502


# Forms a key takes in what users paste (each found stored verbatim once).
FORMS = {
    "MISTRAL_API_KEY=mistralSECRETvalue0010": "mistralSECRETvalue0010",
    "export OPENAI_API_KEY=0123456789abcdef0123456789abcd11": "0123456789abcdef0123456789abcd11",
    '{"client_secret": "clientSECRETvalue0012"}': "clientSECRETvalue0012",
    '{"token": "tokenSECRETvalue0013"}': "tokenSECRETvalue0013",
    '{"api_key": 98765432100014}': "98765432100014",
    '{"\\u0061pi_key": "escapedSECRETvalue0015"}': "escapedSECRETvalue0015",
    "{'password': 'pythonSECRETvalue0016'}": "pythonSECRETvalue0016",
}
ECHOED = "sk-proj-ECHOEDsecretECHOEDsecret0017"


def test_every_form_of_a_key_is_kept_out_and_nothing_reaches_a_terminal_raw(fake, tmp_path):
    with Mitmdump(tmp_path, upstream_port=fake.port) as proxy:
        with httpx.Client(proxy=proxy.url, verify=trust(proxy)) as client:
            for i, form in enumerate(FORMS):
                text = f"I prefer {form} for the deploy. Never use {form} in logs."
                r = client.post("https://api.openai.com/v1/chat/completions", json={
                    "model": f"m\x1b]0;pwned\x07\x1b[2J-{i}", "messages": [{"role": "user", "content": text}]},
                    headers={"X-Kimi-Session": "esc\x1b[31mred"})
                assert r.status_code == 200
            r = client.post("https://api.openai.com/v1/chat/completions", json={"model": "gpt-4.1", "messages": []},
                            headers={"authorization": f"Bearer {ECHOED}", "X-Fake-Status": "401",
                                     "X-Fake-Echo-Auth": "1"})
            assert r.status_code == 401 and ECHOED in r.text  # the client gets what the provider said
        rows = wait_rows(proxy.db, count=len(FORMS) + 1)
        assert any("Incorrect API key provided" in (r["error"] or "") for r in rows)
        time.sleep(1.5)  # memories are read after a pause in the traffic
        log = proxy.log()
    stored = everything_stored(proxy.db)
    outputs = [subprocess.run([sys.executable, "-m", "kimi_core.cli", "--db", str(proxy.db), *cmd],
                              capture_output=True, text=True, check=False).stdout
               for cmd in (["sessions"], ["requests"], ["stats"], ["alerts"], ["memories"],
                           ["requests", "--json"], ["memories", "--json"])]
    cli = "\n".join(outputs)
    assert "[REDACTED]" in stored and "prefer" in cli
    for secret in [*FORMS.values(), ECHOED]:
        for where, text in (("database", stored), ("log", log), ("CLI", cli)):
            assert secret not in text, f"{secret} found in the {where}"
    assert "\x1b" not in "\n".join(outputs[:5]) and "\\x1b" in outputs[1]  # shown, not obeyed
