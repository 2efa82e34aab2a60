"""Kimi for a team, as the README deploys it: two mitmdump instances behind a TCP load balancer, each
with its own database, both behind proxyauth and exporting to one OTLP receiver; ``kimi-proxy`` with
both databases gives the merged view.

The load balancer is a few lines of asyncio here (round robin per connection, as HAProxy's
``mode tcp`` does): no HAProxy on this machine."""

import asyncio
import itertools
import json
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import uuid

import bcrypt
import openai
import pytest
from conftest import wait_rows
from test_e2e import trust
from test_e2e_otlp import wait_spans

from kimi_core.testing.otlp import OTLPReceiver
from kimi_core.testing.proxy import Mitmdump

pytestmark = pytest.mark.e2e


class Balancer:
    """Each new client connection to the next backend in turn; bytes copied both ways."""

    def __init__(self, ports: list[int]) -> None:
        self.backends = itertools.cycle(ports)
        self.loop = asyncio.new_event_loop()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.sock = sock
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _client(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", next(self.backends))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def __enter__(self):
        self.thread.start()
        asyncio.run_coroutine_threadsafe(asyncio.start_server(self._client, sock=self.sock), self.loop).result(10)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def team(fake, tmp_path_factory):
    work = tmp_path_factory.mktemp("team")
    passwords = {user: secrets.token_urlsafe(12) for user in ("alice", "bob")}  # made here, never kept
    (work / "htpasswd").write_text("".join(
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}\n" for user, pw in passwords.items()))
    with OTLPReceiver() as receiver:
        options = {"proxyauth": f"@{work / 'htpasswd'}", "kimi_otlp_endpoint": receiver.url}
        with Mitmdump(work / "one", upstream_port=fake.port, options=options) as one:
            two = Mitmdump(work / "two", upstream_port=fake.port, options=options)
            shutil.copytree(one.confdir, two.confdir)  # one CA for all instances: each machine gets the confdir
            with two, Balancer([port_of(one), port_of(two)]) as balancer:
                yield [one, two], balancer, receiver, passwords


def port_of(proxy):
    return int(proxy.url.rsplit(":", 1)[1])


def test_two_instances_one_collector_one_merged_view(team):
    (one, two), balancer, receiver, passwords = team
    model = f"team-{uuid.uuid4().hex[:6]}"
    calls = [("alice", one), ("bob", two), ("alice", one), ("bob", two)]  # round robin: one connection each
    for user, _ in calls:
        client = openai.OpenAI(api_key="sk-test-team", max_retries=0, http_client=openai.DefaultHttpxClient(
            proxy=f"http://{user}:{passwords[user]}@127.0.0.1:{balancer.port}", verify=trust(one)))
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"{user} asks"}])
        client.close()
    rows = {p: wait_rows(p.db, "model = ?", (model,), count=2) for p in (one, two)}
    assert [r["user"] for r in rows[one]] == ["alice", "alice"] and [r["user"] for r in rows[two]] == ["bob", "bob"]

    # One collector: every call's span, each instance named apart.
    spans = wait_spans(receiver, model, count=4)
    assert len(spans) == 4
    instances = {s["resource"]["service.instance.id"] for s in spans}
    assert len(instances) == 2
    assert {s["attributes"]["user.name"] for s in spans} == {"alice", "bob"}

    # One view over both databases.
    out = subprocess.run([sys.executable, "-m", "kimi_core.cli", "--db", str(one.db), "--db", str(two.db),
                          "requests", "--limit", "100", "--json"], capture_output=True, text=True, check=True)
    merged = [r for r in json.loads(out.stdout) if r["model"] == model]
    assert sorted(r["user"] for r in merged) == ["alice", "alice", "bob", "bob"]
    assert {r["id"] for r in merged} == {r["id"] for p in (one, two) for r in rows[p]}
