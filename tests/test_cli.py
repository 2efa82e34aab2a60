import json
import subprocess
import sys

import pytest

from kimi_core.store import RequestRecord, Store

BODY = {"model": "gpt-4o", "api_key": "hunter2", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "kimi.db"
    store = Store(path)
    store.open()
    store.start()
    store.submit(RequestRecord({"id": "abc123", "ts": "2026-11-21T00:00:00", "dialect": "openai-chat"},
                               BODY, "messages", b'{"choices": []}'))
    store.submit(RequestRecord({"id": "abd456", "ts": "2026-11-21T00:00:01", "dialect": "openai-chat"}))
    store.close()
    return path


def kimi_proxy(*args):
    return subprocess.run([sys.executable, "-m", "kimi_core.cli", *args], capture_output=True, text=True, check=False)


def test_show_prints_the_request_as_sent_without_credentials(db):
    out = kimi_proxy("show", "abc", "--db", str(db))
    assert out.returncode == 0
    assert json.loads(out.stdout) == {**BODY, "api_key": "[REDACTED]"}


def test_show_response(db):
    out = kimi_proxy("--db", str(db), "show", "abc123", "--response")
    assert (out.returncode, json.loads(out.stdout)) == (0, {"choices": []})


@pytest.mark.parametrize("args,message", [
    (("show", "ab"), "kimi-proxy: more than one request matches 'ab'\n"),
    (("show", "zzz"), "kimi-proxy: no request matches 'zzz'\n"),
    (("show", "abd456"), "kimi-proxy: the body of abd456 is not stored (retention, or kimi_store_bodies=false)\n"),
])
def test_errors_are_one_line_and_a_non_zero_exit(db, args, message):
    out = kimi_proxy(*args, "--db", str(db))
    assert (out.returncode, out.stderr, out.stdout) == (1, message, "")


def test_no_database(tmp_path):
    out = kimi_proxy("show", "x", "--db", str(tmp_path / "none.db"))
    assert out.returncode == 1 and out.stderr.startswith("kimi-proxy: no database at ")
